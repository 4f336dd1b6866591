package ipam

import (
	"slices"
	"sort"
)

// heldSet is the set of allocated addresses of one family inside one pool,
// as sorted, disjoint runs of held addresses. Two runs are kept apart only
// when a usable address of the pool lies between them; unusable addresses
// (gaps between the pool's ranges, .0/.255 under AvoidBuggyIPs) do not
// split a run. So the first usable address after a run is always free, and
// the first free address at or after any point is one binary search away:
// finding a free address costs O(log runs), whatever the pool's size or
// the number of allocations, and sequential allocation keeps a single run.
//
// Invariants: every run's ends are held; every usable address inside a run
// is held; between two runs lies at least one usable, free address.
type heldSet struct {
	runs []span
	n    int // held addresses
}

// find returns the index of the run containing x, or -1.
func (h *heldSet) find(x u128) int {
	i := sort.Search(len(h.runs), func(i int) bool { return !h.runs[i].last.less(x) })
	if i < len(h.runs) && !x.less(h.runs[i].first) {
		return i
	}
	return -1
}

// firstFree returns the smallest usable address >= from that is not held.
func (h *heldSet) firstFree(p *Pool, fi int, from u128) (u128, bool) {
	c, ok := p.nextUsable(fi, from)
	if !ok {
		return u128{}, false
	}
	if i := h.find(c); i >= 0 {
		return p.after(fi, h.runs[i].last)
	}
	return c, true
}

// insert adds x, which must be usable in p and not held.
func (h *heldSet) insert(p *Pool, fi int, x u128) {
	h.n++
	i := sort.Search(len(h.runs), func(i int) bool { return x.less(h.runs[i].first) })
	joinLeft := false
	if i > 0 {
		next, ok := p.after(fi, h.runs[i-1].last)
		joinLeft = ok && next == x
	}
	joinRight := false
	if i < len(h.runs) {
		next, ok := p.after(fi, x)
		joinRight = ok && next == h.runs[i].first
	}
	switch {
	case joinLeft && joinRight:
		h.runs[i-1].last = h.runs[i].last
		h.runs = slices.Delete(h.runs, i, i+1)
	case joinLeft:
		h.runs[i-1].last = x
	case joinRight:
		h.runs[i].first = x
	default:
		h.runs = slices.Insert(h.runs, i, span{x, x})
	}
}

// remove deletes x, which must be held.
func (h *heldSet) remove(p *Pool, fi int, x u128) {
	i := h.find(x)
	if i < 0 {
		return
	}
	h.n--
	r := h.runs[i]
	// The neighbours exist inside the run: its ends are held and usable.
	switch {
	case r.first == x && r.last == x:
		h.runs = slices.Delete(h.runs, i, i+1)
	case r.first == x:
		h.runs[i].first, _ = p.after(fi, x)
	case r.last == x:
		h.runs[i].last, _ = p.before(fi, x)
	default:
		left, _ := p.before(fi, x)
		right, _ := p.after(fi, x)
		h.runs[i].last = left
		h.runs = slices.Insert(h.runs, i+1, span{right, r.last})
	}
}
