package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/bgp"
	"github.com/hostlb/hostlb/daemon/config"
)

// fakeSpeaker is one daemon's BGP output: it advertises exactly what the
// last Sync asked, until it crashes (kill -9: its sessions drop, the
// router forgets its routes) or drains.
type fakeSpeaker struct {
	node string
	// leftRing reports whether the node has left the ring, as another
	// node sees it (checked when Drain starts).
	leftRing func() bool

	mu               sync.Mutex // guards the fields below
	adv              map[netip.Prefix]bool
	want             []bgp.Advertisement // the last Sync's
	cfg              bgp.Config
	crashed          bool
	drained          bool
	closed           bool
	emptyBeforeDrain bool // a Sync withdrew everything before Drain
	drainLeft        bool // the ring was already left when Drain began
}

func (f *fakeSpeaker) Sync(_ context.Context, cfg bgp.Config, want []bgp.Advertisement) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crashed || f.closed {
		return nil
	}
	f.cfg = cfg
	f.want = want
	if len(want) == 0 && len(f.adv) > 0 {
		f.emptyBeforeDrain = true // withdrew everything it advertised
	}
	f.adv = map[netip.Prefix]bool{}
	for _, a := range want {
		f.adv[a.Prefix] = true
	}
	return nil
}

func (f *fakeSpeaker) Status() bgp.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bgp.Status{Advertised: len(f.adv)}
}

func (f *fakeSpeaker) Drain(context.Context) error {
	left := f.leftRing()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drained, f.drainLeft = true, left
	f.adv = nil
	return nil
}

func (f *fakeSpeaker) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeSpeaker) crash() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crashed = true
	f.adv = nil
}

func (f *fakeSpeaker) advertised() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.adv))
	for _, p := range slices.SortedFunc(maps.Keys(f.adv), netip.Prefix.Compare) {
		out = append(out, p.String())
	}
	return out
}

// Static BGP VIPs: every alive eligible node advertises each address as a
// host route; node_selector limits who; a crashed node's routes are gone;
// a graceful stop withdraws (first through placement, then Drain) while
// the node is still in the ring.
func TestSimBGPEveryEligibleNodeAdvertises(t *testing.T) {
	edge := config.VIP{Name: "edge", Mode: config.ModeBGP, Addresses: []netip.Addr{
		netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1")}}
	// Labels: rack r1 on n1 and n3, r0 on n2.
	rack1 := config.VIP{Name: "rack1", Mode: config.ModeBGP, Addresses: []netip.Addr{netip.MustParseAddr("203.0.113.2")},
		NodeSelector: map[string]string{"rack": "r1"}}
	var (
		mu       sync.Mutex
		speakers = map[string]*fakeSpeaker{}
		s        *sim
	)
	tweak := func(node string, opts *Options) {
		opts.Config.BGP.ASN = 64512
		opts.Config.BGP.RouterID = netip.MustParseAddr("192.0.2.1")
		opts.Config.BGP.Peers = []config.BGPPeer{{Address: netip.MustParseAddr("192.0.2.254"), ASN: 64500, Port: 179}}
		f := &fakeSpeaker{node: node, leftRing: func() bool {
			// Seen from another running node: still alive and not leaving?
			s.mu.Lock()
			defer s.mu.Unlock()
			for name, nd := range s.running {
				if name == node {
					continue
				}
				for _, m := range nd.ring.Members() {
					if m.Name == node {
						return !m.Alive || m.Meta.Leaving
					}
				}
				return true
			}
			return false
		}}
		opts.BGP = f
		mu.Lock()
		speakers[node] = f
		mu.Unlock()
	}
	s = newSimFull(t, 3, false, nil, []config.VIP{edge, rack1}, tweak)
	speaker := func(n string) *fakeSpeaker {
		mu.Lock()
		defer mu.Unlock()
		return speakers[n]
	}
	want := map[string][]string{
		"n1": {"203.0.113.1/32", "203.0.113.2/32", "2001:db8::1/128"},
		"n2": {"203.0.113.1/32", "2001:db8::1/128"},
		"n3": {"203.0.113.1/32", "203.0.113.2/32", "2001:db8::1/128"},
	}
	advertising := func(nodes ...string) func() error {
		return func() error {
			var errs []error
			for _, n := range nodes {
				if got := speaker(n).advertised(); !slices.Equal(got, want[n]) {
					errs = append(errs, fmt.Errorf("%s advertises %v, want %v", n, got, want[n]))
				}
			}
			return errors.Join(errs...)
		}
	}
	s.waitFor(5*time.Second, "every eligible node advertises", advertising("n1", "n2", "n3"))
	if cfg := speaker("n1").cfg; cfg.Global.ASN != 64512 || len(cfg.Peers) != 1 || cfg.Peers[0].ASN != 64500 {
		t.Errorf("the speaker got %+v", cfg)
	}

	// kill -9: its routes leave the router with its sessions (BFD, hold
	// timer); the others keep advertising.
	speaker("n3").crash()
	s.crash("n3")
	if got := speaker("n3").advertised(); len(got) != 0 {
		t.Errorf("crashed n3 still advertises %v", got)
	}
	s.waitConverged(10*time.Second, "after n3's crash")
	s.waitFor(5*time.Second, "the others still advertise", advertising("n1", "n2"))

	// SIGTERM: withdrawn while the node is still in the ring.
	s.stop("n2")
	f := speaker("n2")
	f.mu.Lock()
	drained, empty, left, closed := f.drained, f.emptyBeforeDrain, f.drainLeft, f.closed
	f.mu.Unlock()
	switch {
	case !drained || !closed:
		t.Errorf("n2 stopped without Drain (%v) or Close (%v)", drained, closed)
	case !empty:
		t.Error("n2's draining pass did not withdraw its BGP routes before Drain")
	case left:
		t.Error("n2 left the ring before its BGP routes were drained")
	}
	if got := f.advertised(); len(got) != 0 {
		t.Errorf("stopped n2 still advertises %v", got)
	}
	s.waitFor(5*time.Second, "n1 still advertises", advertising("n1"))
}

// Without a ring a node advertises every BGP VIP it is eligible for, each
// address as a host route; L2 VIPs are not the BGP output's.
func TestBGPWantedIsHostRoutes(t *testing.T) {
	d := localDesired("n1", map[string]string{"rack": "r1"}, StaticGroups([]config.VIP{
		{Name: "edge", Mode: config.ModeBGP, Addresses: []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1")}},
		{Name: "other", Mode: config.ModeBGP, Addresses: []netip.Addr{netip.MustParseAddr("203.0.113.2")}, NodeSelector: map[string]string{"rack": "r2"}},
		{Name: "web", Mode: config.ModeL2, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.10")}},
	}))
	got := bgpWanted("n1", d)
	want := []bgp.Advertisement{
		{Prefix: netip.MustParsePrefix("203.0.113.1/32"), VIP: "edge"},
		{Prefix: netip.MustParsePrefix("2001:db8::1/128"), VIP: "edge"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("bgpWanted = %v, want %v", got, want)
	}
}

func TestBGPConfigDefaultsRouterIDToTheNodesIPv4(t *testing.T) {
	c := config.BGP{ASN: 64512, Peers: []config.BGPPeer{{Address: netip.MustParseAddr("192.0.2.1"), ASN: 64500, Port: 179,
		BFD: config.BFD{Enabled: true, MinRx: 300 * time.Millisecond, MinTx: 300 * time.Millisecond, Multiplier: 3}}}}
	node := BGPNodeAddrs{IPv4: netip.MustParseAddr("192.0.2.5"), IPv6: netip.MustParseAddr("2001:db8::5")}
	got := bgpConfig(c, node)
	if got.Global.RouterID != node.IPv4 || got.Global.NextHop6 != node.IPv6 || len(got.Peers) != 1 || !got.Peers[0].BFD.Enabled {
		t.Errorf("bgpConfig = %+v", got)
	}
	c.RouterID = netip.MustParseAddr("10.0.0.1")
	if got := bgpConfig(c, node); got.Global.RouterID != c.RouterID {
		t.Errorf("router_id %s not used: %s", c.RouterID, got.Global.RouterID)
	}
}
