package reconcile

import (
	"net/netip"
	"slices"
	"testing"
)

func TestGroupEligibleBySelectorOrNodes(t *testing.T) {
	rackA := map[string]string{"rack": "a"}
	for _, tc := range []struct {
		name   string
		g      Group
		node   string
		labels map[string]string
		want   bool
	}{
		{"empty selector selects all", Group{}, "n1", nil, true},
		{"selector matches", Group{Selector: rackA}, "n1", map[string]string{"rack": "a", "x": "y"}, true},
		{"selector value differs", Group{Selector: rackA}, "n1", map[string]string{"rack": "b"}, false},
		{"selector key missing", Group{Selector: rackA}, "n1", nil, false},
		{"nodes list wins over labels", Group{Selector: rackA, Nodes: []string{"n2"}}, "n1", rackA, false},
		{"in nodes list", Group{Nodes: []string{"n1", "n2"}}, "n2", nil, true},
		{"empty nodes list: nobody", Group{Nodes: []string{}}, "n1", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.g.Eligible(tc.node, tc.labels); got != tc.want {
				t.Errorf("Eligible = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestGroupAddrsAndAnnouncement(t *testing.T) {
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.2")
	g := Group{Name: "ns/svc", Mode: "l2", Slots: [][]netip.Addr{{a, b}, {c}}, Interfaces: []string{"eth0"}, Local: true}
	if got := g.Addrs(); !slices.Equal(got, []netip.Addr{a, b, c}) {
		t.Errorf("Addrs = %v", got)
	}
	an := g.Announcement(b)
	if an.Addr != b || an.VIP != "ns/svc" || an.Mode != "l2" || !an.Local || !slices.Equal(an.Interfaces, []string{"eth0"}) {
		t.Errorf("Announcement = %+v", an)
	}
}
