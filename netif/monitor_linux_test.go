package netif

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// runMonitor starts m and returns a function that stops it and checks
// that Run returned nil.
func runMonitor(t *testing.T, m *Monitor) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	select {
	case <-m.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("Run before the first dump: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("no first dump within 5s")
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Run did not return within 5s of cancel")
			}
		})
	}
}

// The Monitor needs no privilege to follow the caller's own namespace.
func TestMonitorCurrentNamespace(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var calls sync.WaitGroup
	calls.Add(1)
	var once sync.Once
	m := NewMonitor(MonitorOptions{Log: testLogger(t), OnChange: func(string) { once.Do(calls.Done) }})
	if got := m.Snapshot().Len(); got != 0 {
		t.Errorf("snapshot before Run has %d links", got)
	}
	stop := runMonitor(t, m)
	defer stop()
	calls.Wait() // the dump notifies
	if !slices.ContainsFunc(m.Snapshot().Links(), func(l Link) bool { return l.Loopback }) {
		t.Errorf("no loopback link in %+v", m.Snapshot().Links())
	}
	stop()
}

// watcher measures how long the Monitor takes to reflect a change.
type watcher struct {
	m       *Monitor
	changes chan struct{}
}

func newWatcher(opts MonitorOptions) *watcher {
	w := &watcher{changes: make(chan struct{}, 1)}
	opts.OnChange = func(string) {
		select {
		case w.changes <- struct{}{}:
		default:
		}
	}
	w.m = NewMonitor(opts)
	return w
}

// await polls the snapshot, waking on every change notification (and
// every millisecond regardless), until cond holds; it returns how long
// that took from start. It fails the test after 2 s.
func (w *watcher) await(t *testing.T, what string, start time.Time, cond func(State) bool) time.Duration {
	t.Helper()
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if cond(w.m.Snapshot()) {
			return time.Since(start)
		}
		select {
		case <-w.changes:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s: not reflected in the snapshot within 2s; links: %+v", what, w.m.Snapshot().Links())
		}
	}
}

func hasAddr(st State, name, prefix string) bool {
	l, ok := st.LinkByName(name)
	return ok && slices.ContainsFunc(l.Addrs, func(a Addr) bool { return a.Prefix == netip.MustParsePrefix(prefix) })
}

// Link and address changes reach the snapshot within 100 ms of the `ip`
// command that made them returning.
func TestMonitorFollowsChangesRoot(t *testing.T) {
	requireRoot(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ns := newNS(t, "mon")
	ns.ip(t, "link", "add", "va", "type", "veth", "peer", "name", "vb")
	ns.ip(t, "link", "set", "va", "up")
	ns.ip(t, "link", "set", "vb", "up")

	w := newWatcher(MonitorOptions{Log: testLogger(t), NetNS: &ns.h})
	stop := runMonitor(t, w.m)
	defer stop()
	if l, ok := w.m.Snapshot().LinkByName("va"); !ok || !l.Up || l.Type != "veth" || len(l.MAC) != 6 {
		t.Fatalf("first dump: va = %+v, %v", l, ok)
	}

	linkIs := func(name string, f func(Link) bool) func(State) bool {
		return func(st State) bool { l, ok := st.LinkByName(name); return ok && f(l) }
	}
	gone := func(name string) func(State) bool {
		return func(st State) bool { _, ok := st.LinkByName(name); return !ok }
	}
	var brIndex int
	steps := []struct {
		what string
		cmd  []string
		cond func(State) bool
	}{
		{"link down", []string{"link", "set", "va", "down"}, linkIs("va", func(l Link) bool { return !l.Up })},
		{"link up", []string{"link", "set", "va", "up"}, linkIs("va", func(l Link) bool { return l.Up })},
		{"IPv4 address added", []string{"addr", "add", "192.0.2.1/24", "dev", "va"},
			func(st State) bool { return hasAddr(st, "va", "192.0.2.1/24") }},
		{"IPv6 address added", []string{"addr", "add", "2001:db8::1/64", "dev", "va", "nodad"},
			func(st State) bool { return hasAddr(st, "va", "2001:db8::1/64") }},
		{"IPv4 address removed", []string{"addr", "del", "192.0.2.1/24", "dev", "va"},
			func(st State) bool { return !hasAddr(st, "va", "192.0.2.1/24") }},
		{"IPv6 address removed", []string{"addr", "del", "2001:db8::1/64", "dev", "va"},
			func(st State) bool { return !hasAddr(st, "va", "2001:db8::1/64") }},
		{"bridge added", []string{"link", "add", "br0", "type", "bridge"},
			linkIs("br0", func(l Link) bool { brIndex = l.Index; return l.Type == "bridge" })},
		{"enslaved", []string{"link", "set", "va", "master", "br0"},
			linkIs("va", func(l Link) bool { return l.MasterIndex == brIndex && brIndex != 0 })},
		{"released", []string{"link", "set", "va", "nomaster"},
			linkIs("va", func(l Link) bool { return l.MasterIndex == 0 })},
		{"bridge deleted", []string{"link", "del", "br0"}, gone("br0")},
		{"veth pair deleted", []string{"link", "del", "va"},
			func(st State) bool { return gone("va")(st) && gone("vb")(st) }},
	}
	var worst, worstFromStart time.Duration
	var report []string
	for _, s := range steps {
		started := time.Now()
		ns.ip(t, s.cmd...)
		returned := time.Now()
		took := w.await(t, s.what, returned, s.cond)
		fromStart := returned.Add(took).Sub(started)
		report = append(report, fmt.Sprintf("%s %v (%v from exec)", s.what,
			took.Round(time.Microsecond), fromStart.Round(time.Microsecond)))
		worst, worstFromStart = max(worst, took), max(worstFromStart, fromStart)
		if took > 100*time.Millisecond {
			t.Errorf("%s: reflected %v after ip returned, want < 100ms", s.what, took)
		}
	}
	t.Logf("event latency, ip returned -> snapshot (and ip exec'd -> snapshot): %s; worst %v (%v)",
		strings.Join(report, ", "), worst, worstFromStart)
	stop()
}

// When the subscription socket overflows (ENOBUFS), the Monitor
// resubscribes and dumps again, so no change is lost for good.
func TestMonitorResubscribesAfterOverflowRoot(t *testing.T) {
	requireRoot(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ns := newNS(t, "ovf")
	ns.ip(t, "link", "add", "va", "type", "veth", "peer", "name", "vb")

	release := make(chan struct{})
	var calls int
	var mu sync.Mutex
	m := NewMonitor(MonitorOptions{Log: testLogger(t), NetNS: &ns.h,
		// The smallest socket buffer and channel, and a consumer that
		// stalls on its second notification: the kernel must drop.
		rcvBuf: 1, chanCap: 1,
		OnChange: func(string) {
			mu.Lock()
			calls++
			n := calls
			mu.Unlock()
			if n == 2 {
				<-release
			}
		}})
	stop := runMonitor(t, m)
	defer stop()

	const n = 300
	var batch strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, "addr add 2001:db8:%x::1/64 dev va nodad\n", i+1)
	}
	ns.ip(t, "link", "set", "va", "up")
	ns.ip(t, "-batch", writeTemp(t, batch.String()))
	close(release)

	deadline := time.Now().Add(10 * time.Second)
	for {
		l, _ := m.Snapshot().LinkByName("va")
		got := 0
		for _, a := range l.Addrs {
			if !a.Prefix.Addr().IsLinkLocalUnicast() {
				got++
			}
		}
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("snapshot has %d of %d addresses after 10s (resubscribes: %d)", got, n, m.resubscribes.Load())
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	if m.resubscribes.Load() == 0 {
		t.Error("no overflow happened; the test did not exercise resubscription")
	}
	t.Logf("resubscribed %d time(s)", m.resubscribes.Load())
	stop()
}
