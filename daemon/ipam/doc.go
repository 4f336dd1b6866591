// Package ipam gives Kubernetes LoadBalancer Services their IPs from
// address pools (SPEC §5). It is pure: plain values in, plain values out,
// no I/O, clocks, goroutines or globals. Only the IPAM leader runs it, and
// the allocation state is the Services' own status, so a new leader
// rebuilds everything with one call to Allocate: the answer must depend
// only on the pools and the Services, never on the order they were seen.
//
// # Pools
//
// A Pool is built with ParsePool from MetalLB-style entries (CIDR, "a-b"
// range, single address; IPv4 and IPv6) and stored as an interval set.
// AvoidBuggyIPs keeps IPv4 addresses ending in .0 or .255 out of
// allocation (Contains still reports them; Usable does not). Overlaps
// lists pools that share addresses.
//
// # Rules
//
// A Service has Count slots (< 1 means 1, capped at MaxCount); each slot
// carries one IP per family: Families[0] under SingleStack (IPv4 when
// none is given), every family under RequireDualStack, and under
// PreferDualStack every family the Service can get at all (a pool that
// allocates automatically for it has that family, or a requested IP of
// that family lies in one of its pools), the others dropped
// without a failure. Requested IPs map to slots per family in order: the
// k-th requested IP of a family is slot k's IP of that family. Requests
// past Count or of a family the Service does not use are reported with
// Slot -1 and ignored. Current IPs (the status, Result.Addrs) map back per
// family too: the valid ones that are not requested fill the slots that
// are not requested, in order. Without requests or failures, the k-th
// current IP of a family is slot k's; in general this is what makes the
// mapping exact, because the status omits empty positions.
//
// Services are processed in (Order, Key) order, in four phases; each phase
// runs for every Service before the next starts and sees what the earlier
// ones gave:
//
//  1. Current IPs the Service also requested stay, in the requested slot.
//  2. Other current IPs stay if still valid: usable in one of the
//     Service's pools, of a family it uses, within Count (with Count
//     lowered, the first ones in Current order stay), and sharable with
//     every holder.
//  3. Requested IPs not yet held are granted if usable in one of the
//     Service's pools (AutoAssign or not) and free or sharable with every
//     holder. Otherwise the slot fails and stays empty: a request never
//     falls back to another address, and never takes an IP from its
//     holder.
//  4. Every other empty position gets the lowest address, in the first of
//     the Service's pools that has one (pools without AutoAssign only when
//     the Service named its pool, Explicit), that is free or held only by
//     Services it may share with, and not already one of its own IPs.
//
// Two Services may share an IP when Sharable says so: the same non-empty
// sharing key, equal backend keys, no common port. An IP held by several
// Services is sharable between every pair of them.
//
// Failures carry the slot (-1 when the failure is not about one slot)
// and the family (0 when it concerns none, e.g. "pool x does not exist").
//
// # Guarantees
//
// These hold for every input. 1 to 5 are checked by property tests (at
// least 1,000 random cases each), 6 by deterministic tests.
//
//  1. No IP is held by two Services unless every pair of its holders is
//     Sharable; no Service holds one IP twice; every IP is usable in one
//     of its Service's pools.
//  2. Every Result has Count slots (at least 1, at most MaxCount); a slot
//     carries at most one IP per family, in the Service's family order;
//     every missing IP of a family the slots carry has a Failure naming
//     its slot and family.
//  3. Existing holders are never displaced: when Current comes from an
//     earlier Result, a Service whose own spec and pools did not change
//     keeps every IP it had, whatever other Services (however old their
//     Order) request or need. Allocate is a fixpoint of its own output:
//     feeding Result.Addrs back as Current changes nothing, failure
//     reasons included (so Events do not repeat for nothing).
//  4. Allocate's result does not depend on the order of the pools or the
//     Services.
//  5. A released IP is allocatable again: in an Allocator once its last
//     holder is released; Allocate keeps no state, so an IP no Service has
//     in Current is free. Automatic allocation takes the lowest acceptable
//     address, as a scan of the pool would.
//  6. Memory is proportional to the number of held IPs and the pools'
//     ranges, never to the pools' sizes: a /64 costs exactly what a /120
//     costs for the same allocations. Finding a free address is a binary
//     search over runs of held addresses, never a walk over the pool, and
//     a pass over 10,000 Services does work linear in their number
//     (heldSet, state.search).
package ipam
