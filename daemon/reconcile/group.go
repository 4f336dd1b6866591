package reconcile

import (
	"net/netip"
	"slices"
)

// Group is the neutral input of a pass: one named set of addresses that
// are announced together, whatever produced it. A static [[vip]] and a
// Kubernetes Service (daemon/kube) both become Groups, and placement never
// sees where a Group came from (SPEC §2).
type Group struct {
	// Name is the VIP name, or "namespace/name" of a Service: the identity
	// placement spreads a group's slots by, and the key of per-node health
	// checks.
	Name string
	// Source says what produced the group ("static", "kubernetes"), for
	// logs only.
	Source string
	Mode   string // "l2" | "bgp"
	// Slots are the group's addresses by slot: the addresses of one slot
	// (a Service's IPv4 and IPv6 of one dual-stack IP) always go to the
	// same node, distinct slots preferably to distinct nodes.
	Slots [][]netip.Addr
	// Eligibility: when Nodes is nil, every node whose labels match
	// Selector (every key equal; empty selects all) — static VIPs, with
	// the labels each node gossips; otherwise exactly the nodes in Nodes
	// (Kubernetes computes them from Node objects and endpoints).
	Selector map[string]string
	Nodes    []string
	// Ranks, when not nil, are the nodes that set the preferred order of
	// the slots (a superset of Nodes: Kubernetes ranks every Node the
	// class selects, and lets only those in Nodes announce). A ranked node
	// that may not announce now is passed over like a dead one, so only
	// the IPs it held move. Nil: the eligible nodes rank.
	Ranks []string
	// Interfaces (L2): the explicit interface choice; empty = [l2] rules.
	Interfaces []string
	// Local: the owner adds the addresses to the local dummy link.
	Local bool
	// ETPLocal: externalTrafficPolicy Local (Kubernetes), so Nodes holds
	// only nodes with a ready local endpoint.
	ETPLocal bool
	// BGP (Kubernetes, mode "bgp"), when not nil, says how each address
	// is advertised: its paths (one per advertisement that covers it),
	// each used by the nodes it lists. An address of such a group without
	// an entry is advertised by nobody. Nil (static VIPs): every owner
	// advertises each address as a host route without attributes.
	BGP map[netip.Addr][]BGPPath
}

// BGPPath is one way an address is advertised over BGP: a
// MetalLoadBalancerConfiguration's advertisement of the address's pool.
type BGPPath struct {
	// Nodes are the nodes that advertise it (sorted), when they own the
	// address; nil: every owner.
	Nodes []string
	// Communities are RFC 1997 communities (well-known ones included);
	// LargeCommunities RFC 8092 (global, local1, local2).
	Communities      []uint32
	LargeCommunities [][3]uint32
	// LocalPref: 0 = the speaker's default.
	LocalPref uint32
	// AggregationLength, when not 0, advertises the covering prefix of
	// that length instead of the host route.
	AggregationLength int
	// Peers are the addresses of the peers it goes to (sorted): those of
	// its Configuration; nil: every peer of the node.
	Peers []netip.Addr
	// Source names the advertisement ("config/frontend#0"), for logs.
	Source string
}

// Uses reports whether node advertises p.
func (p BGPPath) Uses(node string) bool {
	return p.Nodes == nil || slices.Contains(p.Nodes, node)
}

// Addrs returns every address of the group, slot by slot.
func (g Group) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, s := range g.Slots {
		out = append(out, s...)
	}
	return out
}

// Eligible reports whether a node with these labels may announce the group.
func (g Group) Eligible(node string, labels map[string]string) bool {
	if g.Nodes != nil {
		for _, n := range g.Nodes {
			if n == node {
				return true
			}
		}
		return false
	}
	for k, want := range g.Selector {
		if got, ok := labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

// Ranked reports whether node takes part in the preferred order.
func (g Group) Ranked(node string, labels map[string]string) bool {
	if g.Ranks == nil {
		return g.Eligible(node, labels)
	}
	for _, n := range g.Ranks {
		if n == node {
			return true
		}
	}
	return false
}

// Announcement returns what the owner of addr in g announces.
func (g Group) Announcement(addr netip.Addr) Announcement {
	a := Announcement{Addr: addr, VIP: g.Name, Mode: g.Mode, Interfaces: g.Interfaces, Local: g.Local}
	if g.BGP != nil {
		a.BGP = g.BGP[addr]
		if a.BGP == nil {
			a.BGP = []BGPPath{} // advertised by nobody
		}
	}
	return a
}

// Report is what a node made of one address it owns after a pass: the
// interfaces it answers on, or why it cannot (Err). Outputs report them so
// that a source can tell its users (the Kubernetes source's Announcing and
// AnnounceFailed Events).
type Report struct {
	Group string
	Addr  netip.Addr
	// Mode is "l2" (the zero value means l2 too) or "bgp".
	Mode string
	// Ifaces: L2, the interfaces it is answered on; BGP, the prefixes it
	// is advertised as. Sorted; empty when it cannot announce.
	Ifaces []string
	Err    string // why not, when Ifaces is empty
}
