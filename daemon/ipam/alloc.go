package ipam

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// MaxCount caps Service.Count. The count comes from an annotation with no
// upper bound; without a cap one typo ("10000000") would make the leader
// build millions of slots and stall every other Service.
const MaxCount = 1024

// Allocate computes every Service's IPs from scratch: the leader's whole
// cluster rebuild. The state is the Services' Current IPs; nothing else is
// remembered. The result does not depend on the order of pools or
// Services (given unique pool names and Service keys) and is sorted by
// Key. The rules are in doc.go.
//
// Keys should be unique. Of Services with the same Key, the one with the
// lowest Order (first in input order on a tie) is allocated, and its
// Result says how many others were ignored.
func Allocate(pools []Pool, svcs []Service) []Result {
	rs, _ := allocate(pools, svcs)
	return rs
}

// PoolUsage is one family of one pool after an allocation: how many
// usable addresses it has and how many of them are held, by any Service
// (pools may overlap). float64: an IPv6 pool may hold up to 2^128
// addresses, and a /64 must neither overflow nor cost memory.
type PoolUsage struct {
	Pool       string
	Family     Family
	Size, Used float64
}

// AllocateUsage is Allocate, also returning every pool's usage, in the
// order of pools, IPv4 before IPv6; a family the pool has no usable address
// of is left out, and so is a pool shadowed by an earlier one of its name.
func AllocateUsage(pools []Pool, svcs []Service) ([]Result, []PoolUsage) {
	rs, st := allocate(pools, svcs)
	var us []PoolUsage
	for pi := range st.pools {
		if st.index[st.pools[pi].Name] != pi {
			continue
		}
		for fi, f := range [2]Family{fam4: IPv4, fam6: IPv6} {
			if st.size[pi][fi] == 0 {
				continue
			}
			us = append(us, PoolUsage{Pool: st.pools[pi].Name, Family: f, Size: st.size[pi][fi], Used: float64(st.held[pi][fi].n)})
		}
	}
	return rs, us
}

// allocate is Allocate, also returning its state for tests.
func allocate(pools []Pool, svcs []Service) ([]Result, *state) {
	st := newState(pools)
	sorted := slices.Clone(svcs)
	slices.SortStableFunc(sorted, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), strings.Compare(a.Key, b.Key))
	})
	var jobs []*job
	for _, s := range sorted {
		if n := len(jobs); n > 0 && jobs[n-1].h.share.key == s.Key {
			jobs[n-1].dups++
			continue
		}
		jobs = append(jobs, st.plan(s))
	}
	st.run(jobs)
	out := make([]Result, len(jobs))
	for i, j := range jobs {
		out[i] = j.result()
	}
	slices.SortFunc(out, func(a, b Result) int { return strings.Compare(a.Key, b.Key) })
	return out, st
}

// Allocator keeps allocations between calls, for a caller that wants to
// allocate one Service at a time. It follows the same rules as Allocate,
// with every Service it already holds counted as earlier. It is not safe
// for concurrent use.
type Allocator struct {
	st *state
}

// NewAllocator returns an Allocator over pools with nothing allocated.
// Pool names should be unique; a duplicate name is shadowed by the first.
func NewAllocator(pools []Pool) *Allocator {
	return &Allocator{st: newState(pools)}
}

// Assign (re)allocates s: what the Allocator held for s.Key is released
// first, then s gets its IPs as in Allocate (s.Current says which IPs it
// holds now and wants to keep), next to every other Service held.
func (a *Allocator) Assign(s Service) Result {
	a.st.release(s.Key)
	j := a.st.plan(s)
	a.st.run([]*job{j})
	return j.result()
}

// Release frees the IPs key holds. An IP shared with other Services stays
// theirs; it is free when its last holder is released.
func (a *Allocator) Release(key string) { a.st.release(key) }

// Holders returns the keys of the Services holding ip, sorted.
func (a *Allocator) Holders(ip netip.Addr) []string {
	g := a.st.ips[normAddr(ip)]
	if g == nil {
		return nil
	}
	out := make([]string, len(g.holders))
	for i, h := range g.holders {
		out[i] = h.share.key
	}
	return out
}

// Usage returns the number of distinct held addresses that are usable in
// the named pool, whoever took them (pools may overlap).
func (a *Allocator) Usage(pool string) (used float64) {
	pi, ok := a.st.index[pool]
	if !ok {
		return 0
	}
	return float64(a.st.held[pi][fam4].n + a.st.held[pi][fam6].n)
}

// job is one Service being allocated.
type job struct {
	h        *holder
	names    []string // the Service's pool names, as given, for messages
	pools    []int    // its existing pools, in its order
	auto     []int    // those automatic allocation may use
	count    int
	fams     []Family // the families each slot carries, in order (1 or 2)
	current  []netip.Addr
	req      [][2]netip.Addr // per slot and family position: requested IP
	reqd     [][2]bool       // the position was requested (even if refused)
	slots    [][2]netip.Addr
	failures []Failure
	blocked  []blocked // failures whose reason names the final holders
	dups     int       // ignored Services with the same Key
}

// blocked is a request refused because the IP is held: failures[i].
type blocked struct {
	i    int
	addr netip.Addr
}

func (j *job) fail(slot int, f Family, pool, reason string) {
	j.failures = append(j.failures, Failure{Slot: slot, Family: f, Pool: pool, Reason: reason})
}

func (j *job) famPos(f Family) int { return slices.Index(j.fams, f) }

func (j *job) requested(a netip.Addr) bool {
	for _, r := range j.req {
		if r[0] == a || r[1] == a {
			return true
		}
	}
	return false
}

func (j *job) result() Result {
	r := Result{Key: j.h.share.key, Slots: make([][]netip.Addr, j.count)}
	for k, s := range j.slots {
		for fp := range j.fams {
			if s[fp].IsValid() {
				r.Slots[k] = append(r.Slots[k], s[fp])
			}
		}
	}
	r.Failures = slices.Clone(j.failures)
	if j.dups > 0 {
		r.Failures = append(r.Failures, Failure{Slot: -1, Reason: fmt.Sprintf("%d other Service(s) with the same key were ignored", j.dups)})
	}
	// Slot -1 (whole-Service) failures first, then slot order; within a
	// slot, the order the phases found them in.
	slices.SortStableFunc(r.Failures, func(a, b Failure) int { return cmp.Compare(a.Slot, b.Slot) })
	return r
}

// plan normalises s into a job and registers its holder.
func (st *state) plan(s Service) *job {
	j := &job{h: &holder{share: newShareInfo(s)}, names: s.Pools, count: max(s.Count, 1)}
	st.svcs[s.Key] = j.h
	if j.count > MaxCount {
		j.fail(-1, 0, "", fmt.Sprintf("count %d is above the limit %d; %d slots are allocated", j.count, MaxCount, MaxCount))
		j.count = MaxCount
	}
	for _, name := range s.Pools {
		pi, ok := st.index[name]
		switch {
		case !ok:
			j.fail(-1, 0, name, fmt.Sprintf("pool %s does not exist", name))
		case slices.Contains(j.pools, pi):
		default:
			j.pools = append(j.pools, pi)
			if st.pools[pi].AutoAssign || s.Explicit {
				j.auto = append(j.auto, pi)
			}
		}
	}
	var reqs []netip.Addr
	for _, a := range s.Requested {
		if !a.IsValid() {
			j.fail(-1, 0, "", "an invalid requested IP was ignored")
			continue
		}
		reqs = append(reqs, normAddr(a))
	}
	for _, a := range s.Current {
		if a.IsValid() {
			j.current = append(j.current, normAddr(a))
		}
	}
	declared := declaredFamilies(s)
	j.fams = declared
	if s.Policy == PreferDualStack && len(declared) > 1 {
		// A family the Service cannot get is dropped: the slots degrade to
		// single stack, as Kubernetes does for PreferDualStack.
		j.fams = nil
		for _, f := range declared {
			if st.available(j, f, reqs) {
				j.fams = append(j.fams, f)
			}
		}
		if len(j.fams) == 0 {
			j.fams = declared[:1] // so that the failure says what is missing
		}
	}
	j.req = make([][2]netip.Addr, j.count)
	j.reqd = make([][2]bool, j.count)
	j.slots = make([][2]netip.Addr, j.count)
	var nth [2]int
	for _, a := range reqs {
		f := FamilyOf(a)
		fp := j.famPos(f)
		switch {
		case fp < 0 && slices.Contains(declared, f):
			// PreferDualStack dropped the family: no pool has it.
			pool, reason := st.notInPools(j, a)
			j.fail(-1, f, pool, reason)
			continue
		case fp < 0:
			j.fail(-1, f, "", fmt.Sprintf("requested IP %s ignored: the Service does not use %s", a, f))
			continue
		}
		k := nth[fp]
		nth[fp]++
		switch {
		case k >= j.count:
			j.fail(-1, f, "", fmt.Sprintf("requested IP %s ignored: the Service has %s", a, plural(j.count, "slot")))
		case j.requested(a):
			j.reqd[k][fp] = true
			j.fail(k, f, "", fmt.Sprintf("requested IP %s is requested twice", a))
		default:
			j.req[k][fp], j.reqd[k][fp] = a, true
		}
	}
	return j
}

// declaredFamilies are the Service's families, valid and unique, cut to
// one for SingleStack; IPv4 when none.
func declaredFamilies(s Service) []Family {
	var out []Family
	for _, f := range s.Families {
		if _, ok := famIndex(f); ok && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		out = []Family{IPv4}
	}
	if s.Policy == SingleStack {
		out = out[:1]
	}
	return out
}

// available reports whether the Service can get family f at all: a pool
// that allocates automatically for it has f, or one of its requested IPs
// of family f lies in one of its pools (a pool without AutoAssign serves
// what is asked of it). Current IPs do not count: one that is not kept
// (its slot is requested, say) would make the family appear and vanish
// from one pass to the next.
func (st *state) available(j *job, f Family, reqs []netip.Addr) bool {
	fi, _ := famIndex(f)
	for _, pi := range j.auto {
		if st.size[pi][fi] > 0 {
			return true
		}
	}
	for _, a := range reqs {
		if FamilyOf(a) == f && st.usablePool(j, a) >= 0 {
			return true
		}
	}
	return false
}

// usablePool returns the first of the Service's pools a is usable in, or -1.
func (st *state) usablePool(j *job, a netip.Addr) int {
	x, fi := toU(a)
	for _, pi := range j.pools {
		if st.pools[pi].usable(fi, x) {
			return pi
		}
	}
	return -1
}

// notInPools says why a requested IP is in none of the Service's pools,
// and names the pool concerned when there is one.
func (st *state) notInPools(j *job, a netip.Addr) (pool, reason string) {
	x, fi := toU(a)
	var excluded []string
	for _, pi := range j.pools {
		if st.pools[pi].contains(fi, x) {
			excluded = append(excluded, st.pools[pi].Name)
		}
	}
	switch {
	case len(excluded) > 0:
		return excluded[0], fmt.Sprintf("requested IP %s is excluded by avoidBuggyIPs (it ends in .0 or .255) in pool(s) %s", a, strings.Join(excluded, ", "))
	case len(j.names) == 0:
		return "", fmt.Sprintf("requested IP %s is not in any pool of the Service: it has none", a)
	}
	return "", fmt.Sprintf("requested IP %s is not in pool(s) %s", a, strings.Join(j.names, ", "))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// take gives a to slot k, family position fp.
func (st *state) take(j *job, k, fp int, a netip.Addr) {
	st.hold(j.h, a)
	j.slots[k][fp] = a
}

// run allocates jobs, sorted by (Order, Key), in phases: each phase sees
// what every earlier phase gave every Service, which is what makes a
// rebuild keep existing holders and put requests before automatic
// allocation, whatever the order the Services were seen in.
func (st *state) run(jobs []*job) {
	for _, j := range jobs {
		st.keepRequested(j)
	}
	for _, j := range jobs {
		st.keepCurrent(j)
	}
	for _, j := range jobs {
		st.grantRequested(j)
	}
	for _, j := range jobs {
		st.allocate(j)
	}
	// Name the holder that refuses to share only now: holders are added
	// through the pass, and naming the first one seen would make the
	// reason (and so the Event) change on the next pass for no reason.
	// Nothing is released during a pass, so the IP is still held.
	for _, j := range jobs {
		for _, b := range j.blocked {
			o := st.blocker(b.addr, j.h)
			_, why := sharable(j.h.share, o.share)
			j.failures[b.i].Reason = fmt.Sprintf("requested IP %s is in use by %s: %s", b.addr, o.share.key, why)
		}
	}
}

// acceptable reports whether j may keep or take a: usable in one of its
// pools, not already one of its IPs, and sharable with every holder.
func (st *state) acceptable(j *job, a netip.Addr) bool {
	if st.usablePool(j, a) < 0 || st.owns(a, j.h) {
		return false
	}
	return st.blocker(a, j.h) == nil
}

// keepRequested is phase a: IPs both requested and held stay, in the
// requested slot.
func (st *state) keepRequested(j *job) {
	for k := range j.count {
		for fp := range j.fams {
			if r := j.req[k][fp]; r.IsValid() && slices.Contains(j.current, r) && st.acceptable(j, r) {
				st.take(j, k, fp, r)
			}
		}
	}
}

// keepCurrent is phase b: other current IPs that are still valid stay.
// The status (Result.Addrs) lists slots in order but omits empty
// positions, so a slot number cannot be read from a position in it. What
// can be: the unrequested positions of a family that hold an IP are always
// its lowest unrequested slots (kept IPs fill them first, automatic
// allocation fills the next ones in order and, once it fails, fails for
// every later slot). So the valid, unrequested current IPs of a family
// fill its unrequested slots in ascending order, in Current order; with no
// requests and no failures that is "the k-th current IP of a family is
// slot k". Those past Count (it was lowered) are released. This makes
// Allocate a fixpoint of its own status.
func (st *state) keepCurrent(j *job) {
	var next [2]int // per family position: the lowest slot that may be free
	for _, a := range j.current {
		fp := j.famPos(FamilyOf(a))
		if fp < 0 || j.requested(a) || !st.acceptable(j, a) {
			continue
		}
		k := next[fp]
		for k < j.count && (j.reqd[k][fp] || j.slots[k][fp].IsValid()) {
			k++
		}
		if k < j.count {
			st.take(j, k, fp, a)
			k++
		}
		next[fp] = k
	}
}

// grantRequested is phase c: requested IPs not yet held are granted when
// they are in the Service's pools and free or sharable. A holder is never
// displaced, however old the requester.
func (st *state) grantRequested(j *job) {
	for k := range j.count {
		for fp, f := range j.fams {
			r := j.req[k][fp]
			if !r.IsValid() || j.slots[k][fp] == r {
				continue
			}
			pi := st.usablePool(j, r)
			if pi < 0 {
				pool, reason := st.notInPools(j, r)
				j.fail(k, f, pool, reason)
				continue
			}
			if st.blocker(r, j.h) != nil {
				j.blocked = append(j.blocked, blocked{len(j.failures), r})
				j.fail(k, f, st.pools[pi].Name, "") // the reason is set at the end of run
				continue
			}
			st.take(j, k, fp, r)
		}
	}
}

// allocate is phase d: every position still empty and not requested gets
// the first acceptable address of the first pool that has one.
func (st *state) allocate(j *job) {
	for k := range j.count {
		for fp, f := range j.fams {
			if j.reqd[k][fp] || j.slots[k][fp].IsValid() {
				continue
			}
			fi, _ := famIndex(f)
			for _, pi := range j.auto {
				if a, ok := st.search(pi, fi, j.h); ok {
					st.take(j, k, fp, a)
					break
				}
			}
			if !j.slots[k][fp].IsValid() {
				pool, reason := st.exhausted(j, fi)
				j.fail(k, f, pool, reason)
			}
		}
	}
}

// exhausted says why no address of family fi was found for j.
func (st *state) exhausted(j *job, fi int) (pool, reason string) {
	f := famOf(fi)
	var full []string
	for _, pi := range j.auto {
		if size := st.size[pi][fi]; size > 0 {
			if pool == "" {
				pool = st.pools[pi].Name
			}
			used := float64(st.held[pi][fi].n)
			full = append(full, fmt.Sprintf("%s (%s of %s used)", st.pools[pi].Name, fmtCount(used), fmtCount(size)))
		}
	}
	if len(full) > 0 {
		return pool, fmt.Sprintf("no free %s address in pool %s", f, strings.Join(full, ", "))
	}
	var manual []string
	for _, pi := range j.pools {
		if st.size[pi][fi] > 0 && !slices.Contains(j.auto, pi) {
			manual = append(manual, st.pools[pi].Name)
		}
	}
	if len(manual) > 0 {
		return "", fmt.Sprintf("no pool for %s: %s do(es) not assign automatically; name the pool or request an IP", f, strings.Join(manual, ", "))
	}
	return "", fmt.Sprintf("no pool for %s", f)
}

func fmtCount(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
