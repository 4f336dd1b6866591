package daemon

import (
	"net/netip"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
)

// StaticGroups turns the static [[vip]] entries into the neutral groups
// every input produces: each address is a slot of its own (so a VIP's
// addresses spread over nodes), eligibility by node_selector over the
// nodes' gossiped labels. Pure: no I/O.
func StaticGroups(vips []config.VIP) []reconcile.Group {
	out := make([]reconcile.Group, 0, len(vips))
	for _, v := range vips {
		g := reconcile.Group{
			Name: v.Name, Source: "static", Mode: v.Mode, Selector: v.NodeSelector,
			Interfaces: v.Interfaces, Local: v.Local,
		}
		for _, a := range v.Addresses {
			g.Slots = append(g.Slots, []netip.Addr{a})
		}
		out = append(out, g)
	}
	return out
}

// localDesired is what a node without a gossip ring announces: every
// address of every group it is eligible for (with a ring, placeGroups
// decides). Pure: no I/O.
func localDesired(node string, labels map[string]string, groups []reconcile.Group) reconcile.Desired {
	out := reconcile.Desired{}
	for _, g := range groups {
		if !g.Eligible(node, labels) {
			continue
		}
		for _, a := range g.Addrs() {
			out[a] = g.Announcement(a)
		}
	}
	return out
}
