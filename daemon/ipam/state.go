package ipam

import (
	"net/netip"
	"slices"
	"strings"
)

// holder is one Service holding IPs.
type holder struct {
	share *shareInfo
	addrs []netip.Addr // the IPs it holds, in the order it took them
}

// group is the Services holding one IP. They are pairwise sharable (each
// was checked against all the others when it joined), so when there are
// two or more they all have the same sharing key and backend and disjoint
// ports: whether a newcomer may join is decided by one of them and the
// newcomer's own ports, not by all of them. That keeps an IP shared by
// thousands of Services (one port each) as cheap as any other.
type group struct {
	holders []*holder        // sorted by key
	ports   map[Port]*holder // who uses which port, once two or more share
}

// state is who holds what. Its size is proportional to the number of held
// IPs (times the number of pools each lies in) plus the pools' ranges:
// nothing in it is per address of a pool.
type state struct {
	pools []Pool
	index map[string]int // pool name -> first pool with that name
	size  [][2]float64   // usable addresses per pool and family
	held  [][2]heldSet   // per pool and family: held addresses usable in it
	ips   map[netip.Addr]*group
	svcs  map[string]*holder
	// keyed lists per sharing key and family the addresses held by at
	// least one Service with that key, sorted: the only held addresses a
	// Service with that key may share.
	keyed map[string]*[2][]u128
	// cursors remember, per pool, family and sharing signature, an address
	// below which no address is acceptable to a Service with that
	// signature (see search). Holding more only shrinks what is
	// acceptable, so a cursor stays true until something is released.
	cursors map[cursorKey]cursor
	// steps counts the search's inner steps, so a test can check its
	// complexity without timing it.
	steps int
}

type cursorKey struct {
	pool, fam int
	sig       string
}

// cursor is where the next search for a signature starts; done means no
// address of the pool is acceptable to it.
type cursor struct {
	from u128
	done bool
}

func newState(pools []Pool) *state {
	st := &state{
		pools:   slices.Clone(pools),
		index:   make(map[string]int, len(pools)),
		size:    make([][2]float64, len(pools)),
		held:    make([][2]heldSet, len(pools)),
		ips:     map[netip.Addr]*group{},
		svcs:    map[string]*holder{},
		keyed:   map[string]*[2][]u128{},
		cursors: map[cursorKey]cursor{},
	}
	for i := range st.pools {
		if _, dup := st.index[st.pools[i].Name]; !dup {
			st.index[st.pools[i].Name] = i
		}
		for fi := range st.size[i] {
			st.size[i][fi] = st.pools[i].size(fi)
		}
	}
	return st
}

// blocker returns a holder of a that h may not share a with; nil when h
// may take a. h's own holding does not block. The holder named is the
// first by key when all refuse alike (sharing key, backend), else the one
// using h's first port in common. Say why with sharable(h.share, o.share).
func (st *state) blocker(a netip.Addr, h *holder) *holder {
	g := st.ips[a]
	if g == nil {
		return nil
	}
	o := g.holders[0]
	if o == h {
		if len(g.holders) == 1 {
			return nil
		}
		o = g.holders[1]
	}
	if c, _ := conflictOf(h.share, o.share); c != noConflict {
		return o
	}
	for _, p := range h.share.ports {
		if q := g.ports[p]; q != nil && q != h {
			return q
		}
	}
	return nil
}

func (st *state) owns(a netip.Addr, h *holder) bool {
	return slices.Contains(h.addrs, a)
}

// hold records that h holds a, which h may take (blocker is nil).
func (st *state) hold(h *holder, a netip.Addr) {
	x, fi := toU(a)
	g := st.ips[a]
	if g == nil {
		g = &group{}
		st.ips[a] = g
		for pi := range st.pools {
			if st.pools[pi].usable(fi, x) {
				st.held[pi][fi].insert(&st.pools[pi], fi, x)
			}
		}
		if k := h.share.sharing; k != "" {
			l := st.keyed[k]
			if l == nil {
				l = new([2][]u128)
				st.keyed[k] = l
			}
			l[fi] = slices.Insert(l[fi], lowerBound(l[fi], x), x)
		}
	}
	if len(g.holders) == 1 {
		g.ports = map[Port]*holder{}
		for _, p := range g.holders[0].share.ports {
			g.ports[p] = g.holders[0]
		}
	}
	if g.ports != nil {
		for _, p := range h.share.ports {
			g.ports[p] = h
		}
	}
	i, _ := slices.BinarySearchFunc(g.holders, h.share.key, func(o *holder, k string) int { return strings.Compare(o.share.key, k) })
	g.holders = slices.Insert(g.holders, i, h)
	h.addrs = append(h.addrs, a)
}

// release drops everything key holds.
func (st *state) release(key string) {
	h := st.svcs[key]
	if h == nil {
		return
	}
	delete(st.svcs, key)
	for _, a := range h.addrs {
		g := st.ips[a]
		g.holders = slices.DeleteFunc(g.holders, func(o *holder) bool { return o == h })
		for _, p := range h.share.ports {
			delete(g.ports, p)
		}
		if len(g.holders) > 0 {
			continue
		}
		// The last holder: the IP is free. (Holders that remain have the
		// same sharing key, so the keyed list only changes now.)
		delete(st.ips, a)
		x, fi := toU(a)
		for pi := range st.pools {
			if st.pools[pi].usable(fi, x) {
				st.held[pi][fi].remove(&st.pools[pi], fi, x)
			}
		}
		if k := h.share.sharing; k != "" {
			l := st.keyed[k]
			if i := lowerBound(l[fi], x); i < len(l[fi]) && l[fi][i] == x {
				l[fi] = slices.Delete(l[fi], i, i+1)
			}
			if len(l[fam4])+len(l[fam6]) == 0 {
				delete(st.keyed, k)
			}
		}
	}
	if len(h.addrs) > 0 {
		// Freed addresses may lie below any cursor.
		clear(st.cursors)
	}
}

// search returns the first address of pool pi and family fi, in
// ascending order, that h may take: free, or held only by Services h may
// share with, and not already h's.
//
// Free addresses come from the pool's heldSet in O(log runs). A Service
// without a sharing key can use nothing else. One with a key may also
// share an address held by Services with the same key: those are listed in
// keyed, and only the ones below the first free address matter. To keep
// the scan from starting over on every call (10,000 Services with the same
// key and port would make it quadratic), a cursor per signature records
// where the previous scan stopped: every address below it was refused by
// some holder that refuses every Service of that signature, or held by the
// Service that looked (which the next one must check for itself, so the
// cursor stops at, not after, such an address). A release clears the
// cursors, since a freed address may lie below any of them, so the first
// search per signature after one rescans the addresses held under its key.
func (st *state) search(pi, fi int, h *holder) (netip.Addr, bool) {
	p, hs := &st.pools[pi], &st.held[pi][fi]
	if h.share.sharing == "" {
		st.steps++
		x, ok := hs.firstFree(p, fi, u128{})
		return fromU(x, fi), ok
	}
	ck := cursorKey{pi, fi, h.share.sig}
	c, seen := st.cursors[ck]
	if c.done {
		return netip.Addr{}, false
	}
	from := c.from
	if !seen {
		// Start at the pool's first usable address, so keyed addresses
		// below the pool are never scanned.
		var ok bool
		if from, ok = p.nextUsable(fi, u128{}); !ok {
			st.cursors[ck] = cursor{done: true}
			return netip.Addr{}, false
		}
	}
	var list []u128
	if l := st.keyed[h.share.sharing]; l != nil {
		list = l[fi]
	}
	i := lowerBound(list, from)
	for first := true; ; first = false {
		st.steps++
		free, okFree := hs.firstFree(p, fi, from)
		best, okBest := free, false
		for ; i < len(list); i++ {
			st.steps++
			x := list[i]
			if okFree && !x.less(free) {
				break
			}
			if !p.usable(fi, x) {
				continue
			}
			if st.blocker(fromU(x, fi), h) == nil {
				best, okBest = x, true
				break
			}
		}
		if !okBest && !okFree {
			if first {
				// Nothing in the pool for this signature until a release.
				st.cursors[ck] = cursor{done: true}
			}
			return netip.Addr{}, false
		}
		if first {
			st.cursors[ck] = cursor{from: best}
		}
		a := fromU(best, fi)
		if !st.owns(a, h) {
			return a, true
		}
		next, ok := best.next()
		if !ok {
			return netip.Addr{}, false
		}
		from = next
		if okBest {
			i++
		}
	}
}
