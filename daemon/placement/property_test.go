package placement

import (
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// minChecks is the number of cases every property runs by default. rapid's
// own default is 100; an explicit -rapid.checks or RAPID_CHECKS wins.
const minChecks = 1000

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if _, env := os.LookupEnv("RAPID_CHECKS"); !set && !env {
		if err := flag.Set("rapid.checks", fmt.Sprint(minChecks)); err != nil {
			fmt.Fprintln(os.Stderr, "set rapid.checks:", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

// equateAddr lets go-cmp compare netip.Addr (unexported fields) by value.
var equateAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// scenario is a random cluster: a few Services over a few nodes.
type scenario struct {
	nodes []string
	reqs  []Request
	alive map[string]bool
}

type scenarioOpts struct {
	bgp           bool // allow BGP Services
	perIPEligible bool // allow IPs of one Service to have different Eligible sets
}

func drawScenario(t *rapid.T, o scenarioOpts) scenario {
	prefix := rapid.StringMatching(`[a-z]{0,3}`).Draw(t, "prefix")
	nNodes := rapid.IntRange(1, 8).Draw(t, "nodes")
	nodes := make([]string, nNodes)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("%snode-%d", prefix, i)
	}
	alive := map[string]bool{}
	for _, n := range nodes {
		if rapid.Float64Range(0, 1).Draw(t, "alive "+n) < 0.7 {
			alive[n] = true
		}
	}
	subset := rapid.SliceOfNDistinct(rapid.SampledFrom(nodes), 0, nNodes, rapid.ID[string])
	v6 := rapid.Bool().Draw(t, "v6")
	base := rapid.Uint32().Draw(t, "base")
	var reqs []Request
	ip := uint32(0)
	for s := range rapid.IntRange(1, 4).Draw(t, "services") {
		svc := fmt.Sprintf("%sns/svc-%d", prefix, s)
		mode := L2
		if o.bgp && rapid.Float64Range(0, 1).Draw(t, "bgp "+svc) < 0.3 {
			mode = BGP
		}
		eligible := subset.Draw(t, "eligible "+svc)
		perIP := o.perIPEligible && rapid.Float64Range(0, 1).Draw(t, "per-IP "+svc) < 0.3
		for slot := range rapid.IntRange(1, 6).Draw(t, "ips "+svc) {
			e := eligible
			if perIP {
				e = subset.Draw(t, fmt.Sprintf("eligible %s/%d", svc, slot))
			}
			reqs = append(reqs, Request{Service: svc, Slot: slot, Addr: testAddr(v6, base+ip), Mode: mode, Eligible: e})
			ip++
		}
	}
	return scenario{nodes: nodes, reqs: reqs, alive: alive}
}

func testAddr(v6 bool, n uint32) netip.Addr {
	b := [4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	if !v6 {
		return netip.AddrFrom4(b)
	}
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: b[0], 13: b[1], 14: b[2], 15: b[3]})
}

// owners maps each IP (unique in scenarios) to its L2 owner, "" for none.
func owners(as []Assignment) map[netip.Addr]string {
	m := make(map[netip.Addr]string, len(as))
	for _, a := range as {
		if a.Mode == L2 && len(a.Owners) == 1 {
			m[a.Addr] = a.Owners[0]
		} else {
			m[a.Addr] = ""
		}
	}
	return m
}

// lowestHeld maps each Service to the lowest slot node holds in it.
func lowestHeld(as []Assignment, node string) map[string]int {
	m := map[string]int{}
	for _, a := range as {
		if a.Mode != L2 || len(a.Owners) != 1 || a.Owners[0] != node {
			continue
		}
		if s, ok := m[a.Service]; !ok || a.Slot < s {
			m[a.Service] = a.Slot
		}
	}
	return m
}

func without(alive map[string]bool, node string) map[string]bool {
	m := maps.Clone(alive)
	delete(m, node)
	return m
}

func with(alive map[string]bool, node string) map[string]bool {
	m := maps.Clone(alive)
	m[node] = true
	return m
}

// Property 1.
func TestAgreeingViewsGiveEveryL2IPExactlyOneAliveEligibleOwner(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, scenarioOpts{perIPEligible: true})
		as := Place(sc.reqs, sc.alive)
		if len(as) != len(sc.reqs) {
			t.Fatalf("got %d assignments for %d requests", len(as), len(sc.reqs))
		}
		byAddr := map[netip.Addr]Request{}
		for _, r := range sc.reqs {
			byAddr[r.Addr] = r
		}
		for _, a := range as {
			r := byAddr[a.Addr]
			anyAlive := slices.ContainsFunc(r.Eligible, func(n string) bool { return sc.alive[n] })
			if !anyAlive {
				if a.Owners != nil {
					t.Fatalf("%v: no eligible node alive, owners %v", a.Addr, a.Owners)
				}
				continue
			}
			if len(a.Owners) != 1 {
				t.Fatalf("%v: owners %v, want exactly one", a.Addr, a.Owners)
			}
			o := a.Owners[0]
			if !sc.alive[o] || !slices.Contains(r.Eligible, o) {
				t.Fatalf("%v: owner %q alive=%v eligible=%v", a.Addr, o, sc.alive[o], r.Eligible)
			}
			if want := Preferred(r.Service, r.Slot, r.Eligible); a.Preferred != want {
				t.Fatalf("%v: preferred %q, Preferred() says %q", a.Addr, a.Preferred, want)
			}
			if (o == a.Preferred) != sc.alive[a.Preferred] {
				t.Fatalf("%v: owner %q, preferred %q alive=%v", a.Addr, o, a.Preferred, sc.alive[a.Preferred])
			}
		}
	})
}

// Property 2, the exact guarantee (see doc.go): losing x moves x's IPs, and
// otherwise only fallback IPs (preferred node dead) of a Service in which x
// held an IP at a lower slot. IPs whose preferred node is alive never move.
func TestLosingANodeMovesOnlyItsIPsAndLaterFallbacksOfItsServices(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, scenarioOpts{perIPEligible: true})
		x := rapid.SampledFrom(sc.nodes).Draw(t, "lost")
		beforeAlive := with(sc.alive, x)
		afterAlive := without(sc.alive, x)
		before := Place(sc.reqs, beforeAlive)
		after := Place(sc.reqs, afterAlive)
		ob := owners(before)
		m := lowestHeld(before, x)
		for _, a := range after {
			was := ob[a.Addr]
			now := owners([]Assignment{a})[a.Addr]
			if was == now || was == x {
				continue
			}
			low, held := m[a.Service]
			if afterAlive[a.Preferred] || !held || a.Slot <= low {
				t.Fatalf("%v (%s slot %d, preferred %q) moved %q → %q on losing %q (x's lowest slot here: %d, held: %v)",
					a.Addr, a.Service, a.Slot, a.Preferred, was, now, x, low, held)
			}
		}
	})
}

// Property 2, the literal statement, in the case where it holds: if no IP of
// a Service was on a fallback node before, losing a node moves only its own
// IPs in that Service.
func TestLosingANodeMovesOnlyItsIPsWhenItsServiceHadNoFallback(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, scenarioOpts{perIPEligible: true})
		x := rapid.SampledFrom(sc.nodes).Draw(t, "lost")
		before := Place(sc.reqs, with(sc.alive, x))
		after := Place(sc.reqs, without(sc.alive, x))
		hadFallback := map[string]bool{}
		for _, a := range before {
			if a.Mode == L2 && len(a.Owners) == 1 && a.Owners[0] != a.Preferred {
				hadFallback[a.Service] = true
			}
		}
		ob := owners(before)
		for addr, now := range owners(after) {
			i := slices.IndexFunc(after, func(a Assignment) bool { return a.Addr == addr })
			if was := ob[addr]; was != now && was != x && !hadFallback[after[i].Service] {
				t.Fatalf("%v moved %q → %q on losing %q", addr, was, now, x)
			}
		}
	})
}

// Property 3, the exact guarantee (see doc.go). Adding z (an eligible node
// coming alive): IPs preferred by z move to z; IPs whose preferred node was
// already alive keep their owner; any other move is of a fallback IP
// (preferred node still dead) at a slot above the lowest slot z now holds
// in that Service — to z, or re-packed onto a node z's return freed.
func TestAddingANodeMovesItsPreferredIPsToItAndOnlyLaterFallbacks(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, scenarioOpts{perIPEligible: true})
		z := rapid.SampledFrom(sc.nodes).Draw(t, "added")
		beforeAlive := without(sc.alive, z)
		afterAlive := with(sc.alive, z)
		before := Place(sc.reqs, beforeAlive)
		after := Place(sc.reqs, afterAlive)
		ob := owners(before)
		m := lowestHeld(after, z)
		for _, a := range after {
			was := ob[a.Addr]
			now := owners([]Assignment{a})[a.Addr]
			if a.Mode == L2 && a.Preferred == z && now != z {
				t.Fatalf("%v preferred by added %q is on %q", a.Addr, z, now)
			}
			if was == now || a.Preferred == z {
				continue
			}
			low, held := m[a.Service]
			if beforeAlive[a.Preferred] || afterAlive[a.Preferred] || !held || a.Slot < low || (a.Slot == low && now != z) {
				t.Fatalf("%v (%s slot %d, preferred %q) moved %q → %q on adding %q (z's lowest slot here: %d, held: %v)",
					a.Addr, a.Service, a.Slot, a.Preferred, was, now, z, low, held)
			}
		}
	})
}

// Property 3, the literal statement, in the case where it holds: when z was
// the only dead preferred node of a Service (a rejoin after a single
// failure), the IPs that move are exactly those z is preferred for, all to
// z. In general it cannot hold (doc.go, guarantee 3).
func TestAddingANodeMovesOnlyItsPreferredIPsWhenItWasTheOnlyDeadPreferred(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, scenarioOpts{perIPEligible: true})
		z := rapid.SampledFrom(sc.nodes).Draw(t, "added")
		beforeAlive := without(sc.alive, z)
		before := Place(sc.reqs, beforeAlive)
		after := Place(sc.reqs, with(sc.alive, z))
		onlyZDead := map[string]bool{}
		for _, a := range before {
			if _, ok := onlyZDead[a.Service]; !ok {
				onlyZDead[a.Service] = true
			}
			if a.Mode == L2 && a.Preferred != "" && a.Preferred != z && !beforeAlive[a.Preferred] {
				onlyZDead[a.Service] = false
			}
		}
		ob, oa := owners(before), owners(after)
		for _, a := range after {
			if a.Mode != L2 || !onlyZDead[a.Service] {
				continue
			}
			was, now := ob[a.Addr], oa[a.Addr]
			if (was != now) != (a.Preferred == z) || (was != now && now != z) {
				t.Fatalf("%v (preferred %q) moved %q → %q on adding %q", a.Addr, a.Preferred, was, now, z)
			}
		}
	})
}

// Property 4.
func TestEnoughAliveNodesGiveAServiceDistinctOwners(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, scenarioOpts{})
		as := Place(sc.reqs, sc.alive)
		type group struct {
			n      int
			alive  int
			owners map[string]bool
		}
		groups := map[string]*group{}
		for _, r := range sc.reqs {
			g := groups[r.Service]
			if g == nil {
				g = &group{owners: map[string]bool{}}
				for _, n := range r.Eligible {
					if sc.alive[n] {
						g.alive++
					}
				}
				groups[r.Service] = g
			}
			g.n++
		}
		for _, a := range as {
			if len(a.Owners) == 1 {
				groups[a.Service].owners[a.Owners[0]] = true
			}
		}
		for svc, g := range groups {
			if g.n <= g.alive && len(g.owners) != g.n {
				t.Fatalf("%s: %d IPs, %d alive eligible nodes, but %d distinct owners", svc, g.n, g.alive, len(g.owners))
			}
		}
	})
}

// Property 5.
func TestInputOrderDoesNotChangeTheResult(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, scenarioOpts{bgp: true, perIPEligible: true})
		want := Place(sc.reqs, sc.alive)
		perm := rapid.Permutation(sc.reqs).Draw(t, "order")
		shuffled := make([]Request, len(perm))
		for i, r := range perm {
			e := slices.Clone(r.Eligible)
			if len(e) > 0 && rapid.Bool().Draw(t, "duplicate") {
				e = append(e, e[0])
			}
			r.Eligible = rapid.Permutation(e).Draw(t, "eligible order")
			shuffled[i] = r
		}
		if diff := cmp.Diff(want, Place(shuffled, sc.alive), equateAddr); diff != "" {
			t.Fatalf("shuffled input changed the result (-ordered +shuffled):\n%s", diff)
		}
	})
}

// Property 6.
func TestBGPOwnersAreAliveEligibleNodes(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, scenarioOpts{bgp: true, perIPEligible: true})
		for i := range sc.reqs {
			sc.reqs[i].Mode = BGP
		}
		byAddr := map[netip.Addr]Request{}
		for _, r := range sc.reqs {
			byAddr[r.Addr] = r
		}
		for _, a := range Place(sc.reqs, sc.alive) {
			var want []string
			for _, n := range byAddr[a.Addr].Eligible {
				if sc.alive[n] {
					want = append(want, n)
				}
			}
			slices.Sort(want)
			if diff := cmp.Diff(want, a.Owners); diff != "" || a.Preferred != "" {
				t.Fatalf("%v: owners (-alive∩eligible +got):\n%s preferred %q", a.Addr, diff, a.Preferred)
			}
		}
	})
}
