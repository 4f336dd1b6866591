package daemon

import (
	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
)

// StaticDesired returns the announcements of the static [[vip]] entries this
// node is eligible for (every key of the VIP's node_selector equals the
// node's label): what a node without a gossip ring announces (with a ring,
// placeStatic decides). Pure: no I/O.
func StaticDesired(labels map[string]string, vips []config.VIP) reconcile.Desired {
	out := reconcile.Desired{}
	for _, v := range vips {
		if !selects(v.NodeSelector, labels) {
			continue
		}
		for _, a := range v.Addresses {
			out[a] = reconcile.Announcement{
				Addr: a, VIP: v.Name, Mode: v.Mode, Interfaces: v.Interfaces, Local: v.Local,
			}
		}
	}
	return out
}

func selects(selector, labels map[string]string) bool {
	for k, want := range selector {
		if got, ok := labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}
