package netif

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RouteTableOptions configure a RouteTable.
type RouteTableOptions struct {
	// Log receives lost subscriptions. Default: discard.
	Log *slog.Logger
	// NetNS, when set, is the network namespace whose routes are managed
	// instead of the caller's. The caller keeps it open while the
	// RouteTable is used.
	NetNS *netns.NsHandle
}

// RouteTable is hostlb's own routes in the kernel, those of protocol
// RTProtoHostlb, in every table. It never changes or removes a route of
// another protocol: Add refuses a key another route holds (NLM_F_EXCL),
// Replace and Delete name the protocol, which the kernel matches. New is
// inert (the netlink socket opens on first use); methods may be called
// from any goroutine.
type RouteTable struct {
	opts RouteTableOptions
	log  *slog.Logger

	mu sync.Mutex      // guards h
	h  *netlink.Handle // nil until first use and after Close
}

// NewRouteTable returns an inert RouteTable.
func NewRouteTable(opts RouteTableOptions) *RouteTable {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RouteTable{opts: opts, log: log}
}

func (t *RouteTable) handle() (*netlink.Handle, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h != nil {
		return t.h, nil
	}
	var (
		h   *netlink.Handle
		err error
	)
	if t.opts.NetNS != nil {
		h, err = netlink.NewHandleAt(*t.opts.NetNS, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	t.h = h
	return h, nil
}

// Close closes the netlink socket; a later call opens a new one.
func (t *RouteTable) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h != nil {
		t.h.Close()
		t.h = nil
	}
	return nil
}

// List returns every route of protocol RTProtoHostlb in every table,
// both families, merged per key (mergeRoutes) and sorted. It retries a
// dump the kernel reports as interrupted by a concurrent change.
func (t *RouteTable) List() ([]Route, error) {
	h, err := t.handle()
	if err != nil {
		return nil, err
	}
	filter := &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: RTProtoHostlb}
	for attempt := 0; ; attempt++ {
		var raw []netlink.Route
		var errs []error
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			rs, err := h.RouteListFiltered(fam, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
			errs = append(errs, err)
			raw = append(raw, rs...)
		}
		err := errors.Join(errs...)
		if err == nil {
			return routesFromNetlink(raw), nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) || attempt == 10 {
			return nil, fmt.Errorf("list routes of proto %d: %w", RTProtoHostlb, err)
		}
	}
}

// routesFromNetlink turns the kernel's routes of our protocol into Routes,
// merged per key; unicast routes with gateways only (nothing else is
// ours).
func routesFromNetlink(raw []netlink.Route) []Route {
	var out []Route
	for _, nr := range raw {
		if nr.Protocol != RTProtoHostlb || nr.Type != unix.RTN_UNICAST {
			continue
		}
		r, ok := routeFromNetlink(nr)
		if ok {
			out = append(out, r)
		}
	}
	return mergeRoutes(out)
}

func routeFromNetlink(nr netlink.Route) (Route, bool) {
	r := Route{Table: nr.Table, Metric: nr.Priority}
	if nr.Dst != nil {
		a, ok := netip.AddrFromSlice(nr.Dst.IP)
		if !ok {
			return Route{}, false
		}
		ones, _ := nr.Dst.Mask.Size()
		if nr.Family == netlink.FAMILY_V4 || a.Is4In6() && len(nr.Dst.Mask) == net.IPv4len {
			a = a.Unmap()
		}
		r.Dst = netip.PrefixFrom(a, ones)
	} else {
		switch nr.Family {
		case netlink.FAMILY_V4:
			r.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		case netlink.FAMILY_V6:
			r.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		default:
			return Route{}, false
		}
	}
	add := func(ip net.IP) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			if r.Dst.Addr().Is4() {
				a = a.Unmap()
			}
			r.NextHops = append(r.NextHops, a)
		}
	}
	if nr.Gw != nil {
		add(nr.Gw)
	}
	for _, nh := range nr.MultiPath {
		if nh != nil && nh.Gw != nil {
			add(nh.Gw)
		}
	}
	return r.Normalize(), true
}

// toNetlink is the kernel's form of r, protocol RTProtoHostlb.
func toNetlink(r Route) (*netlink.Route, error) {
	r = r.Normalize()
	if !r.Dst.IsValid() {
		return nil, fmt.Errorf("route %s: no destination", r)
	}
	if r.Table <= 0 || r.Metric < 0 {
		return nil, fmt.Errorf("route %s: bad table or metric", r)
	}
	fam := netlink.FAMILY_V4
	if r.Dst.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	nr := &netlink.Route{
		Family:   fam,
		Dst:      &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())},
		Table:    r.Table,
		Priority: r.Metric,
		Protocol: RTProtoHostlb,
		Type:     unix.RTN_UNICAST,
	}
	for _, h := range r.NextHops {
		if h.Is4() != r.Dst.Addr().Is4() {
			return nil, fmt.Errorf("route %s: next hop %s of the other family", r, h)
		}
	}
	switch len(r.NextHops) {
	case 0:
		return nil, fmt.Errorf("route %s: no next hop", r)
	case 1:
		nr.Gw = r.NextHops[0].AsSlice()
	default:
		for _, h := range r.NextHops {
			nr.MultiPath = append(nr.MultiPath, &netlink.NexthopInfo{Gw: h.AsSlice()})
		}
	}
	return nr, nil
}

// Add installs r; it fails (EEXIST) when any route, of any protocol,
// holds r's key, so it never replaces another protocol's route.
func (t *RouteTable) Add(r Route) error {
	return t.apply(r, "add", (*netlink.Handle).RouteAdd)
}

// Replace changes the next hops of our route with r's key (NLM_F_REPLACE).
// The caller checks with List that the route of that key is ours.
func (t *RouteTable) Replace(r Route) error {
	return t.apply(r, "replace", (*netlink.Handle).RouteReplace)
}

// apply hands r to one netlink route operation.
func (t *RouteTable) apply(r Route, verb string, op func(*netlink.Handle, *netlink.Route) error) error {
	nr, err := toNetlink(r)
	if err != nil {
		return err
	}
	h, err := t.handle()
	if err != nil {
		return err
	}
	if err := op(h, nr); err != nil {
		return fmt.Errorf("%s route %s: %w", verb, r, err)
	}
	return nil
}

// Delete removes our route with r's key, every next hop of it. The kernel
// matches the protocol, so a route of another protocol with the same key
// stays (ESRCH). A route already gone is no error.
func (t *RouteTable) Delete(r Route) error {
	r = r.Normalize()
	fam := netlink.FAMILY_V4
	if r.Dst.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	h, err := t.handle()
	if err != nil {
		return err
	}
	nr := &netlink.Route{
		Family:   fam,
		Dst:      &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())},
		Table:    r.Table,
		Priority: r.Metric,
		Protocol: RTProtoHostlb,
	}
	if err := h.RouteDel(nr); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete route %s: %w", r, err)
	}
	return nil
}

// Watch calls changed after every change to a route of our protocol, and
// after every (re)subscription, so that a change missed while the
// subscription was lost (ENOBUFS after an event storm: a netlink overrun)
// is found by the caller's next List. It blocks until ctx is done and
// returns nil then; it returns an error only when the first subscription
// fails. changed runs on Watch's goroutine and must not block.
func (t *RouteTable) Watch(ctx context.Context, changed func()) error {
	const minBackoff, maxBackoff = 50 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for first := true; ; first = false {
		started := time.Now()
		subscribed, err := t.watch(ctx, changed)
		if ctx.Err() != nil {
			return nil //nolint:nilerr // asked to stop; err is the teardown
		}
		if first && !subscribed {
			return fmt.Errorf("follow routes: %w", err)
		}
		if time.Since(started) > time.Minute {
			backoff = minBackoff
		}
		t.log.Warn("route subscription lost; resubscribing and resyncing", "err", err, "retry_in", backoff)
		tm := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			tm.Stop()
			return nil
		case <-tm.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// watch is one subscription: it returns when ctx is done or the
// subscription fails, after the netlink goroutine has exited.
func (t *RouteTable) watch(ctx context.Context, changed func()) (subscribed bool, err error) {
	done := make(chan struct{})
	ch := make(chan netlink.RouteUpdate, 256)
	var (
		errMu   sync.Mutex // guards lastErr
		lastErr error
	)
	opts := netlink.RouteSubscribeOptions{
		Namespace: t.opts.NetNS,
		ErrorCallback: func(err error) {
			select {
			case <-done:
				return
			default:
			}
			if strings.HasPrefix(err.Error(), "Receive failed") {
				errMu.Lock()
				lastErr = err
				errMu.Unlock()
				return
			}
			// A message the library could not parse: resync to be safe.
			changed()
		},
		ReceiveBufferSize:      1 << 20,
		ReceiveBufferForceSize: true,
	}
	if err := netlink.RouteSubscribeWithOptions(ch, done, opts); err != nil {
		opts.ReceiveBufferForceSize = false
		if err := netlink.RouteSubscribeWithOptions(ch, done, opts); err != nil {
			return false, fmt.Errorf("subscribe to routes: %w", err)
		}
	}
	open := true
	defer func() {
		close(done)
		for open {
			_, open = <-ch
		}
	}()
	changed() // whatever changed before the subscription
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case u, ok := <-ch:
			if !ok {
				open = false
				errMu.Lock()
				err := lastErr
				errMu.Unlock()
				if err == nil {
					err = errors.New("route subscription closed")
				}
				return true, err
			}
			if u.Protocol == RTProtoHostlb {
				changed()
			}
		}
	}
}
