package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/hostlb/hostlb/netif"
)

const foreignProto = 4 // RTPROT_STATIC

// fakeKernel is an in-memory routing table with routes of several
// protocols, behaving like netif.RouteTable against the kernel: Add fails
// on any taken key, Delete of a key another protocol holds does nothing.
// Replace of a key that is not ours is a bug of the importer.
type fakeKernel struct {
	t *testing.T

	mu      sync.Mutex // guards the fields below
	routes  map[netif.RouteKey]fakeRoute
	changed func()
	fail    error // returned by List while set
}

type fakeRoute struct {
	proto int
	r     netif.Route
}

func newFakeKernel(t *testing.T) *fakeKernel {
	return &fakeKernel{t: t, routes: map[netif.RouteKey]fakeRoute{}}
}

func (k *fakeKernel) List() ([]netif.Route, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return nil, k.fail
	}
	var out []netif.Route
	for _, fr := range k.routes {
		if fr.proto == netif.RTProtoHostlb {
			out = append(out, fr.r)
		}
	}
	slices.SortFunc(out, func(a, b netif.Route) int { return strings.Compare(a.String(), b.String()) })
	return out, nil
}

func (k *fakeKernel) Add(r netif.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.routes[r.Key()]; ok {
		return fmt.Errorf("add route %s: %w", r, syscall.EEXIST)
	}
	k.routes[r.Key()] = fakeRoute{netif.RTProtoHostlb, r.Normalize()}
	return nil
}

func (k *fakeKernel) Replace(r netif.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.routes[r.Key()]; ok && old.proto != netif.RTProtoHostlb {
		k.t.Errorf("Replace(%s) would take a route of proto %d", r, old.proto)
		return errors.New("foreign route")
	}
	k.routes[r.Key()] = fakeRoute{netif.RTProtoHostlb, r.Normalize()}
	return nil
}

func (k *fakeKernel) Delete(r netif.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.routes[r.Key()]; ok && old.proto == netif.RTProtoHostlb {
		delete(k.routes, r.Key())
	}
	return nil
}

func (k *fakeKernel) Watch(ctx context.Context, changed func()) error {
	k.mu.Lock()
	k.changed = changed
	k.mu.Unlock()
	<-ctx.Done()
	k.mu.Lock()
	k.changed = nil
	k.mu.Unlock()
	return nil
}

// put adds a route of any protocol behind the importer's back, as another
// program (or a crashed run) would, and tells the watcher.
func (k *fakeKernel) put(proto int, r netif.Route) {
	k.mu.Lock()
	k.routes[r.Key()] = fakeRoute{proto, r.Normalize()}
	changed := k.changed
	k.mu.Unlock()
	if changed != nil {
		changed()
	}
}

// all returns every route as "proto N: route", sorted.
func (k *fakeKernel) all() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, fr := range k.routes {
		out = append(out, fmt.Sprintf("proto %d: %s", fr.proto, fr.r))
	}
	slices.Sort(out)
	return out
}

func (k *fakeKernel) waitAll(t *testing.T, within time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	waitFor(t, within, "kernel routes", func() string {
		if got := k.all(); !slices.Equal(got, want) {
			return fmt.Sprintf("have\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
		return ""
	})
}

var (
	pfx4  = netip.MustParsePrefix("203.0.113.0/24")
	pfx6  = netip.MustParsePrefix("2001:db8:5::/48")
	nhA   = netip.MustParseAddr("192.0.2.101")
	nhB   = netip.MustParseAddr("192.0.2.102")
	nhA6  = netip.MustParseAddr("2001:db8::101")
	peerA = netip.MustParseAddr("192.0.2.1")
	peerB = netip.MustParseAddr("192.0.2.2")
)

func TestSelectRoutesPicksBestAndMultipath(t *testing.T) {
	cfg := Import{Enabled: true, Table: 100, Metric: 20}
	l := func(p netip.Prefix, peer, nh netip.Addr, mod func(*learned)) learned {
		x := learned{Prefix: p, Peer: peer, NextHop: nh, LocalPref: 100, ASPathLen: 1, EBGP: true}
		if mod != nil {
			mod(&x)
		}
		return x
	}
	route := func(p netip.Prefix, hops ...netip.Addr) netif.Route {
		return netif.Route{Table: 100, Dst: p, Metric: 20, NextHops: hops}
	}
	for _, tc := range []struct {
		name string
		in   []learned
		want []netif.Route
	}{
		{"one peer", []learned{l(pfx4, peerA, nhA, nil)}, []netif.Route{route(pfx4, nhA)}},
		{"two peers equally good: multipath", []learned{l(pfx4, peerB, nhB, nil), l(pfx4, peerA, nhA, nil)},
			[]netif.Route{route(pfx4, nhA, nhB)}},
		{"shorter AS path wins", []learned{l(pfx4, peerA, nhA, func(x *learned) { x.ASPathLen = 2 }), l(pfx4, peerB, nhB, nil)},
			[]netif.Route{route(pfx4, nhB)}},
		{"higher local-pref wins over a shorter AS path", []learned{
			l(pfx4, peerA, nhA, func(x *learned) { x.LocalPref, x.ASPathLen, x.EBGP = 200, 3, false }),
			l(pfx4, peerB, nhB, func(x *learned) { x.EBGP = false })},
			[]netif.Route{route(pfx4, nhA)}},
		{"eBGP over iBGP", []learned{l(pfx4, peerA, nhA, func(x *learned) { x.EBGP = false }), l(pfx4, peerB, nhB, nil)},
			[]netif.Route{route(pfx4, nhB)}},
		{"lower origin and MED win", []learned{
			l(pfx4, peerA, nhA, func(x *learned) { x.Origin = 2 }), l(pfx4, peerB, nhB, func(x *learned) { x.MED = 5 }),
			l(pfx4, peerA, nhA6, func(x *learned) { x.Prefix = pfx6; x.MED = 10 }),
			l(pfx6, peerB, netip.MustParseAddr("2001:db8::102"), func(x *learned) { x.MED = 1 })},
			[]netif.Route{route(pfx4, nhB), route(pfx6, netip.MustParseAddr("2001:db8::102"))}},
		{"one next hop over two sessions of one router is one next hop",
			[]learned{l(pfx4, peerA, nhA, nil), l(pfx4, netip.MustParseAddr("2001:db8::1"), nhA, nil)},
			[]netif.Route{route(pfx4, nhA)}},
		{"nothing learned", nil, []netif.Route{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, selectRoutes(tc.in, cfg)); diff != "" {
				t.Errorf("selectRoutes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLearnedFromSkipsUnusablePaths(t *testing.T) {
	g := Global{ASN: 64512, RouterID: netip.MustParseAddr("192.0.2.10"), NextHop4: netip.MustParseAddr("192.0.2.10")}
	nlri4, _ := bgp.NewIPAddrPrefix(pfx4)
	path := func(peerASN uint32, attrs ...bgp.PathAttributeInterface) *apiutil.Path {
		return &apiutil.Path{Family: bgp.RF_IPv4_UC, Nlri: nlri4, PeerASN: peerASN,
			Attrs: append([]bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0)}, attrs...)}
	}
	nh := func(a string) bgp.PathAttributeInterface {
		p, err := bgp.NewPathAttributeNextHop(netip.MustParseAddr(a))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	asPath := func(asns ...uint32) bgp.PathAttributeInterface {
		return bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, asns)})
	}
	good, ok := learnedFrom(nlri4, path(64500, nh("192.0.2.1"), asPath(64500, 64501), bgp.NewPathAttributeLocalPref(300)), peerA, g)
	if want := (learned{Prefix: pfx4, Peer: peerA, NextHop: netip.MustParseAddr("192.0.2.1"), LocalPref: 100, ASPathLen: 2, EBGP: true}); !ok || good != want {
		t.Errorf("a usable eBGP path: %+v %v, want %+v (LOCAL_PREF of eBGP ignored)", good, ok, want)
	}
	ibgp, ok := learnedFrom(nlri4, path(64512, nh("192.0.2.1"), bgp.NewPathAttributeLocalPref(300)), peerA, g)
	if !ok || ibgp.LocalPref != 300 || ibgp.EBGP {
		t.Errorf("an iBGP path: %+v %v, want local-pref 300", ibgp, ok)
	}
	origID, err := bgp.NewPathAttributeOriginatorId(netip.MustParseAddr("192.0.2.10"))
	if err != nil {
		t.Fatal(err)
	}
	withdrawn := path(64500, nh("192.0.2.1"))
	withdrawn.Withdrawal = true
	for name, p := range map[string]*apiutil.Path{
		"AS loop":                   path(64500, nh("192.0.2.1"), asPath(64500, 64512)),
		"our ORIGINATOR_ID":         path(64512, nh("192.0.2.1"), origID),
		"next hop is the node":      path(64500, nh("192.0.2.10")),
		"unspecified next hop":      path(64500, nh("0.0.0.0")),
		"withdrawn":                 withdrawn,
		"no next hop of the family": path(64500),
	} {
		if l, ok := learnedFrom(nlri4, p, peerA, g); ok {
			t.Errorf("%s: learned %+v, want it skipped", name, l)
		}
	}
}

// The importer against a fake kernel: add, replace with multipath,
// withdraw, a config change that moves the table, exit cleanup; routes of
// other protocols, even at the same key, are never touched.
func TestImporterApplyKeepsOnlyItsOwnRoutes(t *testing.T) {
	k := newFakeKernel(t)
	im := newImporter(testLogger(t), k, 0)
	static := netif.Route{Table: 100, Dst: netip.MustParsePrefix("198.51.100.0/24"), Metric: 20, NextHops: []netip.Addr{nhA}}
	taken := netif.Route{Table: 100, Dst: pfx6, Metric: 20, NextHops: []netip.Addr{netip.MustParseAddr("2001:db8::99")}}
	stale := netif.Route{Table: 254, Dst: netip.MustParsePrefix("192.0.2.128/25"), Metric: 20, NextHops: []netip.Addr{nhB}}
	k.put(foreignProto, static)
	k.put(foreignProto, taken)
	k.put(netif.RTProtoHostlb, stale) // left by a crashed run
	cfg := Import{Enabled: true, Table: 100, Metric: 20}
	route := func(c Import, p netip.Prefix, hops ...netip.Addr) netif.Route {
		return netif.Route{Table: c.Table, Dst: p, Metric: c.Metric, NextHops: hops}
	}
	foreign := []string{"proto 4: " + static.String(), "proto 4: " + taken.String()}
	ours := func(rs ...netif.Route) []string {
		out := slices.Clone(foreign)
		for _, r := range rs {
			out = append(out, fmt.Sprintf("proto %d: %s", netif.RTProtoHostlb, r))
		}
		return out
	}
	check := func(step string, want []string) {
		t.Helper()
		got := k.all()
		slices.Sort(want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", step, diff)
		}
	}

	// Add: the stale route goes, the new one comes; the IPv6 prefix's key
	// is another protocol's, so it is reported and left alone.
	err := im.apply([]netif.Route{route(cfg, pfx4, nhA), route(cfg, pfx6, nhA6)})
	if !errors.Is(err, syscall.EEXIST) {
		t.Errorf("apply onto another protocol's key: %v, want EEXIST", err)
	}
	check("add", ours(route(cfg, pfx4, nhA)))
	if n := im.Installed(); n != 1 {
		t.Errorf("Installed() = %d, want 1", n)
	}
	// Replace: a second peer makes it multipath.
	if err := im.apply([]netif.Route{route(cfg, pfx4, nhB, nhA)}); err != nil {
		t.Fatal(err)
	}
	check("multipath", ours(route(cfg, pfx4, nhA, nhB)))
	// A table and metric change moves it.
	moved := Import{Enabled: true, Table: 200, Metric: 5}
	if err := im.apply([]netif.Route{route(moved, pfx4, nhA, nhB)}); err != nil {
		t.Fatal(err)
	}
	check("moved", ours(route(moved, pfx4, nhA, nhB)))
	// Withdraw.
	if err := im.apply(nil); err != nil {
		t.Fatal(err)
	}
	check("withdrawn", ours())
	// Exit cleanup removes every route of ours, in any table.
	k.put(netif.RTProtoHostlb, stale)
	if err := im.clear(); err != nil {
		t.Fatal(err)
	}
	check("clear", ours())
	if n := im.Installed(); n != 0 {
		t.Errorf("Installed() = %d after clear, want 0", n)
	}
	// A failing kernel is an error, nothing else.
	k.mu.Lock()
	k.fail = errors.New("netlink: no buffer space")
	k.mu.Unlock()
	if err := im.apply(nil); err == nil {
		t.Error("apply with a failing List succeeded")
	}
}

// newPeerRouter is a plain GoBGP (iBGP, so next hops travel unchanged)
// listening on listen, accepting our speaker from 127.0.0.1.
func newPeerRouter(t *testing.T, listen netip.Addr, id string) *router {
	t.Helper()
	port := freePort(t)
	srv := server.NewBgpServer(server.LoggerOption(testLogger(t).With("test", "router "+listen.String()), nil))
	go srv.Serve()
	t.Cleanup(srv.Stop)
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: 64512, RouterId: id, ListenPort: int32(port), ListenAddresses: []string{listen.String()},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: lo4.String(), PeerAsn: 64512},
		Transport: &api.Transport{PassiveMode: true},
		AfiSafis:  []*api.AfiSafi{afiSafi(bgp.AFI_IP, false), afiSafi(bgp.AFI_IP6, false)},
	}}); err != nil {
		t.Fatal(err)
	}
	return &router{t: t, srv: srv, port: port}
}

// originate makes r send p via nh (withdraw: withdraw it).
func (r *router) originate(p netip.Prefix, nh netip.Addr, withdraw bool) {
	r.t.Helper()
	nlri, err := bgp.NewIPAddrPrefix(p)
	if err != nil {
		r.t.Fatal(err)
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0)}
	fam := bgp.RF_IPv4_UC
	if p.Addr().Is4() {
		a, err := bgp.NewPathAttributeNextHop(nh)
		if err != nil {
			r.t.Fatal(err)
		}
		attrs = append(attrs, a)
	} else {
		fam = bgp.RF_IPv6_UC
		a, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, nh)
		if err != nil {
			r.t.Fatal(err)
		}
		attrs = append(attrs, a)
	}
	path := &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs, Withdrawal: withdraw}
	if withdraw {
		err = r.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{path}})
	} else {
		_, err = r.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}})
	}
	if err != nil {
		r.t.Fatal(err)
	}
}

// Our speaker with import on, two routers offering one prefix: the kernel
// gets one multipath route, the better router alone after the other
// withdraws, nothing after the last one's session goes down; a foreign
// route is never touched, and Close removes every route of ours. Nothing
// learned is advertised to the other router.
func TestSpeakerImportsLearnedRoutes(t *testing.T) {
	ra := newPeerRouter(t, lo4, "192.0.2.201")
	rb := newPeerRouter(t, netip.MustParseAddr("127.0.0.2"), "192.0.2.202")
	k := newFakeKernel(t)
	foreign := netif.Route{Table: 100, Dst: netip.MustParsePrefix("198.51.100.0/24"), Metric: 20, NextHops: []netip.Addr{nhA}}
	k.put(foreignProto, foreign)
	s := New(Options{Log: testLogger(t).With("test", "ours"), Routes: k, ImportResync: time.Hour})
	defer s.Close()
	ctx := context.Background()
	cfg := Config{
		Global: Global{ASN: 64512, RouterID: netip.MustParseAddr("192.0.2.10"), NextHop4: netip.MustParseAddr("192.0.2.10")},
		Peers: []Peer{
			{Address: lo4, ASN: 64512, Port: ra.port, HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second},
			{Address: netip.MustParseAddr("127.0.0.2"), ASN: 64512, Port: rb.port, SourceAddress: lo4,
				HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second},
		},
		Import: Import{Enabled: true, Table: 100, Metric: 20},
	}
	if err := s.Sync(ctx, cfg, nil); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, 2)
	line := func(r netif.Route) string { return fmt.Sprintf("proto %d: %s", netif.RTProtoHostlb, r) }
	fl := fmt.Sprintf("proto %d: %s", foreignProto, foreign)
	imported := func(p netip.Prefix, hops ...netip.Addr) string {
		return line(netif.Route{Table: 100, Dst: p, Metric: 20, NextHops: hops})
	}

	ra.originate(pfx4, nhA, false)
	k.waitAll(t, 10*time.Second, fl, imported(pfx4, nhA))
	rb.originate(pfx4, nhB, false)
	ra.originate(pfx6, nhA6, false)
	k.waitAll(t, 10*time.Second, fl, imported(pfx4, nhA, nhB), imported(pfx6, nhA6))
	if st := s.Status(); st.Imported != 2 {
		t.Errorf("Status().Imported = %d, want 2", st.Imported)
	}
	// Nothing learned goes to the other router (no transit).
	rb.waitAdjIn(2*time.Second, lo4)

	// Withdraw.
	ra.originate(pfx4, nhA, true)
	k.waitAll(t, 10*time.Second, fl, imported(pfx4, nhB), imported(pfx6, nhA6))
	// Someone deletes our route: the watcher's event brings it back.
	k.mu.Lock()
	delete(k.routes, netif.RouteKey{Table: 100, Dst: pfx6, Metric: 20})
	k.mu.Unlock()
	k.put(foreignProto, foreign) // an event, as the kernel would send
	k.waitAll(t, 10*time.Second, fl, imported(pfx4, nhB), imported(pfx6, nhA6))
	// Peer down.
	ra.srv.Stop()
	k.waitAll(t, 10*time.Second, fl, imported(pfx4, nhB))
	// Import off at a reload removes what it installed.
	off := cfg
	off.Import.Enabled = false
	if err := s.Sync(ctx, off, nil); err != nil {
		t.Fatal(err)
	}
	k.waitAll(t, 10*time.Second, fl)
	if err := s.Sync(ctx, cfg, nil); err != nil {
		t.Fatal(err)
	}
	k.waitAll(t, 10*time.Second, fl, imported(pfx4, nhB))
	// Exit.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := k.all(); !slices.Equal(got, []string{fl}) {
		t.Errorf("after Close: %v, want only %s", got, fl)
	}
}

func TestSpeakerWithoutRouteTableRefusesImport(t *testing.T) {
	s := New(Options{Log: testLogger(t)})
	defer s.Close()
	cfg := testConfig(freePort(t))
	cfg.Import = Import{Enabled: true, Table: 254, Metric: 20}
	if err := s.Sync(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "route import") {
		t.Fatalf("Sync: %v, want a route import error", err)
	}
}
