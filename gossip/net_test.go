package gossip

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// These tests use memberlist's real UDP/TCP NetTransport on 127.0.0.1 with
// ephemeral ports: loopback only, no root.

func loopback(key []byte, plaintext bool, seeds ...*node) Config {
	cfg := Config{
		Bind:              netip.MustParseAddrPort("127.0.0.1:0"),
		InsecurePlaintext: plaintext,
		Version:           "test-1",
		RejoinInterval:    300 * time.Millisecond,
		LeaveTimeout:      500 * time.Millisecond,
	}
	if key != nil {
		cfg.SecretKeys = [][]byte{key}
	}
	for _, s := range seeds {
		cfg.Join = append(cfg.Join, s.addr.String())
	}
	return cfg
}

func TestNetTransportJoinAndLeave(t *testing.T) {
	n1 := startNode(t, "n1", loopback(testKey, false))
	n2 := startNode(t, "n2", loopback(testKey, false, n1))
	n3 := startNode(t, "n3", loopback(testKey, false, n1))
	all := []*node{n1, n2, n3}
	took := eventually(t, 5*time.Second, "3 nodes join over loopback", func() error {
		return seesAlive(all, []string{"n1", "n2", "n3"})
	})
	t.Logf("joined over UDP/TCP loopback after %v (n1 at %v)", took, n1.addr)
	if !n1.addr.Addr().IsLoopback() || n1.addr.Port() == 0 {
		t.Errorf("n1 advertises %v, want 127.0.0.1 and its ephemeral port", n1.addr)
	}

	n2.ring.SetAnnounced(addrs("192.0.2.7"))
	eventually(t, 3*time.Second, "announced over loopback", func() error {
		return announcedAgree([]*node{n1, n3}, map[string][]netip.Addr{"n2": addrs("192.0.2.7")})
	})

	n3.stop(t)
	took = eventually(t, 2*time.Second, "leave over loopback", func() error {
		return seesState([]*node{n1, n2}, "n3", StateLeft)
	})
	t.Logf("n3 seen as left %v after its Run returned", took)
}

func TestNetTransportWrongKeyCannotJoin(t *testing.T) {
	otherKey := bytes.Repeat([]byte{0x17}, KeySize)
	n1 := startNode(t, "n1", loopback(testKey, false))
	good := startNode(t, "good", loopback(testKey, false, n1))
	wrong := startNode(t, "wrong", loopback(otherKey, false, n1))
	plain := startNode(t, "plain", loopback(nil, true, n1))

	// The control: the right key joins.
	eventually(t, 5*time.Second, "same key joins", func() error {
		return seesAlive([]*node{n1, good}, []string{"n1", "good"})
	})
	// The others keep retrying n1 (their join loop) and must stay out for
	// a while: check continuously for a window of several rejoin rounds.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if err := seesAlive([]*node{n1, good}, []string{"n1", "good"}); err != nil {
			t.Fatalf("a node with the wrong key got in: %v", err)
		}
		for _, outsider := range []*node{wrong, plain} {
			if err := seesAlive([]*node{outsider}, []string{outsider.name}); err != nil {
				t.Fatalf("%s joined with the wrong key: %v", outsider.name, err)
			}
		}
		time.Sleep(20 * time.Millisecond) // poll interval of an observation window, not synchronisation
	}
	cfg := loopback([]byte("short"), false)
	cfg.NodeName = "short"
	if _, err := New(cfg); err == nil {
		t.Error("New with a 5-byte key: no error")
	}
}
