package reconcile

import (
	"maps"
	"net/netip"
	"slices"
)

// Announcement is one IP this node must make the network deliver to it.
type Announcement struct {
	Addr       netip.Addr
	VIP        string   // owning static VIP or "namespace/service"
	Mode       string   // "l2" | "bgp"
	Interfaces []string // L2: explicit interface choice; empty = default selection
	Local      bool     // add the address to the local dummy link
	// BGP (mode "bgp"): the paths of the address, of which this node uses
	// those that list it (BGPPath.Uses). Nil: a host route without
	// attributes (static VIPs); empty: not advertised.
	BGP []BGPPath
	// Handover: this node no longer owns the address and answers it only
	// until the next owner is seen announcing it; no gratuitous bursts.
	Handover bool
}

// Desired is the complete set of announcements for this node, keyed by IP.
type Desired map[netip.Addr]Announcement

// Sorted returns the announcements ordered by address.
func (d Desired) Sorted() []Announcement {
	out := slices.Collect(maps.Values(d))
	slices.SortFunc(out, func(a, b Announcement) int { return a.Addr.Compare(b.Addr) })
	return out
}
