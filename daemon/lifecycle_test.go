package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/netif/netiftest"
)

// A SIGHUP during start-up must not make systemd consider the unit started:
// READY=1 comes only from start-up, after the first full reconcile, though
// the reload's file is applied.
func TestReloadDuringStartupSendsNoReady(t *testing.T) {
	n := newFakeNotifier()
	out := newFakeAnnouncer()
	// Until links is ready no reconcile pass can finish: start-up is in
	// progress.
	links := &gatedLinks{Monitor: netiftest.NewMonitor(eth0), ready: make(chan struct{})}
	vipDB := config.VIP{Name: "db", Mode: "l2", Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.7")}}
	d, err := New(Options{
		Config:   testConfig(vipWeb),
		Load:     func() (*config.Config, error) { return testConfig(vipDB), nil },
		Logger:   slog.New(slog.DiscardHandler),
		Notifier: n,
		Links:    links,
		L2:       out,
	})
	if err != nil {
		t.Fatal(err)
	}
	startDaemon(t, d)
	n.waitFor(t, is("STATUS=starting"))

	d.Reload() // what serveReloads does on SIGHUP
	n.mu.Lock()
	early := slices.DeleteFunc(slices.Clone(n.events), func(e string) bool { return strings.HasPrefix(e, "STATUS=") })
	n.mu.Unlock()
	if len(early) > 0 {
		t.Fatalf("a reload during start-up sent %q before the first reconcile", early)
	}
	if got := d.config().VIPs; len(got) != 1 || got[0].Name != "db" {
		t.Fatalf("the reload during start-up was not applied: VIPs %+v", got)
	}

	close(links.ready) // start-up can finish now
	n.waitFor(t, is("READY"))
	if len(out.ch) == 0 {
		t.Fatal("READY sent before the first reconcile reached the L2 output")
	}
	// The pass that was waiting began with the old file; the reload
	// asked for the next one.
	out.waitSync(t, "the reloaded VIP", func(c l2Call) bool { return slices.Equal(c.want, []string{"198.51.100.7"}) })

	// Started: a reload is framed by RELOADING=1 and READY=1 again.
	d.Reload()
	n.waitFor(t, is("RELOADING"))
	n.waitFor(t, is("READY"))
}

// blockingComp never returns, whatever its context says, until released.
func blockingComp(name string, release <-chan struct{}) Component {
	return ComponentFunc{N: name, F: func(ctx context.Context) error {
		<-ctx.Done()
		<-release
		return nil
	}}
}

// A component that hangs in the drain must not keep the L2 output from
// removing its hostlb0 addresses.
func TestDrainTimeoutStillRunsCleanup(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var (
		mu      sync.Mutex
		stopped []string
	)
	record := func(name string, cleanup bool) Component {
		return ComponentFunc{N: name, Cleanup: cleanup, F: func(ctx context.Context) error {
			<-ctx.Done()
			if cleanup {
				time.Sleep(100 * time.Millisecond) // slow draining work, not synchronisation
			}
			mu.Lock()
			stopped = append(stopped, name)
			mu.Unlock()
			return nil
		}}
	}
	comps := []Component{
		record("netlink", false),
		record("l2", true),
		blockingComp("kubernetes", release), // hangs before l2's turn
		record("reconcile", false),
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err := runComponents(ctx, slog.New(slog.DiscardHandler), comps, 50*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "drain did not finish") {
		t.Fatalf("err = %v, want a drain timeout", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("drain took %s despite a 50ms bound and a prompt cleanup", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(stopped, "l2") {
		t.Errorf("stopped %q: the cleanup component was abandoned with the rest", stopped)
	}
}

// A cleanup that itself hangs is bounded too: nothing keeps the process
// from exiting.
func TestDrainCleanupIsBounded(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	defer func(d time.Duration) { cleanupTimeout = d }(cleanupTimeout)
	cleanupTimeout = 50 * time.Millisecond
	hung := ComponentFunc{N: "l2", Cleanup: true, F: func(ctx context.Context) error {
		<-ctx.Done()
		<-release
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err := runComponents(ctx, slog.New(slog.DiscardHandler), []Component{hung, blockingComp("stuck", release)}, 50*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "drain did not finish") {
		t.Fatalf("err = %v, want a drain timeout", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("drain took %s with 50ms bounds", took)
	}
}

// The daemon as a whole: a component that never returns from its drain
// still leaves the L2 output closed (every local address removed).
func TestDaemonDrainClosesL2DespiteHungComponent(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	n := newFakeNotifier()
	out := newFakeAnnouncer()
	d, err := New(Options{
		Config:       testConfig(vipWeb),
		Logger:       slog.New(slog.DiscardHandler),
		Notifier:     n,
		Links:        netiftest.NewMonitor(eth0),
		L2:           out,
		Components:   []Component{blockingComp("control", release)},
		DrainTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	n.waitFor(t, is("READY"))
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "drain did not finish") {
			t.Errorf("Run = %v, want a drain timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return despite the drain timeout")
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if !out.closed {
		t.Error("L2 output not closed: hostlb0 addresses would outlive the daemon")
	}
}
