package heartbeat

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hostlb/hostlb/internal/cpuload"
)

func TestMain(m *testing.M) {
	cpuload.RunChild() // a CPU-load child of BenchmarkFalseLossesUnderLoad
	goleak.VerifyTestMain(m)
}

var (
	key1 = bytes.Repeat([]byte{0x11}, 32)
	key2 = bytes.Repeat([]byte{0x22}, 32)
)

// testLogger logs to the test's output at Warn, or at the level in
// HOSTLB_TEST_LOG (debug, info, warn, error).
func testLogger(t testing.TB) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("HOSTLB_TEST_LOG"))); err != nil {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}

// listen opens a UDP socket on a random loopback port.
func listen(t testing.TB) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// report is one callback call.
type report struct {
	node string
	at   time.Time
}

// node is a running Heart and what its callbacks reported.
type node struct {
	name string
	h    *Heart
	addr netip.AddrPort

	loss, resume, accused chan report // buffered, one per callback call
	stop                  func()
}

type nodeOpt func(*Config)

func withKeys(keys ...[]byte) nodeOpt { return func(c *Config) { c.Keys = keys } }

func withCluster(label string) nodeOpt { return func(c *Config) { c.Cluster = label } }

// withPatience sets Misses to 25 (1 s): for tests about something else
// than timing, so that a loaded machine cannot fail them with a loss.
func withPatience() nodeOpt { return func(c *Config) { c.Misses = 25 } }

// startNode runs a Heart named name on a random loopback port until the
// test ends (or stop).
func startNode(t testing.TB, name string, opts ...nodeOpt) *node {
	t.Helper()
	conn, addr := listen(t)
	n := &node{
		name: name, addr: addr,
		loss: make(chan report, 100), resume: make(chan report, 100), accused: make(chan report, 100),
	}
	stamp := func(ch chan report) func(string) {
		return func(peer string) {
			select {
			case ch <- report{node: peer, at: time.Now()}:
			default:
			}
		}
	}
	cfg := Config{
		Node: name, Conn: conn, Keys: [][]byte{key1}, Cluster: "test",
		OnLoss: stamp(n.loss), OnResume: stamp(n.resume), OnAccused: stamp(n.accused),
		Logger: testLogger(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	n.h = h
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run(%s): %v", name, err)
			}
		})
	}
	t.Cleanup(n.stop)
	return n
}

// peers maps names to heartbeat addresses.
func peers(ns ...*node) map[string]netip.AddrPort {
	m := map[string]netip.AddrPort{}
	for _, n := range ns {
		m[n.name] = n.addr
	}
	return m
}

// eventually polls cond until it returns nil or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// stateOf returns the state of watched at n.
func stateOf(n *node, watched string) (State, bool) {
	for _, w := range n.h.Watched() {
		if w.Node == watched {
			return w.State, true
		}
	}
	return 0, false
}

// waitState waits until n sees watched in state s.
func waitState(t testing.TB, n *node, watched string, s State, within time.Duration) time.Duration {
	t.Helper()
	return eventually(t, within, fmt.Sprintf("%s sees %s %v", n.name, watched, s), func() error {
		got, ok := stateOf(n, watched)
		if !ok || got != s {
			return fmt.Errorf("state %v (watched: %v)", got, ok)
		}
		return nil
	})
}

// waitEvent waits for one callback on ch about peer and returns when it
// came.
func waitEvent(t testing.TB, ch chan report, what, peer string, within time.Duration) time.Time {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case e := <-ch:
			if e.node == peer {
				return e.at
			}
		case <-timer.C:
			t.Fatalf("no %s about %s within %v", what, peer, within)
		}
	}
}

// received waits until n has accepted more than floor datagrams in all.
func received(t testing.TB, n *node, floor uint64) {
	t.Helper()
	eventually(t, 5*time.Second, n.name+" receives", func() error {
		if got := n.h.Stats().Received; got <= floor {
			return fmt.Errorf("%d datagrams accepted, want > %d", got, floor)
		}
		return nil
	})
}

// heardSince waits until n has accepted a datagram from peer after t0.
func heardSince(t testing.TB, n *node, peer string, t0 time.Time) {
	t.Helper()
	eventually(t, 2*time.Second, fmt.Sprintf("%s hears %s", n.name, peer), func() error {
		for _, w := range n.h.Watched() {
			if w.Node == peer && w.LastHeard.After(t0) {
				return nil
			}
		}
		return fmt.Errorf("not since %v", t0)
	})
}
