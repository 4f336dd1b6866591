package placement

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// drawCurrents sets a random Current (a node, possibly dead or not
// eligible, or none) on some requests: Heirs must agree with Place
// whatever the ring says is announced.
func drawCurrents(t *rapid.T, sc scenario) []Request {
	reqs := slices.Clone(sc.reqs)
	choices := append([]string{""}, sc.nodes...)
	for i := range reqs {
		reqs[i].Current = rapid.SampledFrom(choices).Draw(t, "current")
	}
	return reqs
}

// The definition, checked against the obvious implementation: one full
// Place per IP with its owner left out of the alive set.
func TestHeirIsTheOwnerPlaceGivesWhenTheOwnerIsDead(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, scenarioOpts{bgp: true, perIPEligible: true})
		reqs := drawCurrents(t, sc)
		as := Place(reqs, sc.alive)
		got := Heirs(reqs, sc.alive, as)
		want := map[netip.Addr]string{}
		for _, a := range as {
			if a.Mode != L2 || len(a.Owners) != 1 {
				continue
			}
			after := owners(Place(reqs, without(sc.alive, a.Owners[0])))
			if h := after[a.Addr]; h != "" {
				want[a.Addr] = h
			}
		}
		if diff := cmp.Diff(want, got, equateAddr); diff != "" {
			t.Fatalf("Heirs (-brute force +got):\n%s", diff)
		}
	})
}

func TestHeirIsAliveEligibleAndNotTheOwner(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, scenarioOpts{bgp: true, perIPEligible: true})
		reqs := drawCurrents(t, sc)
		as := Place(reqs, sc.alive)
		byAddr := map[netip.Addr]Request{}
		for _, r := range reqs {
			byAddr[r.Addr] = r
		}
		own := owners(as)
		for addr, h := range Heirs(reqs, sc.alive, as) {
			r := byAddr[addr]
			if r.Mode != L2 || own[addr] == "" {
				t.Fatalf("%v (mode %v, owner %q) has heir %q", addr, r.Mode, own[addr], h)
			}
			if h == own[addr] || !sc.alive[h] || !slices.Contains(r.Eligible, h) {
				t.Fatalf("%v: heir %q of owner %q: alive=%v eligible=%v", addr, h, own[addr], sc.alive[h], r.Eligible)
			}
		}
	})
}

// In a converged cluster (Current = the placement's own owners), losing a
// node moves exactly its IPs (TestStickyLosingANodeMovesOnlyItsIPs), each
// to its heir: the heirs that watched it are the nodes that take over, and
// memberlist's later verdict moves nothing more.
func TestConvergedLossMovesEachIPOfTheLostNodeToItsHeir(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, scenarioOpts{perIPEligible: true})
		reqs, as := converged(t, sc.reqs, sc.alive)
		heirs := Heirs(reqs, sc.alive, as)
		x := rapid.SampledFrom(sc.nodes).Draw(t, "lost")
		before := owners(as)
		after := owners(Place(reqs, without(sc.alive, x)))
		for addr, o := range before {
			if o != x {
				continue
			}
			if after[addr] != heirs[addr] {
				t.Fatalf("%v: owner %q lost, went to %q, heir was %q", addr, x, after[addr], heirs[addr])
			}
		}
	})
}

func TestHeirs(t *testing.T) {
	abc := []string{a, b, c}
	// From the hash orders pinned in TestPlace: default/web ranks c, b, a
	// over {a,b,c}; hash(node, .10) and (node, .11): b < d < c < a;
	// hash(node, .12): b < a < c < d.
	tests := []struct {
		name  string
		reqs  []Request
		alive map[string]bool
		want  map[netip.Addr]string
	}{{
		name:  "three IPs on three nodes: each falls back to the free node with the lowest hash",
		reqs:  webIPs(L2, abc, ip10, ip11, ip12),
		alive: aliveSet(a, b, c),
		// ip10 on c (slot 0): without c, every other node holds an IP of
		// web, so the lowest hash(node, .10) of all alive: b. ip11 on b:
		// without b, a and c hold one each: lowest hash(node, .11) of a, c
		// is c. ip12 on a: without a: b.
		want: map[netip.Addr]string{ip10: b, ip11: c, ip12: b},
	}, {
		name:  "one IP, two nodes: the other node",
		reqs:  webIPs(L2, abc, ip10),
		alive: aliveSet(a, c),
		want:  map[netip.Addr]string{ip10: a},
	}, {
		name:  "the only alive eligible node has no heir",
		reqs:  webIPs(L2, abc, ip10),
		alive: aliveSet(a),
		want:  map[netip.Addr]string{},
	}, {
		name:  "BGP IPs have no heir",
		reqs:  webIPs(BGP, abc, ip10),
		alive: aliveSet(a, b, c),
		want:  map[netip.Addr]string{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upBefore := maps.Clone(tt.alive)
			reqsBefore := slices.Clone(tt.reqs)
			got := Heirs(tt.reqs, tt.alive, Place(tt.reqs, tt.alive))
			if diff := cmp.Diff(tt.want, got, equateAddr); diff != "" {
				t.Errorf("Heirs (-want +got):\n%s", diff)
			}
			if !maps.Equal(upBefore, tt.alive) {
				t.Errorf("Heirs changed up: %v → %v", upBefore, tt.alive)
			}
			if diff := cmp.Diff(reqsBefore, tt.reqs, equateAddr); diff != "" {
				t.Errorf("Heirs changed reqs:\n%s", diff)
			}
		})
	}
}

// BenchmarkHeirs10kIPs10Nodes: the heirs of 10,000 IPs over 10 nodes, one
// Place per owner over the Services it holds.
func BenchmarkHeirs10kIPs10Nodes(b *testing.B) {
	nodes := evenNodes()
	alive := aliveSet(nodes...)
	for _, shape := range []struct{ services, perService int }{{10000, 1}, {1000, 10}} {
		reqs := manyIPs(shape.services, shape.perService, nodes)
		as := Place(reqs, alive)
		b.Run(fmt.Sprintf("services=%dx%d", shape.services, shape.perService), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Heirs(reqs, alive, as)
			}
		})
	}
}
