package bgplab

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hostlb/hostlb/tests/netlab"
)

// Kind names a router implementation.
type Kind string

// The routers.
const (
	BIRD Kind = "bird"
	FRR  Kind = "frr"
)

// Kinds are every router, in the order tests run them.
var Kinds = []Kind{BIRD, FRR}

// Peer is one BGP neighbour of the router.
type Peer struct {
	Name     string // protocol name, "node1_v4"
	Address  netip.Addr
	ASN      uint32
	BFD      bool   // BFD with RouterConfig.BFD's timers
	Password string // TCP-MD5 (RFC 2385); "" = none
	// DualStack makes the session carry IPv6 unicast as well as IPv4
	// unicast (MP-BGP, RFC 4760), whatever the neighbour's family: one
	// session per node for both families, as configs/examples/bgp.toml's
	// router has.
	DualStack bool
}

// RouterConfig is what StartRouter generates a router's configuration
// from.
type RouterConfig struct {
	Peers []Peer
	// BFD are the router's BFD timers for peers with BFD; default
	// DefaultBFD.
	BFD BFDTimers
	// HoldTime and KeepaliveTime are the router's proposal (the session
	// uses the smaller hold time of both sides); default 9 s and 3 s.
	HoldTime, KeepaliveTime time.Duration
	// Export makes the router originate ExportPrefix towards every peer;
	// otherwise it exports nothing to the nodes.
	Export bool
}

// PeerState is a session's state as the router reports it.
type PeerState struct {
	// BGP is the router's word for the session state ("Established",
	// "Active", "Connect", ...).
	BGP string
	// BFD is the BFD session's state in lower case ("up", "down",
	// "init"), "" when the router has no BFD session for the peer.
	BFD string
}

// Established reports whether the BGP session is up.
func (s PeerState) Established() bool { return strings.EqualFold(s.BGP, "Established") }

// String is "Established/bfd up".
func (s PeerState) String() string {
	if s.BFD == "" {
		return s.BGP
	}
	return s.BGP + "/bfd " + s.BFD
}

// Router is BIRD or FRR running in the lab's router namespace. Methods
// block until the router answered; they are safe for concurrent use.
type Router interface {
	Kind() Kind
	// Routes returns the next hops of exactly prefix in the router's
	// kernel (main table), sorted; none when there is no route.
	Routes(prefix netip.Prefix) ([]netip.Addr, error)
	// PeerState asks the router about its session with peer.
	PeerState(peer Peer) (PeerState, error)
	// Stop ends the router's processes with SIGTERM and waits for them.
	Stop() error
	// Logs returns the router's logs so far, for failure messages.
	Logs() string
}

// StartRouter starts a router of kind in the router namespace with cfg and
// waits until it answers on its control socket. The router is stopped when
// the test ends.
func (l *Lab) StartRouter(kind Kind, cfg RouterConfig) Router {
	l.T.Helper()
	if cfg.BFD == (BFDTimers{}) {
		cfg.BFD = DefaultBFD
	}
	if cfg.HoldTime == 0 {
		cfg.HoldTime, cfg.KeepaliveTime = 9*time.Second, 3*time.Second
	}
	k := &kernel{}
	if err := k.open(l.Router.Name); err != nil {
		l.T.Fatalf("bgplab: netlink in %s: %v", l.Router.Name, err)
	}
	l.T.Cleanup(k.close)
	switch kind {
	case BIRD:
		return startBIRD(l, k, cfg)
	case FRR:
		return startFRR(l, k, cfg)
	}
	l.T.Fatalf("bgplab: unknown router %q", kind)
	return nil
}

// RequireRouter skips t (fails it under CI) unless kind's programs are
// installed.
func RequireRouter(t testing.TB, kind Kind) {
	t.Helper()
	switch kind {
	case BIRD:
		netlab.RequireTools(t, "Debian package bird2 (tests/scripts/install-deps.sh)", "bird", "birdc")
	case FRR:
		netlab.RequireTools(t, "Debian package frr (tests/scripts/install-deps.sh)",
			frrDaemon("zebra"), frrDaemon("bfdd"), frrDaemon("bgpd"), "vtysh")
	}
}

// kernel reads the router namespace's routing table through netlink.
type kernel struct{ h *netlink.Handle }

func (k *kernel) open(nsName string) error {
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return err
	}
	defer ns.Close()
	k.h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	return err
}

func (k *kernel) close() {
	if k.h != nil {
		k.h.Close()
	}
}

// nextHops returns the gateways of the main-table route to exactly
// prefix: every next hop of a multipath route, or the one gateway.
func (k *kernel) nextHops(prefix netip.Prefix) ([]netip.Addr, error) {
	family := netlink.FAMILY_V4
	if prefix.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	dst := &net.IPNet{IP: prefix.Addr().AsSlice(), Mask: net.CIDRMask(prefix.Bits(), prefix.Addr().BitLen())}
	routes, err := k.h.RouteListFiltered(family, &netlink.Route{Dst: dst, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes to %s: %w", prefix, err)
	}
	var hops []netip.Addr
	add := func(gw net.IP) {
		if a, ok := netip.AddrFromSlice(gw); ok {
			hops = append(hops, a.Unmap())
		}
	}
	for _, r := range routes {
		if r.Type != unix.RTN_UNICAST {
			continue
		}
		add(r.Gw)
		for _, nh := range r.MultiPath {
			add(nh.Gw)
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return slices.Compact(hops), nil
}

// WaitRoutes polls r's kernel until the next hops of prefix are exactly
// want (none: no route), for at most d, and returns how long it took.
func WaitRoutes(r Router, prefix netip.Prefix, want []netip.Addr, d time.Duration) (time.Duration, error) {
	want = slices.Clone(want)
	slices.SortFunc(want, netip.Addr.Compare)
	var got []netip.Addr
	took, err := Eventually(d, 5*time.Millisecond, func() error {
		var err error
		got, err = r.Routes(prefix)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s's kernel routes %s via %v, want %v", r.Kind(), prefix, got, want)
		}
		return nil
	})
	return took, err
}

// WaitPeers polls r until every peer's session is established (and its
// BFD session up, for peers with BFD), for at most d.
func WaitPeers(r Router, peers []Peer, d time.Duration) (time.Duration, error) {
	return Eventually(d, 50*time.Millisecond, func() error {
		for _, p := range peers {
			st, err := r.PeerState(p)
			if err != nil {
				return err
			}
			if !st.Established() || p.BFD && st.BFD != "up" {
				return fmt.Errorf("%s: session with %s (%s) is %s", r.Kind(), p.Name, p.Address, st)
			}
		}
		return nil
	})
}
