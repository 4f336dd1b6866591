package netif

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// RTProtoHostlb is the routing protocol number (rtm_protocol) of every
// route hostlb installs: `ip route show proto hostlb` lists them once the
// package's /etc/iproute2/rt_protos.d/hostlb.conf names it. 157 is free in
// the kernel's RTPROT_* list (0-4, 8-18, 42, 99, 186-192), in iproute2's
// rt_protos, in FRR's rt_protos.d/frr.conf (186-198: 196 is FRR's
// staticd, so it must not be ours) and is not Calico's 80. A route of any
// other protocol is never changed or removed by RouteTable.
const RTProtoHostlb = 157

// Route is one route of hostlb's protocol: to Dst in kernel table Table
// with priority Metric, through NextHops (one: a plain route; several: one
// multipath route, RTA_MULTIPATH). The kernel keys a route by table,
// destination and metric (and TOS, always 0 here).
type Route struct {
	Table  int
	Dst    netip.Prefix
	Metric int
	// NextHops are gateways of Dst's family, sorted and without
	// duplicates (Normalize).
	NextHops []netip.Addr
}

// RouteKey is what the kernel tells routes apart by.
type RouteKey struct {
	Table  int
	Dst    netip.Prefix
	Metric int
}

// Key is r's RouteKey.
func (r Route) Key() RouteKey { return RouteKey{Table: r.Table, Dst: r.Dst, Metric: r.Metric} }

// Normalize masks Dst and sorts and deduplicates NextHops.
func (r Route) Normalize() Route {
	r.Dst = r.Dst.Masked()
	r.NextHops = slices.Clone(r.NextHops)
	slices.SortFunc(r.NextHops, netip.Addr.Compare)
	r.NextHops = slices.Compact(r.NextHops)
	return r
}

// Equal reports whether r and o are the same route with the same next
// hops (both normalised).
func (r Route) Equal(o Route) bool { return r.Key() == o.Key() && slices.Equal(r.NextHops, o.NextHops) }

// String is "203.0.113.0/24 via 192.0.2.1,192.0.2.2 table 254 metric 20".
func (r Route) String() string {
	hops := make([]string, len(r.NextHops))
	for i, h := range r.NextHops {
		hops[i] = h.String()
	}
	return fmt.Sprintf("%s via %s table %d metric %d", r.Dst, strings.Join(hops, ","), r.Table, r.Metric)
}

// mergeRoutes folds routes of one key into one, joining their next hops:
// the kernel dumps an IPv6 multipath route as one route per next hop on
// older kernels, and as one RTA_MULTIPATH route on newer ones.
func mergeRoutes(rs []Route) []Route {
	byKey := map[RouteKey]*Route{}
	var keys []RouteKey
	for _, r := range rs {
		k := r.Key()
		if m, ok := byKey[k]; ok {
			m.NextHops = append(m.NextHops, r.NextHops...)
			continue
		}
		r.NextHops = slices.Clone(r.NextHops)
		byKey[k] = &r
		keys = append(keys, k)
	}
	out := make([]Route, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k].Normalize())
	}
	slices.SortFunc(out, compareRoutes)
	return out
}

func compareRoutes(a, b Route) int {
	if c := a.Table - b.Table; c != 0 {
		return c
	}
	if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
		return c
	}
	if c := a.Dst.Bits() - b.Dst.Bits(); c != 0 {
		return c
	}
	return a.Metric - b.Metric
}
