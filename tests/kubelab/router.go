package kubelab

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hostlb/hostlb/tests/bgplab"
	"github.com/hostlb/hostlb/tests/netlab"
)

// The AS numbers of the BGP side of the lab.
const (
	RouterASN = 64500 // the router's AS towards the nodes on eBGP sessions
	NodeASN   = 64512 // the nodes' [bgp] asn (Options.BGPASN)
)

// The router's addresses on the bridge: one per kind of session, since
// BIRD tells sessions with one node apart by the local address, and a
// TCP-MD5 key (set per neighbour address) must not reach the plain
// sessions with the same node.
var (
	RouterAddr     = netip.MustParseAddr("192.0.2.1")   // eBGP
	RouterAddr6    = netip.MustParseAddr("2001:db8::1") // eBGP over IPv6
	RouterMD5Addr  = netip.MustParseAddr("192.0.2.3")   // eBGP with TCP-MD5
	RouterIBGPAddr = netip.MustParseAddr("192.0.2.4")   // iBGP, AS NodeASN
)

// Session is one BGP session of the router with one node: a BIRD
// protocol.
type Session struct {
	Name     string     // the protocol's name, "tor_n1"
	Local    netip.Addr // the router's end, one of the Router*Addr
	Node     netip.Addr // the node's end
	ASN      uint32     // the router's AS on it: NodeASN makes it iBGP
	Password string     // TCP-MD5 (RFC 2385); "" none
}

// IBGP reports whether the session is internal (the router in NodeASN).
// LOCAL_PREF travels on iBGP only (RFC 4271 §5.1.5: a speaker does not
// send it to an external peer, and GoBGP strips it), so the routes of
// iBGP sessions go to the tables ibgp4 and ibgp6 and never to the kernel.
func (s Session) IBGP() bool { return s.ASN == NodeASN }

// Router is BIRD 2 in the lab's router namespace, on the bridge with every
// Router*Addr: the sessions it was started with, ECMP of the best eBGP
// routes into its kernel. It is tests/bgplab's BIRD with this lab's
// topology (no client behind it: the kernel's routes are what is checked).
type Router struct {
	bgplab.Router
	NS       *netlab.NS
	Sessions []Session
	lab      *Lab
}

// StartRouter creates the router namespace and starts BIRD in it with
// sessions, its files in the lab's directory ("router"). Call it from the
// goroutine of the test that made the lab: it fails that test when
// something cannot be set up (skips it outside CI without bird or birdc).
// BIRD is stopped by its PID, and the namespace removed, at the test's
// cleanup.
func (l *Lab) StartRouter(sessions []Session) *Router {
	l.tb.Helper()
	bgplab.RequireRouter(l.tb, bgplab.BIRD)
	ns := l.Net.Namespace("router")
	l.connect(ns, RouterAddr, RouterAddr6)
	for _, a := range []netip.Addr{RouterMD5Addr, RouterIBGPAddr} {
		ns.AddAddr("eth0", a.String()+"/24")
	}
	r := &Router{NS: ns, Sessions: sessions, lab: l}
	r.Router = bgplab.StartBIRD(l.tb, ns, filepath.Join(l.dir, "router"), birdConfig(sessions))
	l.tb.Cleanup(func() {
		if l.tb.Failed() {
			l.tb.Logf("kubelab: %s", r.Logs())
		}
	})
	l.logf("BIRD runs in %s with %d sessions", ns.Name, len(sessions))
	return r
}

// birdConfig is bird.conf: the best eBGP routes of each family into the
// kernel, equal ones from several nodes merged (ECMP); one protocol per
// session, each bound to its local address (strict bind: a listening
// socket per address, so that TCP-MD5 keys stay on theirs).
//
// BIRD runs one protocol at a time per neighbour address and port (an
// object lock; the others wait in Idle), so the second session with a
// node names port 1179, the third 2179...: the nodes connect to BIRD, and
// BIRD's own attempts at those ports find nothing (hostlbd listens on
// none: [bgp] listen_port 0).
func birdConfig(sessions []Session) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# written by tests/kubelab
log stderr all;
router id %s;

protocol device { scan time 10; }

# iBGP routes, kept apart from the kernel's.
ipv4 table ibgp4;
ipv6 table ibgp6;

protocol kernel kernel4 {
	ipv4 { import none; export all; };
	merge paths on;
}
protocol kernel kernel6 {
	ipv6 { import none; export all; };
	merge paths on;
}
`, RouterAddr)
	seen := map[netip.Addr]int{}
	for _, s := range sessions {
		port := 179 + 1000*seen[s.Node]
		seen[s.Node]++
		channel, table := "ipv4", "master4"
		if s.Node.Is6() {
			channel, table = "ipv6", "master6"
		}
		if s.IBGP() {
			table = "ibgp" + strings.TrimPrefix(channel, "ipv")
		}
		fmt.Fprintf(&b, `
protocol bgp %s {
	local %s as %d;
	neighbor %s port %d as %d;
	strict bind on;
	hold time 9;
	keepalive time 3;
	connect delay time 1;
	connect retry time 1;
	error wait time 1, 2;
`, s.Name, s.Local, s.ASN, s.Node, port, NodeASN)
		if s.IBGP() {
			// Directly connected: the next hop is the node itself,
			// not looked up in an IGP table.
			b.WriteString("\tdirect;\n")
		}
		if s.Password != "" {
			fmt.Fprintf(&b, "\tpassword %q;\n", s.Password)
		}
		fmt.Fprintf(&b, "\t%s { table %s; import all; export none; };\n}\n", channel, table)
	}
	return b.String()
}

// State returns BIRD's word for the state of the session called name
// ("Established", "Active", "Connect", ...).
func (r *Router) State(name string) (string, error) {
	st, err := r.PeerState(bgplab.Peer{Name: name})
	if err != nil {
		return "", err
	}
	return st.BGP, nil
}

// WaitSessions waits until every session named is Established (up) or
// every one is not (!up), and returns how long it took.
func (r *Router) WaitSessions(timeout time.Duration, up bool, names ...string) (time.Duration, error) {
	t0 := time.Now()
	err := r.lab.Poll(timeout, func() error {
		var bad []string
		for _, n := range names {
			st, err := r.State(n)
			if err != nil {
				return err
			}
			if strings.EqualFold(st, "Established") != up {
				bad = append(bad, n+" "+st)
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("sessions %s", strings.Join(bad, ", "))
		}
		return nil
	})
	if err != nil {
		want := "Established"
		if !up {
			want = "down"
		}
		return 0, fmt.Errorf("kubelab: router sessions %v %s: %w", names, want, err)
	}
	return time.Since(t0), nil
}

// WaitRoutes waits until the next hops of exactly prefix in the router's
// kernel (main table) are want (none: no route), and returns how long it
// took.
func (r *Router) WaitRoutes(prefix netip.Prefix, want []netip.Addr, timeout time.Duration) (time.Duration, error) {
	want = slices.Clone(want)
	slices.SortFunc(want, netip.Addr.Compare)
	t0 := time.Now()
	err := r.lab.Poll(timeout, func() error {
		got, err := r.Routes(prefix)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("the kernel routes %s via %v", prefix, got)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("kubelab: router's kernel route %s via exactly %v: %w", prefix, want, err)
	}
	return time.Since(t0), nil
}

// BIRDRoute is one route of a prefix as `birdc show route all` prints it.
type BIRDRoute struct {
	Proto string            // the protocol it came from, "tor_n1"
	Attrs map[string]string // "BGP.community": "(65000,100) (65535,65281)"...
}

// birdRouteRE is the first line of a route: an optional prefix, the type
// and, in brackets, the protocol and the time.
var birdRouteRE = regexp.MustCompile(`^\S*\s+\w+\s+\[(\S+)\s`)

// ShowRoutes returns BIRD's routes to exactly prefix in table (master4,
// master6, ibgp4, ibgp6), one per session that brought it.
func (r *Router) ShowRoutes(table string, prefix netip.Prefix) ([]BIRDRoute, error) {
	out, err := bgplab.Birdc(r.Router, "show", "route", prefix.String(), "table", table, "all")
	if err != nil {
		return nil, err
	}
	return parseBIRDRoutes(out), nil
}

// parseBIRDRoutes reads `show route all`:
//
//	Table master4:
//	192.0.2.200/32       unicast [tor_n1 10:46:39.178] * (100) [AS64512i]
//		via 192.0.2.11 on eth0
//		Type: BGP univ
//		BGP.local_pref: 100
//		BGP.community: (65000,100)
//	                     unicast [tor_n2 10:46:39.180] (100) [AS64512i]
//		...
func parseBIRDRoutes(out string) []BIRDRoute {
	var routes []BIRDRoute
	for line := range strings.SplitSeq(out, "\n") {
		if m := birdRouteRE.FindStringSubmatch(line); m != nil && !strings.HasPrefix(line, "\t") {
			routes = append(routes, BIRDRoute{Proto: m[1], Attrs: map[string]string{}})
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && len(routes) > 0 && strings.HasPrefix(line, "\t") {
			routes[len(routes)-1].Attrs[k] = strings.TrimSpace(v)
		}
	}
	return routes
}
