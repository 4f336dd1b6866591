package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/reconcile"
)

// fakeKube is a Kubernetes side with fixed Nodes.
type fakeKube struct {
	synced chan struct{}
	seeds  []netip.Addr
}

func (f *fakeKube) Synced() <-chan struct{}       { return f.synced }
func (f *fakeKube) Summary() string               { return "fake" }
func (f *fakeKube) Seeds() []netip.Addr           { return f.seeds }
func (f *fakeKube) Announced([]reconcile.Report)  {}
func (f *fakeKube) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func TestSeedsAddTheNodesOfTheGossipFamily(t *testing.T) {
	k := &fakeKube{synced: make(chan struct{}), seeds: []netip.Addr{
		netip.MustParseAddr("192.0.2.12"), netip.MustParseAddr("2001:db8::12"), netip.MustParseAddr("192.0.2.11"),
	}}
	d, err := New(Options{Config: testConfig(), Logger: slog.New(slog.DiscardHandler), Kube: k})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		bind string
		join []string
		want []string
	}{
		{"0.0.0.0:7947", nil, []string{"192.0.2.12:7947", "192.0.2.11:7947"}},
		{"192.0.2.1:7000", []string{"192.0.2.11:7000"}, []string{"192.0.2.11:7000", "192.0.2.12:7000"}},
		{"[2001:db8::1]:7947", nil, []string{"[2001:db8::12]:7947"}},
		{"[::]:7947", nil, []string{"192.0.2.12:7947", "[2001:db8::12]:7947", "192.0.2.11:7947"}},
	} {
		cfg := testConfig()
		cfg.Gossip.Bind = netip.MustParseAddrPort(tc.bind)
		cfg.Gossip.Join = tc.join
		if got := d.seeds(cfg); !slices.Equal(got, tc.want) {
			t.Errorf("bind %s, join %v: seeds %v, want %v", tc.bind, tc.join, got, tc.want)
		}
	}
}

// READY=1 never waits on an unreachable API server longer than
// KubeSyncWait from the start, and the STATUS line says why.
func TestReadyWithoutTheAPIWithinKubeSyncWait(t *testing.T) {
	n := newFakeNotifier()
	k := &fakeKube{synced: make(chan struct{})} // never synced
	d, err := New(Options{Config: testConfig(vipWeb), Logger: slog.New(slog.DiscardHandler), Notifier: n,
		Kube: k, KubeSyncWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- d.Run(ctx) }()
	n.waitFor(t, is("READY"))
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("READY after %v, want about KubeSyncWait (300ms)", took)
	}
	n.waitFor(t, func(e string) bool { return strings.HasPrefix(e, "STATUS=running") && strings.Contains(e, "fake") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
