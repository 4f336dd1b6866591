package bench

import (
	"fmt"
	"net/netip"
)

// The client's addresses. Like the VIPs, they come from the documentation
// ranges a lab may use (SPEC §9): 192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24 and 2001:db8::/32.
var (
	ClientIPv4 = netip.MustParseAddr("192.0.2.254")
	ClientIPv6 = netip.MustParseAddr("2001:db8:ffff::1")
)

// ipv4Ranges hold every IPv4 VIP: the three /24s give 3 × 254 host
// addresses, less the client's.
var ipv4Ranges = []netip.Prefix{
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
}

// ipv6Range holds every IPv6 VIP.
var ipv6Range = netip.MustParsePrefix("2001:db8:1::/64")

// MaxIPv4VIPs is how many IPv4 VIPs the documentation ranges allow: 761,
// not the 1,000 or 10,000 of the IPv6 runs.
var MaxIPv4VIPs = len(allIPv4VIPs())

func allIPv4VIPs() []netip.Addr {
	var vips []netip.Addr
	for _, p := range ipv4Ranges {
		// .0 and .255 are left out: they are the network and broadcast
		// addresses of the /24 on any host that has it connected.
		for a := p.Addr().Next(); p.Contains(a) && a.As4()[3] != 255; a = a.Next() {
			if a != ClientIPv4 {
				vips = append(vips, a)
			}
		}
	}
	return vips
}

// VIPs returns n distinct VIPs of proto's family. IPv6 VIPs differ in
// their low 24 bits, so each has its own solicited-node group.
func VIPs(proto Proto, n int) ([]netip.Addr, error) {
	switch proto {
	case ARP:
		all := allIPv4VIPs()
		if n < 1 || n > len(all) {
			return nil, fmt.Errorf("VIPs: %d IPv4 VIPs asked, the documentation ranges hold 1 to %d", n, len(all))
		}
		return all[:n], nil
	case NDP:
		if n < 1 || n >= 1<<24 {
			return nil, fmt.Errorf("VIPs: %d IPv6 VIPs asked, want 1 to %d", n, 1<<24-1)
		}
		vips := make([]netip.Addr, 0, n)
		a := ipv6Range.Addr()
		for range n {
			a = a.Next()
			vips = append(vips, a)
		}
		return vips, nil
	}
	return nil, fmt.Errorf("VIPs: unknown protocol %q", proto)
}
