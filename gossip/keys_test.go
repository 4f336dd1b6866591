package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var (
	keyA = bytes.Repeat([]byte{0xa1}, KeySize)
	keyB = bytes.Repeat([]byte{0xb2}, KeySize)
	keyC = bytes.Repeat([]byte{0xc3}, KeySize)
)

func TestSetKeysOrderAndErrors(t *testing.T) {
	r, err := New(Config{NodeName: "n1", Transport: nil, Bind: netip.MustParseAddrPort("127.0.0.1:0"), SecretKeys: [][]byte{keyA}})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		set, want [][]byte
	}{
		{[][]byte{keyA, keyB}, [][]byte{keyA, keyB}},             // add a second key
		{[][]byte{keyB, keyA}, [][]byte{keyB, keyA}},             // switch the primary
		{[][]byte{keyB}, [][]byte{keyB}},                         // drop the old key
		{[][]byte{keyA, keyB, keyC}, [][]byte{keyA, keyB, keyC}}, // a new primary at once
		{[][]byte{keyA, keyC}, [][]byte{keyA, keyC}},             // drop one in the middle
		{[][]byte{keyC, keyA}, [][]byte{keyC, keyA}},
		{[][]byte{keyC}, [][]byte{keyC}},
	} {
		if err := r.SetKeys(step.set); err != nil {
			t.Fatalf("SetKeys(%v): %v", keyIDs(step.set), err)
		}
		if diff := cmp.Diff(keyIDs(step.want), keyIDs(r.Keys())); diff != "" {
			t.Errorf("after SetKeys(%v), keys (-want +got):\n%s", keyIDs(step.set), diff)
		}
	}
	for _, bad := range [][][]byte{nil, {[]byte("short")}, {keyA, []byte("short")}} {
		if err := r.SetKeys(bad); err == nil {
			t.Errorf("SetKeys(%q): no error", bad)
		}
	}
	if diff := cmp.Diff(keyIDs([][]byte{keyC}), keyIDs(r.Keys())); diff != "" {
		t.Errorf("a refused SetKeys changed the keys (-want +got):\n%s", diff)
	}

	plain, err := New(Config{NodeName: "p", Bind: netip.MustParseAddrPort("127.0.0.1:0"), InsecurePlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.SetKeys([][]byte{keyA}); err == nil {
		t.Error("SetKeys on a plaintext ring: no error")
	}
	if plain.Keys() != nil {
		t.Errorf("plaintext ring has keys %v", plain.Keys())
	}
}

func keyIDs(keys [][]byte) []string {
	var out []string
	for _, k := range keys {
		out = append(out, KeyID(k))
	}
	return out
}

// splitWatch polls every view of the ring until stopped and records
// every moment at which some node did not see all of them alive.
type splitWatch struct {
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex // guards splits
	splits []error
}

func watchSplits(nodes []*node, names []string) *splitWatch {
	w := &splitWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			if err := seesAlive(nodes, names); err != nil {
				w.mu.Lock()
				w.splits = append(w.splits, fmt.Errorf("%s: %w", time.Now().Format("15:04:05.000"), err))
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *splitWatch) Stop() []error {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.splits
}

// TestRollingKeyRotationNeverSplits rotates the key of a three-node ring
// the documented way (hostlbctl keygen): the new key second on every node,
// then first on every node, then the old one dropped, one node at a time.
// At every moment every node sees every other alive, no node ever reports
// a death or a leave, and after every node's step the gossip it sends
// (encrypted with its primary at that step) reaches the others.
func TestRollingKeyRotationNeverSplits(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.SecretKeys = [][]byte{keyA} })
	names := c.names(c.nodes)
	eventually(t, 5*time.Second, "3 nodes join", func() error { return seesAlive(c.nodes, names) })
	joined := map[string]int{}
	for _, n := range c.nodes {
		n.mu.Lock()
		joined[n.name] = len(n.events)
		n.mu.Unlock()
	}
	watch := watchSplits(c.nodes, names)

	gen := 0
	for _, step := range []struct {
		name string
		keys [][]byte
	}{
		{"add the new key second", [][]byte{keyA, keyB}},
		{"make it first", [][]byte{keyB, keyA}},
		{"drop the old key", [][]byte{keyB}},
	} {
		for _, n := range c.nodes {
			if err := n.ring.SetKeys(step.keys); err != nil {
				t.Fatalf("%s on %s: %v", step.name, n.name, err)
			}
			// Proof that the others read what n now sends: a new
			// announced set of n's reaches them.
			gen++
			set := addrs(fmt.Sprintf("198.51.100.%d", gen))
			n.ring.SetAnnounced(set)
			eventually(t, 5*time.Second, fmt.Sprintf("%s on %s: its gossip read by all", step.name, n.name), func() error {
				return announcedAgree(c.nodes, map[string][]netip.Addr{n.name: set})
			})
		}
	}
	// Failure detection takes ≈ 0.5 s with the fast profile: keep watching
	// for three times that after the last step.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if err := seesAlive(c.nodes, names); err != nil {
			break // recorded by the watch
		}
		time.Sleep(20 * time.Millisecond) // poll interval of an observation window, not synchronisation
	}
	if splits := watch.Stop(); len(splits) > 0 {
		t.Errorf("the ring split %d times during the rotation; first: %v", len(splits), splits[0])
	}
	for _, n := range c.nodes {
		n.mu.Lock()
		for _, ev := range n.events[joined[n.name]:] {
			if ev.Kind == EventDead || ev.Kind == EventLeave || ev.Kind == EventJoin {
				t.Errorf("%s saw %s %s during the rotation", n.name, ev.Node, ev.Kind)
			}
		}
		n.mu.Unlock()
		if diff := cmp.Diff(keyIDs([][]byte{keyB}), keyIDs(n.ring.Keys())); diff != "" {
			t.Errorf("%s's keys (-want +got):\n%s", n.name, diff)
		}
	}

	// The old key is gone everywhere: a node with only it stays out, one
	// with only the new key joins.
	old := c.add(t, 4, []string{memAddr(1).String()}, func(cfg *Config) { cfg.SecretKeys = [][]byte{keyA} })
	fresh := c.add(t, 5, []string{memAddr(1).String()}, func(cfg *Config) { cfg.SecretKeys = [][]byte{keyB} })
	eventually(t, 5*time.Second, "a node with the new key joins", func() error {
		return seesAlive([]*node{c.nodes[0], fresh}, append(names, "n5"))
	})
	if err := seesAlive([]*node{old}, []string{"n4"}); err != nil {
		t.Errorf("a node with only the dropped key got in: %v", err)
	}
}

// TestClusterLabelKeepsRingsApart: two rings that share a key but not a
// cluster name never merge, even when one is told to join the other; the
// same name joins.
func TestClusterLabelKeepsRingsApart(t *testing.T) {
	c := newCluster(t, 2, func(cfg *Config) { cfg.Cluster = "prod" })
	eventually(t, 5*time.Second, "prod joins", func() error { return seesAlive(c.nodes, []string{"n1", "n2"}) })
	seeds := []string{memAddr(1).String()}
	other := c.add(t, 3, seeds, func(cfg *Config) { cfg.Cluster = "staging" })
	unlabelled := c.add(t, 4, seeds, nil)
	same := c.add(t, 5, seeds, func(cfg *Config) { cfg.Cluster = "prod" })
	prod := []*node{c.nodes[0], c.nodes[1], same}
	eventually(t, 5*time.Second, "the same cluster name joins", func() error {
		return seesAlive(prod, []string{"n1", "n2", "n5"})
	})
	// The others keep retrying n1 (their join loop): check continuously
	// for a window of several rejoin rounds (300 ms here).
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		var errs []error
		errs = append(errs, seesAlive(prod, []string{"n1", "n2", "n5"}))
		for _, outsider := range []*node{other, unlabelled} {
			errs = append(errs, seesAlive([]*node{outsider}, []string{outsider.name}))
		}
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("rings with different cluster names merged: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of an observation window, not synchronisation
	}
	if _, err := New(Config{NodeName: "x", InsecurePlaintext: true, Bind: netip.MustParseAddrPort("127.0.0.1:0"),
		Cluster: string(bytes.Repeat([]byte{'a'}, 256))}); err == nil {
		t.Error("New with a 256-byte cluster name: no error")
	}
}
