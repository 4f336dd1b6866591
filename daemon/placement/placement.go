package placement

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// Mode is how an IP is announced. The zero value is invalid: an IP with an
// unknown mode gets no owner, so nobody announces what it does not understand.
type Mode uint8

// The announcement modes.
const (
	L2  Mode = iota + 1 // exactly one node answers ARP/NDP for the IP
	BGP                 // every alive eligible node advertises the IP
)

func (m Mode) String() string {
	switch m {
	case L2:
		return "l2"
	case BGP:
		return "bgp"
	}
	return "invalid"
}

// Request is one IP to place.
type Request struct {
	// Service groups the IPs that should land on distinct nodes:
	// "namespace/name" for a Kubernetes Service, the VIP name for a static VIP.
	Service string
	// Slot is the IP's index within its Service, 0..N-1. Each (Service, Slot)
	// should be unique; duplicates are placed deterministically but may share
	// an owner.
	Slot int
	Addr netip.Addr
	Mode Mode
	// Eligible are the nodes that may announce the IP (selector match, not
	// excluded, ready local endpoint under externalTrafficPolicy Local),
	// alive or not. It is a set: order and duplicates do not matter. Place
	// does not modify or retain it.
	Eligible []string
	// Current is the node that announces the IP now, as the ring's metadata
	// says ("" when none or more than one does). An L2 IP whose preferred
	// node is dead stays with Current while Current is alive, eligible and
	// holds no other IP of the Service: an IP on a fallback node does not
	// move because some other node failed or came back.
	Current string
}

// Assignment is the placement of one IP.
type Assignment struct {
	Service string
	Slot    int
	Addr    netip.Addr
	Mode    Mode
	// Owners are the nodes that announce the IP, sorted by name; nil when
	// none does. L2: zero or one node. BGP: every alive eligible node.
	// Owners of different assignments never share a backing array
	// beyond their length, so appending to one is safe.
	Owners []string
	// Preferred is the L2 IP's preferred node, alive or not; "" for BGP and
	// when nothing is eligible. Owners[0] != Preferred means the IP is on a
	// fallback node.
	Preferred string
}

// Preferred returns the preferred node of slot in service among eligible
// nodes (alive or not): the slot-th node in order of hash(service, node),
// wrapping around when slot ≥ the number of distinct eligible nodes. It returns "" when eligible is
// empty. It is what Place uses for L2 IPs.
func Preferred(service string, slot int, eligible []string) string {
	nodes := rank(nil, serviceState(service), eligible, nil)
	if len(nodes) == 0 {
		return ""
	}
	return eligible[nodes[wrap(slot, len(nodes))].idx]
}

// rankedNode is one eligible node of one IP: Eligible[idx]. It is kept small
// (16 bytes) because Place sorts one slice of them per IP.
type rankedNode struct {
	h     uint64 // hash(service, node)
	idx   int32
	alive bool
}

// rank appends eligible to arena ordered by (hash(service, node), name),
// without duplicates, and returns the appended part; st is
// serviceState(service). The order depends only on the set, never on the
// order of eligible. isAlive[i] says whether
// eligible[i] is alive (nil: none is).
func rank(arena []rankedNode, st fnv, eligible []string, isAlive []bool) []rankedNode {
	start := len(arena)
	for i, n := range eligible {
		arena = append(arena, rankedNode{h: rankHashFrom(st, n), idx: int32(i), alive: isAlive != nil && isAlive[i]})
	}
	nodes := arena[start:]
	sortRanked(nodes, eligible)
	return slices.CompactFunc(nodes, func(a, b rankedNode) bool { return eligible[a.idx] == eligible[b.idx] })
}

// sortRanked sorts by (h, name). Eligible lists are short, and a plain
// insertion sort without a comparison callback is faster on them than
// slices.SortFunc; this sort runs once per IP.
func sortRanked(nodes []rankedNode, names []string) {
	if len(nodes) > 24 {
		slices.SortFunc(nodes, func(a, b rankedNode) int {
			if c := cmp.Compare(a.h, b.h); c != 0 {
				return c
			}
			return strings.Compare(names[a.idx], names[b.idx])
		})
		return
	}
	for i := 1; i < len(nodes); i++ {
		x := nodes[i]
		j := i
		for ; j > 0 && (nodes[j-1].h > x.h || nodes[j-1].h == x.h && names[nodes[j-1].idx] > names[x.idx]); j-- {
			nodes[j] = nodes[j-1]
		}
		nodes[j] = x
	}
}

// wrap maps slot onto 0..n-1, also for (invalid) negative slots.
func wrap(slot, n int) int {
	i := slot % n
	if i < 0 {
		i += n
	}
	return i
}

// work is one request while it is being placed.
type work struct {
	req   *Request
	svc   uint64       // a hash of req.Service, to group Services quickly
	nodes []rankedNode // ranked eligible nodes
	owner int          // L2: index into nodes, or -1
}

// name returns the name of w.nodes[k].
func (w *work) name(k int) string { return w.req.Eligible[w.nodes[k].idx] }

func (w *work) preferred() int {
	if len(w.nodes) == 0 {
		return -1
	}
	return wrap(w.req.Slot, len(w.nodes))
}

// compareWork groups IPs by Service and orders each group by Slot, the
// order in which fallbacks are resolved. Services are independent, so they
// are ordered by a hash first (cheaper than comparing names). The remaining
// keys only make the order total, so that even malformed input (duplicate
// slots) is placed independently of input order.
func compareWork(a, b *work) int {
	if c := cmp.Compare(a.svc, b.svc); c != 0 {
		return c
	}
	if a.req.Service != b.req.Service {
		return strings.Compare(a.req.Service, b.req.Service)
	}
	if c := cmp.Compare(a.req.Slot, b.req.Slot); c != 0 {
		return c
	}
	if c := a.req.Addr.Compare(b.req.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.req.Mode, b.req.Mode); c != 0 {
		return c
	}
	for k := range min(len(a.nodes), len(b.nodes)) {
		if c := cmp.Compare(a.nodes[k].h, b.nodes[k].h); c != 0 {
			return c
		}
		if c := strings.Compare(a.name(k), b.name(k)); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.nodes), len(b.nodes))
}

// Place computes the owners of every requested IP from one view of which
// nodes are alive (alive[node] == true; absent means dead). It is a pure
// function of the sets it is given: the order of reqs and of each Eligible
// does not change the result, and every daemon with the same view computes
// the same answer. The result has one Assignment per request, sorted by
// Addr (requests sharing an Addr in a fixed order of their other fields).
// Place does not modify reqs. See the package documentation for the rules
// and what they guarantee.
func Place(reqs []Request, alive map[string]bool) []Assignment {
	total := 0
	for i := range reqs {
		total += len(reqs[i].Eligible)
	}
	arena := make([]rankedNode, 0, total)
	ws := make([]work, len(reqs))
	var lastEligible []string // Eligible lists are often one shared slice:
	var isAlive []bool        // look its nodes up in alive only once
	for i := range reqs {
		r := &reqs[i]
		if !sameSlice(r.Eligible, lastEligible) {
			lastEligible = r.Eligible
			isAlive = slices.Grow(isAlive[:0], len(r.Eligible))[:len(r.Eligible)]
			for j, n := range r.Eligible {
				isAlive[j] = alive[n]
			}
		}
		st := serviceState(r.Service)
		nodes := rank(arena, st, r.Eligible, isAlive)
		arena = arena[:len(arena)+len(nodes)]
		ws[i] = work{req: r, svc: uint64(st), nodes: nodes[:len(nodes):len(nodes)], owner: -1}
	}

	// Sort indices rather than the (large) structs themselves.
	order := make([]int32, len(ws))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(i, j int32) int { return compareWork(&ws[i], &ws[j]) })

	var held map[string]struct{} // reused across Services
	for start := 0; start < len(order); {
		end := start + 1
		for end < len(order) && ws[order[end]].req.Service == ws[order[start]].req.Service {
			end++
		}
		held = placeService(ws, order[start:end], held)
		start = end
	}

	// Output order: by address, then the (total) order above.
	slices.SortFunc(order, func(i, j int32) int {
		if c := ws[i].req.Addr.Compare(ws[j].req.Addr); c != 0 {
			return c
		}
		return compareWork(&ws[i], &ws[j])
	})
	return assignments(ws, order)
}

func sameSlice(x, y []string) bool {
	return len(x) == len(y) && (len(x) == 0 || &x[0] == &y[0])
}

// placeService places the L2 IPs of one Service, all[group] in slot order: first
// every IP whose preferred node is alive goes to it, then every other IP
// whose Current node is alive, eligible and not yet holding an IP of the
// Service stays there, then the rest, in
// slot order, to the alive eligible node with the lowest hash(node, ip)
// that holds no other IP of the Service yet — or, when every alive
// eligible node already holds one, the lowest hash(node, ip) of all.
// held is scratch space, returned for reuse.
func placeService(all []work, group []int32, held map[string]struct{}) map[string]struct{} {
	fallbacks := false
	for _, i := range group {
		w := &all[i]
		if w.req.Mode != L2 {
			continue
		}
		if p := w.preferred(); p >= 0 && w.nodes[p].alive {
			w.owner = p
		} else if p >= 0 {
			fallbacks = true
		}
	}
	if !fallbacks {
		return held
	}

	if held == nil {
		held = make(map[string]struct{})
	} else {
		clear(held)
	}
	for _, i := range group {
		if w := &all[i]; w.owner >= 0 {
			held[w.name(w.owner)] = struct{}{}
		}
	}
	// Sticky: an orphaned IP stays where it is announced now, so a second
	// failure or a return never reshuffles the Service's other fallbacks.
	for _, i := range group {
		w := &all[i]
		if w.req.Mode != L2 || w.owner >= 0 || w.req.Current == "" {
			continue
		}
		if _, taken := held[w.req.Current]; taken {
			continue
		}
		for k, n := range w.nodes {
			if n.alive && w.name(k) == w.req.Current {
				w.owner = k
				held[w.req.Current] = struct{}{}
				break
			}
		}
	}
	for _, i := range group {
		w := &all[i]
		if w.req.Mode != L2 || w.owner >= 0 {
			continue
		}
		w.owner = fallback(w, held)
		if w.owner >= 0 {
			held[w.name(w.owner)] = struct{}{}
		}
	}
	return held
}

// fallback returns the index of w's fallback owner, or -1 if no eligible
// node is alive.
func fallback(w *work, held map[string]struct{}) int {
	bestFree, bestAny := -1, -1
	var hFree, hAny uint64
	less := func(h uint64, i int, bh uint64, b int) bool {
		return b < 0 || h < bh || (h == bh && w.name(i) < w.name(b))
	}
	for i, n := range w.nodes {
		if !n.alive {
			continue
		}
		name := w.name(i)
		h := fallbackHash(name, w.req.Addr)
		if less(h, i, hAny, bestAny) {
			bestAny, hAny = i, h
		}
		if _, ok := held[name]; !ok && less(h, i, hFree, bestFree) {
			bestFree, hFree = i, h
		}
	}
	if bestFree >= 0 {
		return bestFree
	}
	return bestAny
}

// assignments builds the result in the given order.
func assignments(ws []work, order []int32) []Assignment {
	n := 0
	for i := range ws {
		switch ws[i].req.Mode {
		case L2:
			if ws[i].owner >= 0 {
				n++
			}
		case BGP:
			for _, node := range ws[i].nodes {
				if node.alive {
					n++
				}
			}
		}
	}
	owners := make([]string, 0, n)
	out := make([]Assignment, len(order))
	for k, i := range order {
		w := &ws[i]
		a := &out[k]
		*a = Assignment{Service: w.req.Service, Slot: w.req.Slot, Addr: w.req.Addr, Mode: w.req.Mode}
		start := len(owners)
		switch w.req.Mode {
		case L2:
			if p := w.preferred(); p >= 0 {
				a.Preferred = w.name(p)
			}
			if w.owner >= 0 {
				owners = append(owners, w.name(w.owner))
			}
		case BGP:
			for k, node := range w.nodes {
				if node.alive {
					owners = append(owners, w.name(k))
				}
			}
			slices.Sort(owners[start:])
		}
		if len(owners) > start {
			a.Owners = owners[start:len(owners):len(owners)]
		}
	}
	return out
}
