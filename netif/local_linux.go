package netif

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrLocalAddrsClosed is returned by LocalAddrs used after Close.
var ErrLocalAddrsClosed = errors.New("address manager closed")

// LocalAddrsOptions configure LocalAddrs.
type LocalAddrsOptions struct {
	// Log receives what the manager changes on the host. Default: discard.
	Log *slog.Logger
	// NetNS, when set, is the network namespace to work in instead of the
	// caller's. The caller keeps it open until Close returns.
	NetNS *netns.NsHandle
	// LinkName overrides LocalLinkName (tests).
	LinkName string
}

// arpSysctls are raised (never lowered) while LocalAddrs holds an IPv4
// address; see the package doc. "all" makes them apply to every interface,
// including ones created later: the kernel uses max(all, interface).
var arpSysctls = []struct {
	key  string // under /proc/sys
	want int
}{
	{"net/ipv4/conf/all/arp_ignore", 1},   // reply only for addresses on the receiving interface
	{"net/ipv4/conf/all/arp_announce", 2}, // never use a VIP as the sender of our own ARP requests
}

// LocalAddrs is the real AddrManager. It holds each owned VIP two ways:
//
//   - at once, in Add and Sync, as an AnyIP route: "local VIP dev lo table
//     local proto hostlb". From then on the kernel accepts the VIP's
//     traffic. It is one FIB insert (tens of microseconds, also with
//     10,000 VIPs), so the outputs that wait for it (an ARP answer, a BGP
//     advertisement) wait for nothing else;
//   - as an address on the hostlb0 link — at once too when a pass changes
//     at most inlineAddrs VIPs (a failover, a handover), in the background
//     otherwise — (a dummy link,
//     or an ifb link where the kernel has no dummy driver; both are NOARP
//     and never receive frames), so that `ip addr` shows it and programs
//     can bind() to it: IPv6 bind() needs an address, a route is not
//     enough. The kernel's cost per address grows with the number on the
//     link (with 10,000 IPv6 addresses ~0.3 ms to add one and ~2.5 ms to
//     remove one: 3 s and 25 s in all), which is why it is off the path of
//     every output. When more addresses leave than stay, the link is
//     deleted and created again instead (75 ms for 10,000).
//
// IPv4 VIPs are added as /32 with scope host, so the kernel never picks
// them as the source of the node's own connections; IPv6 VIPs as /128 with
// nodad (usable at once) and preferred_lft 0 (deprecated: accepted, never
// chosen as a source, RFC 6724 rule 3). Replies to traffic sent to a VIP
// still come from the VIP.
//
// Release is the other way round: the route goes at once, the address
// after it.
//
// Lifecycle: the first Add or Sync removes what a crashed earlier run left
// (routes of proto hostlb in the local table, every address on hostlb0:
// the manager owns both) and creates the link if it is missing. Close
// removes every route the manager added and deletes hostlb0, unless it
// holds an address someone else added since (then only the manager's
// addresses go), and restores the ARP sysctls it raised if nobody changed
// them since.
type LocalAddrs struct {
	opts LocalAddrsOptions
	log  *slog.Logger

	mu      sync.Mutex // guards everything below, and serialises use of h
	h       *netlink.Handle
	started bool
	closed  bool
	// held are the VIPs with their route in: the accepted ones.
	held map[netip.Addr]bool
	// ours are the VIPs held since start: an address on hostlb0 that is
	// not among them was added by someone else.
	ours map[netip.Addr]bool
	// raised are the sysctls this manager changed: key -> value before.
	raised map[string]string
	// wantGen counts changes of held the address worker has to follow;
	// doneGen is the last one it brought hostlb0 to. settled is signalled
	// (under mu) whenever doneGen moves.
	wantGen, doneGen uint64
	settled          *sync.Cond
	kick             chan struct{} // cap 1: held changed, or repair asked
	stop             chan struct{}
	workerDone       chan struct{}
}

var _ AddrManager = (*LocalAddrs)(nil)

// NewLocalAddrs returns an inert manager: nothing on the host changes until
// the first Add or Sync.
func NewLocalAddrs(opts LocalAddrsOptions) *LocalAddrs {
	if opts.LinkName == "" {
		opts.LinkName = LocalLinkName
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &LocalAddrs{opts: opts, log: log, held: map[netip.Addr]bool{}, ours: map[netip.Addr]bool{}, raised: map[string]string{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), workerDone: make(chan struct{})}
	l.settled = sync.NewCond(&l.mu)
	return l
}

// Add implements AddrManager.
func (l *LocalAddrs) Add(ip netip.Addr) error {
	ip, err := checkVIP(ip)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.start(); err != nil {
		return err
	}
	if ip.Is4() {
		if err := l.raiseSysctls(); err != nil {
			return fmt.Errorf("add local VIP %s: %w", ip, err)
		}
	}
	lo, err := l.loIndex()
	if err != nil {
		return fmt.Errorf("add local VIP %s: %w", ip, err)
	}
	// Replace, not add: idempotent.
	if err := l.h.RouteReplace(anyIPRoute(ip, lo)); err != nil {
		return fmt.Errorf("add local VIP %s (local route): %w", ip, err)
	}
	if !l.held[ip] {
		l.log.Info("added local VIP", "vip", ip)
		l.held[ip] = true
		l.ours[ip] = true
		l.addrsInline()
	}
	l.changed()
	return nil
}

// Remove implements AddrManager.
func (l *LocalAddrs) Remove(ip netip.Addr) error {
	ip, err := checkVIP(ip)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || !l.started || !l.held[ip] {
		return nil // Close already removed it, or it was never held
	}
	lo, err := l.loIndex()
	if err != nil {
		return fmt.Errorf("remove local VIP %s: %w", ip, err)
	}
	if err := l.h.RouteDel(anyIPRoute(ip, lo)); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("remove local VIP %s (local route): %w", ip, err)
	}
	delete(l.held, ip)
	l.log.Info("removed local VIP", "vip", ip)
	l.addrsInline()
	l.changed()
	return nil
}

// Sync implements AddrManager. The daemon calls it on every reconcile pass,
// with an empty set too: that is what cleans up after a crashed run even
// when this node no longer owns any local VIP. It returns once the routes
// are right; hostlb0's addresses follow in the background (WaitAddrs).
func (l *LocalAddrs) Sync(want []netip.Addr) error {
	wantSet := make(map[netip.Addr]bool, len(want))
	any4 := false
	for _, ip := range want {
		ip, err := checkVIP(ip)
		if err != nil {
			return err
		}
		wantSet[ip] = true
		any4 = any4 || ip.Is4()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.start(); err != nil {
		return err
	}
	if any4 {
		if err := l.raiseSysctls(); err != nil {
			return fmt.Errorf("sync local VIPs: %w", err)
		}
	}
	routes, err := l.routes()
	if err != nil {
		return fmt.Errorf("sync local VIPs: %w", err)
	}
	lo, err := l.loIndex()
	if err != nil {
		return fmt.Errorf("sync local VIPs: %w", err)
	}
	var errs []error
	changes := 0
	have := make(map[netip.Addr]bool, len(routes))
	for _, r := range routes {
		ip := routeDst(r)
		if wantSet[ip] && r.LinkIndex == lo {
			have[ip] = true
			l.ours[ip] = true
			continue
		}
		if err := l.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove local route of %s: %w", ip, err))
			continue
		}
		if l.held[ip] && !wantSet[ip] {
			l.log.Info("removed local VIP", "vip", ip)
		}
		delete(l.held, ip)
		changes++
	}
	for ip := range l.held {
		if !wantSet[ip] {
			delete(l.held, ip) // its route was already gone
		}
	}
	for ip := range wantSet {
		if have[ip] {
			l.held[ip] = true
			continue
		}
		if err := l.h.RouteReplace(anyIPRoute(ip, lo)); err != nil {
			errs = append(errs, fmt.Errorf("add local VIP %s (local route): %w", ip, err))
			delete(l.held, ip)
			continue
		}
		if !l.held[ip] {
			l.log.Info("added local VIP", "vip", ip)
		}
		l.held[ip] = true
		l.ours[ip] = true
		changes++
	}
	if changes > 0 && changes <= inlineAddrs {
		l.addrsInline()
	}
	// Every pass also lets the worker repair hostlb0 (a downed link, an
	// address removed behind the manager's back).
	l.changed()
	return errors.Join(errs...)
}

// inlineAddrs: a change of at most this many VIPs (a failover, a handover)
// updates hostlb0's addresses before Sync returns, as they were before the
// routes came, so the kernel's view of the VIP changes once per pass; the
// worker takes the larger ones (and repairs what this misses).
const inlineAddrs = 64

// addrsInline brings hostlb0's addresses to held at once; a failure is
// left to the worker, which retries. Called with mu held.
func (l *LocalAddrs) addrsInline() {
	if err := l.syncAddrs(l.h, l.held); err != nil && !errors.Is(err, errStopped) {
		l.log.Debug("local VIP addresses not all in place yet; the worker retries", "err", err)
	}
}

// Addrs implements AddrManager: the VIPs the node accepts traffic for.
func (l *LocalAddrs) Addrs() []netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]netip.Addr, 0, len(l.held))
	for ip := range l.held {
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// WaitAddrs waits until hostlb0 holds, as addresses, what the manager held
// when it was called (or a later set), or ctx ends.
func (l *LocalAddrs) WaitAddrs(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	gen := l.wantGen
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		l.settled.Broadcast()
		l.mu.Unlock()
	})
	defer stop()
	for l.doneGen < gen && !l.closed {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("local VIP addresses on %s not settled: %w", l.opts.LinkName, err)
		}
		l.settled.Wait()
	}
	return nil
}

// Close implements AddrManager.
func (l *LocalAddrs) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	started := l.started
	l.settled.Broadcast()
	l.mu.Unlock()
	if !started {
		return nil
	}
	close(l.stop)
	<-l.workerDone

	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.h.Close()
	var errs []error
	routes, err := l.routes()
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range routes {
		if err := l.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove local route of %s: %w", routeDst(r), err))
		}
	}
	for ip := range l.held {
		l.log.Info("removed local VIP", "vip", ip)
	}
	errs = append(errs, l.clearLink(l.h))
	clear(l.held)
	errs = append(errs, l.restoreSysctls())
	return errors.Join(errs...)
}

// changed tells the address worker that held changed. Called with mu held.
func (l *LocalAddrs) changed() {
	l.wantGen++
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// start opens the netlink handle, removes what a crashed earlier run left
// and starts the address worker. Called with mu held.
func (l *LocalAddrs) start() error {
	if l.closed {
		return ErrLocalAddrsClosed
	}
	if l.started {
		return nil
	}
	h, err := l.handle()
	if err != nil {
		return err
	}
	routes, err := listAnyIPRoutes(h)
	if err != nil {
		h.Close()
		return err
	}
	for _, r := range routes {
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			h.Close()
			return fmt.Errorf("remove stale local route of %s: %w", routeDst(r), err)
		}
		l.log.Info("removed stale local VIP left by an earlier run", "vip", routeDst(r))
	}
	if err := l.removeStaleLink(h); err != nil {
		h.Close()
		return err
	}
	wh, err := l.handle()
	if err != nil {
		h.Close()
		return err
	}
	l.h = h
	l.started = true
	go l.worker(wh)
	return nil
}

func (l *LocalAddrs) handle() (*netlink.Handle, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if l.opts.NetNS != nil {
		h, err = netlink.NewHandleAt(*l.opts.NetNS)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	return h, nil
}

// removeStaleLink deletes hostlb0 when an earlier run left addresses on
// it: one link deletion instead of one slow address deletion each.
func (l *LocalAddrs) removeStaleLink(h *netlink.Handle) error {
	link, addrs, err := l.linkAddrList(h)
	if link == nil || err != nil {
		return err
	}
	stale := 0
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			stale++
		}
	}
	if stale == 0 {
		return nil
	}
	if t := link.Type(); t != "dummy" && t != "ifb" {
		return fmt.Errorf("%s exists and is a %s link, not a dummy; refusing to use it", l.opts.LinkName, t)
	}
	if err := h.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s holding %d stale addresses: %w", l.opts.LinkName, stale, err)
	}
	l.log.Info("removed stale local VIPs left by an earlier run", "iface", l.opts.LinkName, "addresses", stale)
	return nil
}

// routes lists the manager's AnyIP routes. Called with mu held.
func (l *LocalAddrs) routes() ([]netlink.Route, error) { return listAnyIPRoutes(l.h) }

func listAnyIPRoutes(h *netlink.Handle) ([]netlink.Route, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_LOCAL, Protocol: RTProtoHostlb}
	rs, err := redump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return nil, fmt.Errorf("list local routes of proto %d: %w", RTProtoHostlb, err)
	}
	out := rs[:0]
	for _, r := range rs {
		if r.Type == unix.RTN_LOCAL && r.Protocol == RTProtoHostlb && r.Dst != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// redump repeats a netlink dump the kernel interrupted because the table
// changed under it (the address worker and Sync change the local table
// and hostlb0 concurrently): such a dump may be incomplete.
func redump[T any](dump func() ([]T, error)) ([]T, error) {
	for attempt := 1; ; attempt++ {
		out, err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || attempt == 10 {
			return out, err
		}
	}
}

// loIndex is the loopback link's index. Called with mu held.
func (l *LocalAddrs) loIndex() (int, error) {
	lo, err := l.h.LinkByName("lo")
	if err != nil {
		return 0, fmt.Errorf("find lo: %w", err)
	}
	return lo.Attrs().Index, nil
}

// anyIPRoute is the route that makes the kernel accept ip's traffic.
func anyIPRoute(ip netip.Addr, lo int) *netlink.Route {
	r := &netlink.Route{
		Dst:       &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())},
		LinkIndex: lo,
		Type:      unix.RTN_LOCAL,
		Table:     unix.RT_TABLE_LOCAL,
		Protocol:  RTProtoHostlb,
	}
	if ip.Is4() {
		r.Scope = netlink.SCOPE_HOST
	}
	return r
}

func routeDst(r netlink.Route) netip.Addr {
	ip, _ := netip.AddrFromSlice(r.Dst.IP)
	return ip.Unmap()
}

// recreateAbove: when more than this many addresses leave hostlb0 and more
// leave than stay, the worker deletes and recreates the link instead.
const recreateAbove = 64

// worker keeps hostlb0's addresses equal to held, on its own netlink
// handle, without mu while it talks to the kernel. It retries a failed
// round after a second.
func (l *LocalAddrs) worker(h *netlink.Handle) {
	defer close(l.workerDone)
	defer h.Close()
	var lastErr string
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.kick:
		case <-retry.C:
		}
		l.mu.Lock()
		gen := l.wantGen
		want := maps.Clone(l.held)
		l.mu.Unlock()
		err := l.syncAddrs(h, want)
		if errors.Is(err, errStopped) {
			continue // a newer set is waiting in kick, or Close
		}
		if err != nil {
			if msg := err.Error(); msg != lastErr {
				l.log.Warn("local VIP addresses on "+l.opts.LinkName+" not in place; their traffic is accepted "+
					"(local routes), bind() to them waits; retrying", "err", err)
				lastErr = msg
			}
			retry.Reset(time.Second)
			continue
		}
		lastErr = ""
		l.mu.Lock()
		if gen > l.doneGen {
			l.doneGen = gen
			l.settled.Broadcast()
		}
		l.mu.Unlock()
	}
}

// syncAddrs makes hostlb0's addresses exactly want. It stops early, with
// errStopped, when Close began or held changed again.
func (l *LocalAddrs) syncAddrs(h *netlink.Handle, want map[netip.Addr]bool) error {
	if len(want) == 0 {
		link, err := h.LinkByName(l.opts.LinkName)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("find %s: %w", l.opts.LinkName, err)
		}
		return l.removeAddrs(h, link, want)
	}
	link, err := l.ensureLink(h)
	if err != nil {
		return err
	}
	if err := l.removeAddrs(h, link, want); err != nil {
		return err
	}
	if link, err = l.ensureLink(h); err != nil { // removeAddrs may have recreated it
		return err
	}
	have, err := linkAddrs(h, link)
	if err != nil {
		return err
	}
	var errs []error
	n := 0
	for _, ip := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
		if have[ip] {
			continue
		}
		if n++; n%256 == 0 && l.interrupted() {
			return errors.Join(append(errs, errStopped)...)
		}
		if err := h.AddrReplace(link, vipAddr(ip)); err != nil {
			errs = append(errs, fmt.Errorf("add %s to %s: %w", ip, l.opts.LinkName, err))
		}
	}
	return errors.Join(errs...)
}

// errStopped ends a worker round early; the next round starts over.
var errStopped = errors.New("interrupted by a newer set of local VIPs")

// interrupted reports whether the worker should start over: Close began or
// held changed since its round started.
func (l *LocalAddrs) interrupted() bool {
	select {
	case <-l.stop:
		return true
	default:
	}
	return len(l.kick) > 0
}

// removeAddrs removes the addresses on link that are not in want (and not
// link-local), recreating the link when that is cheaper.
func (l *LocalAddrs) removeAddrs(h *netlink.Handle, link netlink.Link, want map[netip.Addr]bool) error {
	addrs, err := redump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", l.opts.LinkName, err)
	}
	var extra []netlink.Addr
	stay := 0
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		if want[ip.Unmap()] {
			stay++
			continue
		}
		extra = append(extra, a)
	}
	if len(extra) == 0 {
		return nil
	}
	if len(extra) > recreateAbove && len(extra) > stay {
		if err := h.LinkDel(link); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete %s to drop %d addresses: %w", l.opts.LinkName, len(extra), err)
		}
		l.log.Info("recreating the local VIP link to drop many addresses at once", "iface", l.opts.LinkName,
			"dropped", len(extra), "kept", stay)
		return nil
	}
	var errs []error
	for i, a := range extra {
		if i%64 == 63 && l.interrupted() {
			return errors.Join(append(errs, errStopped)...)
		}
		if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove %s from %s: %w", a.IP, l.opts.LinkName, err))
		}
	}
	return errors.Join(errs...)
}

func linkAddrs(h *netlink.Handle, link netlink.Link) (map[netip.Addr]bool, error) {
	addrs, err := redump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	have := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			have[ip.Unmap()] = true
		}
	}
	return have, nil
}

// ensureLink returns the link, creating it and bringing it up as needed.
func (l *LocalAddrs) ensureLink(h *netlink.Handle) (netlink.Link, error) {
	name := l.opts.LinkName
	link, err := h.LinkByName(name)
	if isNotFound(err) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		err = h.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
		if errors.Is(err, unix.EOPNOTSUPP) {
			// No dummy driver (a minimal kernel): an ifb link is
			// equally inert without tc redirects.
			err = h.LinkAdd(&netlink.Ifb{LinkAttrs: attrs})
		}
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
		link, err = h.LinkByName(name)
		if err == nil {
			l.log.Info("created local VIP link", "iface", name, "type", link.Type())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", name, err)
	}
	if t := link.Type(); t != "dummy" && t != "ifb" {
		return nil, fmt.Errorf("%s exists and is a %s link, not a dummy; refusing to use it", name, t)
	}
	a := link.Attrs()
	if a.RawFlags&unix.IFF_NOARP == 0 {
		if err := h.LinkSetARPOff(link); err != nil {
			return nil, fmt.Errorf("set %s NOARP: %w", name, err)
		}
	}
	if a.RawFlags&unix.IFF_UP == 0 {
		// Addresses on a down link cannot be bound: it must be up.
		if err := h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	return link, nil
}

// linkAddrList returns the manager's link and its addresses; a nil link
// and no error when the link does not exist.
func (l *LocalAddrs) linkAddrList(h *netlink.Handle) (netlink.Link, []netlink.Addr, error) {
	link, err := h.LinkByName(l.opts.LinkName)
	if isNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("find %s: %w", l.opts.LinkName, err)
	}
	addrs, err := redump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, nil, fmt.Errorf("list addresses of %s: %w", l.opts.LinkName, err)
	}
	return link, addrs, nil
}

// clearLink deletes the link on Close, unless it holds an address neither
// link-local nor the manager's: then it removes only the manager's. Called
// with mu held, after the worker stopped.
func (l *LocalAddrs) clearLink(h *netlink.Handle) error {
	link, addrs, err := l.linkAddrList(h)
	if link == nil || err != nil {
		return err
	}
	var foreign []string
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() || l.ours[ip.Unmap()] {
			continue
		}
		foreign = append(foreign, a.IPNet.String())
	}
	if len(foreign) == 0 {
		if err := h.LinkDel(link); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete %s: %w", l.opts.LinkName, err)
		}
		l.log.Info("deleted local VIP link", "iface", l.opts.LinkName)
		return nil
	}
	l.log.Info("keeping local VIP link: it holds addresses hostlb did not add",
		"iface", l.opts.LinkName, "addrs", foreign)
	var errs []error
	for ip := range l.ours {
		if err := h.AddrDel(link, vipAddr(ip)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove local VIP %s from %s: %w", ip, l.opts.LinkName, err))
		}
	}
	return errors.Join(errs...)
}

// raiseSysctls makes sure the kernel answers ARP only for addresses on the
// receiving interface (see the package doc). Called with mu held.
func (l *LocalAddrs) raiseSysctls() error {
	return l.inNetNS(func() error {
		for _, s := range arpSysctls {
			cur, err := readSysctl(s.key)
			if err != nil {
				return err
			}
			if n, err := strconv.Atoi(cur); err == nil && n >= s.want {
				continue
			}
			if err := writeSysctl(s.key, strconv.Itoa(s.want)); err != nil {
				return fmt.Errorf("%w (needed so that the kernel does not answer ARP for local VIPs "+
					"on every interface; if /proc/sys is read-only, set it in sysctl.d)", err)
			}
			if _, ok := l.raised[s.key]; !ok {
				l.raised[s.key] = cur
			}
			l.log.Info("raised sysctl for local VIPs", "key", sysctlName(s.key), "from", cur, "to", s.want)
		}
		return nil
	})
}

// restoreSysctls puts back what raiseSysctls changed, unless someone else
// changed it since. Called with mu held.
func (l *LocalAddrs) restoreSysctls() error {
	if len(l.raised) == 0 {
		return nil
	}
	err := l.inNetNS(func() error {
		var errs []error
		for _, s := range arpSysctls {
			before, ok := l.raised[s.key]
			if !ok {
				continue
			}
			if cur, err := readSysctl(s.key); err != nil || cur != strconv.Itoa(s.want) {
				continue
			}
			if err := writeSysctl(s.key, before); err != nil {
				errs = append(errs, err)
				continue
			}
			l.log.Info("restored sysctl", "key", sysctlName(s.key), "to", before)
		}
		return errors.Join(errs...)
	})
	clear(l.raised)
	return err
}

// inNetNS runs fn on a thread in the manager's namespace: /proc/sys/net
// shows the namespace of the thread that opens it.
func (l *LocalAddrs) inNetNS(fn func() error) error {
	if l.opts.NetNS == nil {
		return fn()
	}
	return doInNetNS(*l.opts.NetNS, fn)
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", key))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", sysctlName(key), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(key, val string) error {
	if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(val), 0o644); err != nil {
		return fmt.Errorf("set %s=%s: %w", sysctlName(key), val, err)
	}
	return nil
}

func sysctlName(key string) string { return strings.ReplaceAll(key, "/", ".") }

// vipAddr is the netlink form of a VIP on the local link.
func vipAddr(ip netip.Addr) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}}
	if ip.Is4() {
		a.Scope = unix.RT_SCOPE_HOST
	} else {
		a.Flags = unix.IFA_F_NODAD
		a.PreferedLft = 0
		a.ValidLft = math.MaxUint32 // forever
	}
	return a
}

func checkVIP(ip netip.Addr) (netip.Addr, error) {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.Zone() != "" || ip.IsUnspecified() || ip.IsLoopback() ||
		ip.IsMulticast() || ip.IsLinkLocalUnicast() {
		return netip.Addr{}, fmt.Errorf("%v cannot be a local VIP", ip)
	}
	return ip, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
