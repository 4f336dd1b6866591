package netif_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
	"go.uber.org/goleak"

	"github.com/hostlb/hostlb/netif"
	"github.com/hostlb/hostlb/netif/netiftest"
)

// l2Conn is a minimal PacketConn: reads block until Close, writes are kept.
type l2Conn struct {
	closed chan struct{}

	mu       sync.Mutex // guards the fields below
	written  [][]byte
	deadline chan struct{}
	isClosed bool
}

func newL2Conn() *l2Conn {
	return &l2Conn{closed: make(chan struct{}), deadline: make(chan struct{})}
}

func (c *l2Conn) ReadFrom([]byte) (int, net.Addr, error) {
	c.mu.Lock()
	dl := c.deadline
	c.mu.Unlock()
	select {
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-dl:
		return 0, nil, os.ErrDeadlineExceeded
	}
}

func (c *l2Conn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed {
		return 0, net.ErrClosed
	}
	c.written = append(c.written, slices.Clone(b))
	return len(b), nil
}

func (c *l2Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.IsZero() && !t.After(time.Now()) {
		select {
		case <-c.deadline:
		default:
			close(c.deadline)
		}
	} else if t.IsZero() {
		c.deadline = make(chan struct{})
	}
	return nil
}

func (c *l2Conn) JoinGroup(net.HardwareAddr) error  { return nil }
func (c *l2Conn) LeaveGroup(net.HardwareAddr) error { return nil }

func (c *l2Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.isClosed {
		c.isClosed = true
		close(c.closed)
	}
	return nil
}

func (c *l2Conn) closedNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.isClosed
}

func (c *l2Conn) frames() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.written)
}

// listener hands out l2Conns and remembers them by "arp eth0" / "ndp eth0".
type listener struct {
	mu    sync.Mutex // guards conns and fail
	conns map[string][]*l2Conn
	macs  map[string]net.HardwareAddr
	fail  map[string]error
}

func newListener() *listener {
	return &listener{conns: map[string][]*l2Conn{}, macs: map[string]net.HardwareAddr{}, fail: map[string]error{}}
}

func (l *listener) listen(kind string) func(*net.Interface) (netif.PacketConn, error) {
	return func(ifi *net.Interface) (netif.PacketConn, error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		key := kind + " " + ifi.Name
		if err := l.fail[key]; err != nil {
			return nil, err
		}
		c := newL2Conn()
		l.conns[key] = append(l.conns[key], c)
		l.macs[key] = ifi.HardwareAddr
		return c, nil
	}
}

// open lists the keys with an open conn, sorted.
func (l *listener) open() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k, cs := range l.conns {
		for _, c := range cs {
			if !c.closedNow() {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

// last returns the newest conn opened for key.
func (l *listener) last(t *testing.T, key string) *l2Conn {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := l.conns[key]
	if len(cs) == 0 {
		t.Fatalf("no conn opened for %q", key)
	}
	return cs[len(cs)-1]
}

func (l *listener) opened(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns[key])
}

var (
	mac1 = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	mac2 = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	v4a  = netip.MustParseAddr("192.0.2.100")
	v4b  = netip.MustParseAddr("198.51.100.100")
	v6a  = netip.MustParseAddr("2001:db8::100")
)

func link(idx int, name string, mac net.HardwareAddr, prefixes ...string) netif.Link {
	l := netif.Link{Index: idx, Name: name, Type: "device", MAC: mac, MTU: 1500,
		Up: true, Running: true, Broadcast: true}
	for _, p := range prefixes {
		l.Addrs = append(l.Addrs, netif.Addr{Prefix: netip.MustParsePrefix(p)})
	}
	return l
}

type l2Env struct {
	l2    *netif.L2
	lis   *listener
	local *netiftest.AddrManager
	mon   *netiftest.Monitor
	cfg   netif.L2Config
}

func newL2Env(t *testing.T, links ...netif.Link) *l2Env {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	e := &l2Env{
		lis:   newListener(),
		local: netiftest.NewAddrManager(),
		mon:   netiftest.NewMonitor(links...),
		cfg: netif.L2Config{Exclude: netif.DefaultExclude, GratuitousCount: 2,
			GratuitousInterval: time.Millisecond},
	}
	e.l2 = netif.NewL2(netif.L2Options{
		Local: e.local, ListenARP: e.lis.listen("arp"), ListenNDP: e.lis.listen("ndp"),
		Linger: -1, // TestL2LocalLinger has its own
	})
	t.Cleanup(func() {
		if err := e.l2.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if open := e.lis.open(); len(open) != 0 {
			t.Errorf("conns still open after Close: %v", open)
		}
		if got := e.local.Addrs(); len(got) != 0 || !e.local.Closed() {
			t.Errorf("after Close local holds %v (closed %v)", got, e.local.Closed())
		}
		goleak.VerifyNone(t, opt)
	})
	return e
}

func (e *l2Env) sync(t *testing.T, want ...netif.L2Announcement) error {
	t.Helper()
	return e.l2.Sync(context.Background(), e.mon.Snapshot(), e.cfg, want)
}

func (e *l2Env) mustSync(t *testing.T, want ...netif.L2Announcement) {
	t.Helper()
	if err := e.sync(t, want...); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func ann(a netip.Addr) netif.L2Announcement { return netif.L2Announcement{Addr: a, VIP: "web"} }

func status(l2 *netif.L2) map[string][]string {
	out := map[string][]string{}
	for _, s := range l2.Status() {
		for _, a := range s.Addrs {
			out[s.Iface] = append(out[s.Iface], a.String())
		}
	}
	return out
}

func TestL2RespondersPerInterfaceAndSubnetChoice(t *testing.T) {
	e := newL2Env(t,
		link(2, "eth0", mac1, "192.0.2.1/24", "2001:db8::1/64"),
		link(3, "eth1", mac2, "203.0.113.1/24"),
		link(4, "docker0", mac2, "172.17.0.1/16"), // excluded by default
	)
	// 192.0.2.100 and 2001:db8::100 sit in eth0's subnets; 198.51.100.100
	// matches no subnet, so it goes on every eligible interface.
	e.mustSync(t, ann(v4a), ann(v6a), ann(v4b))
	want := []string{"arp eth0", "arp eth1", "ndp eth0"}
	if diff := cmp.Diff(want, e.lis.open()); diff != "" {
		t.Errorf("open responders (-want +got):\n%s", diff)
	}
	wantSt := map[string][]string{
		"eth0": {"192.0.2.100", "198.51.100.100", "2001:db8::100"},
		"eth1": {"198.51.100.100"},
	}
	if diff := cmp.Diff(wantSt, status(e.l2)); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if got := e.lis.macs["arp eth1"]; !bytes.Equal(got, mac2) {
		t.Errorf("eth1 responder got MAC %v", got)
	}

	// A per-VIP interface list overrides [l2]'s.
	only1 := ann(v4b)
	only1.Interfaces = []string{"eth1"}
	e.mustSync(t, ann(v4a), ann(v6a), only1)
	wantSt["eth0"] = []string{"192.0.2.100", "2001:db8::100"}
	if diff := cmp.Diff(wantSt, status(e.l2)); diff != "" {
		t.Errorf("status with override (-want +got):\n%s", diff)
	}

	// Dropping the only IPv6 address closes eth0's NDP responder; dropping
	// everything on eth1 closes it too. Responders are not reopened for
	// addresses that stay.
	e.mustSync(t, ann(v4a))
	if diff := cmp.Diff([]string{"arp eth0"}, e.lis.open()); diff != "" {
		t.Errorf("open responders (-want +got):\n%s", diff)
	}
	if n := e.lis.opened("arp eth0"); n != 1 {
		t.Errorf("eth0 ARP opened %d times, want 1", n)
	}
	e.mustSync(t)
	if open := e.lis.open(); len(open) != 0 {
		t.Errorf("responders open with nothing owned: %v", open)
	}
}

func TestL2FollowsLinks(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24"), link(3, "eth1", mac2))
	e.mustSync(t, ann(v4a))
	if diff := cmp.Diff([]string{"arp eth0"}, e.lis.open()); diff != "" {
		t.Fatalf("open (-want +got):\n%s", diff)
	}

	// The subnet moves to eth1: the address follows it.
	e.mon.DelAddr("eth0", netip.MustParsePrefix("192.0.2.1/24"))
	e.mon.AddAddr("eth1", netip.MustParsePrefix("192.0.2.1/24"))
	e.mustSync(t, ann(v4a))
	if diff := cmp.Diff([]string{"arp eth1"}, e.lis.open()); diff != "" {
		t.Errorf("after subnet move (-want +got):\n%s", diff)
	}

	// The link goes away: its responder closes; with no subnet left the
	// address goes on the remaining eligible link.
	e.mon.DelLink("eth1")
	e.mustSync(t, ann(v4a))
	if diff := cmp.Diff([]string{"arp eth0"}, e.lis.open()); diff != "" {
		t.Errorf("after link removal (-want +got):\n%s", diff)
	}

	// Down: not eligible, nothing answers. Up again: reopened, with a new
	// burst.
	e.mon.SetUp("eth0", false)
	e.mustSync(t, ann(v4a))
	if open := e.lis.open(); len(open) != 0 {
		t.Errorf("open while down: %v", open)
	}
	e.mon.SetUp("eth0", true)
	e.mustSync(t, ann(v4a))
	if n := e.lis.opened("arp eth0"); n != 3 {
		t.Errorf("eth0 ARP opened %d times, want 3", n)
	}
	waitFrames(t, e.lis.last(t, "arp eth0"), 4)

	// A MAC change reopens the responder with the new MAC.
	l := link(2, "eth0", mac2)
	e.mon.SetLink(l)
	e.mustSync(t, ann(v4a))
	if got := e.lis.macs["arp eth0"]; !bytes.Equal(got, mac2) {
		t.Errorf("after MAC change the responder has %v", got)
	}
	if diff := cmp.Diff([]string{"arp eth0"}, e.lis.open()); diff != "" {
		t.Errorf("after MAC change (-want +got):\n%s", diff)
	}
}

// waitFrames waits until c has written n frames.
func waitFrames(t *testing.T, c *l2Conn, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f := c.frames()
		if len(f) >= n {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d frames written, want %d", len(f), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestL2BurstOnTakeover(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24", "2001:db8::1/64"))
	e.mustSync(t, ann(v4a), ann(v6a))
	// Two rounds: ARP sends a request and a reply form per round, NDP one NA.
	arpFrames := waitFrames(t, e.lis.last(t, "arp eth0"), 4)
	ndpFrames := waitFrames(t, e.lis.last(t, "ndp eth0"), 2)
	for _, f := range arpFrames {
		m, err := netif.ParseARP(f)
		if err != nil || !m.IsAnnouncement() || m.SenderIP != v4a || !bytes.Equal(m.SenderHW, mac1) {
			t.Errorf("gratuitous ARP %+v, %v", m, err)
		}
	}
	for _, f := range ndpFrames {
		na, err := netif.ParseNA(f)
		if err != nil || na.Target != v6a {
			t.Errorf("unsolicited NA %+v, %v", na, err)
		}
	}
	// An unchanged set sends nothing more.
	e.mustSync(t, ann(v4a), ann(v6a))
	if n := len(e.lis.last(t, "arp eth0").frames()); n != 4 {
		t.Errorf("%d ARP frames after an unchanged Sync, want 4", n)
	}
}

func TestL2LongBurstCancelledWhenOwnershipEnds(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24"))
	e.cfg.GratuitousCount, e.cfg.GratuitousInterval = 1000, time.Hour
	e.mustSync(t, ann(v4a), ann(netip.MustParseAddr("192.0.2.101")))
	waitFrames(t, e.lis.last(t, "arp eth0"), 4)
	// Sync returned while the bursts wait an hour; dropping one address
	// stops its burst (goleak in Cleanup sees the rest stop on Close).
	e.mustSync(t, ann(v4a))
}

func TestL2Refresh(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24"))
	e.cfg.GratuitousCount, e.cfg.RefreshInterval = 1, time.Millisecond
	e.mustSync(t, ann(v4a))
	waitFrames(t, e.lis.last(t, "arp eth0"), 8) // burst + refreshes
}

// TestL2RefreshOneGoroutineForAll: 200 owned addresses are refreshed by
// one goroutine, spread over the interval: the goroutine count does not
// grow with the addresses once their bursts are over, and every address is
// announced again.
func TestL2RefreshOneGoroutineForAll(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24"))
	e.cfg.GratuitousCount, e.cfg.RefreshInterval = 1, 200*time.Millisecond
	var anns []netif.L2Announcement
	a := netip.MustParseAddr("192.0.2.20")
	for range 200 {
		anns = append(anns, ann(a))
		a = a.Next()
	}
	before := runtime.NumGoroutine()
	e.mustSync(t, anns...)
	// Each announcement is a request and a reply: the burst is two frames
	// per address, a refresh two more. Wait until every address has had
	// its burst and the start of a refresh.
	conn := e.lis.last(t, "arp eth0")
	deadline := time.Now().Add(5 * time.Second)
	for {
		seen := map[netip.Addr]int{}
		for _, f := range conn.frames() {
			var p arp.Packet
			if err := p.UnmarshalBinary(f[14:]); err == nil {
				seen[p.TargetIP]++
			}
		}
		missing := slices.IndexFunc(anns, func(x netif.L2Announcement) bool { return seen[x.Addr] < 3 })
		if missing < 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d frames, want a burst and a refresh", anns[missing].Addr, seen[anns[missing].Addr])
		}
		time.Sleep(5 * time.Millisecond) // polling the fake conn
	}
	if extra := runtime.NumGoroutine() - before; extra > 10 {
		t.Errorf("%d more goroutines with 200 addresses refreshed; want a handful (responder, refresher)", extra)
	}
}

func TestL2LocalAddresses(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24", "2001:db8::1/64"))
	loc4, loc6 := ann(v4a), ann(v6a)
	loc4.Local, loc6.Local = true, true
	e.mustSync(t, loc4, loc6, ann(v4b))
	if diff := cmp.Diff([]netip.Addr{v4a, v6a}, e.local.Addrs(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}
	// Every Sync hands the whole local set over, an empty one too.
	e.mustSync(t, ann(v4b))
	e.mustSync(t, ann(v4b))
	ops := e.local.Ops()
	wantOps := []string{"sync [192.0.2.100 2001:db8::100]", "sync []", "sync []"}
	if diff := cmp.Diff(wantOps, ops); diff != "" {
		t.Errorf("AddrManager calls (-want +got):\n%s", diff)
	}

	// A local address that cannot be held is not announced.
	e.local.FailAdd(v6a, errors.New("netlink said no"))
	err := e.sync(t, loc4, loc6)
	if err == nil || !strings.Contains(err.Error(), "netlink said no") {
		t.Errorf("Sync error = %v", err)
	}
	if diff := cmp.Diff(map[string][]string{"eth0": {"192.0.2.100"}}, status(e.l2)); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if open := e.lis.open(); !slices.Equal(open, []string{"arp eth0"}) {
		t.Errorf("open = %v", open)
	}
}

// sysctlDenied fails IPv4 addresses the way LocalAddrs does under a
// read-only /proc/sys.
type sysctlDenied struct{ *netiftest.AddrManager }

func (s sysctlDenied) Sync(want []netip.Addr) error {
	for _, a := range want {
		if a.Is4() {
			return fmt.Errorf("sync local VIPs: set net.ipv4.conf.all.arp_ignore=1: %w",
				&fs.PathError{Op: "open", Path: "/proc/sys/net/ipv4/conf/all/arp_ignore", Err: syscall.EROFS})
		}
	}
	return s.AddrManager.Sync(want)
}

func TestL2LocalIPv6SurvivesReadOnlySysctls(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lis := newListener()
	local := sysctlDenied{netiftest.NewAddrManager()}
	l2 := netif.NewL2(netif.L2Options{Local: local, ListenARP: lis.listen("arp"), ListenNDP: lis.listen("ndp")})
	defer l2.Close()
	st := netif.NewState(link(2, "eth0", mac1, "192.0.2.1/24", "2001:db8::1/64"))
	loc4, loc6 := ann(v4a), ann(v6a)
	loc4.Local, loc6.Local = true, true
	err := l2.Sync(context.Background(), st, netif.L2Config{}, []netif.L2Announcement{loc4, loc6})
	if err == nil || !strings.Contains(err.Error(), "arp_ignore") || !errors.Is(err, syscall.EROFS) {
		t.Errorf("Sync error = %v; want the sysctl named", err)
	}
	if diff := cmp.Diff(map[string][]string{"eth0": {"2001:db8::100"}}, status(l2)); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestL2ListenFailureIsRetried(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24"))
	e.lis.mu.Lock()
	e.lis.fail["arp eth0"] = errors.New("operation not permitted")
	e.lis.mu.Unlock()
	if err := e.sync(t, ann(v4a)); err == nil {
		t.Fatal("Sync succeeded with a socket that cannot open")
	}
	if st := e.l2.Status(); len(st) != 0 {
		t.Errorf("status with no socket: %+v", st)
	}
	e.lis.mu.Lock()
	delete(e.lis.fail, "arp eth0")
	e.lis.mu.Unlock()
	e.mustSync(t, ann(v4a))
	if diff := cmp.Diff(map[string][]string{"eth0": {"192.0.2.100"}}, status(e.l2)); diff != "" {
		t.Errorf("status after retry (-want +got):\n%s", diff)
	}
}

func TestL2SyncAfterClose(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24"))
	e.mustSync(t, ann(v4a))
	if err := e.l2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.sync(t, ann(v4a)); !errors.Is(err, netif.ErrL2Closed) {
		t.Errorf("Sync after Close = %v", err)
	}
}

func TestL2HandoverStopsTheBurstButKeepsAnswering(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24"))
	e.cfg.GratuitousCount, e.cfg.GratuitousInterval = 1000, 5*time.Millisecond
	e.mustSync(t, ann(v4a))
	conn := e.lis.last(t, "arp eth0")
	waitFrames(t, conn, 4)

	leaving := ann(v4a)
	leaving.Handover = true
	e.mustSync(t, leaving)
	sentBefore := countFor(t, conn.frames(), v4a)

	// A new address's burst runs for several rounds; meanwhile the address
	// being handed over must send at most the round that was in flight.
	e.mustSync(t, leaving, ann(v4b))
	deadline := time.Now().Add(5 * time.Second)
	for countFor(t, conn.frames(), v4b) < 8 {
		if time.Now().After(deadline) {
			t.Fatal("the new address's burst did not run")
		}
		time.Sleep(time.Millisecond)
	}
	if after := countFor(t, conn.frames(), v4a); after > sentBefore+2 {
		t.Errorf("%d gratuitous frames for %s after the handover began, want at most one round (2)", after-sentBefore, v4a)
	}
	if diff := cmp.Diff(map[string][]string{"eth0": {"192.0.2.100", "198.51.100.100"}}, status(e.l2)); diff != "" {
		t.Errorf("answered (-want +got):\n%s", diff)
	}
}

// countFor counts the gratuitous ARP frames announcing addr.
func countFor(t *testing.T, frames [][]byte, addr netip.Addr) int {
	t.Helper()
	n := 0
	for _, f := range frames {
		if m, err := netif.ParseARP(f); err == nil && m.IsAnnouncement() && m.SenderIP == addr {
			n++
		}
	}
	return n
}

// cannotOf returns address → the sentinel its Cannot entry wraps.
func cannotOf(t *testing.T, cs []netif.L2Cannot) map[netip.Addr]error {
	t.Helper()
	out := map[netip.Addr]error{}
	for _, c := range cs {
		for _, s := range []error{netif.ErrNoInterface, netif.ErrNoResponder, netif.ErrNotHeld, netif.ErrSysctls} {
			if errors.Is(c.Err, s) {
				out[c.Addr] = s
			}
		}
		if out[c.Addr] == nil {
			t.Errorf("%s: %v wraps no reason", c.Addr, c.Err)
		}
		if c.VIP == "" {
			t.Errorf("%s: no VIP named", c.Addr)
		}
	}
	return out
}

// checkPartition fails unless every wanted address is either answered
// (Status) or in Cannot, never both.
func checkPartition(t *testing.T, l2 *netif.L2, want ...netif.L2Announcement) {
	t.Helper()
	answered := map[netip.Addr]bool{}
	for _, s := range l2.Status() {
		for _, a := range s.Addrs {
			answered[a] = true
		}
	}
	cannot := map[netip.Addr]bool{}
	for _, c := range l2.Cannot() {
		cannot[c.Addr] = true
	}
	for _, w := range want {
		if answered[w.Addr] == cannot[w.Addr] {
			t.Errorf("%s: answered %v, in Cannot %v; want exactly one", w.Addr, answered[w.Addr], cannot[w.Addr])
		}
	}
	if len(cannot) > len(want) {
		t.Errorf("Cannot lists %d addresses, only %d wanted", len(cannot), len(want))
	}
}

// Every way an address can end up answered nowhere is reported per
// address, with its reason; the others are answered.
func TestL2CannotNamesEveryReason(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24", "2001:db8::1/64"))
	e.cfg.Interfaces = []string{"eth0"}
	e.lis.mu.Lock()
	e.lis.fail["ndp eth0"] = errors.New("operation not permitted")
	e.lis.mu.Unlock()
	notHeld := netip.MustParseAddr("192.0.2.200")
	e.local.FailAdd(notHeld, errors.New("netlink said no"))
	ok, socket, local := ann(v4a), ann(v6a), ann(notHeld)
	local.Local = true
	elsewhere := ann(v4b)
	elsewhere.Interfaces = []string{"eth9"}
	want := []netif.L2Announcement{ok, socket, local, elsewhere}
	if err := e.sync(t, want...); err == nil {
		t.Error("Sync succeeded with a socket that cannot open and a local address not held")
	}
	got := cannotOf(t, e.l2.Cannot())
	wantWhy := map[netip.Addr]error{v6a: netif.ErrNoResponder, notHeld: netif.ErrNotHeld, v4b: netif.ErrNoInterface}
	if diff := cmp.Diff(wantWhy, got, cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) && errors.Is(b, a) })); diff != "" {
		t.Errorf("Cannot (-want +got):\n%s", diff)
	}
	for _, c := range e.l2.Cannot() {
		if c.Addr == v6a && !strings.Contains(c.Err.Error(), "operation not permitted") {
			t.Errorf("the socket error is not named: %v", c.Err)
		}
		if c.Addr == v4b && !strings.Contains(c.Err.Error(), "eth9") {
			t.Errorf("the interfaces asked for are not named: %v", c.Err)
		}
	}
	checkPartition(t, e.l2, want...)
	// Check sees only what no link is eligible for.
	if diff := cmp.Diff(map[netip.Addr]error{v4b: netif.ErrNoInterface}, cannotOf(t, e.l2.Check(e.mon.Snapshot(), e.cfg, want)),
		cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) && errors.Is(b, a) })); diff != "" {
		t.Errorf("Check (-want +got):\n%s", diff)
	}

	// Everything fixed: nothing left to report.
	e.lis.mu.Lock()
	delete(e.lis.fail, "ndp eth0")
	e.lis.mu.Unlock()
	e.local.FailAdd(notHeld, nil)
	elsewhere.Interfaces = nil
	want[3] = elsewhere
	e.mustSync(t, want...)
	if c := e.l2.Cannot(); len(c) != 0 {
		t.Errorf("Cannot after the fixes: %+v", c)
	}
	checkPartition(t, e.l2, want...)
}

// The interface renamed outside [l2] interfaces (or moved to another
// namespace: gone) leaves its addresses with no eligible interface; Check
// says so without touching anything, and says when the link is back.
func TestL2CannotFollowsTheLink(t *testing.T) {
	eth0 := link(2, "eth0", mac1, "192.0.2.1/24", "2001:db8::1/64")
	e := newL2Env(t, eth0)
	e.cfg.Interfaces = []string{"eth0"}
	want := []netif.L2Announcement{ann(v4a), ann(v6a)}
	e.mustSync(t, want...)
	if c := e.l2.Cannot(); len(c) != 0 {
		t.Fatalf("Cannot with eth0 up: %+v", c)
	}
	renamed := eth0
	renamed.Name = "moved0"
	for _, tc := range []struct {
		name string
		set  func()
	}{
		{"renamed", func() { e.mon.SetLink(renamed) }},
		{"moved away", func() { e.mon.DelLink("eth0") }},
		{"down", func() { e.mon.SetUp("eth0", false) }},
	} {
		e.mon.SetLink(eth0)
		e.mustSync(t, want...)
		tc.set()
		if got := e.l2.Check(e.mon.Snapshot(), e.cfg, want); len(got) != 2 {
			t.Errorf("%s: Check = %+v, want both addresses", tc.name, got)
		}
		e.mustSync(t, want...) // no error: a link may just be down
		got := cannotOf(t, e.l2.Cannot())
		if !errors.Is(got[v4a], netif.ErrNoInterface) || !errors.Is(got[v6a], netif.ErrNoInterface) {
			t.Errorf("%s: Cannot = %v, want both with no interface", tc.name, got)
		}
		if st := e.l2.Status(); len(st) != 0 {
			t.Errorf("%s: still answered: %+v", tc.name, st)
		}
		checkPartition(t, e.l2, want...)
		e.mon.SetLink(eth0)
		if got := e.l2.Check(e.mon.Snapshot(), e.cfg, want); len(got) != 0 {
			t.Errorf("%s and back: Check = %+v", tc.name, got)
		}
	}
	// Check never changed what is answered: the last Sync saw eth0 down.
	if st := e.l2.Status(); len(st) != 0 {
		t.Errorf("Check changed the output: %+v", st)
	}
	e.mustSync(t, want...)
	if diff := cmp.Diff(map[string][]string{"eth0": {"192.0.2.100", "2001:db8::100"}}, status(e.l2)); diff != "" {
		t.Errorf("back (-want +got):\n%s", diff)
	}
}

// IPv4 local addresses that cannot be held because the ARP sysctls
// cannot be set say so; the IPv6 ones are answered.
func TestL2CannotNamesTheSysctls(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	lis := newListener()
	l2 := netif.NewL2(netif.L2Options{Local: sysctlDenied{netiftest.NewAddrManager()}, ListenARP: lis.listen("arp"), ListenNDP: lis.listen("ndp")})
	defer l2.Close()
	st := netif.NewState(link(2, "eth0", mac1, "192.0.2.1/24", "2001:db8::1/64"))
	loc4, loc6 := ann(v4a), ann(v6a)
	loc4.Local, loc6.Local = true, true
	_ = l2.Sync(context.Background(), st, netif.L2Config{}, []netif.L2Announcement{loc4, loc6})
	got := cannotOf(t, l2.Cannot())
	if len(got) != 1 || !errors.Is(got[v4a], netif.ErrSysctls) {
		t.Errorf("Cannot = %v, want %s for its sysctls", got, v4a)
	}
	checkPartition(t, l2, loc4, loc6)
}

// TestL2LocalOnlyHoldsWithoutAnswering: a BGP VIP's local address is held
// on hostlb0 and answered by no responder; it is in neither Status nor
// Cannot, unless it cannot be held.
func TestL2LocalOnlyHoldsWithoutAnswering(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24", "2001:db8::1/64"))
	bgp4, bgp6 := ann(v4a), ann(v6a)
	bgp4.Local, bgp4.LocalOnly, bgp6.Local, bgp6.LocalOnly = true, true, true, true
	e.mustSync(t, bgp4, bgp6)
	if diff := cmp.Diff([]netip.Addr{v4a, v6a}, e.local.Addrs(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}
	if open := e.lis.open(); len(open) != 0 {
		t.Errorf("responders opened for local-only addresses: %v", open)
	}
	if st, c := status(e.l2), e.l2.Cannot(); len(st) != 0 || len(c) != 0 {
		t.Errorf("status %v, cannot %v: want neither", st, c)
	}
	// Given up, then wanted again and not holdable: Cannot says so.
	e.mustSync(t, bgp4)
	e.local.FailAdd(v6a, errors.New("netlink said no"))
	if err := e.sync(t, bgp4, bgp6); err == nil {
		t.Error("Sync hid the failure to hold a local-only address")
	}
	if c := e.l2.Cannot(); len(c) != 1 || c[0].Addr != v6a || !errors.Is(c[0].Err, netif.ErrNotHeld) {
		t.Errorf("cannot = %v, want %v not held", c, v6a)
	}
}

// TestL2ReassertSendsTheBurstAgain: after its burst is over, an owner
// accused by a peer's heartbeat sends a new burst for what it answers, and
// nothing for an address it is handing over.
func TestL2ReassertSendsTheBurstAgain(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24"))
	e.cfg.GratuitousCount = 1
	leaving := ann(v4b)
	leaving.Handover = true
	e.mustSync(t, ann(v4a), leaving)
	conn := e.lis.last(t, "arp eth0")
	waitFrames(t, conn, 2) // one round for v4a: request and reply forms
	beforeA, beforeB := countFor(t, conn.frames(), v4a), countFor(t, conn.frames(), v4b)
	if n := e.l2.Reassert(); n != 1 {
		t.Errorf("Reassert restarted %d bursts, want 1", n)
	}
	waitFrames(t, conn, beforeA+beforeB+2)
	if got := countFor(t, conn.frames(), v4a); got != beforeA+2 {
		t.Errorf("%d gratuitous frames for %s after Reassert, want %d", got, v4a, beforeA+2)
	}
	if got := countFor(t, conn.frames(), v4b); got != beforeB {
		t.Errorf("%d gratuitous frames for the address handed over, want %d", got, beforeB)
	}
	if err := e.l2.Close(); err != nil {
		t.Fatal(err)
	}
	if n := e.l2.Reassert(); n != 0 {
		t.Errorf("Reassert after Close restarted %d", n)
	}
}

// TestL2LocalLinger: a local address this node stops announcing stays held
// (served, not answered for) for the linger, then goes without another
// Sync; wanted again meanwhile, it simply stays; Close waits for the
// linger before it removes the addresses.
func TestL2LocalLinger(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const linger = 150 * time.Millisecond
	lis := newListener()
	local := netiftest.NewAddrManager()
	l2 := netif.NewL2(netif.L2Options{Local: local, ListenARP: lis.listen("arp"), ListenNDP: lis.listen("ndp"), Linger: linger})
	st := netif.NewState(link(2, "eth0", mac1, "192.0.2.1/24"))
	cfg := netif.L2Config{GratuitousCount: 1}
	loc, locB := ann(v4a), ann(v4b)
	loc.Local, locB.Local = true, true
	sync := func(want ...netif.L2Announcement) {
		t.Helper()
		if err := l2.Sync(context.Background(), st, cfg, want); err != nil {
			t.Fatal(err)
		}
	}
	sync(loc, locB)
	released := time.Now()
	sync(locB)
	if got := local.Addrs(); !slices.Contains(got, v4a) {
		t.Fatalf("just released, %s is not held: %v", v4a, got)
	}
	if diff := cmp.Diff(map[string][]string{"eth0": {"198.51.100.100"}}, status(l2)); diff != "" {
		t.Errorf("answered while %s lingers (-want +got):\n%s", v4a, diff)
	}
	for deadline := time.Now().Add(5 * time.Second); slices.Contains(local.Addrs(), v4a); {
		if time.Now().After(deadline) {
			t.Fatalf("%s still held 5 s after its release", v4a)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if held := time.Since(released); held < linger {
		t.Errorf("%s removed %v after its release, want at least %v", v4a, held, linger)
	}
	if got := local.Addrs(); !slices.Equal(got, []netip.Addr{v4b}) {
		t.Errorf("after the linger: %v, want only %s", got, v4b)
	}

	// Released and wanted again within the linger: held throughout.
	sync(loc, locB)
	sync(locB)
	sync(loc, locB)
	if got := local.Addrs(); !slices.Contains(got, v4a) {
		t.Errorf("wanted again: %v", got)
	}

	// Close waits for the linger of what was just released.
	sync()
	closing := time.Now()
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(closing); waited < linger/2 {
		t.Errorf("Close returned after %v, with addresses lingering for %v", waited, linger)
	}
	if got := local.Addrs(); len(got) != 0 || !local.Closed() {
		t.Errorf("after Close: %v (closed %v)", got, local.Closed())
	}
	if got := netif.LocalLinger(1100 * time.Millisecond); got != 1200*time.Millisecond {
		t.Errorf("LocalLinger(1.1s) = %v", got)
	}
	if got := netif.LocalLinger(10 * time.Millisecond); got != 1100*time.Millisecond {
		t.Errorf("LocalLinger(10ms) = %v", got)
	}
}
