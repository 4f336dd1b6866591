package reconcile

import "net/netip"

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
	return Announcement{Addr: addr, VIP: g.Name, Mode: g.Mode, Interfaces: g.Interfaces, Local: g.Local}
}

// Report is what a node made of one address it owns after a pass: the
// interfaces it answers on, or why it cannot (Err). Outputs report them so
// that a source can tell its users (the Kubernetes source's Announcing and
// AnnounceFailed Events).
type Report struct {
	Group  string
	Addr   netip.Addr
	Ifaces []string // sorted; empty when it cannot announce
	Err    string   // why not, when Ifaces is empty
}
