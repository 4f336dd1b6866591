package daemon

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func hostIf(name string, addrs ...string) hostIface {
	h := hostIface{Name: name, Up: true}
	for _, a := range addrs {
		h.Addrs = append(h.Addrs, netip.MustParseAddr(a))
	}
	return h
}

func TestChooseAdvertise(t *testing.T) {
	lo := hostIf("lo", "127.0.0.1", "::1")
	lo.Loopback = true
	down := hostIf("eth9", "203.0.113.9")
	down.Up = false
	tests := []struct {
		name     string
		ifs      []hostIface
		defaults []string
		want     string // "" = none
		wantIf   string
	}{{
		name:     "the default route's interface wins over an earlier one",
		ifs:      []hostIface{lo, hostIf("eth0", "198.51.100.5"), hostIf("eth1", "192.0.2.10")},
		defaults: []string{"eth1"},
		want:     "192.0.2.10", wantIf: "eth1",
	}, {
		name: "docker0, bridges, veths, hostlb0 come first but are never used",
		ifs: []hostIface{lo, hostIf("docker0", "203.0.113.1"), hostIf("br-0a1b2c3d4e5f", "203.0.113.17"),
			hostIf("veth12ab", "203.0.113.33"), hostIf("hostlb0", "203.0.113.100"), hostIf("virbr0", "203.0.113.49"),
			hostIf("cni0", "203.0.113.65"), hostIf("cilium_host", "203.0.113.81"), hostIf("kube-ipvs0", "203.0.113.200"),
			hostIf("eno1", "fe80::1", "169.254.10.1", "2001:db8::5", "198.51.100.7")},
		want: "198.51.100.7", wantIf: "eno1",
	}, {
		name:     "a default route through a virtual interface is not followed",
		ifs:      []hostIface{hostIf("docker0", "203.0.113.1"), hostIf("eth0", "192.0.2.10")},
		defaults: []string{"docker0"},
		want:     "192.0.2.10", wantIf: "eth0",
	}, {
		name:     "a default route's interface without a global IPv4 falls back to the others",
		ifs:      []hostIface{hostIf("eth0", "fe80::1", "2001:db8::1"), hostIf("eth1", "192.0.2.10")},
		defaults: []string{"eth0"},
		want:     "192.0.2.10", wantIf: "eth1",
	}, {
		name:     "the better of two default routes",
		ifs:      []hostIface{hostIf("eth0", "198.51.100.5"), hostIf("bond0", "192.0.2.10")},
		defaults: []string{"bond0", "eth0"},
		want:     "192.0.2.10", wantIf: "bond0",
	}, {
		name: "a down interface is skipped",
		ifs:  []hostIface{down, hostIf("eth0", "192.0.2.10")},
		want: "192.0.2.10", wantIf: "eth0",
	}, {
		name: "a bridge that is the node's uplink is fine",
		ifs:  []hostIface{hostIf("br0", "192.0.2.10")}, defaults: []string{"br0"},
		want: "192.0.2.10", wantIf: "br0",
	}, {
		name: "only loopback, link-local and virtual addresses: none",
		ifs:  []hostIface{lo, hostIf("eth0", "169.254.1.1", "fe80::1"), hostIf("docker0", "203.0.113.1"), hostIf("hostlb0", "192.0.2.100")},
	}, {
		name: "no interfaces at all",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ifname, ok := chooseAdvertise(tt.ifs, tt.defaults)
			if tt.want == "" {
				if ok {
					t.Errorf("got %s on %s, want none", addr, ifname)
				}
				return
			}
			if !ok || addr != netip.MustParseAddr(tt.want) || ifname != tt.wantIf {
				t.Errorf("got %s on %q (ok %v), want %s on %q", addr, ifname, ok, tt.want, tt.wantIf)
			}
		})
	}
}

func TestDefaultRouteIfaces(t *testing.T) {
	const route = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	0102000A	0003	0	0	200	00000000	0	0	0
eth0	0002000A	00000000	0001	0	0	0	00FFFFFF	0	0	0
bond0	00000000	01020C0A	0003	0	0	100	00000000	0	0	0
eth1	00000000	01020C0A	0002	0	0	50	00000000	0	0	0
eth2	00000000	01020C0A	0003	0	0	300	00000000	0	0	0
eth2	00000000	01020C0A	0003	0	0	400	00000000	0	0	0
garbage
`
	got := defaultRouteIfaces(strings.NewReader(route))
	// eth1's route is not up (no RTF_UP); bond0 has the lowest metric.
	if want := []string{"bond0", "eth0", "eth2"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := defaultRouteIfaces(strings.NewReader("")); len(got) != 0 {
		t.Errorf("empty table: %q", got)
	}
}
