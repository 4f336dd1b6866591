package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Options configure a Speaker.
type Options struct {
	// Log receives the speaker's own lines (sessions up and down, BFD,
	// withdrawals) and, bridged, GoBGP's. Required.
	Log *slog.Logger
	// BFDPoll is how often BFD session states are read for the logs
	// (GoBGP has no BFD event); default 100 ms.
	BFDPoll time.Duration
	// DrainPoll is how often Drain reads the peers' counters; default 20 ms.
	DrainPoll time.Duration
	// Routes is the kernel's table of hostlb's routes, for [bgp.import]
	// (*netif.RouteTable). Nil: import is unavailable, and Sync with
	// Import.Enabled fails. Set, the speaker owns every route of hostlb's
	// protocol while it runs: it removes those it does not want (import
	// off included) and, on Close, all of them (import.go).
	Routes KernelRoutes
	// ImportResync is how often imported routes are compared with the
	// kernel without an event; default 30 s.
	ImportResync time.Duration
}

// Speaker is the BGP output: an embedded GoBGP server. New is inert; the
// server starts on the first Sync and stops on Close. Sync, Drain and
// Close may be called from any goroutine; they run one at a time.
type Speaker struct {
	opts Options
	log  *slog.Logger

	op sync.Mutex // serialises Sync, Drain and Close; guards the fields below
	// srv is the running server (nil before the first Sync and after
	// Close); global the settings it was started with.
	srv     *server.BgpServer
	global  Global
	peers   map[netip.Addr]Peer            // as applied
	paths   map[netip.Prefix]Advertisement // as applied
	closed  bool
	stop    context.CancelFunc // ends the watcher and the BFD poller
	pollers sync.WaitGroup
	// ignored is the last "needs restart" difference logged.
	ignored Global
	// tags number the peer sets of scoped paths; scope is the export
	// policy's per-session tags as applied (scope.go).
	tags    map[string]uint32
	nextTag uint32
	scope   map[netip.Addr][]uint32
	// imp installs learned routes (nil without Options.Routes); it has
	// its own lock.
	imp *importer

	mu    sync.Mutex // guards state and advertised; read by Status
	state map[netip.Addr]*peerState
	// advertised counts the paths applied, for Status.
	advertised int
}

// peerState is what the speaker knows of one session, from GoBGP's peer
// events and BFD states.
type peerState struct {
	asn         uint32
	state       string // "idle", "connect", "active", "opensent", "openconfirm", "established"
	since       time.Time
	established int    // how often the session came up
	lastDown    string // why it last went down
	bfd         string // "", "down", "init", "up", "admin-down"
	bfdDowns    int    // how often bfd went from "up" to another state
	// received and accepted: the peer's Adj-RIB-In (pollReceived).
	received, accepted uint64
	// peer is the peer as applied; bfdApplied the BFD settings GoBGP runs
	// for it now (the zero BFD: off). BFD runs only while the session is
	// established (pollBFD): FRR 8.4's bgpd replaces its BFD session when
	// BGP comes up, and GoBGP resets BGP when the BFD session it was
	// building goes away, even one that never came up — started before
	// BGP, the two flap forever (seen in tests/bgplab).
	peer       Peer
	bfdApplied BFD
}

// New returns an inert Speaker.
func New(opts Options) *Speaker {
	if opts.BFDPoll <= 0 {
		opts.BFDPoll = 100 * time.Millisecond
	}
	if opts.DrainPoll <= 0 {
		opts.DrainPoll = 20 * time.Millisecond
	}
	s := &Speaker{
		opts:  opts,
		log:   opts.Log,
		peers: map[netip.Addr]Peer{},
		paths: map[netip.Prefix]Advertisement{},
		tags:  map[string]uint32{},
		state: map[netip.Addr]*peerState{},
	}
	if opts.Routes != nil {
		s.imp = newImporter(opts.Log.With("topic", "import"), opts.Routes, opts.ImportResync)
	}
	return s
}

// ErrClosed is returned by Sync after Close.
var ErrClosed = errors.New("bgp: speaker closed")

// Sync makes the speaker peer with exactly cfg.Peers and advertise exactly
// want, applying the difference to what the last Sync applied: peers are
// added, removed, or changed (only a peer whose settings changed has its
// session reset, and not even then for BFD settings alone); paths are
// added or withdrawn one by one. The first Sync starts GoBGP with
// cfg.Global; later changes of Global are logged and ignored. It blocks
// only on GoBGP's management loop; an error leaves everything else
// applied, and the next call retries what failed.
func (s *Speaker) Sync(ctx context.Context, cfg Config, want []Advertisement) error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.closed {
		return ErrClosed
	}
	var importErr error
	if s.imp != nil {
		s.imp.setConfig(cfg.Import)
	} else if cfg.Import.Enabled {
		importErr = errors.New("route import: this speaker has no kernel route table")
	}
	if s.srv == nil {
		if err := s.start(ctx, cfg.Global); err != nil {
			return err
		}
	} else if cfg.Global != s.global && cfg.Global != s.ignored {
		s.ignored = cfg.Global
		s.log.Warn("BGP global settings changed; they apply after a restart", "running_asn", s.global.ASN,
			"running_router_id", s.global.RouterID, "running_listen_port", s.global.ListenPort)
	}
	// The scope first: a session added or a path added never meets the
	// rules of the last pass.
	scopeErr := s.syncScope(ctx, cfg.Peers, want)
	return errors.Join(importErr, scopeErr, s.syncPeers(ctx, cfg.Peers), s.syncPaths(ctx, want))
}

// start creates and starts the GoBGP server; on error nothing runs.
func (s *Speaker) start(ctx context.Context, g Global) error {
	if g.ASN == 0 || !g.RouterID.Is4() {
		return fmt.Errorf("start BGP: need an ASN and an IPv4 router ID (have %d, %v)", g.ASN, g.RouterID)
	}
	srv := server.NewBgpServer(server.LoggerOption(newGoBGPLogger(s.log.With("topic", "gobgp")), nil))
	go srv.Serve()
	port := int32(-1)
	if g.ListenPort != 0 {
		port = int32(g.ListenPort)
	}
	fail := func(what string, err error) error {
		srv.Stop()
		return fmt.Errorf("start BGP: %s: %w", what, err)
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: g.ASN, RouterId: g.RouterID.String(), ListenPort: port,
	}}); err != nil {
		return fail(fmt.Sprintf("listen on port %d", g.ListenPort), err)
	}
	// The import policy keeps routes learned from peers out of the RIB:
	// the node is no transit, and no route of one router is re-advertised
	// to another. GoBGP runs its global import policy on locally added
	// paths too, so the default stays accept and only routes from iBGP and
	// eBGP peers are rejected. The export policy: scope.go.
	if err := setPolicies(ctx, srv, g); err != nil {
		return fail("policies", err)
	}
	wctx, stop := context.WithCancel(context.Background())
	cbs := server.WatchEventMessageCallbacks{OnPeerUpdate: s.onPeer}
	opts := []server.WatchOption{server.WatchPeer()}
	if s.imp != nil {
		// Any UPDATE received (before the import policy) or session
		// change asks the importer for a pass (importer).
		cbs.OnPeerUpdate = func(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
			s.onPeer(ev, at)
			s.imp.trigger()
		}
		cbs.OnPathUpdate = func([]*apiutil.Path, time.Time) { s.imp.trigger() }
		opts = append(opts, server.WatchUpdate(false, "", ""))
	}
	if err := srv.WatchEvent(wctx, cbs, opts...); err != nil {
		stop()
		return fail("watch peers", err)
	}
	s.srv, s.global, s.stop = srv, g, stop
	s.pollers.Go(func() { s.pollBFD(wctx, srv, g) })
	if s.imp != nil {
		s.pollers.Go(func() { s.imp.run(wctx, srv, g) })
		s.pollers.Go(func() {
			if err := s.opts.Routes.Watch(wctx, s.imp.trigger); err != nil {
				s.log.Warn("cannot follow the kernel's routes; imported routes are checked every resync only",
					"err", err)
			}
		})
	}
	s.log.Info("BGP speaker started", "asn", g.ASN, "router_id", g.RouterID, "listen_port", g.ListenPort,
		"next_hop4", g.NextHop4, "next_hop6", g.NextHop6)
	return nil
}

// Names of the GoBGP objects the speaker defines.
const (
	policyImport = "hostlb-import"
	policyExport = "hostlb-export"
	setV4Peers   = "hostlb-ipv4-peers"
	setV6Peers   = "hostlb-ipv6-peers"
)

// syncPeers applies the difference between the applied peers and want.
func (s *Speaker) syncPeers(ctx context.Context, want []Peer) error {
	next := make(map[netip.Addr]Peer, len(want))
	var errs []error
	for _, p := range want {
		if _, dup := next[p.Address]; dup {
			errs = append(errs, fmt.Errorf("peer %s: configured twice (GoBGP keys peers by address)", p.Address))
			continue
		}
		next[p.Address] = p
	}
	for _, a := range slices.SortedFunc(maps.Keys(s.peers), netip.Addr.Compare) {
		if _, ok := next[a]; ok {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("remove peer %s: %w", a, err))
			continue
		}
		delete(s.peers, a)
		s.mu.Lock()
		delete(s.state, a)
		s.mu.Unlock()
		s.log.Info("BGP peer removed", "peer", a)
	}
	for _, a := range slices.SortedFunc(maps.Keys(next), netip.Addr.Compare) {
		p := next[a]
		old, had := s.peers[a]
		switch {
		case had && old == p:
			continue
		case had && onlyBFDDiffers(old, p):
			// pollBFD applies the new settings (while established) on
			// its next round; the session is kept.
			s.log.Info("BGP peer's BFD settings changed; session kept", "peer", a, "bfd", p.BFD.Enabled,
				"min_rx", p.BFD.MinRx, "min_tx", p.BFD.MinTx, "multiplier", p.BFD.Multiplier)
		case had:
			// GoBGP would reset the session for most changes anyway; a
			// delete and add does it for all of them the same way.
			if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
				errs = append(errs, fmt.Errorf("change peer %s: remove: %w", a, err))
				continue
			}
			delete(s.peers, a)
			if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: p.withBFD(BFD{}).apiPeer(s.global)}); err != nil {
				errs = append(errs, fmt.Errorf("change peer %s: add: %w", a, err))
				continue
			}
			s.mu.Lock()
			if st := s.state[a]; st != nil {
				st.bfdApplied = BFD{}
			}
			s.mu.Unlock()
			s.log.Info("BGP peer changed; its session restarts", "peer", a, "asn", p.ASN)
		default:
			if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: p.withBFD(BFD{}).apiPeer(s.global)}); err != nil {
				errs = append(errs, fmt.Errorf("add peer %s: %w", a, err))
				continue
			}
			s.log.Info("BGP peer added", "peer", a, "asn", p.ASN, "port", p.Port, "passive", s.global.ListenPort != 0,
				"bfd", p.BFD.Enabled, "md5", p.Password != "", "graceful_restart", p.GracefulRestart)
		}
		s.peers[a] = p
		s.mu.Lock()
		if st := s.state[a]; st != nil {
			st.asn, st.peer = p.ASN, p
		} else {
			s.state[a] = &peerState{asn: p.ASN, state: "idle", since: time.Now(), peer: p}
		}
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

// syncPaths withdraws what is no longer wanted and adds what is new or
// changed (a changed path replaces the old one: same NLRI, same source).
func (s *Speaker) syncPaths(ctx context.Context, want []Advertisement) error {
	next := make(map[netip.Prefix]Advertisement, len(want))
	for _, a := range want {
		a.Prefix = a.Prefix.Masked()
		next[a.Prefix] = a
	}
	var gone []Advertisement
	for p, a := range s.paths {
		if _, ok := next[p]; !ok {
			gone = append(gone, a)
		}
	}
	var errs []error
	if err := s.withdraw(ctx, gone); err != nil {
		errs = append(errs, err)
	}
	var add []*apiutil.Path
	var added []Advertisement
	for _, p := range slices.SortedFunc(maps.Keys(next), netip.Prefix.Compare) {
		a := next[p]
		if old, ok := s.paths[p]; ok && old.same(a) {
			continue
		}
		path, err := a.path(false, s.tagOf(a.Peers))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		add = append(add, path)
		added = append(added, a)
	}
	if len(add) > 0 {
		resps, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: add})
		for i, a := range added {
			switch {
			case err != nil && len(resps) == 0:
				errs = append(errs, fmt.Errorf("advertise %s: %w", a.Prefix, err))
			case i < len(resps) && resps[i].Error != nil:
				errs = append(errs, fmt.Errorf("advertise %s: %w", a.Prefix, resps[i].Error))
			default:
				s.paths[a.Prefix] = a
				s.log.Info("advertising", "vip", a.VIP, "prefix", a.Prefix)
			}
		}
	}
	s.mu.Lock()
	s.advertised = len(s.paths)
	s.mu.Unlock()
	return errors.Join(errs...)
}

// withdraw withdraws gone.
func (s *Speaker) withdraw(ctx context.Context, gone []Advertisement) error {
	if len(gone) == 0 {
		return nil
	}
	slices.SortFunc(gone, func(a, b Advertisement) int { return a.Prefix.Compare(b.Prefix) })
	var (
		paths []*apiutil.Path
		errs  []error
	)
	for _, a := range gone {
		p, err := a.path(true, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		return errors.Join(errs...)
	}
	if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: paths}); err != nil {
		return errors.Join(append(errs, fmt.Errorf("withdraw %d prefixes: %w", len(paths), err))...)
	}
	for _, a := range gone {
		delete(s.paths, a.Prefix)
		s.log.Info("withdrawn", "vip", a.VIP, "prefix", a.Prefix)
	}
	return errors.Join(errs...)
}

// advertisedTo returns, for every established peer, how many paths its
// Adj-RIB-Out still holds: what this node has told it and not withdrawn.
func (s *Speaker) advertisedTo(ctx context.Context) (map[netip.Addr]uint64, error) {
	out := map[netip.Addr]uint64{}
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		st := p.GetState()
		if st.GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED {
			return
		}
		a, err := netip.ParseAddr(st.GetNeighborAddress())
		if err != nil {
			return
		}
		var n uint64
		for _, af := range p.GetAfiSafis() {
			n += af.GetState().GetAdvertised()
		}
		out[a] = n
	})
	if err != nil {
		return nil, fmt.Errorf("list BGP peers: %w", err)
	}
	return out, nil
}

// Drain withdraws every path and waits until no established peer's
// Adj-RIB-Out holds any (GoBGP has sent them the withdrawal), or ctx is
// done. Peers stay configured: the sessions end at Close. A later Sync
// would advertise again.
func (s *Speaker) Drain(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.srv == nil {
		return nil
	}
	start := time.Now()
	n := len(s.paths)
	err := s.withdraw(ctx, slices.Collect(maps.Values(s.paths)))
	s.mu.Lock()
	s.advertised = len(s.paths)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	tick := time.NewTicker(s.opts.DrainPoll)
	defer tick.Stop()
	for {
		left, err := s.advertisedTo(ctx)
		if err != nil {
			return err
		}
		var waiting []string
		for a, c := range left {
			if c > 0 {
				waiting = append(waiting, fmt.Sprintf("%s (%d)", a, c))
			}
		}
		if len(waiting) == 0 {
			s.log.Info("BGP routes withdrawn; no established peer holds any",
				"prefixes", n, "peers", len(left), "took", time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			slices.Sort(waiting)
			return fmt.Errorf("withdrawal not sent to peers %v: %w", waiting, ctx.Err())
		}
	}
}

// Close stops GoBGP (its sessions end with a Cease NOTIFICATION) and every
// goroutine of the speaker; it is idempotent and waits.
func (s *Speaker) Close() error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.srv == nil {
		return nil
	}
	s.srv.Stop()
	s.stop()
	s.pollers.Wait()
	s.srv = nil
	s.log.Info("BGP speaker stopped")
	if s.imp != nil {
		if err := s.imp.clear(); err != nil {
			return fmt.Errorf("remove imported routes: %w", err)
		}
	}
	return nil
}
