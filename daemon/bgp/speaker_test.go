package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"go.uber.org/goleak"
)

// GoBGP v4.8.0 sometimes leaves one peer's outgoing InfiniteChannel
// pump behind after Stop (a peer whose FSM handler ends before its
// cleanup, fsm.go): GoBGP's goroutine, not the speaker's, and bounded by
// the peers ever configured.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/eapache/channels.(*InfiniteChannel).infiniteBuffer"))
}

// testLogger logs to the test's output at warn, or at the level in
// HOSTLB_TEST_LOG.
func testLogger(t testing.TB) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("HOSTLB_TEST_LOG"))); err != nil {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}

// router is a plain GoBGP server playing the upstream router: it listens
// on 127.0.0.1 and ::1 at one port and accepts our speaker from both.
type router struct {
	t    *testing.T
	srv  *server.BgpServer
	port uint16
}

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
)

// freePort returns a TCP port free on both loopback addresses now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		l4, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l4.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port))
		l4.Close()
		if err == nil {
			l6.Close()
			return uint16(port)
		}
	}
	t.Fatal("no TCP port free on both 127.0.0.1 and ::1")
	return 0
}

func newRouter(t *testing.T, asn uint32) *router {
	t.Helper()
	port := freePort(t)
	srv := server.NewBgpServer(server.LoggerOption(testLogger(t).With("test", "router"), nil))
	go srv.Serve()
	t.Cleanup(srv.Stop)
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: asn, RouterId: "192.0.2.254", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1", "::1"},
	}}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{lo4, lo6} {
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: a.String(), PeerAsn: 64512},
			Transport: &api.Transport{PassiveMode: true},
			// A deleted and re-added peer of ours may come back at once.
			Timers:   &api.Timers{Config: &api.TimersConfig{IdleHoldTimeAfterReset: 1}},
			AfiSafis: []*api.AfiSafi{afiSafi(bgp.AFI_IP, false), afiSafi(bgp.AFI_IP6, false)},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	return &router{t: t, srv: srv, port: port}
}

// received is one path the router holds from one of our sessions.
type received struct {
	prefix      string
	nextHop     string
	communities []uint32
	large       []LargeCommunity
	localPref   uint32
}

func (r received) String() string {
	return fmt.Sprintf("%s via %s comm %v large %v pref %d", r.prefix, r.nextHop, r.communities, r.large, r.localPref)
}

// adjIn lists what the router holds from session peer, both families,
// sorted.
func (r *router) adjIn(peer netip.Addr) []string {
	var out []string
	for _, fam := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		err := r.srv.ListPath(apiutil.ListPathRequest{
			TableType: api.TableType_TABLE_TYPE_ADJ_IN, Name: peer.String(), Family: fam,
		}, func(prefix bgp.NLRI, paths []*apiutil.Path) {
			for _, p := range paths {
				out = append(out, pathOf(prefix, p).String())
			}
		})
		if err != nil {
			return []string{"error: " + err.Error()}
		}
	}
	sort.Strings(out)
	return out
}

func pathOf(prefix bgp.NLRI, p *apiutil.Path) received {
	rc := received{prefix: prefix.String()}
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			rc.nextHop = a.Value.String()
		case *bgp.PathAttributeMpReachNLRI:
			rc.nextHop = a.Nexthop.String()
		case *bgp.PathAttributeCommunities:
			rc.communities = a.Value
		case *bgp.PathAttributeLargeCommunities:
			for _, v := range a.Values {
				rc.large = append(rc.large, LargeCommunity{v.ASN, v.LocalData1, v.LocalData2})
			}
		case *bgp.PathAttributeLocalPref:
			rc.localPref = a.Value
		}
	}
	return rc
}

// waitFor polls cond until it returns "" or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, within, msg)
		}
		<-tick.C
	}
}

func (r *router) waitAdjIn(within time.Duration, peer netip.Addr, want ...string) {
	r.t.Helper()
	slices.Sort(want)
	waitFor(r.t, within, "router's paths from "+peer.String(), func() string {
		if got := r.adjIn(peer); !slices.Equal(got, want) {
			return fmt.Sprintf("have\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
		return ""
	})
}

func testConfig(port uint16) Config {
	peer := func(a netip.Addr) Peer {
		return Peer{Address: a, ASN: 64512, Port: port, HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second}
	}
	return Config{
		Global: Global{
			ASN: 64512, RouterID: netip.MustParseAddr("192.0.2.1"),
			NextHop4: netip.MustParseAddr("192.0.2.10"), NextHop6: netip.MustParseAddr("2001:db8::10"),
		},
		Peers: []Peer{peer(lo4), peer(lo6)},
	}
}

func waitEstablished(t *testing.T, s *Speaker, n int) {
	t.Helper()
	waitFor(t, 20*time.Second, "sessions established", func() string {
		if st := s.Status(); st.Up() != n {
			return fmt.Sprintf("%+v", st.Peers)
		}
		return ""
	})
}

// Our speaker and a plain GoBGP (iBGP, so LOCAL_PREF travels) exchange
// IPv4 and IPv6 paths on an IPv4 and an IPv6 session; both families ride
// on both sessions, each path with the node's own address of its family
// as next hop.
func TestSpeakerAdvertisesToAPlainPeer(t *testing.T) {
	r := newRouter(t, 64512)
	s := New(Options{Log: testLogger(t).With("test", "ours")})
	defer s.Close()
	ctx := context.Background()
	cfg := testConfig(r.port)
	web := Advertisement{
		Prefix: netip.MustParsePrefix("198.51.100.7/32"), VIP: "web",
		Communities:      []uint32{Community(64512, 100), NoExport},
		LargeCommunities: []LargeCommunity{{64512, 1, 2}},
		LocalPref:        200,
	}
	web6 := Advertisement{
		Prefix: netip.MustParsePrefix("2001:db8::7/128"), VIP: "web",
		Communities:      []uint32{Community(64512, 600), NoAdvertise},
		LargeCommunities: []LargeCommunity{{64512, 6, 6}},
		LocalPref:        300,
	}
	api4 := Advertisement{Prefix: netip.MustParsePrefix("198.51.100.8/32"), VIP: "api"}
	if err := s.Sync(ctx, cfg, []Advertisement{web, web6, api4}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, 2)

	const (
		webOn4  = "198.51.100.7/32 via 127.0.0.1 comm [4227858532 4294967041] large [{64512 1 2}] pref 200"
		webOn6  = "198.51.100.7/32 via 192.0.2.10 comm [4227858532 4294967041] large [{64512 1 2}] pref 200"
		web6On4 = "2001:db8::7/128 via 2001:db8::10 comm [4227859032 4294967042] large [{64512 6 6}] pref 300"
		web6On6 = "2001:db8::7/128 via ::1 comm [4227859032 4294967042] large [{64512 6 6}] pref 300"
		apiOn4  = "198.51.100.8/32 via 127.0.0.1 comm [] large [] pref 100"
		apiOn6  = "198.51.100.8/32 via 192.0.2.10 comm [] large [] pref 100"
	)
	r.waitAdjIn(10*time.Second, lo4, webOn4, web6On4, apiOn4)
	r.waitAdjIn(10*time.Second, lo6, webOn6, web6On6, apiOn6)
	if st := s.Status(); st.Advertised != 3 {
		t.Errorf("Status().Advertised = %d, want 3", st.Advertised)
	}

	// A route the router sends is received, but kept out of our RIB: no
	// transit, nothing re-advertised.
	nlri, _ := bgp.NewIPAddrPrefix(netip.MustParsePrefix("10.9.9.0/24"))
	nh, _ := bgp.NewPathAttributeNextHop(netip.MustParseAddr("192.0.2.254"))
	if _, err := r.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{{Family: bgp.RF_IPv4_UC, Nlri: nlri,
		Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), nh}}}}); err != nil {
		t.Fatal(err)
	}
	ours := &router{t: t, srv: s.srv}
	waitFor(t, 10*time.Second, "our speaker receives the router's route", func() string {
		if got := ours.adjIn(lo4); !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, "10.9.9.0/24") }) {
			return fmt.Sprint(got)
		}
		return ""
	})
	if err := s.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: bgp.RF_IPv4_UC},
		func(prefix bgp.NLRI, _ []*apiutil.Path) {
			if prefix.String() == "10.9.9.0/24" {
				t.Error("the router's route entered our RIB")
			}
		}); err != nil {
		t.Fatal(err)
	}

	// A changed want: only the difference goes out. api4 is withdrawn,
	// web's communities change, web6 is untouched (sent once).
	sentBefore, err := sentUpdates(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	web.Communities = []uint32{Community(64512, 101)}
	if err := s.Sync(ctx, cfg, []Advertisement{web, web6}); err != nil {
		t.Fatal(err)
	}
	const (
		webOn4b = "198.51.100.7/32 via 127.0.0.1 comm [4227858533] large [{64512 1 2}] pref 200"
		webOn6b = "198.51.100.7/32 via 192.0.2.10 comm [4227858533] large [{64512 1 2}] pref 200"
	)
	r.waitAdjIn(10*time.Second, lo4, webOn4b, web6On4)
	r.waitAdjIn(10*time.Second, lo6, webOn6b, web6On6)
	// The same want again sends nothing at all.
	mid, err := sentUpdates(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx, cfg, []Advertisement{web6, web}); err != nil {
		t.Fatal(err)
	}
	after, err := sentUpdates(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{lo4, lo6} {
		// One withdrawal and one replacement: at most two UPDATEs, never
		// a re-send of web6.
		if d := mid[a] - sentBefore[a]; d < 1 || d > 2 {
			t.Errorf("session %s: the diff took %d UPDATEs, want 1 or 2", a, d)
		}
		if after[a] != mid[a] {
			t.Errorf("session %s: an unchanged Sync sent %d UPDATEs", a, after[a]-mid[a])
		}
	}

	// Drain withdraws everything and returns once it was sent.
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Drain(dctx); err != nil {
		t.Fatal(err)
	}
	r.waitAdjIn(5*time.Second, lo4)
	r.waitAdjIn(5*time.Second, lo6)
	if st := s.Status(); st.Advertised != 0 || st.Up() != 2 {
		t.Errorf("after Drain: %+v, want nothing advertised and both sessions up", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Sync(ctx, cfg, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v, want ErrClosed", err)
	}
}

// A reload that changes one peer restarts that session only; the other
// keeps its session (same uptime, established once).
func TestSpeakerPeerChangeLeavesOtherSessionsUp(t *testing.T) {
	r := newRouter(t, 64512)
	s := New(Options{Log: testLogger(t).With("test", "ours")})
	defer s.Close()
	ctx := context.Background()
	cfg := testConfig(r.port)
	want := []Advertisement{{Prefix: netip.MustParsePrefix("198.51.100.7/32")}}
	if err := s.Sync(ctx, cfg, want); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, 2)
	before := s.Status().Peers
	r.waitAdjIn(10*time.Second, lo4, "198.51.100.7/32 via 127.0.0.1 comm [] large [] pref 100")

	// BFD settings alone change without a reset.
	cfg.Peers[0].BFD = BFD{Enabled: true, MinRx: 300 * time.Millisecond, MinTx: 300 * time.Millisecond, Multiplier: 3}
	cfg.Peers[0].BFD.Enabled = false // off again: the state must equal; only the struct differs
	cfg.Peers[0].BFD.MinRx = 200 * time.Millisecond
	if err := s.Sync(ctx, cfg, want); err != nil {
		t.Fatal(err)
	}
	// The IPv6 peer's hold time changes: its session restarts.
	cfg.Peers[1].HoldTime = 12 * time.Second
	cfg.Peers[1].KeepaliveTime = 4 * time.Second
	if err := s.Sync(ctx, cfg, want); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the changed session back up", func() string {
		ps := s.Status().Peers
		if len(ps) != 2 || ps[1].Established != 2 || ps[1].State != "established" {
			return fmt.Sprintf("%+v", ps)
		}
		return ""
	})
	after := s.Status().Peers
	if after[0].Established != 1 || !after[0].Since.Equal(before[0].Since) || after[0].State != "established" {
		t.Errorf("the untouched session was reset: before %+v, after %+v", before[0], after[0])
	}
	r.waitAdjIn(10*time.Second, lo6, "198.51.100.7/32 via 192.0.2.10 comm [] large [] pref 100")

	// A removed peer's session ends; the other stays.
	cfg.Peers = cfg.Peers[:1]
	if err := s.Sync(ctx, cfg, want); err != nil {
		t.Fatal(err)
	}
	if ps := s.Status().Peers; len(ps) != 1 || ps[0].Address != lo4 || ps[0].Established != 1 {
		t.Errorf("after removing ::1: %+v", ps)
	}
	r.waitAdjIn(10*time.Second, lo6)
}

// Duplicate peer addresses are refused (GoBGP keys peers by address), the
// rest is applied.
func TestSpeakerRefusesDuplicatePeers(t *testing.T) {
	s := New(Options{Log: testLogger(t)})
	defer s.Close()
	cfg := testConfig(freePort(t))
	cfg.Peers = append(cfg.Peers, Peer{Address: lo4, ASN: 64500, Port: 1179})
	err := s.Sync(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "configured twice") {
		t.Fatalf("Sync: %v, want a duplicate-peer error", err)
	}
	if n := len(s.Status().Peers); n != 2 {
		t.Errorf("%d peers applied, want 2", n)
	}
}

func TestSpeakerNeedsASNAndRouterID(t *testing.T) {
	s := New(Options{Log: testLogger(t)})
	defer s.Close()
	if err := s.Sync(context.Background(), Config{Global: Global{ASN: 64512}}, nil); err == nil {
		t.Fatal("Sync without a router ID started")
	}
}

func TestAPIPeer(t *testing.T) {
	p := Peer{Address: lo4, ASN: 64500, HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second,
		EBGPMultihop: 2, Password: "s3cret", GracefulRestart: true, SourceAddress: netip.MustParseAddr("127.0.0.2"),
		BFD: BFD{Enabled: true, MinRx: 300 * time.Millisecond, MinTx: 200 * time.Millisecond, Multiplier: 3}}
	a := p.apiPeer(Global{ListenPort: 179})
	switch {
	case a.Transport.RemotePort != 179 || !a.Transport.PassiveMode || a.Transport.LocalAddress != "127.0.0.2":
		t.Errorf("transport %+v", a.Transport)
	case a.Timers.Config.HoldTime != 9 || a.Timers.Config.KeepaliveInterval != 3 ||
		a.Timers.Config.IdleHoldTimeAfterReset != idleHoldAfterReset:
		t.Errorf("timers %+v", a.Timers.Config)
	case !a.EbgpMultihop.Enabled || a.EbgpMultihop.MultihopTtl != 2:
		t.Errorf("multihop %+v", a.EbgpMultihop)
	case a.Conf.AuthPassword != "s3cret" || a.Conf.PeerAsn != 64500:
		t.Errorf("conf %+v", a.Conf)
	case !a.GracefulRestart.Enabled || len(a.AfiSafis) != 2 || a.AfiSafis[1].MpGracefulRestart == nil:
		t.Errorf("graceful restart %+v / %+v", a.GracefulRestart, a.AfiSafis)
	case a.Bfd.RequiredMinimumReceive != 300000 || a.Bfd.DesiredMinimumTxInterval != 200000 || a.Bfd.DetectionMultiplier != 3:
		t.Errorf("BFD %+v (microseconds)", a.Bfd)
	}
	if a := p.apiPeer(Global{}); a.Transport.PassiveMode || a.Conf.LocalAsn != 0 {
		t.Errorf("without a listen port and a local AS: passive %v, local AS %d", a.Transport.PassiveMode, a.Conf.LocalAsn)
	}
	p.LocalASN = 64513
	if a := p.apiPeer(Global{ASN: 64512}); a.Conf.LocalAsn != 64513 {
		t.Errorf("local AS %d, want the peer's 64513", a.Conf.LocalAsn)
	}
}

// A peer with its own local AS (a MetalLoadBalancerBGPPeer's myASN) is
// spoken to with that AS: the router, which expects AS 64512 from us,
// establishes the session although the speaker's own AS is another.
func TestSpeakerPeerLocalASN(t *testing.T) {
	r := newRouter(t, 64512)
	s := New(Options{Log: testLogger(t)})
	defer s.Close()
	cfg := testConfig(r.port)
	cfg.Global.ASN = 64999
	for i := range cfg.Peers {
		cfg.Peers[i].LocalASN = 64512
	}
	if err := s.Sync(context.Background(), cfg, nil); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, 2)
}

// sentUpdates returns the sent-UPDATE counter of every established peer.
func sentUpdates(ctx context.Context, s *Speaker) (map[netip.Addr]uint64, error) {
	out := map[netip.Addr]uint64{}
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		st := p.GetState()
		if st.GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED {
			return
		}
		if a, err := netip.ParseAddr(st.GetNeighborAddress()); err == nil {
			out[a] = st.GetMessages().GetSent().GetUpdate()
		}
	})
	return out, err
}

// A path with Peers goes to those sessions alone, and follows a change of
// its peers; the mark that scopes it never reaches a router.
func TestSpeakerScopesPathsToTheirPeers(t *testing.T) {
	r := newRouter(t, 64512)
	s := New(Options{Log: testLogger(t).With("test", "ours")})
	defer s.Close()
	ctx := context.Background()
	cfg := testConfig(r.port)
	all := Advertisement{Prefix: netip.MustParsePrefix("198.51.100.8/32"), VIP: "all"}
	private := Advertisement{Prefix: netip.MustParsePrefix("198.51.100.9/32"), VIP: "private",
		Communities: []uint32{NoExport}, Peers: []netip.Addr{lo4}}
	if err := s.Sync(ctx, cfg, []Advertisement{all, private}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, 2)
	const (
		allOn4     = "198.51.100.8/32 via 127.0.0.1 comm [] large [] pref 100"
		allOn6     = "198.51.100.8/32 via 192.0.2.10 comm [] large [] pref 100"
		privateOn4 = "198.51.100.9/32 via 127.0.0.1 comm [4294967041] large [] pref 100"
		privateOn6 = "198.51.100.9/32 via 192.0.2.10 comm [4294967041] large [] pref 100"
	)
	r.waitAdjIn(10*time.Second, lo4, allOn4, privateOn4)
	r.waitAdjIn(10*time.Second, lo6, allOn6)

	// Its Configuration's peers change: it leaves one session for the
	// other, without resetting either.
	ups := s.Status().Peers[0].Established
	private.Peers = []netip.Addr{lo6}
	if err := s.Sync(ctx, cfg, []Advertisement{all, private}); err != nil {
		t.Fatal(err)
	}
	r.waitAdjIn(10*time.Second, lo4, allOn4)
	r.waitAdjIn(10*time.Second, lo6, allOn6, privateOn6)

	// To every peer again; then to none of the sessions.
	private.Peers = nil
	if err := s.Sync(ctx, cfg, []Advertisement{all, private}); err != nil {
		t.Fatal(err)
	}
	r.waitAdjIn(10*time.Second, lo4, allOn4, privateOn4)
	r.waitAdjIn(10*time.Second, lo6, allOn6, privateOn6)
	private.Peers = []netip.Addr{netip.MustParseAddr("192.0.2.99")}
	if err := s.Sync(ctx, cfg, []Advertisement{all, private}); err != nil {
		t.Fatal(err)
	}
	r.waitAdjIn(10*time.Second, lo4, allOn4)
	r.waitAdjIn(10*time.Second, lo6, allOn6)
	if got := s.Status().Peers[0].Established; got != ups {
		t.Errorf("session came up %d times, want %d: a scope change reset it", got, ups)
	}
}

// When a session's BFD goes down, GoBGP resets it the way this test does
// (bfd_peer.go resetPeer: ResetPeer, not soft, "BFD is down"): a
// Cease/Administrative Reset, after which GoBGP keeps the session Idle for
// IdleHoldTimeAfterReset, 30 s by default, and the speaker, which only
// connects out, is the one to reconnect. The session must be back and the
// routes with it within seconds (idleHoldAfterReset).
func TestSpeakerReconnectsSoonAfterItsOwnReset(t *testing.T) {
	r := newRouter(t, 64512)
	s := New(Options{Log: testLogger(t).With("test", "ours")})
	defer s.Close()
	ctx := context.Background()
	cfg := testConfig(r.port)
	cfg.Peers = cfg.Peers[:1]
	want := []Advertisement{{Prefix: netip.MustParsePrefix("198.51.100.7/32")}}
	const path = "198.51.100.7/32 via 127.0.0.1 comm [] large [] pref 100"
	if err := s.Sync(ctx, cfg, want); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, 1)
	r.waitAdjIn(10*time.Second, lo4, path)

	start := time.Now()
	if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: lo4.String(), Communication: "BFD is down"}); err != nil {
		t.Fatal(err)
	}
	// The router withdraws the session's paths when it goes down, and
	// has them again once it is back.
	r.waitAdjIn(5*time.Second, lo4)
	// Measured about 6 s, most of it the plain GoBGP router's own fixed
	// 5 s Idle after the NOTIFICATION; without the short hold the speaker
	// would stay Idle for 30 s.
	waitFor(t, 20*time.Second, "the session back after the speaker reset it", func() string {
		if ps := s.Status().Peers; len(ps) != 1 || ps[0].Established != 2 || ps[0].State != "established" {
			return fmt.Sprintf("%+v", ps)
		}
		return ""
	})
	r.waitAdjIn(5*time.Second, lo4, path)
	t.Logf("session and path back %v after the reset", time.Since(start).Round(time.Millisecond))
}
