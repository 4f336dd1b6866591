package netif

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrL2Closed is returned by L2.Sync after Close.
var ErrL2Closed = errors.New("netif: L2 output closed")

// L2Announcement is one address this node owns in L2 mode, as the
// reconcile loop computed it.
type L2Announcement struct {
	Addr netip.Addr
	// VIP names the owner (a static VIP or "namespace/service"), for logs.
	VIP string
	// Interfaces overrides the [l2] interfaces list for this address
	// (names or "/regex/"); empty means [l2]'s. [l2] exclude still applies.
	Interfaces []string
	// Local makes the node hold the address on hostlb0 (see AddrManager).
	// It is announced only while it is held: answering ARP for an address
	// the node would drop only black-holes its traffic.
	Local bool
	// LocalOnly makes the node only hold the address on hostlb0 (Local
	// must be set too) and answer no ARP/NDP for it: a BGP VIP, whose
	// traffic the routers deliver. It is in neither Status nor Cannot
	// unless the address cannot be held.
	LocalOnly bool
	// Handover marks an address this node keeps answering only until its
	// next owner is seen announcing it (make-before-break). It still
	// answers requests, but sends no more gratuitous ARP/NA: a late burst
	// round from the old owner, after the new owner's, would point clients
	// back at the node that is about to go quiet.
	Handover bool
}

// L2Config is the `[l2]` section (SPEC §4). It may change between Syncs
// (a reload); the new timing applies to later bursts.
type L2Config struct {
	Interfaces         []string // names or "/regex/"; empty: every eligible interface
	Exclude            []string // regular expressions
	GratuitousCount    int      // GARP / unsolicited NA rounds on takeover; 0: none
	GratuitousInterval time.Duration
	RefreshInterval    time.Duration // periodic GARP / NA while owner; 0: off
}

// L2Options configure an L2 output.
type L2Options struct {
	// Log receives "announcing" / "stopped announcing" (info) and burst
	// failures. Default: discard.
	Log *slog.Logger
	// Local holds `local = true` addresses. Nil: such addresses fail Sync
	// and are not announced.
	Local AddrManager
	// ListenARP and ListenNDP open the packet sockets of the responders;
	// defaults ListenARP and ListenNDP. Tests pass fakes.
	ListenARP func(ifi *net.Interface) (PacketConn, error)
	ListenNDP func(ifi *net.Interface) (PacketConn, error)
	// Fence turns on fencing in every responder (fence.go). Nil: off.
	Fence *L2Fence
	// Linger is how long a local address stays held after this node
	// stops announcing it; 0: the default, LocalLinger of the Sync's
	// gratuitous interval; negative: none.
	Linger time.Duration
}

// LocalLinger is how long a local address outlives its announcement by
// default: a client whose neighbour entry was updated less than a second
// (Linux's locktime) before the next owner's first gratuitous ARP ignores
// it and keeps sending to this node until the next one, a gratuitous
// interval later; and a connection in its handshake across the switch
// still completes here. Meanwhile nothing here answers ARP/NDP for it, so
// no new client is sent to this node. At least 1 s, at most 5 s.
func LocalLinger(gratuitousInterval time.Duration) time.Duration {
	return min(max(gratuitousInterval, time.Second)+100*time.Millisecond, 5*time.Second)
}

// L2Fence configures fencing for an L2 output.
type L2Fence struct {
	// Node is this node's name; IsPeer says whether a node is another live
	// member of its ring (cheap: called from the packet path).
	Node   string
	IsPeer func(node string) bool
	// RingSize is the number of live members of the ring, this node
	// included: the larger side of a partition keeps contested addresses.
	RingSize func() int
	// OnEvent is told about every conflict change, with the VIP named. It
	// runs on responder goroutines and must not block.
	OnEvent func(ConflictEvent)
}

// L2Status is what one interface announces, for status lines and the
// control socket.
type L2Status struct {
	Iface string
	Addrs []netip.Addr // sorted
}

// L2 is the L2 output of the reconcile loop: it turns the set of owned
// addresses and the current links into running responders. For every
// eligible interface (Selector over the Monitor's State) that at least one
// owned address is chosen for (InterfacesFor), it keeps one ARPResponder
// (if an IPv4 address is chosen for it) and one NDPResponder (if an IPv6
// one is), opened on first need and closed when no address needs them any
// more, when the link goes away or stops being eligible, or when its name
// or MAC changes (then reopened with the new MAC). Each responder owns
// exactly the addresses chosen for its interface. An address new on an
// interface (a takeover, or the link coming back) gets a gratuitous burst
// in the background, cancelled when ownership ends, then an optional
// periodic refresh.
//
// Sync is level-triggered: it takes the whole desired set and the whole
// link state each time, so the reconcile loop calls it on every pass,
// including passes caused only by a link change. Sync and Close are
// serialised; Status may be called from any goroutine.
type L2 struct {
	opts L2Options
	log  *slog.Logger

	// ctx bounds every goroutine L2 starts (responders, bursts); Close
	// cancels it and waits for wg.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex // guards everything below; held for a whole Sync or Close
	closed    bool
	ifaces    map[int]*l2Iface    // by link index
	selectors map[string]Selector // compiled interface lists, by selectorKey
	// cannot is what the last Sync was asked to announce and answers on
	// no interface (l2_cannot.go).
	cannot []L2Cannot
	// refreshEvery is the last Sync's RefreshInterval; refreshing says
	// whether the refresher (one goroutine for every address) runs.
	refreshEvery time.Duration
	refreshing   bool

	// local is the last Sync's wanted local addresses; lingering are
	// those no longer wanted that stay held until then (LocalLinger), and
	// lingerTimer removes them. lingerFor is the last Sync's linger.
	local       []netip.Addr
	lingering   map[netip.Addr]time.Time
	lingerTimer *time.Timer
	lingerFor   time.Duration

	// vips names each wanted address's VIP and burst is the takeover
	// burst, both as of the last Sync, for fencing's events and resumes
	// (read by responder goroutines without mu).
	vips  atomic.Pointer[map[netip.Addr]string]
	burst atomic.Pointer[burstTiming]
	// stats keeps the responders' counters across their close (Stats,
	// l2_stats.go); it has its own lock, so reading it never waits for a
	// Sync.
	stats l2Stats
}

type burstTiming struct {
	count    int
	interval time.Duration
}

// l2Iface is the responders of one interface and what they announce.
type l2Iface struct {
	link  Link // as it was when the responders were opened
	arp   Responder
	ndp   Responder
	addrs map[netip.Addr]*l2Addr // answered now
}

type l2Addr struct {
	vip    string
	cancel context.CancelFunc // stops the burst
	quiet  bool               // handing over: no burst or refresh
	// burstDone is set once the takeover burst is over: the refresher
	// takes the address from then on.
	burstDone *atomic.Bool
}

// NewL2 returns an inert L2 output: nothing opens until the first Sync.
func NewL2(opts L2Options) *L2 {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.ListenARP == nil {
		opts.ListenARP = ListenARP
	}
	if opts.ListenNDP == nil {
		opts.ListenNDP = ListenNDP
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &L2{
		opts: opts, log: opts.Log, ctx: ctx, cancel: cancel,
		ifaces: map[int]*l2Iface{}, selectors: map[string]Selector{},
	}
	l.vips.Store(&map[netip.Addr]string{})
	l.burst.Store(&burstTiming{count: 1})
	return l
}

// Sync makes the responders, their owned sets and the local addresses match
// want over the links of st. It blocks on socket opens and on netlink (for
// local addresses), never on bursts. It applies everything it can and
// returns every failure joined; calling it again retries what failed
// (sockets that would not open, local addresses). Cannot then lists, per
// address, what it was asked to announce and answers on no interface, and
// why — including an address no link is eligible for, which is no error
// of Sync's.
//
// For local addresses it calls Local.Sync with all of them on every call,
// an empty set too, so the first Sync after a crash clears what a previous
// run left behind.
func (l *L2) Sync(ctx context.Context, st State, cfg L2Config, want []L2Announcement) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrL2Closed
	}
	l.refreshEvery = cfg.RefreshInterval
	defer l.startRefresh()
	switch {
	case l.opts.Linger > 0:
		l.lingerFor = l.opts.Linger
	case l.opts.Linger < 0:
		l.lingerFor = 0
	default:
		l.lingerFor = LocalLinger(cfg.GratuitousInterval)
	}
	if l.opts.Fence != nil {
		vips := make(map[netip.Addr]string, len(want))
		for _, a := range want {
			vips[a.Addr.Unmap().WithZone("")] = a.VIP
		}
		l.vips.Store(&vips)
		l.burst.Store(&burstTiming{count: cfg.GratuitousCount, interval: cfg.GratuitousInterval})
	}
	var errs []error
	held, err := l.syncLocal(want)
	if err != nil {
		errs = append(errs, err)
	}
	cannot := newCannotReport(err)

	// Where each address goes: link index -> address -> announcement.
	plan := map[int]map[netip.Addr]L2Announcement{}
	links := map[int]Link{}
	eligible := map[string][]Link{} // by selector key, for this pass
	for _, a := range want {
		a.Addr = a.Addr.Unmap().WithZone("")
		if a.Local && !held[a.Addr] {
			cannot.notHeld(a)
			continue // its error is in errs
		}
		if a.LocalOnly {
			continue // held on hostlb0, answered by nobody: routers deliver it
		}
		cands, err := l.candidates(st, cfg, a, eligible)
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %v (%s): %w", a.Addr, a.VIP, err))
			cannot.add(a, fmt.Errorf("%w: %w", ErrNoInterface, err))
			continue
		}
		chosen := InterfacesFor(a.Addr, cands)
		if len(chosen) == 0 {
			// Not an error of the output (a link may just be down), but
			// the caller hears of it: Cannot.
			cannot.add(a, noInterface(a, cfg))
		}
		for _, link := range chosen {
			if plan[link.Index] == nil {
				plan[link.Index] = map[netip.Addr]L2Announcement{}
			}
			plan[link.Index][a.Addr] = a
			links[link.Index] = link
		}
	}

	// Interfaces that are gone, changed or no longer needed first, so a
	// renamed or re-MACed link is reopened below.
	for idx, ifc := range l.ifaces {
		link, ok := links[idx]
		switch {
		case !ok:
			if _, exists := st.Link(idx); exists {
				l.closeIface(ifc, "no owned address chosen for it")
			} else {
				l.closeIface(ifc, "link gone")
			}
		case link.Name != ifc.link.Name || !bytes.Equal(link.MAC, ifc.link.MAC):
			l.closeIface(ifc, "link renamed or MAC changed")
		default:
			continue
		}
		delete(l.ifaces, idx)
	}

	for _, idx := range slices.Sorted(maps.Keys(plan)) {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		ifc := l.ifaces[idx]
		if ifc == nil {
			ifc = &l2Iface{link: links[idx], addrs: map[netip.Addr]*l2Addr{}}
			l.ifaces[idx] = ifc
		}
		ierr := l.syncIface(ifc, plan[idx], cfg)
		cannot.ifaceErr[idx] = ierr
		errs = append(errs, ierr)
		if ifc.arp == nil && ifc.ndp == nil && len(ifc.addrs) == 0 {
			delete(l.ifaces, idx)
		}
	}
	l.cannot = cannot.finish(plan, l.ifaces, ctx.Err())
	return errors.Join(errs...)
}

// syncLocal hands every owned local address to the AddrManager and returns
// what it holds afterwards.
func (l *L2) syncLocal(want []L2Announcement) (map[netip.Addr]bool, error) {
	var local []netip.Addr
	for _, a := range want {
		if a.Local {
			local = append(local, a.Addr.Unmap().WithZone(""))
		}
	}
	slices.SortFunc(local, netip.Addr.Compare)
	local = slices.Compact(local)
	held := map[netip.Addr]bool{}
	if l.opts.Local == nil {
		if len(local) > 0 {
			return held, fmt.Errorf("hold local VIPs %v: no local address manager", local)
		}
		return held, nil
	}
	now := time.Now()
	if l.lingerFor > 0 {
		for _, a := range l.local {
			if _, still := slices.BinarySearchFunc(local, a, netip.Addr.Compare); !still {
				if l.lingering == nil {
					l.lingering = map[netip.Addr]time.Time{}
				}
				l.lingering[a] = now.Add(l.lingerFor)
			}
		}
	}
	for _, a := range local {
		delete(l.lingering, a)
	}
	l.local = local
	err := l.holdLocal(now)
	for _, a := range l.opts.Local.Addrs() {
		held[a] = true
	}
	return held, err
}

// holdLocal hands the AddrManager the wanted local addresses and those
// still lingering at now, and arms the timer that ends the next linger.
// Called with l.mu held.
func (l *L2) holdLocal(now time.Time) error {
	all := slices.Clone(l.local)
	var next time.Time
	for a, until := range l.lingering {
		if !now.Before(until) {
			delete(l.lingering, a)
			continue
		}
		all = append(all, a)
		if next.IsZero() || until.Before(next) {
			next = until
		}
	}
	slices.SortFunc(all, netip.Addr.Compare)
	if !next.IsZero() {
		if l.lingerTimer == nil {
			l.lingerTimer = time.AfterFunc(next.Sub(now), l.endLinger)
		} else {
			l.lingerTimer.Reset(next.Sub(now))
		}
	}
	err := l.opts.Local.Sync(all)
	if err != nil {
		err = fmt.Errorf("hold local VIPs on %s: %w", LocalLinkName, err)
		if isSysctlDenied(err) {
			// The ARP sysctls IPv4 VIPs need cannot be set (read-only
			// /proc/sys under ProtectKernelTunables): keep the IPv6 ones
			// working rather than lose both families.
			var v6 []netip.Addr
			for _, a := range all {
				if a.Is6() {
					v6 = append(v6, a)
				}
			}
			if len(v6) < len(all) {
				if err6 := l.opts.Local.Sync(v6); err6 != nil {
					err = errors.Join(err, fmt.Errorf("hold IPv6 local VIPs on %s: %w", LocalLinkName, err6))
				}
			}
		}
	}
	return err
}

// endLinger removes the local addresses whose linger is over (the
// lingerTimer's function).
func (l *L2) endLinger() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.opts.Local == nil {
		return
	}
	if err := l.holdLocal(time.Now()); err != nil {
		l.log.Warn("local VIPs no longer announced not removed; the next pass retries", "err", err)
	}
}

// isSysctlDenied reports whether err says a sysctl under /proc/sys could
// not be written.
func isSysctlDenied(err error) bool {
	return strings.Contains(err.Error(), "net.ipv4.conf.") &&
		(errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission))
}

// syncIface opens or closes the responders of one interface and sets what
// they own; addresses new on it get a burst.
func (l *L2) syncIface(ifc *l2Iface, want map[netip.Addr]L2Announcement, cfg L2Config) error {
	var v4, v6 []netip.Addr
	for a := range want {
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	var errs []error
	var err error
	if ifc.arp, err = l.ensureResponder(ifc, ifc.arp, len(v4) > 0, false); err != nil {
		errs = append(errs, err)
	}
	if ifc.ndp, err = l.ensureResponder(ifc, ifc.ndp, len(v6) > 0, true); err != nil {
		errs = append(errs, err)
	}
	if ifc.arp != nil {
		if err := ifc.arp.SetOwned(v4); err != nil {
			errs = append(errs, fmt.Errorf("ARP on %q: %w", ifc.link.Name, err))
		}
	}
	if ifc.ndp != nil {
		if err := ifc.ndp.SetOwned(v6); err != nil {
			errs = append(errs, fmt.Errorf("NDP on %q: %w", ifc.link.Name, err))
		}
	}
	// The ring may have changed since the last pass: a node this one
	// yielded to may be a member now.
	for _, r := range []Responder{ifc.arp, ifc.ndp} {
		if r != nil {
			r.Recheck()
		}
	}

	// Stop what no longer belongs here, or lost its responder.
	for _, addr := range slices.SortedFunc(maps.Keys(ifc.addrs), netip.Addr.Compare) {
		st := ifc.addrs[addr]
		if w, ok := want[addr]; ok && ifc.responderFor(addr) != nil {
			st.vip = w.VIP
			switch {
			case w.Handover && !st.quiet:
				st.cancel()
				st.quiet = true
				l.log.Info("handing over; gratuitous announcements stopped", "vip", w.VIP, "addr", addr, "iface", ifc.link.Name)
			case !w.Handover && st.quiet: // kept after all: announce afresh
				ifc.addrs[addr] = l.startAnnounce(ifc.responderFor(addr), ifc.link.Name, w, cfg)
			}
			continue
		}
		st.cancel()
		delete(ifc.addrs, addr)
		l.log.Info("stopped announcing", "vip", st.vip, "addr", addr, "iface", ifc.link.Name)
	}
	// Start what is new here.
	for _, addr := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
		r := ifc.responderFor(addr)
		if _, ok := ifc.addrs[addr]; ok || r == nil {
			continue
		}
		a := want[addr]
		l.log.Info("announcing", "vip", a.VIP, "addr", addr, "iface", ifc.link.Name, "handover", a.Handover)
		if a.Handover {
			ifc.addrs[addr] = &l2Addr{vip: a.VIP, cancel: func() {}, quiet: true}
			continue
		}
		ifc.addrs[addr] = l.startAnnounce(r, ifc.link.Name, a, cfg)
	}
	return errors.Join(errs...)
}

// startAnnounce starts a's burst and refresh on r in the background.
func (l *L2) startAnnounce(r Responder, ifname string, a L2Announcement, cfg L2Config) *l2Addr {
	ctx, cancel := context.WithCancel(l.ctx)
	done := new(atomic.Bool)
	l.wg.Add(1)
	go func() {
		defer done.Store(true)
		l.announce(ctx, r, ifname, a, cfg)
	}()
	return &l2Addr{vip: a.VIP, cancel: cancel, burstDone: done}
}

// Reassert sends the takeover burst again for every address this node
// answers and is not handing over, replacing a burst in flight, and
// returns how many it restarted: a peer that took this node for dead and
// announced its addresses pointed the neighbours' caches at itself, and
// this node, alive, points them back. Nothing else changes.
func (l *L2) Reassert() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0
	}
	b := l.burst.Load()
	cfg := L2Config{GratuitousCount: b.count, GratuitousInterval: b.interval}
	n := 0
	for _, idx := range slices.Sorted(maps.Keys(l.ifaces)) {
		ifc := l.ifaces[idx]
		for _, addr := range slices.SortedFunc(maps.Keys(ifc.addrs), netip.Addr.Compare) {
			st := ifc.addrs[addr]
			r := ifc.responderFor(addr)
			if st.quiet || r == nil {
				continue
			}
			st.cancel()
			ifc.addrs[addr] = l.startAnnounce(r, ifc.link.Name, L2Announcement{VIP: st.vip, Addr: addr}, cfg)
			n++
		}
	}
	return n
}

func (ifc *l2Iface) responderFor(addr netip.Addr) Responder {
	if addr.Is4() {
		return ifc.arp
	}
	return ifc.ndp
}

// ensureResponder opens r when needed and missing, closes it when present
// and not needed, and returns what the interface has afterwards.
func (l *L2) ensureResponder(ifc *l2Iface, r Responder, need, v6 bool) (Responder, error) {
	switch {
	case need && r == nil:
		ifi := &net.Interface{
			Index: ifc.link.Index, Name: ifc.link.Name, MTU: ifc.link.MTU,
			HardwareAddr: ifc.link.MAC, Flags: net.FlagUp | net.FlagBroadcast,
		}
		rc := ResponderConfig{Ifindex: ifc.link.Index, Ifname: ifc.link.Name,
			HardwareAddr: ifc.link.MAC, Logger: l.log, Fence: l.fenceConfig()}
		if v6 {
			conn, err := l.opts.ListenNDP(ifi)
			if err != nil {
				return nil, err
			}
			r = NewNDPResponder(conn, rc)
		} else {
			conn, err := l.opts.ListenARP(ifi)
			if err != nil {
				return nil, err
			}
			r = NewARPResponder(conn, rc)
		}
		l.stats.opened(r, ifc.link.Name, v6)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			_ = r.Run(l.ctx) // returns nil once closed
		}()
		return r, nil
	case !need && r != nil:
		if err := r.Close(); err != nil {
			l.log.Debug("close responder", "iface", ifc.link.Name, "err", err)
		}
		l.stats.closed(r)
		return nil, nil
	}
	return r, nil
}

// announce sends the takeover burst, until ctx is cancelled or the address
// stops being owned by r.
func (l *L2) announce(ctx context.Context, r Responder, ifname string, a L2Announcement, cfg L2Config) {
	defer l.wg.Done()
	if cfg.GratuitousCount <= 0 {
		return
	}
	err := r.Announce(ctx, a.Addr, cfg.GratuitousCount, cfg.GratuitousInterval)
	if err != nil && !announceOver(ctx, err) {
		l.log.Warn("gratuitous announcement failed", "vip", a.VIP, "addr", a.Addr, "iface", ifname, "err", err)
	}
}

// announceOver says whether an announcement failed because the address is
// no longer this responder's (or L2 is closing): nothing to report.
func announceOver(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, ErrNotOwned) || errors.Is(err, ErrClosed)
}

// refreshItem is one address the refresher announces again.
type refreshItem struct {
	r      Responder
	addr   netip.Addr
	vip    string
	ifname string
}

// startRefresh starts the refresher if refreshing is on and it does not
// run. Called with l.mu held.
func (l *L2) startRefresh() {
	if l.refreshEvery <= 0 || l.refreshing || l.closed {
		return
	}
	l.refreshing = true
	l.wg.Add(1)
	go l.refresh()
}

// refresh announces every owned address once per RefreshInterval (those
// still in their takeover burst, or handing over, excepted), one after the
// other, spread evenly over the interval: one goroutine and one timer for
// 10,000 addresses as for one, and no burst of 10,000 frames at once. It
// ends when refreshing is turned off or L2 closes.
func (l *L2) refresh() {
	defer l.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for {
		l.mu.Lock()
		every := l.refreshEvery
		if every <= 0 || l.closed {
			l.refreshing = false
			l.mu.Unlock()
			return
		}
		var items []refreshItem
		for _, idx := range slices.Sorted(maps.Keys(l.ifaces)) {
			ifc := l.ifaces[idx]
			for _, addr := range slices.SortedFunc(maps.Keys(ifc.addrs), netip.Addr.Compare) {
				st := ifc.addrs[addr]
				if r := ifc.responderFor(addr); r != nil && !st.quiet && st.burstDone != nil && st.burstDone.Load() {
					items = append(items, refreshItem{r: r, addr: addr, vip: st.vip, ifname: ifc.link.Name})
				}
			}
		}
		l.mu.Unlock()
		gap := every
		if len(items) > 0 {
			gap = every / time.Duration(len(items))
		}
		for i := 0; i == 0 || i < len(items); i++ {
			t.Reset(gap)
			select {
			case <-l.ctx.Done():
				return
			case <-t.C:
			}
			if i >= len(items) {
				break
			}
			it := items[i]
			if err := it.r.Announce(l.ctx, it.addr, 1, 0); err != nil && !announceOver(l.ctx, err) {
				l.log.Debug("refresh announcement failed", "vip", it.vip, "addr", it.addr, "iface", it.ifname, "err", err)
			}
		}
	}
}

// closeIface stops every burst and responder of an interface.
func (l *L2) closeIface(ifc *l2Iface, why string) {
	for _, addr := range slices.SortedFunc(maps.Keys(ifc.addrs), netip.Addr.Compare) {
		st := ifc.addrs[addr]
		st.cancel()
		l.log.Info("stopped announcing", "vip", st.vip, "addr", addr, "iface", ifc.link.Name, "reason", why)
	}
	clear(ifc.addrs)
	for _, r := range []Responder{ifc.arp, ifc.ndp} {
		if r == nil {
			continue
		}
		if err := r.Close(); err != nil {
			l.log.Debug("close responder", "iface", ifc.link.Name, "err", err)
		}
		l.stats.closed(r)
	}
	ifc.arp, ifc.ndp = nil, nil
}

// selectorKey identifies an interface list with the exclude list it runs
// under.
func selectorKey(override []string, cfg L2Config) string {
	allow := cfg.Interfaces
	if len(override) > 0 {
		allow = override
	}
	return strings.Join(allow, "\x00") + "\x01" + strings.Join(cfg.Exclude, "\x00")
}

// selector returns the compiled Selector of key, caching it: lists rarely
// change (a reload), and passes are frequent.
func (l *L2) selector(key string, override []string, cfg L2Config) (Selector, error) {
	if s, ok := l.selectors[key]; ok {
		return s, nil
	}
	allow := cfg.Interfaces
	if len(override) > 0 {
		allow = override
	}
	s, err := NewSelector(allow, cfg.Exclude)
	if err != nil {
		return Selector{}, err
	}
	if len(l.selectors) > 256 {
		clear(l.selectors) // stale lists of earlier configs
	}
	l.selectors[key] = s
	return s, nil
}

// Status returns what every interface announces now, ordered by interface
// name. It waits for a running Sync to finish.
func (l *L2) Status() []L2Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []L2Status
	for _, ifc := range l.ifaces {
		var addrs []netip.Addr
		for a := range ifc.addrs {
			// An address yielded in a wire conflict is not answered here.
			if r := ifc.responderFor(a); r == nil || r.Answers(a) {
				addrs = append(addrs, a)
			}
		}
		if len(addrs) == 0 {
			continue
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		out = append(out, L2Status{Iface: ifc.link.Name, Addrs: addrs})
	}
	slices.SortFunc(out, func(a, b L2Status) int { return cmp.Compare(a.Iface, b.Iface) })
	return out
}

// fenceConfig is the FenceConfig of a new responder, nil without fencing.
func (l *L2) fenceConfig() *FenceConfig {
	f := l.opts.Fence
	if f == nil {
		return nil
	}
	return &FenceConfig{
		Node: f.Node, IsPeer: f.IsPeer, RingSize: f.RingSize,
		OnEvent: func(ev ConflictEvent) {
			ev.VIP = (*l.vips.Load())[ev.Addr]
			if f.OnEvent != nil {
				f.OnEvent(ev)
			}
		},
		Burst: func() (int, time.Duration) {
			b := l.burst.Load()
			return b.count, b.interval
		},
	}
}

// Conflicts lists every interface's current wire conflicts, by interface.
func (l *L2) Conflicts() map[string][]Conflict {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]Conflict{}
	for _, ifc := range l.ifaces {
		for _, r := range []Responder{ifc.arp, ifc.ndp} {
			if r == nil {
				continue
			}
			if cs := r.Conflicts(); len(cs) > 0 {
				out[ifc.link.Name] = append(out[ifc.link.Name], cs...)
			}
		}
	}
	return out
}

// Close stops answering on every interface, waits for every goroutine it
// started, then closes the AddrManager, which removes every local address
// it added. It is idempotent; Sync fails after it.
func (l *L2) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	for _, idx := range slices.Sorted(maps.Keys(l.ifaces)) {
		l.closeIface(l.ifaces[idx], "stopping")
	}
	clear(l.ifaces)
	l.cancel()
	var last time.Time
	for _, until := range l.lingering {
		if until.After(last) {
			last = until
		}
	}
	if l.lingerTimer != nil {
		l.lingerTimer.Stop()
	}
	l.mu.Unlock()
	l.wg.Wait()
	if wait := time.Until(last); wait > 0 {
		// A graceful stop hands its addresses over just before this:
		// what clients still send here is served until the linger ends
		// (LocalLinger), at most 5 s.
		l.log.Info("serving the local VIPs just handed over until the clients have switched", "wait", wait.Round(time.Millisecond))
		time.Sleep(wait)
	}
	if l.opts.Local != nil {
		if err := l.opts.Local.Close(); err != nil {
			return fmt.Errorf("remove local VIPs: %w", err)
		}
	}
	return nil
}
