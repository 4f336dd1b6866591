package bgp

import (
	"cmp"
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
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/hostlb/hostlb/netif"
)

// Import is [bgp.import]: routes learned from peers go into kernel table
// Table with priority Metric, under hostlb's own protocol
// (netif.RTProtoHostlb).
type Import struct {
	Enabled       bool
	Table, Metric int
}

// KernelRoutes is the kernel side of route import: the routes of hostlb's
// own protocol, in every table (*netif.RouteTable; a fake in tests).
// Methods block on netlink only.
type KernelRoutes interface {
	// List returns every route of hostlb's protocol, merged per key; the
	// caller owns the result.
	List() ([]netif.Route, error)
	// Add installs a route whose key no route of any protocol holds.
	Add(r netif.Route) error
	// Replace changes the next hops of our route of r's key.
	Replace(r netif.Route) error
	// Delete removes our route of r's key; one already gone is no error.
	Delete(r netif.Route) error
	// Watch calls changed after each change to a route of our protocol
	// and after each (re)subscription (a netlink overrun), until ctx is
	// done. changed must not block.
	Watch(ctx context.Context, changed func()) error
}

// defaultImportResync is how often the importer compares the kernel with
// what it wants even without an event: IPv4 routes the kernel flushes
// with an address or a link send no netlink event.
const defaultImportResync = 30 * time.Second

// importer keeps the kernel's routes of hostlb's protocol equal to the
// best paths learned from peers (selectRoutes), or to none while import
// is off. Paths are read from each peer's Adj-RIB-In, which GoBGP fills
// before the global import policy rejects them (setImportPolicy): they
// never enter the RIB, so nothing learned is advertised to another peer.
// It is level-triggered: every pass lists the Adj-RIBs-In and the kernel
// and applies the difference; GoBGP's UPDATE and peer events, kernel route
// events, a config change and a periodic resync only ask for a pass.
type importer struct {
	log    *slog.Logger
	k      KernelRoutes
	resync time.Duration
	kick   chan struct{} // capacity 1: passes coalesce

	mu        sync.Mutex // guards cfg and installed
	cfg       Import
	installed int // routes in the kernel after the last pass

	lastErr string // the last pass's error, logged once; run's goroutine only
}

func newImporter(log *slog.Logger, k KernelRoutes, resync time.Duration) *importer {
	if resync <= 0 {
		resync = defaultImportResync
	}
	return &importer{log: log, k: k, resync: resync, kick: make(chan struct{}, 1)}
}

// trigger asks for a pass; it never blocks.
func (im *importer) trigger() {
	select {
	case im.kick <- struct{}{}:
	default:
	}
}

// setConfig records [bgp.import] and asks for a pass when it changed.
func (im *importer) setConfig(c Import) {
	im.mu.Lock()
	changed := c != im.cfg
	im.cfg = c
	im.mu.Unlock()
	if changed {
		im.trigger()
	}
}

func (im *importer) config() Import {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.cfg
}

// Installed returns how many routes the last pass left in the kernel.
func (im *importer) Installed() int {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.installed
}

// run makes passes until ctx is done: on trigger, every resync, and after
// a failed pass with backoff (1 s doubling up to resync).
func (im *importer) run(ctx context.Context, srv *server.BgpServer, g Global) {
	const minBackoff = time.Second
	backoff := minBackoff
	t := time.NewTimer(im.resync)
	defer t.Stop()
	im.trigger()
	for {
		select {
		case <-ctx.Done():
			return
		case <-im.kick:
		case <-t.C:
		}
		err := im.pass(ctx, srv, g)
		if ctx.Err() != nil {
			return
		}
		next := im.resync
		if err != nil {
			next = backoff
			backoff = min(2*backoff, im.resync)
		} else {
			backoff = minBackoff
		}
		im.report(err)
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

// report logs a pass's error once per distinct error, and the recovery.
func (im *importer) report(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg == im.lastErr {
		return
	}
	im.lastErr = msg
	if err != nil {
		im.log.Error("route import incomplete; retrying", "err", err)
	} else {
		im.log.Info("route import in sync again")
	}
}

// pass reads what is learned (while import is on) and applies it.
func (im *importer) pass(ctx context.Context, srv *server.BgpServer, g Global) error {
	cfg := im.config()
	var want []netif.Route
	if cfg.Enabled {
		ls, err := adjRibsIn(ctx, srv, g)
		if err != nil {
			return err
		}
		want = selectRoutes(ls, cfg)
	}
	return im.apply(want)
}

// clear removes every route of hostlb's protocol (on exit).
func (im *importer) clear() error { return im.apply(nil) }

// apply makes the kernel's routes of our protocol exactly want: routes of
// other keys (another table or metric after a reload, left by a crashed
// run) are deleted; a key another protocol holds is reported, never taken.
func (im *importer) apply(want []netif.Route) error {
	have, err := im.k.List()
	if err != nil {
		return fmt.Errorf("list imported routes: %w", err)
	}
	haveBy := make(map[netif.RouteKey]netif.Route, len(have))
	for _, r := range have {
		haveBy[r.Key()] = r
	}
	wantBy := make(map[netif.RouteKey]bool, len(want))
	var errs []error
	n := len(have)
	for _, r := range want {
		r = r.Normalize()
		wantBy[r.Key()] = true
		old, ok := haveBy[r.Key()]
		switch {
		case ok && old.Equal(r):
			continue
		case ok:
			if err := im.k.Replace(r); err != nil {
				errs = append(errs, err)
				continue
			}
			im.log.Info("imported route changed", "prefix", r.Dst, "via", r.NextHops, "was", old.NextHops,
				"table", r.Table, "metric", r.Metric)
		default:
			if err := im.k.Add(r); err != nil {
				errs = append(errs, err)
				continue
			}
			n++
			im.log.Info("route imported", "prefix", r.Dst, "via", r.NextHops, "table", r.Table, "metric", r.Metric)
		}
	}
	for _, r := range have {
		if wantBy[r.Key()] {
			continue
		}
		if err := im.k.Delete(r); err != nil {
			errs = append(errs, err)
			continue
		}
		n--
		im.log.Info("imported route removed", "prefix", r.Dst, "via", r.NextHops, "table", r.Table, "metric", r.Metric)
	}
	im.mu.Lock()
	im.installed = n
	im.mu.Unlock()
	return errors.Join(errs...)
}

// learned is one path a peer sent, reduced to what route selection needs.
type learned struct {
	Prefix    netip.Prefix
	Peer      netip.Addr
	NextHop   netip.Addr
	LocalPref uint32 // 100 when absent, and for eBGP paths (RFC 4271 §5.1.5)
	ASPathLen int    // an AS_SET counts 1, confederation segments 0 (RFC 4271 §9.1.2.2)
	Origin    uint8
	MED       uint32
	EBGP      bool
}

// adjRibsIn lists the usable paths of every peer's Adj-RIB-In, both
// families. GoBGP drops a peer's Adj-RIB-In when its session goes down
// (and keeps it, stale, while a graceful restart runs).
func adjRibsIn(ctx context.Context, srv *server.BgpServer, g Global) ([]learned, error) {
	var peers []netip.Addr
	if err := srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
			peers = append(peers, a)
		}
	}); err != nil {
		return nil, fmt.Errorf("list BGP peers: %w", err)
	}
	slices.SortFunc(peers, netip.Addr.Compare)
	var out []learned
	for _, peer := range peers {
		for _, fam := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
			err := srv.ListPath(apiutil.ListPathRequest{
				TableType: api.TableType_TABLE_TYPE_ADJ_IN, Name: peer.String(), Family: fam,
			}, func(nlri bgp.NLRI, paths []*apiutil.Path) {
				for _, p := range paths {
					if l, ok := learnedFrom(nlri, p, peer, g); ok {
						out = append(out, l)
					}
				}
			})
			if err != nil {
				return nil, fmt.Errorf("list paths from BGP peer %s: %w", peer, err)
			}
		}
	}
	return out, nil
}

// learnedFrom reduces p, received from peer, to a learned path; ok is
// false for a path not to install: withdrawn, with an AS loop or our own
// ORIGINATOR_ID (GoBGP keeps those in the Adj-RIB-In, marked rejected,
// but ListPath does not say so), or without a usable next hop of the
// prefix's family (an IPv6 link-local one alone would need an interface;
// an IPv4 route via IPv6, RFC 8950, is not supported).
func learnedFrom(nlri bgp.NLRI, p *apiutil.Path, peer netip.Addr, g Global) (learned, bool) {
	pfx, ok := nlri.(*bgp.IPAddrPrefix)
	if !ok || p.Withdrawal || p.IsNexthopInvalid {
		return learned{}, false
	}
	l := learned{Prefix: pfx.Prefix.Masked(), Peer: peer, LocalPref: 100, EBGP: p.PeerASN != g.ASN}
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			l.NextHop = a.Value
		case *bgp.PathAttributeMpReachNLRI:
			l.NextHop = a.Nexthop
		case *bgp.PathAttributeLocalPref:
			if !l.EBGP {
				l.LocalPref = a.Value
			}
		case *bgp.PathAttributeOrigin:
			l.Origin = a.Value
		case *bgp.PathAttributeMultiExitDisc:
			l.MED = a.Value
		case *bgp.PathAttributeOriginatorId:
			if a.Value == g.RouterID {
				return learned{}, false
			}
		case *bgp.PathAttributeAsPath:
			for _, seg := range a.Value {
				if slices.Contains(seg.GetAS(), g.ASN) {
					return learned{}, false
				}
				l.ASPathLen += seg.ASLen()
			}
		}
	}
	l.NextHop = l.NextHop.Unmap()
	if !l.NextHop.IsValid() || l.NextHop.IsUnspecified() || l.NextHop.IsLinkLocalUnicast() ||
		l.NextHop.Is4() != l.Prefix.Addr().Is4() || l.NextHop == g.NextHop4 || l.NextHop == g.NextHop6 {
		return learned{}, false
	}
	return l, true
}

// compareLearned orders a before b when a is the better path (RFC 4271
// §9.1.2.2, as far as a host needs it): higher LOCAL_PREF, shorter
// AS_PATH, lower ORIGIN, lower MED (compared whatever the neighbour AS),
// eBGP over iBGP. 0: equally good, so both carry traffic (multipath).
func compareLearned(a, b learned) int {
	return cmp.Or(
		cmp.Compare(b.LocalPref, a.LocalPref),
		cmp.Compare(a.ASPathLen, b.ASPathLen),
		cmp.Compare(a.Origin, b.Origin),
		cmp.Compare(a.MED, b.MED),
		compareBool(b.EBGP, a.EBGP),
	)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// selectRoutes picks, for every prefix, the best learned paths and
// returns one route per prefix in cfg's table with cfg's metric, through
// the next hops of every path as good as the best: several peers offering
// a prefix equally make one multipath route.
func selectRoutes(ls []learned, cfg Import) []netif.Route {
	byPrefix := map[netip.Prefix][]learned{}
	for _, l := range ls {
		byPrefix[l.Prefix] = append(byPrefix[l.Prefix], l)
	}
	out := make([]netif.Route, 0, len(byPrefix))
	for _, p := range slices.SortedFunc(maps.Keys(byPrefix), comparePrefix) {
		cands := byPrefix[p]
		slices.SortStableFunc(cands, compareLearned)
		r := netif.Route{Table: cfg.Table, Dst: p, Metric: cfg.Metric}
		for _, c := range cands {
			if compareLearned(c, cands[0]) != 0 {
				break
			}
			r.NextHops = append(r.NextHops, c.NextHop)
		}
		out = append(out, r.Normalize())
	}
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
