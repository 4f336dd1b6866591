package netif

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func ipNet(p string) *net.IPNet {
	_, n, err := net.ParseCIDR(p)
	if err != nil {
		panic(err)
	}
	return n
}

// The kernel dumps an IPv6 multipath route as one route per next hop on
// older kernels: they are merged into one Route; other protocols and
// types are dropped.
func TestRoutesFromNetlinkMergesAndFilters(t *testing.T) {
	raw := []netlink.Route{
		{Family: netlink.FAMILY_V6, Dst: ipNet("2001:db8:5::/48"), Table: 100, Priority: 20, Protocol: RTProtoHostlb,
			Type: unix.RTN_UNICAST, Gw: net.ParseIP("2001:db8::11")},
		{Family: netlink.FAMILY_V6, Dst: ipNet("2001:db8:5::/48"), Table: 100, Priority: 20, Protocol: RTProtoHostlb,
			Type: unix.RTN_UNICAST, Gw: net.ParseIP("2001:db8::10")},
		{Family: netlink.FAMILY_V4, Dst: nil, Table: 254, Priority: 20, Protocol: RTProtoHostlb, Type: unix.RTN_UNICAST,
			MultiPath: []*netlink.NexthopInfo{{Gw: net.ParseIP("192.0.2.11")}, {Gw: net.ParseIP("192.0.2.10")}}},
		{Family: netlink.FAMILY_V4, Dst: ipNet("203.0.113.0/24"), Table: 254, Protocol: 4, Type: unix.RTN_UNICAST,
			Gw: net.ParseIP("192.0.2.1")},
		{Family: netlink.FAMILY_V4, Dst: ipNet("203.0.113.0/24"), Table: 254, Protocol: RTProtoHostlb, Type: unix.RTN_BLACKHOLE},
	}
	want := []Route{
		{Table: 100, Dst: netip.MustParsePrefix("2001:db8:5::/48"), Metric: 20,
			NextHops: []netip.Addr{netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::11")}},
		{Table: 254, Dst: netip.MustParsePrefix("0.0.0.0/0"), Metric: 20,
			NextHops: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")}},
	}
	if diff := cmp.Diff(want, routesFromNetlink(raw)); diff != "" {
		t.Errorf("routesFromNetlink (-want +got):\n%s", diff)
	}
}

func mustRoute(table int, dst string, metric int, hops ...string) Route {
	r := Route{Table: table, Dst: netip.MustParsePrefix(dst), Metric: metric}
	for _, h := range hops {
		r.NextHops = append(r.NextHops, netip.MustParseAddr(h))
	}
	return r
}

// Against the real kernel in a namespace: install, replace with
// multipath (both families), remove; routes of another protocol — at the
// same key too — stay as they were; Watch reports our changes.
func TestRouteTableInKernel(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "rt")
	ns.ip(t, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	ns.ip(t, "link", "set", "d1", "up")
	ns.ip(t, "link", "set", "d0", "up")
	ns.ip(t, "addr", "add", "192.0.2.1/24", "dev", "d0")
	ns.ip(t, "addr", "add", "2001:db8::1/64", "dev", "d0", "nodad")
	// Other protocols' routes: one at a key we will want, one beside.
	ns.ip(t, "route", "add", "203.0.113.0/24", "via", "192.0.2.50", "table", "100", "metric", "20", "proto", "static")
	ns.ip(t, "route", "add", "198.51.100.0/25", "via", "192.0.2.51", "table", "100", "metric", "20", "proto", "boot")
	ns.ip(t, "-6", "route", "add", "2001:db8:7::/48", "via", "2001:db8::50", "table", "100", "metric", "20", "proto", "static")
	foreign := func() string {
		out, err := exec.Command("ip", "-n", ns.name, "route", "show", "table", "100").CombinedOutput()
		if err != nil {
			t.Fatalf("ip route show: %v: %s", err, out)
		}
		out6, err := exec.Command("ip", "-n", ns.name, "-6", "route", "show", "table", "100").CombinedOutput()
		if err != nil {
			t.Fatalf("ip -6 route show: %v: %s", err, out6)
		}
		var keep []string
		for _, l := range strings.Split(string(out)+string(out6), "\n") {
			if l != "" && !strings.Contains(l, "proto 157") {
				keep = append(keep, strings.TrimSpace(l))
			}
		}
		return strings.Join(keep, "\n")
	}
	before := foreign()

	h := ns.h
	rt := NewRouteTable(RouteTableOptions{NetNS: &h})
	defer rt.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu     sync.Mutex // guards events
		events int
	)
	watched := make(chan error, 1)
	go func() {
		watched <- rt.Watch(ctx, func() { mu.Lock(); events++; mu.Unlock() })
	}()
	defer func() {
		cancel()
		if err := <-watched; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()
	waitEvents := func(atLeast int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			n := events
			mu.Unlock()
			if n >= atLeast {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d route events, want at least %d", n, atLeast)
			}
			time.Sleep(5 * time.Millisecond) // polling interval
		}
	}
	waitEvents(1) // the subscription's own

	list := func(want ...Route) {
		t.Helper()
		got, err := rt.List()
		if err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = []Route{}
		}
		if got == nil {
			got = []Route{}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
		}
	}
	list()

	one4 := mustRoute(100, "198.51.100.0/24", 20, "192.0.2.10")
	if err := rt.Add(one4); err != nil {
		t.Fatal(err)
	}
	waitEvents(2)
	list(one4)
	// Another protocol's key is refused, not taken.
	if err := rt.Add(mustRoute(100, "203.0.113.0/24", 20, "192.0.2.10")); !errors.Is(err, unix.EEXIST) {
		t.Errorf("Add onto a static route's key: %v, want EEXIST", err)
	}
	multi4 := mustRoute(100, "198.51.100.0/24", 20, "192.0.2.11", "192.0.2.10")
	if err := rt.Replace(multi4); err != nil {
		t.Fatal(err)
	}
	multi6 := mustRoute(100, "2001:db8:5::/48", 20, "2001:db8::11", "2001:db8::10")
	if err := rt.Add(multi6); err != nil {
		t.Fatal(err)
	}
	dflt := mustRoute(254, "0.0.0.0/0", 30, "192.0.2.12")
	if err := rt.Add(dflt); err != nil {
		t.Fatal(err)
	}
	list(multi4.Normalize(), multi6.Normalize(), dflt)
	if out, _ := exec.Command("ip", "-n", ns.name, "route", "show", "table", "100", "proto", "157").CombinedOutput(); !strings.Contains(string(out), "nexthop via 192.0.2.10") || !strings.Contains(string(out), "nexthop via 192.0.2.11") {
		t.Errorf("ip route show table 100 proto 157:\n%s\nwant a multipath route", out)
	}
	one6 := mustRoute(100, "2001:db8:5::/48", 20, "2001:db8::12")
	if err := rt.Replace(one6); err != nil {
		t.Fatal(err)
	}
	list(multi4.Normalize(), one6, dflt)

	// Remove: ours only. A key held only by another protocol is no error
	// and stays.
	for _, r := range []Route{multi4, one6, dflt, mustRoute(100, "203.0.113.0/24", 20, "192.0.2.50"), mustRoute(100, "2001:db8:7::/48", 20)} {
		if err := rt.Delete(r); err != nil {
			t.Errorf("Delete(%s): %v", r, err)
		}
	}
	list()
	if after := foreign(); after != before {
		t.Errorf("routes of other protocols changed:\nbefore\n%s\nafter\n%s", before, after)
	}
	if !slices.Contains(strings.Split(before, "\n"), "203.0.113.0/24 via 192.0.2.50 dev d0 proto static metric 20") {
		t.Errorf("the static route is not as expected:\n%s", before)
	}
}
