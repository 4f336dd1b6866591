package bgplab

import (
	"net/netip"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

func TestMain(m *testing.M) {
	RunSpeakerIfChild()
	code := m.Run()
	netlab.RemoveHostlbd()
	os.Exit(code)
}

// The VIP every scenario advertises, one address per family, and the port
// the nodes serve behind it.
var (
	vip4    = netip.MustParseAddr("203.0.113.10")
	vip6    = netip.MustParseAddr("2001:db8:2::10")
	vips    = []netip.Addr{vip4, vip6}
	vipPort = 8080
)

// Bounds the scenarios assert: not targets, limits that catch a broken
// feature without flaking on a busy machine.
const (
	// bfdBound: the "within 1 s with BFD" (detection 300 ms).
	bfdBound = time.Second
	// holdTime is the nodes' hold_time; holdBound adds the router's
	// processing and a keepalive's jitter.
	holdTime  = 3 * time.Second
	holdBound = holdTime + time.Second
	// upBound is how long sessions and routes may take to come up.
	upBound = 30 * time.Second
)

// opts are a scenario's settings of the speakers on the nodes.
type opts struct {
	kind     Kind // the router
	bfd      bool
	password string
}

// fleet starts the speakers under test: a plain GoBGP (the lab's
// reference) or hostlbd. start runs on one node and returns its process;
// the node must then advertise vips (a /32 and a /128) and accept their
// traffic.
type fleet struct {
	name  string
	start func(t *testing.T, l *Lab, n *Node, o opts) *Proc
}

// routerConfig is the router's config for o: one password and BFD setting
// for every node.
func routerConfig(l *Lab, o opts) RouterConfig {
	return RouterConfig{Peers: l.RouterPeers(o.bfd, o.password)}
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// nextHops are the addresses of nodes in a's family.
func nextHops(nodes []*Node, a netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, n := range nodes {
		if a.Is4() {
			out = append(out, n.Addr4)
		} else {
			out = append(out, n.Addr6)
		}
	}
	return out
}

func without(nodes []*Node, drop ...*Node) []*Node {
	return slices.DeleteFunc(slices.Clone(nodes), func(n *Node) bool { return slices.Contains(drop, n) })
}

// dumpOnFailure logs the router's and the speakers' logs when t fails.
func dumpOnFailure(t *testing.T, l *Lab, r Router, procs []*Proc) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("router logs:\n%s", r.Logs())
		for _, p := range procs {
			t.Logf("--- %s (%s) ---\n%s", p.Name, p.LogPath, p.Log())
		}
		for _, pfx := range []string{"-4", "-6"} {
			out, _ := l.Router.Run("ip", pfx, "route", "show")
			t.Logf("router's kernel routes (ip %s route show):\n%s", pfx, out)
		}
	})
}

// startAll starts the router and the fleet on every node, and waits until
// every session is up (with BFD when o.bfd) and the router's kernel has
// the VIP's /32 and /128 via all three nodes.
func startAll(t *testing.T, kind Kind, f fleet, o opts) (*Lab, Router, []*Proc, RouterConfig) {
	t.Helper()
	l := New(t)
	RequireRouter(t, kind)
	cfg := routerConfig(l, o)
	r := l.StartRouter(kind, cfg)
	var procs []*Proc
	for _, n := range l.Nodes {
		n.ServeTCP(vipPort)
		procs = append(procs, f.start(t, l, n, o))
	}
	dumpOnFailure(t, l, r, procs)
	took, err := WaitPeers(r, cfg.Peers, upBound)
	if err != nil {
		hint := ""
		if kind == FRR && o.bfd {
			hint = " (FRR 8.4 replaces its BFD session when BGP comes up, and GoBGP v4.8.0 resets BGP " +
				"when its BFD session goes down, even one that never came up, and waits before it reconnects: " +
				"see SpeakerPeer.BFDWhileEstablished and speakerIdleAfterReset)"
		}
		t.Fatalf("sessions did not come up: %v%s", err, hint)
	}
	t.Logf("%s: all %d sessions established (BFD %v) after %v", kind, len(cfg.Peers), o.bfd, took.Round(time.Millisecond))
	for _, v := range vips {
		if _, err := WaitRoutes(r, hostPrefix(v), nextHops(l.Nodes, v), upBound); err != nil {
			t.Fatal(err)
		}
	}
	return l, r, procs, cfg
}

// testECMPAndFailover: three ECMP next hops per VIP address in the
// router's kernel, the client reaches the VIP over both families and its
// connections spread over all three nodes; then node1 crashes (link down,
// kill -9) and its next hops must leave the router's kernel within 1 s
// (BFD); then node2 gets SIGTERM and its next hops must leave before its
// process exits.
func testECMPAndFailover(t *testing.T, kind Kind, f fleet) {
	l, r, procs, _ := startAll(t, kind, f, opts{kind: kind, bfd: true})
	for _, v := range vips {
		hops, err := r.Routes(hostPrefix(v))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: the router's kernel routes %s via %v", kind, hostPrefix(v), hops)
		spread, err := l.Spread(v, vipPort, 30)
		if err != nil {
			// Not fatal: the routing checks below still say something.
			t.Errorf("the client cannot reach %s: %v (answers before: %v)", v, err, spread)
			continue
		}
		t.Logf("30 connections from the client to %s: %v", v, spread)
		if len(spread) != len(l.Nodes) {
			t.Errorf("connections to %s reached %v, want all %d nodes (ECMP, layer-4 hash)", v, spread, len(l.Nodes))
		}
	}

	// Crash: link down first, so nothing node1 says any more reaches the
	// router, then SIGKILL. Only BFD can tell the router fast.
	n1 := l.Nodes[0]
	t0 := time.Now()
	n1.LinkDown()
	procs[0].Kill()
	for _, v := range vips {
		if _, err := WaitRoutes(r, hostPrefix(v), nextHops(without(l.Nodes, n1), v), 5*time.Second); err != nil {
			t.Fatalf("after the crash of %s: %v", n1.Name, err)
		}
		took := time.Since(t0)
		t.Logf("%s: crash of %s (link down, kill -9): its next hop for %s left the router's kernel after %v (BFD %v × %d)",
			kind, n1.Name, hostPrefix(v), took.Round(time.Millisecond), DefaultBFD.MinRx, DefaultBFD.Multiplier)
		if took > bfdBound {
			t.Errorf("with BFD, %s's next hop for %s left after %v, want within %v", n1.Name, v, took, bfdBound)
		}
	}
	for _, v := range vips {
		if name, err := l.Dial(v, vipPort, 2*time.Second); err != nil || name == n1.Name {
			t.Errorf("after the crash, connect to %s: answered by %q, err %v; want a live node", v, name, err)
		}
	}

	// Graceful stop: the routes must be withdrawn while the process still
	// runs (SPEC §7: withdraw BGP routes, then exit).
	n2, p2 := l.Nodes[1], procs[1]
	t0 = time.Now()
	if err := p2.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest := without(l.Nodes, n1, n2)
	var gone []time.Time
	for _, v := range vips {
		_, err := Eventually(10*time.Second, 2*time.Millisecond, func() error {
			hops, err := r.Routes(hostPrefix(v))
			if err != nil {
				return err
			}
			if !slices.Equal(hops, nextHops(rest, v)) {
				return errNotYet
			}
			return nil
		})
		if err != nil {
			hops, _ := r.Routes(hostPrefix(v))
			t.Fatalf("after SIGTERM to %s: %s routes via %v, want %v", n2.Name, hostPrefix(v), hops, nextHops(rest, v))
		}
		gone = append(gone, time.Now())
	}
	if err := p2.Wait(15 * time.Second); err != nil {
		t.Errorf("%s after SIGTERM: %v", n2.Name, err)
	}
	exited := p2.Exited()
	for i, v := range vips {
		t.Logf("%s: SIGTERM to %s: %s withdrawn after %v, process exited after %v",
			kind, n2.Name, hostPrefix(v), gone[i].Sub(t0).Round(time.Millisecond), exited.Sub(t0).Round(time.Millisecond))
		if !gone[i].Before(exited) {
			t.Errorf("SIGTERM to %s: %s left the router's kernel %v after the process exited; want it withdrawn before the exit",
				n2.Name, hostPrefix(v), gone[i].Sub(exited))
		}
	}
	if name, err := l.Dial(vip4, vipPort, 2*time.Second); err != nil || name != l.Nodes[2].Name {
		t.Errorf("with only %s left, connect to %s: answered by %q, err %v", l.Nodes[2].Name, vip4, name, err)
	}
}

// testHoldTime: without BFD, a crashed node's next hops leave the
// router's kernel when the hold timer (3 s) expires.
func testHoldTime(t *testing.T, kind Kind, f fleet) {
	l, r, procs, _ := startAll(t, kind, f, opts{kind: kind})
	n1 := l.Nodes[0]
	t0 := time.Now()
	n1.LinkDown()
	procs[0].Kill()
	for _, v := range vips {
		if _, err := WaitRoutes(r, hostPrefix(v), nextHops(without(l.Nodes, n1), v), holdBound+5*time.Second); err != nil {
			t.Fatalf("after the crash of %s: %v", n1.Name, err)
		}
		took := time.Since(t0)
		t.Logf("%s: crash of %s without BFD: its next hop for %s left the router's kernel after %v (hold time %v)",
			kind, n1.Name, hostPrefix(v), took.Round(time.Millisecond), holdTime)
		if took > holdBound {
			t.Errorf("without BFD, %s's next hop for %s left after %v, want within the hold time (%v, bound %v)",
				n1.Name, v, took, holdTime, holdBound)
		}
	}
}

// testMD5: the router requires a TCP-MD5 secret from every node; node1 and
// node3 have it, node2 has a wrong one: node1's and node3's sessions come
// up and carry the VIP, node2's stays down and adds no next hop.
func testMD5(t *testing.T, kind Kind, f fleet) {
	const secret = "hostlb-lab-secret"
	l := New(t)
	RequireRouter(t, kind)
	cfg := routerConfig(l, opts{password: secret})
	r := l.StartRouter(kind, cfg)
	var procs []*Proc
	for i, n := range l.Nodes {
		n.ServeTCP(vipPort)
		o := opts{kind: kind, password: secret}
		if i == 1 {
			o.password = "not-the-secret"
		}
		procs = append(procs, f.start(t, l, n, o))
	}
	dumpOnFailure(t, l, r, procs)
	wrong := l.Nodes[1]
	right := without(l.Nodes, wrong)
	var rightPeers, wrongPeers []Peer
	for _, p := range cfg.Peers {
		if slices.Contains(wrong.Addrs(), p.Address) {
			wrongPeers = append(wrongPeers, p)
		} else {
			rightPeers = append(rightPeers, p)
		}
	}
	took, err := WaitPeers(r, rightPeers, upBound)
	if err != nil {
		t.Fatalf("sessions with the right secret: %v", err)
	}
	t.Logf("%s: sessions with the right MD5 secret established after %v", kind, took.Round(time.Millisecond))
	for _, v := range vips {
		if _, err := WaitRoutes(r, hostPrefix(v), nextHops(right, v), upBound); err != nil {
			t.Fatal(err)
		}
	}
	// The wrong secret's sessions had as long as the right ones; give them
	// a few more connect retries (1 s each) and check they never came up.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range wrongPeers {
			st, err := r.PeerState(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Established() {
				t.Fatalf("%s: session with %s (%s) is %s with a wrong MD5 secret", kind, wrong.Name, p.Address, st)
			}
		}
		for _, v := range vips {
			hops, err := r.Routes(hostPrefix(v))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(hops, nextHops(right, v)) {
				t.Fatalf("%s routes via %v with %s's wrong secret, want %v", hostPrefix(v), hops, wrong.Name, nextHops(right, v))
			}
		}
		time.Sleep(100 * time.Millisecond) // sampling a state that must not change
	}
	for _, p := range wrongPeers {
		st, _ := r.PeerState(p)
		t.Logf("%s: session with %s (%s), wrong MD5 secret: %s", kind, wrong.Name, p.Address, st)
	}
}
