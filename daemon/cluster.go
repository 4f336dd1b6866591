package daemon

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/placement"
	"github.com/hostlb/hostlb/daemon/reconcile"
	"github.com/hostlb/hostlb/gossip"
)

// clusterView is the ring as one reconcile pass sees it.
type clusterView struct {
	self    string
	members []gossip.Member
	// up are the members that may be given IPs: alive, health OK and not
	// leaving. A draining or not-yet-ready node is a member but not up.
	up map[string]bool
	// announcers lists, per IP, the alive members whose gossiped announced
	// set holds it, sorted. A dead member's last set is stale: not counted.
	announcers map[netip.Addr][]string
	// lagging are the alive members whose announced set this node holds
	// older than their metadata says it is (chunks still in flight).
	lagging map[string]bool
	// failing lists, per VIP name, the alive members whose health check
	// of it fails; cannot, per address, the alive members that cannot
	// announce it (their gossiped exclusions). Both sorted by node.
	failing map[string][]string
	cannot  map[netip.Addr][]string
	// lost are the members the heartbeat lost whom the ring still holds
	// alive, with when it lost them: they are out of up
	// (Daemon.overrideLost).
	lost map[string]time.Time
}

func newClusterView(self string, members []gossip.Member) clusterView {
	v := clusterView{self: self, members: members, up: map[string]bool{}, announcers: map[netip.Addr][]string{},
		lagging: map[string]bool{}, failing: map[string][]string{}, cannot: map[netip.Addr][]string{}}
	for _, m := range members { // sorted by name, so announcers are too
		if !m.Alive {
			continue
		}
		if m.AnnouncedGen < m.Meta.AnnounceGen {
			v.lagging[m.Name] = true
		}
		if m.Meta.Health == gossip.HealthOK && !m.Meta.Leaving {
			v.up[m.Name] = true
		}
		for _, a := range m.Announced {
			v.announcers[a] = append(v.announcers[a], m.Name)
		}
		for _, n := range m.Unhealthy {
			v.failing[n] = append(v.failing[n], m.Name)
		}
		for _, a := range m.Cannot {
			v.cannot[a] = append(v.cannot[a], m.Name)
		}
	}
	return v
}

// cannotAnnounce reports whether node says it cannot announce one of
// addrs.
func (v clusterView) cannotAnnounce(node string, addrs []netip.Addr) bool {
	for _, a := range addrs {
		if slices.Contains(v.cannot[a], node) {
			return true
		}
	}
	return false
}

// alive counts the members the ring holds alive (any health).
func (v clusterView) alive() int {
	n := 0
	for _, m := range v.members {
		if m.Alive {
			n++
		}
	}
	return n
}

// othersAnnounce reports whether a member other than this node announces a.
func (v clusterView) othersAnnounce(a netip.Addr) bool {
	for _, n := range v.announcers[a] {
		if n != v.self {
			return true
		}
	}
	return false
}

// placedIP is one address of a group with its placement.
type placedIP struct {
	group *reconcile.Group
	placement.Assignment
}

func (p placedIP) owns(node string) bool { return slices.Contains(p.Owners, node) }

// announcement is what the node announces when it owns p.
func (p placedIP) announcement() reconcile.Announcement { return p.group.Announcement(p.Addr) }

// placeGroups places every address of every group over the ring (SPEC
// §6). Pure: no I/O, no clock.
//
//   - Service is the group's name, Slot the slot's index; the addresses
//     of one slot (a dual-stack pair) are placed as one: the slot's first
//     address is placed, and the others get its owners.
//   - Eligible (placement's ranking set): every member the ring
//     remembers, dead or alive, that the group ranks (its Ranks, else its
//     Nodes or its selector over the member's gossiped labels). Keeping
//     dead members keeps the preferred ranks stable while a node is away,
//     so only its IPs move.
//   - Up (placement's alive set): members that are alive, health OK, not
//     leaving, that the group lets announce now (Nodes or selector), and
//     whose own health check of this group passes (they gossip the names
//     of failing VIPs with their announced set: Member.Unhealthy). A
//     failing check, or a Node excluded in Kubernetes, takes the node out
//     of the alive set rather than the ranking set, which would re-rank
//     every node after it.
//   - Cannot (Member.Cannot): a member that says it cannot announce an
//     address of a slot (no interface, no socket, local address or
//     sysctls missing) is out of that slot's alive set alone, as if it
//     were dead for it (avoidCannot): the next node takes the slot, and
//     the member keeps its other slots.
//   - Current: the one alive member whose gossiped announced set holds
//     the slot's first address ("" if none or several), so fallbacks are
//     sticky.
//
// Placement is called once per group, because each group has its own up
// set; Place treats Services independently, so this is the same answer.
func placeGroups(v clusterView, groups []reconcile.Group) []placedIP {
	return placeGroupsHeirs(v, groups, nil)
}

// placeGroupsHeirs is placeGroups that also fills heirs, when not nil,
// with the heir of every L2 address that has one owner (placement.Heirs,
// over the group's own up set): the node that takes it over if its owner
// is lost. Every address of a slot has the slot's heir.
func placeGroupsHeirs(v clusterView, groups []reconcile.Group, heirs map[netip.Addr]string) []placedIP {
	out := make([]placedIP, 0, len(groups))
	// Groups that list their nodes (Kubernetes') mostly share the lists
	// (one per class): the same lists give the same sets, unless a member
	// fails a health check of the group itself.
	type sets struct {
		eligible []string
		up       map[string]bool
		// without[n] is up without n, for heirs: shared by the groups
		// that share the sets.
		without map[string]map[string]bool
	}
	type listKey struct {
		ranks, nodes   *string
		nranks, nnodes int
	}
	memo := map[listKey]sets{}
	for gi := range groups {
		g := &groups[gi]
		failing := v.failing[g.Name]
		var key listKey
		shared := g.Ranks != nil && g.Nodes != nil && len(failing) == 0
		if shared {
			key = listKey{unsafe.SliceData(g.Ranks), unsafe.SliceData(g.Nodes), len(g.Ranks), len(g.Nodes)}
		}
		st, ok := memo[key]
		if !shared || !ok {
			st = sets{up: make(map[string]bool, len(v.up)), without: map[string]map[string]bool{}}
			for _, m := range v.members {
				if !g.Ranked(m.Name, m.Meta.Labels) {
					continue
				}
				st.eligible = append(st.eligible, m.Name)
				if v.up[m.Name] && g.Eligible(m.Name, m.Meta.Labels) && !slices.Contains(failing, m.Name) {
					st.up[m.Name] = true
				}
			}
			if shared {
				memo[key] = st
			}
		}
		eligible, up := st.eligible, st.up
		mode := placement.L2
		if g.Mode == config.ModeBGP {
			mode = placement.BGP
		}
		reqs := make([]placement.Request, 0, len(g.Slots))
		for i, slot := range g.Slots {
			if len(slot) == 0 {
				continue
			}
			r := placement.Request{Service: g.Name, Slot: i, Addr: slot[0], Mode: mode, Eligible: eligible}
			if ns := v.announcers[slot[0]]; len(ns) == 1 {
				r.Current = ns[0]
			}
			reqs = append(reqs, r)
		}
		placed := placement.Place(reqs, up)
		if len(v.cannot) > 0 {
			placed = v.avoidCannot(g, reqs, up, placed)
		}
		if heirs != nil && mode == placement.L2 {
			groupHeirs(g, reqs, placed, func(owner string) map[string]bool {
				w, ok := st.without[owner]
				if !ok {
					w = maps.Clone(up)
					delete(w, owner)
					st.without[owner] = w
				}
				return w
			}, heirs)
		}
		for _, as := range placed {
			for _, a := range g.Slots[as.Slot] {
				each := as
				each.Addr = a
				out = append(out, placedIP{group: g, Assignment: each})
			}
		}
	}
	return out
}

// groupHeirs adds to heirs the heir of every address of g's L2 slots that
// have one owner: the node Place gives the slot with that owner out of the
// up set (without(owner)), as placement.Heirs does, but with one Place per
// distinct owner of the group and the reduced up sets shared between the
// groups that share their sets, so that a pass over 10,000 one-IP
// Services does not clone the up set 10,000 times.
func groupHeirs(g *reconcile.Group, reqs []placement.Request, placed []placement.Assignment,
	without func(owner string) map[string]bool, heirs map[netip.Addr]string) {
	owner := make(map[int]string, len(placed)) // slot → its one owner
	var owners []string
	for _, a := range placed {
		if a.Mode != placement.L2 || len(a.Owners) != 1 {
			continue
		}
		owner[a.Slot] = a.Owners[0]
		if !slices.Contains(owners, a.Owners[0]) {
			owners = append(owners, a.Owners[0])
		}
	}
	for _, o := range owners {
		for _, b := range placement.Place(reqs, without(o)) {
			if owner[b.Slot] != o || b.Mode != placement.L2 || len(b.Owners) != 1 {
				continue
			}
			for _, a := range g.Slots[b.Slot] {
				heirs[a] = b.Owners[0]
			}
		}
	}
}

// avoidCannot moves the L2 slots of g whose owner cannot announce one of
// the slot's addresses: each such slot is placed again with the nodes that
// cannot announce it out of the alive set, as if they were dead for that
// slot alone, so placement's own rules (preferred node, sticky current
// owner, fallback by hash) pick the next node; the other slots keep what
// placement gave them. Repeated while the new owner cannot announce the
// slot either, at most once per member. One Place per distinct set of
// left-out nodes. Pure, like placeGroups.
func (v clusterView) avoidCannot(g *reconcile.Group, reqs []placement.Request, up map[string]bool, as []placement.Assignment) []placement.Assignment {
	var out map[int][]string // slot → members left out of it
	bySlot := make(map[int]int, len(as))
	for i, a := range as {
		bySlot[a.Slot] = i
	}
	for range len(v.members) + 1 {
		grew := false
		for _, a := range as {
			if a.Mode != placement.L2 || len(a.Owners) != 1 {
				continue
			}
			o := a.Owners[0]
			if slices.Contains(out[a.Slot], o) || !v.cannotAnnounce(o, g.Slots[a.Slot]) {
				continue
			}
			if out == nil {
				out = map[int][]string{}
			}
			out[a.Slot] = append(out[a.Slot], o)
			grew = true
		}
		if !grew {
			return as
		}
		next := slices.Clone(as)
		variants := map[string][]int{}
		for slot, ns := range out {
			slices.Sort(ns)
			k := strings.Join(ns, "\x00")
			variants[k] = append(variants[k], slot)
		}
		for k, slots := range variants {
			alive := maps.Clone(up)
			for _, n := range strings.Split(k, "\x00") {
				delete(alive, n)
			}
			for _, b := range placement.Place(reqs, alive) {
				if slices.Contains(slots, b.Slot) {
					next[bySlot[b.Slot]] = b
				}
			}
		}
		as = next
	}
	return as
}

// ownedDesired is what node owns in a placement.
func ownedDesired(node string, ps []placedIP) reconcile.Desired {
	out := reconcile.Desired{}
	for _, p := range ps {
		if p.owns(node) {
			out[p.Addr] = p.announcement()
		}
	}
	return out
}

// holdLost keeps make-before-break: an L2 address this node announced in
// prev and no longer owns stays in next while its new owner (alive in the
// ring) does not announce it yet, for at most hold. So a node handing IPs
// over — draining on SIGTERM, or giving a preferred node its IP back —
// stops answering only once the next owner answers, and clients never
// see an IP nobody answers; the two answer together for about one gossip
// round. An address with no new owner (nobody else can take it) or whose
// VIP is gone is dropped at once. holding remembers since when each
// address has been held; holdLost updates it and returns the addresses it
// gave up because hold passed. An address this node says it cannot
// announce is not held: it does not answer it anyway. Pure apart from the
// maps it is given.
func holdLost(v clusterView, prev, next reconcile.Desired, ps []placedIP, holding map[netip.Addr]time.Time, now time.Time, hold time.Duration) (expired []netip.Addr) {
	byAddr := make(map[netip.Addr]placedIP, len(ps))
	for _, p := range ps {
		byAddr[p.Addr] = p
	}
	kept := map[netip.Addr]bool{}
	for a, old := range prev {
		if _, ok := next[a]; ok || old.Mode != config.ModeL2 {
			continue
		}
		p, ok := byAddr[a]
		if !ok || p.Mode != placement.L2 || len(p.Owners) == 0 || v.othersAnnounce(a) ||
			v.cannotAnnounce(v.self, []netip.Addr{a}) {
			continue // nothing to hand over: nobody takes it, or this node does not answer it
		}
		since, ok := holding[a]
		if !ok {
			since = now
		}
		if now.Sub(since) >= hold {
			expired = append(expired, a)
			continue
		}
		holding[a] = since
		kept[a] = true
		held := p.announcement()
		held.Handover = true
		next[a] = held
	}
	for a := range holding {
		if !kept[a] {
			delete(holding, a)
		}
	}
	slices.SortFunc(expired, netip.Addr.Compare)
	return expired
}

// disagreement is an L2 address whose announcers are not exactly one:
// several nodes (a conflict: split views, or a handover in flight) or none
// while some node should (unannounced).
type disagreement struct {
	vip   string
	addr  netip.Addr
	nodes []string // the announcers
}

// disagreements compares the placement with the gossiped announced sets.
// An address nobody announces is no disagreement while this node holds an
// outdated set of every owner: under load the sets lag their owners by
// seconds, and the owner most likely announces it already.
func disagreements(v clusterView, ps []placedIP) map[netip.Addr]disagreement {
	out := map[netip.Addr]disagreement{}
	for _, p := range ps {
		if p.Mode != placement.L2 {
			continue
		}
		ns := v.announcers[p.Addr]
		unannounced := len(ns) == 0 && len(p.Owners) > 0 &&
			slices.ContainsFunc(p.Owners, func(o string) bool { return !v.lagging[o] })
		if len(ns) >= 2 || unannounced {
			out[p.Addr] = disagreement{vip: p.group.Name, addr: p.Addr, nodes: ns}
		}
	}
	return out
}

// settled reports whether this node has seen enough of the ring to take
// IPs without making them flap: another member is alive and the announced
// set of every alive member is complete (its AnnouncedGen has caught up
// with its meta), so placement sees who announces what (sticky fallbacks).
// A node alone is settled when it has no seeds to wait for.
func settled(v clusterView, seeds int) bool {
	others := 0
	for _, m := range v.members {
		if m.Name == v.self || !m.Alive {
			continue
		}
		others++
		if m.AnnouncedGen < m.Meta.AnnounceGen {
			return false
		}
	}
	return others > 0 || seeds == 0
}
