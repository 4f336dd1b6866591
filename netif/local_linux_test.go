package netif

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/hostlb/hostlb/tests/netlab"
)

var (
	localVIP4 = netip.MustParseAddr("192.0.2.100")
	localVIP6 = netip.MustParseAddr("2001:db8::100")
)

// localLab is a node namespace and a client namespace joined by a veth
// pair, the client routing the VIPs via the node.
type localLab struct {
	node, client testNS
}

func newLocalLab(t *testing.T) localLab {
	t.Helper()
	lab := localLab{node: newNS(t, "node"), client: newNS(t, "cli")}
	for _, ns := range []testNS{lab.node, lab.client} {
		// No DAD delays: ndisc6 needs a usable source address at once.
		ns.setSysctl(t, "net.ipv6.conf.all.accept_dad", "0")
		ns.setSysctl(t, "net.ipv6.conf.default.accept_dad", "0")
	}
	lab.node.ip(t, "link", "add", "nv", "type", "veth", "peer", "name", "cv", "netns", lab.client.name)
	lab.node.ip(t, "addr", "add", "198.51.100.1/24", "dev", "nv")
	lab.node.ip(t, "addr", "add", "2001:db8:1::1/64", "dev", "nv", "nodad")
	lab.client.ip(t, "addr", "add", "198.51.100.2/24", "dev", "cv")
	lab.client.ip(t, "addr", "add", "2001:db8:1::2/64", "dev", "cv", "nodad")
	lab.node.ip(t, "link", "set", "nv", "up")
	lab.client.ip(t, "link", "set", "cv", "up")
	lab.client.ip(t, "route", "add", localVIP4.String()+"/32", "via", "198.51.100.1")
	lab.client.ip(t, "-6", "route", "add", localVIP6.String()+"/128", "via", "2001:db8:1::1")
	return lab
}

// ping reports whether one ping from the client gets an answer.
func (lab localLab) ping(ip netip.Addr) (bool, string) {
	args := []string{"-c", "1", "-W", "2", ip.String()}
	if ip.Is6() {
		args = append([]string{"-6"}, args...)
	}
	out, err := lab.client.exec("ping", args...)
	return err == nil, out
}

// arpReplies counts ARP replies the client gets for ip on its veth.
func (lab localLab) arpReplies(t *testing.T, ip string) int {
	t.Helper()
	out, _ := lab.client.exec("arping", "-c", "3", "-W", "0.2", "-w", "1", "-i", "cv", ip)
	return strings.Count(out, "bytes from")
}

// ndpAnswered reports whether a Neighbor Solicitation for ip gets an answer.
func (lab localLab) ndpAnswered(t *testing.T, ip string) bool {
	t.Helper()
	out, err := lab.client.exec("ndisc6", "-r", "3", "-w", "300", ip, "cv")
	return err == nil && strings.Contains(out, "Target link-layer address")
}

// nodeAddrs lists the non-link-local addresses on the node's hostlb0, or
// reports that the link does not exist.
func nodeAddrs(t *testing.T, h *netlink.Handle) (addrs []string, exists bool) {
	t.Helper()
	link, err := h.LinkByName(LocalLinkName)
	if err != nil {
		if isNotFound(err) {
			return nil, false
		}
		t.Fatal(err)
	}
	as, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if !a.IP.IsLinkLocalUnicast() {
			addrs = append(addrs, a.IPNet.String())
		}
	}
	slices.Sort(addrs)
	return addrs, true
}

func TestLocalAddrsRoot(t *testing.T) {
	requireRoot(t)
	netlab.RequireTools(t, "Debian: iputils-ping, arping, ndisc6", "ping", "arping", "ndisc6")
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lab := newLocalLab(t)
	h, err := netlink.NewHandleAt(lab.node.h)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	// A crashed earlier run left hostlb0 with an address nobody owns.
	if err := exec.Command("ip", "-n", lab.node.name, "link", "add", LocalLinkName, "type", "dummy").Run(); err != nil {
		lab.node.ip(t, "link", "add", LocalLinkName, "type", "ifb") // kernel without the dummy driver
	}
	lab.node.ip(t, "addr", "add", "203.0.113.7/32", "dev", LocalLinkName)
	lab.node.ip(t, "route", "add", "local", "203.0.113.8/32", "dev", "lo", "table", "local", "proto", "157")
	ignoreBefore := lab.node.sysctl(t, "net.ipv4.conf.all.arp_ignore")
	announceBefore := lab.node.sysctl(t, "net.ipv4.conf.all.arp_announce")

	m := NewLocalAddrs(LocalAddrsOptions{Log: testLogger(t), NetNS: &lab.node.h})
	if got, _ := nodeAddrs(t, h); !slices.Equal(got, []string{"203.0.113.7/32"}) {
		t.Fatalf("constructor touched the host: %v", got)
	}
	if got := anyIPRoutes(t, h); !slices.Equal(got, []string{"203.0.113.8/32"}) {
		t.Fatalf("constructor touched the host's routes: %v", got)
	}
	for _, ip := range []netip.Addr{localVIP4, localVIP6, localVIP4} {
		if err := m.Add(ip); err != nil {
			t.Fatalf("Add(%s): %v", ip, err)
		}
	}
	if got, want := m.Addrs(), []netip.Addr{localVIP4, localVIP6}; !slices.Equal(got, want) {
		t.Errorf("Addrs = %v, want %v", got, want)
	}
	// The routes are in when Add returns; the addresses follow.
	if got := anyIPRoutes(t, h); !slices.Equal(got, []string{"192.0.2.100/32", "2001:db8::100/128"}) {
		t.Errorf("local routes after Add: %v", got)
	}
	waitAddrs(t, m)
	got, _ := nodeAddrs(t, h)
	if want := []string{"192.0.2.100/32", "2001:db8::100/128"}; !slices.Equal(got, want) {
		t.Errorf("hostlb0 holds %v, want %v (the stale address removed)", got, want)
	}
	link, err := h.LinkByName(LocalLinkName)
	if err != nil {
		t.Fatal(err)
	}
	if f := link.Attrs().RawFlags; f&unix.IFF_UP == 0 || f&unix.IFF_NOARP == 0 {
		t.Errorf("hostlb0 flags %#x: want UP and NOARP", f)
	}
	t.Logf("hostlb0 is a %s link", link.Type())
	if v := lab.node.sysctl(t, "net.ipv4.conf.all.arp_ignore"); v != "1" {
		t.Errorf("arp_ignore = %s, want 1", v)
	}
	if v := lab.node.sysctl(t, "net.ipv4.conf.all.arp_announce"); v != "2" {
		t.Errorf("arp_announce = %s, want 2", v)
	}

	// The node accepts traffic for both VIPs.
	for _, ip := range []netip.Addr{localVIP4, localVIP6} {
		if ok, out := lab.ping(ip); !ok {
			t.Errorf("ping %s from the client failed:\n%s", ip, out)
		}
	}
	// The kernel is quiet about them: no ARP, no NDP answer on the node's
	// veth, while its own addresses are answered (the tools work).
	if n := lab.arpReplies(t, "198.51.100.1"); n == 0 {
		t.Fatal("control: no ARP reply for the node's own address; arping is not working")
	}
	if n := lab.arpReplies(t, localVIP4.String()); n != 0 {
		t.Errorf("kernel answered %d ARP requests for %s held on hostlb0", n, localVIP4)
	}
	if !lab.ndpAnswered(t, "2001:db8:1::1") {
		t.Fatal("control: no NDP answer for the node's own address; ndisc6 is not working")
	}
	if lab.ndpAnswered(t, localVIP6.String()) {
		t.Errorf("kernel answered NDP for %s held on hostlb0", localVIP6)
	}
	// And it is arp_ignore that keeps it quiet: with the default back,
	// the kernel answers for the VIP.
	lab.node.setSysctl(t, "net.ipv4.conf.all.arp_ignore", "0")
	if n := lab.arpReplies(t, localVIP4.String()); n == 0 {
		t.Errorf("with arp_ignore=0 the kernel did not answer for %s; the proof above proves nothing", localVIP4)
	}
	lab.node.setSysctl(t, "net.ipv4.conf.all.arp_ignore", "1")

	// Remove, then Sync repairs what changed behind the manager's back.
	if err := m.Remove(localVIP4); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(localVIP4); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if got := anyIPRoutes(t, h); !slices.Equal(got, []string{"2001:db8::100/128"}) {
		t.Errorf("local routes after Remove: %v", got)
	}
	waitAddrs(t, m)
	if got, _ := nodeAddrs(t, h); !slices.Equal(got, []string{"2001:db8::100/128"}) {
		t.Errorf("after Remove: %v", got)
	}
	lab.node.ip(t, "addr", "del", localVIP6.String()+"/128", "dev", LocalLinkName)
	lab.node.ip(t, "addr", "add", "198.51.100.77/32", "dev", LocalLinkName)
	lab.node.ip(t, "link", "set", LocalLinkName, "down")
	want := []netip.Addr{netip.MustParseAddr("203.0.113.100"), localVIP6}
	if err := m.Sync(want); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	waitAddrs(t, m)
	if got, _ := nodeAddrs(t, h); !slices.Equal(got, []string{"2001:db8::100/128", "203.0.113.100/32"}) {
		t.Errorf("after Sync: %v", got)
	}
	// Only the link downed: Sync brings it back up.
	lab.node.ip(t, "link", "set", LocalLinkName, "down")
	if err := m.Sync(want); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	waitAddrs(t, m)
	if link, err := h.LinkByName(LocalLinkName); err != nil || link.Attrs().RawFlags&unix.IFF_UP == 0 {
		t.Errorf("hostlb0 not up after Sync: %v", err)
	}
	if ok, out := lab.ping(localVIP6); !ok {
		t.Errorf("ping %s after Sync brought hostlb0 back up failed:\n%s", localVIP6, out)
	}
	if got := m.Addrs(); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("203.0.113.100"), localVIP6}) {
		t.Errorf("Addrs after Sync = %v", got)
	}

	// The route alone makes the node accept a VIP: with hostlb0 gone
	// behind the manager's back, ping -6 still works before any repair.
	lab.node.ip(t, "link", "del", LocalLinkName)
	if ok, out := lab.ping(localVIP6); !ok {
		t.Errorf("ping %s with only its local route failed:\n%s", localVIP6, out)
	}
	if err := m.Sync(want); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	waitAddrs(t, m)
	if got, _ := nodeAddrs(t, h); !slices.Equal(got, []string{"2001:db8::100/128", "203.0.113.100/32"}) {
		t.Errorf("after Sync recreated hostlb0: %v", got)
	}

	// Close removes everything it added, the link, and its sysctl changes.
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got, exists := nodeAddrs(t, h); exists {
		t.Errorf("hostlb0 still exists after Close, holding %v", got)
	}
	if got := anyIPRoutes(t, h); len(got) != 0 {
		t.Errorf("local routes after Close: %v", got)
	}
	if v := lab.node.sysctl(t, "net.ipv4.conf.all.arp_ignore"); v != ignoreBefore {
		t.Errorf("arp_ignore after Close = %s, want %s", v, ignoreBefore)
	}
	if v := lab.node.sysctl(t, "net.ipv4.conf.all.arp_announce"); v != announceBefore {
		t.Errorf("arp_announce after Close = %s, want %s", v, announceBefore)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := m.Add(localVIP4); !errors.Is(err, ErrLocalAddrsClosed) {
		t.Errorf("Add after Close: %v, want ErrLocalAddrsClosed", err)
	}
}

// Close keeps hostlb0 when someone else put an address on it, and an
// unused manager changes nothing.
func TestLocalAddrsCloseKeepsForeignAddressesRoot(t *testing.T) {
	requireRoot(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ns := newNS(t, "keep")
	h, err := netlink.NewHandleAt(ns.h)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	unused := NewLocalAddrs(LocalAddrsOptions{NetNS: &ns.h})
	if err := unused.Close(); err != nil {
		t.Fatal(err)
	}

	m := NewLocalAddrs(LocalAddrsOptions{Log: testLogger(t), NetNS: &ns.h})
	if err := m.Add(localVIP6); err != nil {
		t.Fatal(err)
	}
	waitAddrs(t, m)
	if v := ns.sysctl(t, "net.ipv4.conf.all.arp_ignore"); v != "0" {
		t.Errorf("an IPv6-only manager changed arp_ignore to %s", v)
	}
	ns.ip(t, "addr", "add", "203.0.113.9/32", "dev", LocalLinkName)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got, exists := nodeAddrs(t, h); !exists || !slices.Equal(got, []string{"203.0.113.9/32"}) {
		t.Errorf("after Close: hostlb0 exists=%v holding %v, want it kept with 203.0.113.9/32 only", exists, got)
	}
}

// Many addresses: Sync returns with every route in, the addresses follow,
// and when most of them leave the link is recreated rather than emptied
// one address at a time.
func TestLocalAddrsManyRoot(t *testing.T) {
	requireRoot(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lab := newLocalLab(t)
	h, err := netlink.NewHandleAt(lab.node.h)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var logs lockedBuf
	m := NewLocalAddrs(LocalAddrsOptions{Log: slog.New(slog.NewTextHandler(&logs, nil)), NetNS: &lab.node.h})
	defer m.Close()

	const n = 2000
	want := make([]netip.Addr, 0, n)
	base := localVIP6.As16()
	for i := range n {
		a := base
		a[14], a[15] = byte(i>>8), byte(i)
		want = append(want, netip.AddrFrom16(a))
	}
	if err := m.Sync(want); err != nil {
		t.Fatal(err)
	}
	if got := len(anyIPRoutes(t, h)); got != n {
		t.Fatalf("%d local routes after Sync, want %d", got, n)
	}
	waitAddrs(t, m)
	if got, _ := nodeAddrs(t, h); len(got) != n {
		t.Fatalf("%d addresses on hostlb0, want %d", len(got), n)
	}
	keep := want[:10]
	if err := m.Sync(keep); err != nil {
		t.Fatal(err)
	}
	if got := len(anyIPRoutes(t, h)); got != len(keep) {
		t.Errorf("%d local routes after shrinking, want %d", got, len(keep))
	}
	waitAddrs(t, m)
	got, _ := nodeAddrs(t, h)
	var wantS []string
	for _, a := range keep {
		wantS = append(wantS, a.String()+"/128")
	}
	slices.Sort(wantS)
	if !slices.Equal(got, wantS) {
		t.Errorf("hostlb0 after shrinking holds %d addresses, want %v", len(got), wantS)
	}
	if !strings.Contains(logs.String(), "recreating the local VIP link") {
		t.Errorf("the link was not recreated to drop %d addresses:\n%s", n-len(keep), lastLines(logs.String(), 20))
	}
	lab.client.ip(t, "-6", "route", "add", keep[5].String()+"/128", "via", "2001:db8:1::1")
	if ok, out := lab.ping(keep[5]); !ok {
		t.Errorf("ping %s failed:\n%s", keep[5], out)
	}
}

// anyIPRoutes lists the node's local routes of proto hostlb.
func anyIPRoutes(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	rs, err := listAnyIPRoutes(h)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, r.Dst.String())
	}
	slices.Sort(out)
	return out
}

// waitAddrs waits for the address worker; a stuck worker fails the test.
func waitAddrs(t *testing.T, m *LocalAddrs) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := m.WaitAddrs(ctx); err != nil {
		t.Fatal(err)
	}
}

// lockedBuf is a log sink the manager's goroutines may share.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func TestLocalAddrsRejectsBadVIPs(t *testing.T) {
	m := NewLocalAddrs(LocalAddrsOptions{})
	defer m.Close()
	for _, s := range []string{"0.0.0.0", "127.0.0.1", "::1", "fe80::1", "ff02::1", "224.0.0.1", "fe80::1%eth0"} {
		if err := m.Add(netip.MustParseAddr(s)); err == nil {
			t.Errorf("Add(%s) accepted", s)
		}
	}
	if err := m.Add(netip.Addr{}); err == nil {
		t.Error("Add(zero) accepted")
	}
}
