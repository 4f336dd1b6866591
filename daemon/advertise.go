package daemon

import (
	"bufio"
	"cmp"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hostlb/hostlb/netif"
)

// hostIface is what chooseAdvertise knows of one interface of the node.
type hostIface struct {
	Name         string
	Up, Loopback bool
	Addrs        []netip.Addr // in the order the kernel lists them
}

// notAdvertised are interfaces whose addresses never identify the node to
// its peers: [l2] exclude's defaults (container runtimes, CNIs, tunnels,
// hostlb0, lo) and a few more virtual ones that carry addresses of their
// own (docker's user bridges br-<id>, podman, LXD, Cilium's cilium_host,
// kube-router, weave, VXLAN and Geneve devices).
var notAdvertised = func() []*regexp.Regexp {
	pats := append(slices.Clone(netif.DefaultExclude),
		"^br-", "^podman", "^lxdbr", "^cilium", "^kube-bridge", "^weave", "^vxlan", "^genev")
	out := make([]*regexp.Regexp, len(pats))
	for i, p := range pats {
		out[i] = regexp.MustCompile(p)
	}
	return out
}()

// chooseAdvertise picks the IPv4 address a node advertises to the gossip
// ring when [gossip] sets neither advertise nor a specific bind address
// (SPEC §4: "the node's first global IPv4"). It is pure: ifs are the
// node's interfaces in index order, defaultRoute the interfaces holding an
// IPv4 default route, best first.
//
// It never picks a loopback, link-local or otherwise non-global address,
// nor one of a down or virtual interface (notAdvertised: docker0, br-*,
// veths, hostlb0 with its VIPs ...). It prefers the first global address
// of the default route's interface, which is how the node reaches its
// peers; else the first global address of any other interface. ok is
// false when the node has none; iface names the interface chosen.
func chooseAdvertise(ifs []hostIface, defaultRoute []string) (addr netip.Addr, iface string, ok bool) {
	return chooseNodeAddr(ifs, defaultRoute, false)
}

// chooseNodeAddr is chooseAdvertise for either family: v6 picks the
// first global IPv6 by the same rule (the BGP output's IPv6 next hop).
// defaultRoute holds the IPv4 default route's interfaces for both: the
// interface the node reaches its peers through usually carries both
// families.
func chooseNodeAddr(ifs []hostIface, defaultRoute []string, v6 bool) (addr netip.Addr, iface string, ok bool) {
	first := func(h hostIface) (netip.Addr, bool) {
		if !h.Up || h.Loopback || slices.ContainsFunc(notAdvertised, func(r *regexp.Regexp) bool { return r.MatchString(h.Name) }) {
			return netip.Addr{}, false
		}
		for _, a := range h.Addrs {
			if a = a.Unmap(); a.Is6() == v6 && a.IsGlobalUnicast() {
				return a, true
			}
		}
		return netip.Addr{}, false
	}
	for _, name := range defaultRoute {
		if i := slices.IndexFunc(ifs, func(h hostIface) bool { return h.Name == name }); i >= 0 {
			if a, ok := first(ifs[i]); ok {
				return a, name, true
			}
		}
	}
	for _, h := range ifs {
		if a, ok := first(h); ok {
			return a, h.Name, true
		}
	}
	return netip.Addr{}, "", false
}

// defaultRouteIfaces parses /proc/net/route into the names of the
// interfaces holding an IPv4 default route that is up, lowest metric first.
func defaultRouteIfaces(r io.Reader) []string {
	type route struct {
		iface  string
		metric uint64
	}
	var routes []route
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue // the header, or not a default route
		}
		flags, err1 := strconv.ParseUint(f[3], 16, 32)
		metric, err2 := strconv.ParseUint(f[6], 10, 32)
		const rtfUp = 0x1
		if err1 != nil || err2 != nil || flags&rtfUp == 0 {
			continue
		}
		routes = append(routes, route{f[0], metric})
	}
	slices.SortStableFunc(routes, func(a, b route) int { return cmp.Compare(a.metric, b.metric) })
	var out []string
	for _, rt := range routes {
		if !slices.Contains(out, rt.iface) {
			out = append(out, rt.iface)
		}
	}
	return out
}

// hostIfaces lists the node's interfaces for chooseAdvertise. An
// interface whose addresses cannot be read is listed without any.
func hostIfaces() []hostIface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	out := make([]hostIface, 0, len(ifs))
	for _, ifc := range ifs {
		h := hostIface{Name: ifc.Name, Up: ifc.Flags&net.FlagUp != 0, Loopback: ifc.Flags&net.FlagLoopback != 0}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(p.IP); ok {
					h.Addrs = append(h.Addrs, ip.Unmap())
				}
			}
		}
		out = append(out, h)
	}
	return out
}

// advertiseIPv4 returns the address to advertise when [gossip] leaves it
// to the node (chooseAdvertise over the live interfaces and routes), and
// logs the choice. A node without any usable address advertises
// 127.0.0.1, which only a lone node can use (a single node in an isolated
// network namespace, say): gossip still starts, so the node serves its
// VIPs alone, and the warning says how to join others.
func advertiseIPv4(log *slog.Logger) netip.Addr {
	var defaults []string
	if f, err := os.Open("/proc/net/route"); err == nil {
		defaults = defaultRouteIfaces(f)
		_ = f.Close()
	}
	addr, iface, ok := chooseAdvertise(hostIfaces(), defaults)
	if !ok {
		addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		log.Warn("gossip advertise address not set and the node has no global IPv4 on a non-virtual interface; "+
			"advertising loopback, so no other node can reach this one: set [gossip] advertise or bind", "addr", addr)
		return addr
	}
	log.Info("gossip advertise address not set; using the node's global IPv4", "addr", addr, "iface", iface,
		"default_route", slices.Contains(defaults, iface))
	return addr
}
