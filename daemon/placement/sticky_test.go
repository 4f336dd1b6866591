package placement

import (
	"net/netip"
	"testing"

	"pgregory.net/rapid"
)

// withCurrent returns reqs with Current set from a previous placement, as
// the daemon does from the ring's metadata once the view has converged.
func withCurrent(reqs []Request, prev []Assignment) []Request {
	cur := owners(prev)
	out := make([]Request, len(reqs))
	for i, r := range reqs {
		r.Current = cur[r.Addr]
		out[i] = r
	}
	return out
}

// converged places s from nothing and then once more with its own result as
// Current: the state a running cluster is in.
func converged(t *rapid.T, reqs []Request, alive map[string]bool) ([]Request, []Assignment) {
	first := Place(reqs, alive)
	reqs = withCurrent(reqs, first)
	again := Place(reqs, alive)
	// A placement is a fixpoint of itself: announcing what it says changes
	// nothing.
	a, b := owners(first), owners(again)
	for addr, o := range a {
		if b[addr] != o {
			t.Fatalf("not a fixpoint: %s placed on %q, then on %q with Current", addr, o, b[addr])
		}
	}
	return reqs, again
}

// shortage reports the Services in which some node holds two IPs: there
// were more IPs than alive eligible nodes.
func shortage(as []Assignment) map[string]bool {
	seen := map[[2]string]bool{}
	out := map[string]bool{}
	for _, a := range as {
		if a.Mode != L2 || len(a.Owners) != 1 {
			continue
		}
		k := [2]string{a.Service, a.Owners[0]}
		if seen[k] {
			out[a.Service] = true
		}
		seen[k] = true
	}
	return out
}

// With Current from the ring, losing a node moves exactly the IPs it held.
func TestStickyLosingANodeMovesOnlyItsIPs(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawScenario(t, scenarioOpts{perIPEligible: true})
		reqs, before := converged(t, s.reqs, s.alive)
		x := rapid.SampledFrom(s.nodes).Draw(t, "lost")
		alive := map[string]bool{}
		for n, ok := range s.alive {
			if ok && n != x {
				alive[n] = true
			}
		}
		after := owners(Place(reqs, alive))
		for addr, o := range owners(before) {
			if o != "" && o != x && after[addr] != o {
				t.Fatalf("%s moved from %s to %q when %s was lost", addr, o, after[addr], x)
			}
		}
	})
}

// With Current from the ring, a node that comes back takes the IPs it is
// preferred for (and orphans nobody could announce), nothing else — unless its Service had more IPs than
// alive nodes, where distinct owners (the stronger promise) win.
func TestStickyAddingANodeMovesOnlyItsPreferredIPs(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawScenario(t, scenarioOpts{perIPEligible: true})
		var dead []string
		for _, n := range s.nodes {
			if !s.alive[n] {
				dead = append(dead, n)
			}
		}
		if len(dead) == 0 {
			t.Skip("no dead node to add")
		}
		reqs, before := converged(t, s.reqs, s.alive)
		short := shortage(before)
		z := rapid.SampledFrom(dead).Draw(t, "added")
		alive := map[string]bool{z: true}
		for n, ok := range s.alive {
			if ok {
				alive[n] = true
			}
		}
		after := Place(reqs, alive)
		prev := owners(before)
		for _, a := range after {
			if a.Mode != L2 || short[a.Service] {
				continue
			}
			now := ""
			if len(a.Owners) == 1 {
				now = a.Owners[0]
			}
			if now == prev[a.Addr] || prev[a.Addr] == "" {
				continue // unchanged, or nobody could announce it before
			}
			if now != z || a.Preferred != z {
				t.Fatalf("%s (%s slot %d) moved from %q to %q when %s came back; preferred is %s",
					a.Addr, a.Service, a.Slot, prev[a.Addr], now, z, a.Preferred)
			}
		}
	})
}

// The case the stateless rule gets wrong (TestLosingASecondNodeCanMoveALaterFallback):
// with Current, the later fallback stays.
func TestStickyKeepsAFallbackThroughASecondFailure(t *testing.T) {
	nodes := []string{"a", "b", "c", "d", "e"}
	var reqs []Request
	for slot := range 3 {
		reqs = append(reqs, Request{Service: "ns/web", Slot: slot, Mode: L2, Eligible: nodes,
			Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + slot)})})
	}
	all := map[string]bool{"a": true, "b": true, "c": true, "d": true, "e": true}
	pref := map[int]string{}
	for _, a := range Place(reqs, all) {
		pref[a.Slot] = a.Preferred
	}
	// Lose slot 2's preferred node, then slot 0's: slot 2's fallback stays.
	alive1 := dropNode(all, pref[2])
	step1 := Place(reqs, alive1)
	reqs = withCurrent(reqs, step1)
	alive2 := dropNode(alive1, pref[0])
	step2 := owners(Place(reqs, alive2))
	for _, a := range step1 {
		if a.Slot == 2 && step2[a.Addr] != a.Owners[0] {
			t.Errorf("slot 2 moved from %s to %s when %s failed", a.Owners[0], step2[a.Addr], pref[0])
		}
	}
}

// dropNode returns alive less the node lost.
func dropNode(alive map[string]bool, lost string) map[string]bool {
	out := map[string]bool{}
	for n, ok := range alive {
		if ok && n != lost {
			out[n] = true
		}
	}
	return out
}
