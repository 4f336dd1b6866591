package bgplab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

// The lab's AS numbers.
const (
	RouterASN = 64500
	NodeASN   = 64512
)

// The lab's fixed addresses (documentation ranges only).
var (
	RouterNodes4  = netip.MustParseAddr("192.0.2.1")
	RouterNodes6  = netip.MustParseAddr("2001:db8::1")
	RouterClient4 = netip.MustParseAddr("198.51.100.1")
	RouterClient6 = netip.MustParseAddr("2001:db8:1::1")
	ClientAddr4   = netip.MustParseAddr("198.51.100.2")
	ClientAddr6   = netip.MustParseAddr("2001:db8:1::2")
	// ExportPrefix is the prefix a router originates towards the nodes
	// when RouterConfig.Export is set.
	ExportPrefix = netip.MustParsePrefix("203.0.113.128/25")
)

// Node is one node namespace, on the nodes' segment.
type Node struct {
	Index int
	Name  string // "node1"...
	NS    *netlab.NS
	Addr4 netip.Addr // 192.0.2.11...
	Addr6 netip.Addr // 2001:db8::11...
	// Dir holds what runs on the node writes: configs, logs.
	Dir string

	lab *Lab
}

// Addrs are the node's IPv4 and IPv6 addresses.
func (n *Node) Addrs() []netip.Addr { return []netip.Addr{n.Addr4, n.Addr6} }

// Lab is a router, three nodes and a client, in their own namespaces.
type Lab struct {
	T      testing.TB
	Net    *netlab.Lab
	Router *netlab.NS
	Client *netlab.NS
	Nodes  []*Node
	// Dir is the lab's temp dir: one sub-directory per router and node.
	Dir string
}

// New builds the lab: namespaces, bridges, addresses, default routes of
// the nodes and the client through the router, forwarding on in the
// router with layer-4 multipath hashing (so connections from one client
// spread over every next hop). It starts nothing. It skips t when not
// root (fails under CI).
func New(t testing.TB) *Lab {
	t.Helper()
	netlab.RequireRoot(t)
	if err := killStale(); err != nil {
		t.Logf("bgplab: cleaning a crashed run: %v", err)
	}
	l := &Lab{T: t, Net: netlab.New(t), Dir: t.TempDir()}
	// The test's temp dirs are private to root; FRR's daemons run as user
	// frr and must reach their sub-directory.
	for _, d := range []string{filepath.Dir(l.Dir), l.Dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	brNodes := l.Net.Bridge("br-nodes")
	brClient := l.Net.Bridge("br-client")

	l.Router = l.Net.Namespace("router")
	l.Net.Connect(l.Router, brNodes, "eth0", []string{RouterNodes4.String() + "/24", RouterNodes6.String() + "/64"})
	l.Net.Connect(l.Router, brClient, "eth1", []string{RouterClient4.String() + "/24", RouterClient6.String() + "/64"})
	l.Router.Sysctl("net.ipv4.ip_forward", "1")
	l.Router.Sysctl("net.ipv6.conf.all.forwarding", "1")
	l.Router.Sysctl("net.ipv4.fib_multipath_hash_policy", "1")
	l.Router.Sysctl("net.ipv6.fib_multipath_hash_policy", "1")

	l.Client = l.Net.Namespace("client")
	l.Net.Connect(l.Client, brClient, "eth0", []string{ClientAddr4.String() + "/24", ClientAddr6.String() + "/64"})
	l.Client.MustRun("ip", "route", "add", "default", "via", RouterClient4.String())
	l.Client.MustRun("ip", "-6", "route", "add", "default", "via", RouterClient6.String())

	for i := range 3 {
		n := &Node{
			Index: i,
			Name:  fmt.Sprintf("node%d", i+1),
			Addr4: netip.AddrFrom4([4]byte{192, 0, 2, byte(11 + i)}),
			Addr6: netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", 11+i)),
			Dir:   filepath.Join(l.Dir, fmt.Sprintf("node%d", i+1)),
			lab:   l,
		}
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		n.NS = l.Net.Namespace(n.Name)
		l.Net.Connect(n.NS, brNodes, "eth0", []string{n.Addr4.String() + "/24", n.Addr6.String() + "/64"})
		n.NS.MustRun("ip", "route", "add", "default", "via", RouterNodes4.String())
		n.NS.MustRun("ip", "-6", "route", "add", "default", "via", RouterNodes6.String())
		l.Nodes = append(l.Nodes, n)
	}
	return l
}

// RouterPeers are the router's neighbours: every node, over IPv4 and
// over IPv6, with the given options.
func (l *Lab) RouterPeers(bfd bool, password string) []Peer {
	var peers []Peer
	for _, n := range l.Nodes {
		for _, a := range n.Addrs() {
			peers = append(peers, Peer{Name: peerName(n.Name, a), Address: a, ASN: NodeASN, BFD: bfd, Password: password})
		}
	}
	return peers
}

// peerName is a protocol name both routers accept: "node1_v4".
func peerName(node string, a netip.Addr) string {
	if a.Is4() {
		return node + "_v4"
	}
	return node + "_v6"
}

// LinkDown takes n's link down, so nothing n still says reaches the
// router; LinkUp undoes it.
func (n *Node) LinkDown() { n.NS.MustRun("ip", "link", "set", "eth0", "down") }

// LinkUp brings n's link up again.
func (n *Node) LinkUp() { n.NS.MustRun("ip", "link", "set", "eth0", "up") }

// ServeTCP listens on port on every address inside n and answers every
// connection with n's name, until the test ends.
func (n *Node) ServeTCP(port int) {
	t := n.lab.T
	t.Helper()
	var ln net.Listener
	if err := n.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
		return err
	}); err != nil {
		t.Fatalf("bgplab: listen in %s: %v", n.Name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = conn.Write([]byte(n.Name + "\n"))
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
}

// Dial connects from the client to addr:port and returns the name of the
// node that answered.
func (l *Lab) Dial(addr netip.Addr, port int, timeout time.Duration) (string, error) {
	var name string
	err := l.Client.Do(func() error {
		conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(addr, uint16(port)).String(), timeout)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
		buf := make([]byte, 64)
		k, err := conn.Read(buf)
		if err != nil {
			return fmt.Errorf("read from %s: %w", addr, err)
		}
		name = strings.TrimSpace(string(buf[:k]))
		return nil
	})
	return name, err
}

// Spread connects count times from the client to addr:port and returns how
// many connections each node answered; the first error ends it.
func (l *Lab) Spread(addr netip.Addr, port, count int) (map[string]int, error) {
	got := map[string]int{}
	for range count {
		name, err := l.Dial(addr, port, 2*time.Second)
		if err != nil {
			return got, err
		}
		got[name]++
	}
	return got, nil
}

// Eventually polls cond every interval until it returns nil or d has
// passed, and returns the time it took and cond's last error. An error
// wrapping ErrGiveUp ends it at once.
func Eventually(d, interval time.Duration, cond func() error) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(d)
	for {
		err := cond()
		if err == nil {
			return time.Since(start), nil
		}
		if errors.Is(err, ErrGiveUp) {
			return time.Since(start), err
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("after %v: %w", d, err)
		}
		time.Sleep(interval) // polling interval
	}
}

// ErrGiveUp tells Eventually, wrapped in a condition's error, that waiting
// longer cannot help (the process it waits for has exited).
var ErrGiveUp = errors.New("giving up")

// errNotYet is a condition that does not hold yet.
var errNotYet = errors.New("not yet")
