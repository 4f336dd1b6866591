package daemon

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
	"github.com/hostlb/hostlb/netif"
	"github.com/hostlb/hostlb/netif/netiftest"
)

// fakeAnnouncer records what the daemon asks of the L2 output.
type fakeAnnouncer struct {
	mu     sync.Mutex // guards the fields below
	syncs  []l2Call
	closed bool
	late   bool  // Sync after Close
	err    error // returned by Sync
	ch     chan l2Call
}

type l2Call struct {
	links []string // names of the links in the state
	want  []string // addresses
}

func newFakeAnnouncer() *fakeAnnouncer { return &fakeAnnouncer{ch: make(chan l2Call, 256)} }

func (f *fakeAnnouncer) Sync(_ context.Context, st netif.State, _ netif.L2Config, want []netif.L2Announcement) error {
	c := l2Call{}
	for _, l := range st.Links() {
		c.links = append(c.links, l.Name)
	}
	for _, a := range want {
		c.want = append(c.want, a.Addr.String())
	}
	f.mu.Lock()
	f.syncs = append(f.syncs, c)
	f.late = f.late || f.closed
	err := f.err
	f.mu.Unlock()
	f.ch <- c
	return err
}

func (f *fakeAnnouncer) Status() []netif.L2Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.syncs) == 0 || f.closed {
		return nil
	}
	last := f.syncs[len(f.syncs)-1]
	st := netif.L2Status{Iface: "eth0"}
	for _, a := range last.want {
		st.Addrs = append(st.Addrs, netip.MustParseAddr(a))
	}
	if len(st.Addrs) == 0 {
		return nil
	}
	return []netif.L2Status{st}
}

// Cannot: the fake answers everything it is asked for.
func (f *fakeAnnouncer) Cannot() []netif.L2Cannot { return nil }

func (f *fakeAnnouncer) Check(netif.State, netif.L2Config, []netif.L2Announcement) []netif.L2Cannot {
	return nil
}

func (f *fakeAnnouncer) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// waitSync reads Sync calls until one satisfies match.
func (f *fakeAnnouncer) waitSync(t *testing.T, what string, match func(l2Call) bool) l2Call {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case c := <-f.ch:
			if match(c) {
				return c
			}
		case <-deadline:
			t.Fatalf("no Sync with %s", what)
			return l2Call{}
		}
	}
}

// gatedLinks is a netiftest.Monitor whose first dump is held back until
// release is called.
type gatedLinks struct {
	*netiftest.Monitor
	ready chan struct{}
}

func (g *gatedLinks) Ready() <-chan struct{} { return g.ready }

var eth0 = netif.Link{Index: 2, Name: "eth0", Type: "device", Up: true, Broadcast: true}

func runDaemon(t *testing.T, opts Options) (cancel func() error) {
	t.Helper()
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := opts.Links.(*netiftest.Monitor); ok {
		m.SetOnChange(d.Trigger)
	}
	if g, ok := opts.Links.(*gatedLinks); ok {
		g.SetOnChange(d.Trigger)
	}
	return startDaemon(t, d)
}

// startDaemon runs d until cancel, or the test's end: cancel stops it and
// returns Run's error; the cleanup reports one it was not asked for.
func startDaemon(t *testing.T, d *Daemon) (cancel func() error) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	cancel = func() error {
		if stopped {
			return nil
		}
		stopped = true
		stop()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("daemon did not stop")
			return nil
		}
	}
	t.Cleanup(func() {
		if err := cancel(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return cancel
}

func TestL2WaitsForLinksThenFollowsThem(t *testing.T) {
	n := newFakeNotifier()
	l2 := newFakeAnnouncer()
	links := &gatedLinks{Monitor: netiftest.NewMonitor(eth0), ready: make(chan struct{})}
	stop := runDaemon(t, Options{
		Config: testConfig(vipWeb), Logger: slog.New(slog.DiscardHandler),
		Notifier: n, Links: links, L2: l2,
	})

	// No pass (so no READY) before the first dump is in.
	select {
	case c := <-l2.ch:
		t.Fatalf("Sync before the links were ready: %+v", c)
	case e := <-n.ch:
		if e == "READY" {
			t.Fatal("READY before the links were ready")
		}
	case <-time.After(50 * time.Millisecond):
	}
	close(links.ready)
	first := l2.waitSync(t, "the links", func(c l2Call) bool { return len(c.links) == 1 })
	if strings.Join(first.want, " ") != "192.0.2.10 2001:db8::10" {
		t.Errorf("first Sync wants %v", first.want)
	}
	n.waitFor(t, is("READY"))
	n.waitFor(t, func(e string) bool {
		return strings.Contains(e, "announcing 2 addresses on eth0 (2)")
	})

	// A link change alone (same desired set) makes a new pass with the
	// new links.
	links.SetLink(netif.Link{Index: 3, Name: "eth1", Type: "device", Up: true, Broadcast: true})
	l2.waitSync(t, "eth1", func(c l2Call) bool { return len(c.links) == 2 })

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	l2.mu.Lock()
	defer l2.mu.Unlock()
	if !l2.closed || l2.late {
		t.Errorf("L2 closed %v, synced after Close %v", l2.closed, l2.late)
	}
}

func TestL2LeavesOutUnhealthyVIPs(t *testing.T) {
	l2 := newFakeAnnouncer()
	ln, closeLn := listenLocal(t, "127.0.0.1:0")
	healthy := config.VIP{Name: "api", Mode: "l2",
		Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.20")},
		Health:    &config.Health{TCP: ln.Addr().String(), Interval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond}}
	n := newFakeNotifier()
	runDaemon(t, Options{
		Config: testConfig(vipWeb, healthy), Logger: slog.New(slog.DiscardHandler),
		Notifier: n, Links: netiftest.NewMonitor(eth0), L2: l2,
	})
	has := func(c l2Call) bool { return strings.Contains(strings.Join(c.want, " "), "192.0.2.20") }
	l2.waitSync(t, "the healthy VIP", has)
	closeLn()
	l2.waitSync(t, "the VIP gone after its check failed", func(c l2Call) bool { return !has(c) && len(c.want) == 2 })
	n.waitFor(t, func(e string) bool { return strings.Contains(e, "1 VIPs failing their health check") })
}

func TestL2SysctlErrorIsNamedAndReadyStillComes(t *testing.T) {
	l2 := newFakeAnnouncer()
	l2.err = fmt.Errorf("hold local VIPs on hostlb0: sync local VIPs: set net.ipv4.conf.all.arp_ignore=1: %w",
		&fs.PathError{Op: "open", Path: "/proc/sys/net/ipv4/conf/all/arp_ignore", Err: syscall.EROFS})
	var logs syncBuffer
	n := newFakeNotifier()
	runDaemon(t, Options{
		Config: testConfig(vipWeb), Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Notifier: n, Links: netiftest.NewMonitor(eth0), L2: l2,
	})
	n.waitFor(t, is("READY"))
	n.waitFor(t, func(e string) bool { return strings.Contains(e, "last reconcile FAILED") })
	out := logs.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "net.ipv4.conf.all.arp_announce=2") {
		t.Errorf("log does not name the sysctls at error level:\n%s", out)
	}
}

func TestNewRejectsL2WithoutLinks(t *testing.T) {
	_, err := New(Options{Config: testConfig(), Logger: slog.New(slog.DiscardHandler), L2: newFakeAnnouncer()})
	if err == nil {
		t.Error("New accepted L2 without Links")
	}
}

// TestL2WantedHoldsBGPLocalAddresses: a BGP VIP with local = true is handed
// to the L2 output as local-only (held on hostlb0, no ARP/NDP answer); one
// without local is not handed over at all.
func TestL2WantedHoldsBGPLocalAddresses(t *testing.T) {
	a, b, c := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("203.0.113.53"), netip.MustParseAddr("203.0.113.54")
	got := l2Wanted(reconcile.Desired{
		a: {Addr: a, VIP: "web", Mode: config.ModeL2, Local: true},
		b: {Addr: b, VIP: "dns", Mode: config.ModeBGP, Local: true},
		c: {Addr: c, VIP: "far", Mode: config.ModeBGP},
	})
	want := []netif.L2Announcement{
		{Addr: a, VIP: "web", Local: true},
		{Addr: b, VIP: "dns", Local: true, LocalOnly: true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("l2Wanted = %+v, want %+v", got, want)
	}
}
