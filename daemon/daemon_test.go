package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/netif/netiftest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeNotifier records sd_notify calls in order.
type fakeNotifier struct {
	mu     sync.Mutex
	events []string
	ch     chan string // every event is also sent here (buffered)
}

func newFakeNotifier() *fakeNotifier { return &fakeNotifier{ch: make(chan string, 256)} }

func (f *fakeNotifier) rec(e string) error {
	f.mu.Lock()
	f.events = append(f.events, e)
	f.mu.Unlock()
	f.ch <- e
	return nil
}
func (f *fakeNotifier) Ready() error             { return f.rec("READY") }
func (f *fakeNotifier) Reloading() error         { return f.rec("RELOADING") }
func (f *fakeNotifier) Stopping() error          { return f.rec("STOPPING") }
func (f *fakeNotifier) Status(line string) error { return f.rec("STATUS=" + line) }
func (f *fakeNotifier) RunWatchdog(ctx context.Context, _ *slog.Logger, _ func() error) {
	<-ctx.Done()
}

// waitFor reads events until one satisfies match, failing after a deadline.
func (f *fakeNotifier) waitFor(t *testing.T, match func(string) bool) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-f.ch:
			if match(e) {
				return e
			}
		case <-deadline:
			f.mu.Lock()
			defer f.mu.Unlock()
			t.Fatalf("event not seen; got %q", f.events)
			return ""
		}
	}
}

func is(s string) func(string) bool { return func(e string) bool { return e == s } }

// syncBuffer is a log sink safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig(vips ...config.VIP) *config.Config {
	c := config.Default()
	c.Node.Name = "n1"
	c.Node.Labels = map[string]string{"rack": "a1"}
	c.Gossip.InsecurePlaintext = true
	c.VIPs = vips
	return c
}

var vipWeb = config.VIP{
	Name: "web", Mode: "l2",
	Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
}

func TestRunReadyAfterFirstReconcileThenStopping(t *testing.T) {
	n := newFakeNotifier()
	out := newFakeAnnouncer()
	var logs syncBuffer
	d, err := New(Options{
		Config:   testConfig(vipWeb),
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		Notifier: n,
		Links:    netiftest.NewMonitor(eth0),
		L2:       out,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	n.waitFor(t, is("READY"))
	// READY comes only after the output saw the first full state.
	select {
	case c := <-out.ch:
		if len(c.want) != 2 {
			t.Errorf("first pass wants %d addresses, want 2: %+v", len(c.want), c)
		}
	default:
		t.Fatal("READY sent before the first reconcile reached the outputs")
	}
	st := n.waitFor(t, func(e string) bool { return strings.HasPrefix(e, "STATUS=running") })
	if !strings.Contains(st, "node n1") || !strings.Contains(st, "2 addresses") {
		t.Errorf("status line %q lacks node and address count", st)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	i := slices.Index(n.events, "STOPPING")
	if i < 0 || i < slices.Index(n.events, "READY") {
		t.Errorf("want STOPPING after READY, got %q", n.events)
	}
	for _, want := range []string{"hostlbd started", "vip configured", "vip=web", "hostlbd stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestReloadKeepsRunningConfigOnError(t *testing.T) {
	n := newFakeNotifier()
	out := newFakeAnnouncer()
	var logs syncBuffer
	reload := make(chan struct{})
	var (
		mu   sync.Mutex
		next *config.Config
		nerr error
	)
	level := new(slog.LevelVar)
	d, err := New(Options{
		Config: testConfig(vipWeb),
		Load: func() (*config.Config, error) {
			mu.Lock()
			defer mu.Unlock()
			return next, nerr
		},
		Reload:   reload,
		Logger:   slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level})),
		LogLevel: level,
		Notifier: n,
		Links:    netiftest.NewMonitor(eth0),
		L2:       out,
	})
	if err != nil {
		t.Fatal(err)
	}
	startDaemon(t, d)
	n.waitFor(t, is("READY"))
	<-out.ch // the first state

	// A broken file: RELOADING, READY, the old config stays, the error is logged.
	mu.Lock()
	nerr = errors.New("hostlb.toml:3:1: gossip.bind: \"x\" is not host:port")
	mu.Unlock()
	reload <- struct{}{}
	n.waitFor(t, is("RELOADING"))
	n.waitFor(t, is("READY"))
	st := n.waitFor(t, func(e string) bool { return strings.HasPrefix(e, "STATUS=running") })
	if !strings.Contains(st, "reload FAILED") {
		t.Errorf("status after a failed reload = %q, want it to say so", st)
	}
	if got := d.config().VIPs; !cmp.Equal(got, []config.VIP{vipWeb}, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		t.Errorf("running VIPs changed after a failed reload: %+v", got)
	}
	if !strings.Contains(logs.String(), "reload failed; keeping the running config") ||
		!strings.Contains(logs.String(), "hostlb.toml:3:1") {
		t.Errorf("log lacks the reload failure with its line:\n%s", logs.String())
	}

	// A good file: the VIP list changes live, the node name needs a restart.
	good := testConfig(config.VIP{Name: "db", Mode: "l2", Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.7")}})
	good.Node.Name = "renamed"
	good.Log.Level = slog.LevelDebug
	mu.Lock()
	next, nerr = good, nil
	mu.Unlock()
	reload <- struct{}{}
	// The output is handed the whole new set (level-triggered): db only.
	var c l2Call
	for c = range out.ch {
		if !slices.Equal(c.want, []string{"192.0.2.10", "2001:db8::10"}) {
			break
		}
	}
	if want := []string{"198.51.100.7"}; !slices.Equal(c.want, want) {
		t.Errorf("pass after reload wants %v, want %v", c.want, want)
	}
	if got := d.config().Node.Name; got != "n1" {
		t.Errorf("node.name changed live to %q; it needs a restart", got)
	}
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level not applied live: %v", level.Level())
	}
	if !strings.Contains(logs.String(), "need a restart") || !strings.Contains(logs.String(), "node.name") {
		t.Errorf("log lacks the needs-restart notice:\n%s", logs.String())
	}
}

// orderComp records when it starts and stops.
type orderComp struct {
	name    string
	started chan struct{}
	stopped *[]string
	mu      *sync.Mutex
	delay   time.Duration // how long draining takes
	fail    error         // returned right away if set
}

func (c *orderComp) Name() string { return c.name }
func (c *orderComp) Run(ctx context.Context) error {
	close(c.started)
	if c.fail != nil {
		return c.fail
	}
	<-ctx.Done()
	if c.delay > 0 {
		time.Sleep(c.delay) // simulates slow draining work, not synchronisation
	}
	c.mu.Lock()
	*c.stopped = append(*c.stopped, c.name)
	c.mu.Unlock()
	return nil
}

func TestDrainInReverseOrder(t *testing.T) {
	var (
		mu      sync.Mutex
		stopped []string
		comps   []Component
	)
	for _, name := range []string{"netif", "gossip", "bgp", "control"} {
		comps = append(comps, &orderComp{name: name, started: make(chan struct{}), stopped: &stopped, mu: &mu,
			delay: 5 * time.Millisecond})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	drained := make(chan struct{})
	go func() {
		done <- runComponents(ctx, slog.New(slog.DiscardHandler), comps, 5*time.Second, func(error) { close(drained) })
	}()
	for _, c := range comps {
		<-c.(*orderComp).started
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-drained
	if want := []string{"control", "bgp", "gossip", "netif"}; !slices.Equal(stopped, want) {
		t.Errorf("stop order %q, want %q", stopped, want)
	}
}

func TestComponentFailureStopsTheRest(t *testing.T) {
	var (
		mu      sync.Mutex
		stopped []string
	)
	boom := errors.New("boom")
	a := &orderComp{name: "a", started: make(chan struct{}), stopped: &stopped, mu: &mu}
	b := &orderComp{name: "b", started: make(chan struct{}), stopped: &stopped, mu: &mu, fail: boom}
	c := &orderComp{name: "c", started: make(chan struct{}), stopped: &stopped, mu: &mu}
	var cause error
	err := runComponents(context.Background(), slog.New(slog.DiscardHandler), []Component{a, b, c}, 5*time.Second,
		func(err error) { cause = err })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "b:") {
		t.Fatalf("err = %v, want b's failure", err)
	}
	if !errors.Is(cause, boom) {
		t.Errorf("onDrain cause = %v", cause)
	}
	if want := []string{"c", "a"}; !slices.Equal(stopped, want) {
		t.Errorf("stop order %q, want %q", stopped, want)
	}
}

func TestDrainTimeoutAbandonsStuckComponent(t *testing.T) {
	release := make(chan struct{})
	stuck := ComponentFunc{N: "stuck", F: func(ctx context.Context) error {
		<-ctx.Done()
		<-release // ignores its turn to stop
		return nil
	}}
	var (
		mu      sync.Mutex
		stopped []string
	)
	first := &orderComp{name: "first", started: make(chan struct{}), stopped: &stopped, mu: &mu}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err := runComponents(ctx, slog.New(slog.DiscardHandler), []Component{first, stuck}, 50*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "drain did not finish") {
		t.Fatalf("err = %v, want a drain timeout", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("drain took %s despite a 50ms bound", took)
	}
	close(release)
	// first was cancelled too (so nothing leaks), though not waited for.
	<-first.started
}

func TestLocalDesiredHonoursNodeSelector(t *testing.T) {
	vips := []config.VIP{
		{Name: "a", Mode: "l2", Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, NodeSelector: map[string]string{"rack": "a1"}},
		{Name: "b", Mode: "bgp", Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.2")}, NodeSelector: map[string]string{"rack": "b2"}},
		{Name: "c", Mode: "l2", Addresses: []netip.Addr{netip.MustParseAddr("2001:db8::3")}, Local: true},
	}
	got := localDesired("n1", map[string]string{"rack": "a1"}, StaticGroups(vips))
	var names []string
	for _, a := range got.Sorted() {
		names = append(names, a.VIP+"="+a.Addr.String())
	}
	if want := []string{"a=192.0.2.1", "c=2001:db8::3"}; !slices.Equal(names, want) {
		t.Errorf("got %q, want %q", names, want)
	}
	if !got[netip.MustParseAddr("2001:db8::3")].Local {
		t.Error("local flag lost")
	}
}

// Every key config.Changes calls restart-only must keep its running value,
// or the log would claim a restart is needed for a change already applied.
func TestKeepRestartOnlyMatchesChanges(t *testing.T) {
	old := testConfig(vipWeb)
	next := testConfig()
	next.Node.Name = "other"
	next.Log.Format = config.FormatJSON
	next.Gossip.Bind = netip.MustParseAddrPort("192.0.2.1:7000")
	next.Gossip.Advertise = netip.MustParseAddrPort("192.0.2.1:7001")
	next.Gossip.SecretKeyFile = "/elsewhere"
	next.Gossip.InsecurePlaintext = false
	next.Gossip.Profile = config.ProfileWAN
	next.Gossip.Join = []string{"192.0.2.2:7947"}
	next.BGP.ASN, next.BGP.ListenPort = 64512, 179
	next.BGP.RouterID = netip.MustParseAddr("192.0.2.1")
	next.Kubernetes.Enabled = !old.Kubernetes.Enabled
	next.Kubernetes.Kubeconfig = "/other"
	next.Kubernetes.LeaseNamespace = "other"
	next.Metrics.Listen = "127.0.0.1:1"
	next.Control.Socket = "/run/other.sock"
	if _, restart := config.Changes(old, next); len(restart) == 0 {
		t.Fatal("test edits no restart-only key")
	}
	live, restart := config.Changes(old, keepRestartOnly(old, next))
	if len(restart) != 0 {
		t.Errorf("restart-only keys changed in the running config: %q", restart)
	}
	if !slices.Contains(live, "gossip.join") || !slices.Contains(live, "vip") {
		t.Errorf("live keys %q lack gossip.join and vip", live)
	}
}
