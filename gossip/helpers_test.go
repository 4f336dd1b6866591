package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hostlb/hostlb/gossip/gossiptest"
	"github.com/hostlb/hostlb/internal/cpuload"
)

func TestMain(m *testing.M) {
	cpuload.RunChild() // a CPU-load child of BenchmarkFalsePositivesUnderLoad
	goleak.VerifyTestMain(m)
}

var testKey = bytes.Repeat([]byte{0x42}, KeySize)

// testLogger logs to the test's output at Info, or at the level in
// HOSTLB_TEST_LOG (debug, info, warn, error).
func testLogger(t testing.TB) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("HOSTLB_TEST_LOG"))); err != nil {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// node is one ring under test with its own Run goroutine.
type node struct {
	name   string
	addr   netip.AddrPort
	ring   *Ring
	cancel context.CancelFunc
	done   chan error
	once   sync.Once

	mu     sync.Mutex // guards events
	events []Event
}

func (n *node) eventsFor(peer string) []EventKind {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []EventKind
	for _, e := range n.events {
		if e.Node == peer {
			out = append(out, e.Kind)
		}
	}
	return out
}

// start runs the ring; stop is registered as cleanup.
func startNode(t testing.TB, name string, cfg Config) *node {
	t.Helper()
	n := &node{name: name, done: make(chan error, 1)}
	cfg.NodeName = name
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t).With("test_node", name)
	}
	cfg.OnEvent = func(e Event) {
		n.mu.Lock()
		n.events = append(n.events, e)
		n.mu.Unlock()
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.ring = r
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- r.Run(ctx) }()
	select {
	case <-r.Ready():
	case err := <-n.done:
		t.Fatalf("ring %s did not start: %v", name, err)
	}
	n.addr = r.LocalAddr()
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop leaves the ring and waits for Run; it is idempotent.
func (n *node) stop(t testing.TB) {
	t.Helper()
	n.once.Do(func() {
		n.cancel()
		select {
		case err := <-n.done:
			if err != nil {
				t.Errorf("ring %s: Run: %v", n.name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("ring %s did not stop", n.name)
		}
	})
}

// cluster is N rings on one in-memory network.
type cluster struct {
	net   *gossiptest.Network
	nodes []*node
}

func memAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), 7947)
}

// newCluster starts n rings (n1…) seeded with the first two addresses.
func newCluster(t testing.TB, n int, tweak func(*Config)) *cluster {
	t.Helper()
	c := &cluster{net: gossiptest.NewNetwork()}
	seeds := []string{memAddr(1).String(), memAddr(2).String()}
	for i := 1; i <= n; i++ {
		c.add(t, i, seeds, tweak)
	}
	return c
}

func (c *cluster) add(t testing.TB, i int, seeds []string, tweak func(*Config)) *node {
	t.Helper()
	tr, err := c.net.NewTransport(memAddr(i))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Transport:      tr,
		Join:           seeds,
		SecretKeys:     [][]byte{testKey},
		Version:        "test-1",
		Labels:         map[string]string{"rack": fmt.Sprintf("r%d", i%2)},
		RejoinInterval: 300 * time.Millisecond,
		LeaveTimeout:   500 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	nd := startNode(t, fmt.Sprintf("n%d", i), cfg)
	c.nodes = append(c.nodes, nd)
	return nd
}

func (c *cluster) names(nodes []*node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.name)
	}
	return out
}

// view returns name→state as n sees the ring.
func view(n *node) map[string]State {
	out := make(map[string]State)
	for _, m := range n.ring.Members() {
		out[m.Name] = m.State
	}
	return out
}

// seesAlive reports whether every observer sees exactly want alive.
func seesAlive(observers []*node, want []string) error {
	var errs []error
	for _, o := range observers {
		alive := make(map[string]bool)
		for _, m := range o.ring.Members() {
			if m.Alive {
				alive[m.Name] = true
			}
		}
		ok := len(alive) == len(want)
		for _, w := range want {
			ok = ok && alive[w]
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s sees %v, want alive %v", o.name, view(o), want))
		}
	}
	return errors.Join(errs...)
}

// seesState reports whether every observer sees peer in state s.
func seesState(observers []*node, peer string, s State) error {
	var errs []error
	for _, o := range observers {
		if got, ok := view(o)[peer]; !ok || got != s {
			errs = append(errs, fmt.Errorf("%s sees %s as %v (known %v), want %v", o.name, peer, got, ok, s))
		}
	}
	return errors.Join(errs...)
}

func member(n *node, peer string) (Member, bool) {
	for _, m := range n.ring.Members() {
		if m.Name == peer {
			return m, true
		}
	}
	return Member{}, false
}
