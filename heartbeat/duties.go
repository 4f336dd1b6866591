package heartbeat

import (
	"net/netip"
	"slices"
)

// Duties returns node's part in the heartbeat: targets, the nodes it sends
// heartbeats to (the heirs of the IPs it owns), and watched, the nodes it
// watches (the owners of the IPs it is heir to). owners maps each L2 IP to
// its owner ("" for none) and heir gives each IP's heir ("" for none; see
// placement.Heirs). Both results are sorted, without duplicates and
// without node itself.
//
// This is what bounds the traffic: one heartbeat per (owner, heir) pair per
// interval, whatever the number of IPs the pair shares, so a node sends at
// most one datagram per other node and interval.
func Duties(node string, owners map[netip.Addr]string, heir func(netip.Addr) string) (targets, watched []string) {
	for ip, owner := range owners {
		if owner == "" {
			continue
		}
		h := heir(ip)
		if h == "" || h == owner {
			continue
		}
		switch node {
		case owner:
			targets = append(targets, h)
		case h:
			watched = append(watched, owner)
		}
	}
	slices.Sort(targets)
	slices.Sort(watched)
	return slices.Compact(targets), slices.Compact(watched)
}
