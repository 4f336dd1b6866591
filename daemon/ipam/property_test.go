package ipam

import (
	"flag"
	"fmt"
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

// The universe of the random cases is small so that Services contend: 16
// IPv4 addresses across a /24 boundary (so avoidBuggyIPs bites) and 16
// IPv6 ones across a 16-bit boundary, plus two addresses in no pool.
var (
	universe4 = seq("10.0.0.248", 16)
	universe6 = seq("2001:db8::fff8", 16)
	outside   = addrs("192.0.2.1", "2001:db8:ffff::1")
	universe  = slices.Concat(universe4, universe6)
	// cidrs lie inside the universe.
	cidrs = []string{"10.0.0.252/30", "10.0.1.0/29", "10.0.1.4/31", "2001:db8::fff8/125", "2001:db8::1:0/126"}
	ports = []Port{{"TCP", 53}, {"UDP", 53}, {"TCP", 80}, {"", 443}}
)

func seq(first string, n int) []netip.Addr {
	a := netip.MustParseAddr(first)
	out := make([]netip.Addr, n)
	for i := range out {
		out[i], a = a, a.Next()
	}
	return out
}

func drawPools(t *rapid.T) []Pool {
	n := rapid.IntRange(1, 3).Draw(t, "pools")
	pools := make([]Pool, n)
	for i := range pools {
		var entries []string
		for range rapid.IntRange(0, 3).Draw(t, "entries") {
			u := universe4
			if rapid.Bool().Draw(t, "v6") {
				u = universe6
			}
			lo := rapid.IntRange(0, len(u)-1).Draw(t, "lo")
			hi := rapid.IntRange(lo, len(u)-1).Draw(t, "hi")
			switch rapid.IntRange(0, 2).Draw(t, "form") {
			case 0:
				entries = append(entries, fmt.Sprintf("%s - %s", u[lo], u[hi]))
			case 1:
				entries = append(entries, u[lo].String())
			default:
				entries = append(entries, rapid.SampledFrom(cidrs).Draw(t, "cidr"))
			}
		}
		p, err := ParsePool(fmt.Sprintf("p%d", i), entries, rapid.Float64Range(0, 1).Draw(t, "auto") < 0.8, rapid.Bool().Draw(t, "avoid"))
		if err != nil {
			t.Fatal(err)
		}
		pools[i] = p
	}
	return pools
}

var anyAddr = rapid.SampledFrom(slices.Concat(universe, outside, addrs("::ffff:10.0.0.250")))

// drawService draws a Service named key over pools p0..p2 (and a missing
// one). Orders collide often, so Key must break ties.
func drawService(t *rapid.T, key string) Service {
	names := rapid.SliceOfN(rapid.SampledFrom([]string{"p0", "p1", "p2", "missing"}), 0, 3)
	return Service{
		Key:        key,
		Order:      rapid.Int64Range(0, 3).Draw(t, "order"),
		Pools:      names.Draw(t, "names"),
		Explicit:   rapid.Bool().Draw(t, "explicit"),
		Count:      rapid.IntRange(0, 3).Draw(t, "count"),
		Families:   rapid.SliceOfN(rapid.SampledFrom([]Family{IPv4, IPv6, 0}), 0, 2).Draw(t, "families"),
		Policy:     Policy(rapid.IntRange(0, 2).Draw(t, "policy")),
		Requested:  rapid.SliceOfN(anyAddr, 0, 3).Draw(t, "requested"),
		Current:    rapid.SliceOfN(anyAddr, 0, 3).Draw(t, "current"),
		SharingKey: rapid.SampledFrom([]string{"", "a", "a", "b"}).Draw(t, "sharing"),
		BackendKey: rapid.SampledFrom([]string{"", "", "sel"}).Draw(t, "backend"),
		Ports:      rapid.SliceOfNDistinct(rapid.SampledFrom(ports), 0, 2, func(p Port) Port { return p }).Draw(t, "ports"),
	}
}

func drawServices(t *rapid.T, prefix string, n int) []Service {
	svcs := make([]Service, rapid.IntRange(1, n).Draw(t, "services"))
	for i := range svcs {
		svcs[i] = drawService(t, fmt.Sprintf("%s/svc-%d", prefix, i))
	}
	return svcs
}

func byKey(svcs []Service) map[string]Service {
	m := map[string]Service{}
	for _, s := range svcs {
		m[s.Key] = s
	}
	return m
}

// checkHolders fails unless every IP's holders are pairwise Sharable and
// no Service holds an IP twice.
func checkHolders(t *rapid.T, svcs map[string]Service, holders map[netip.Addr][]string) {
	for a, keys := range holders {
		for i, k := range keys {
			for _, o := range keys[i+1:] {
				if ok, why := Sharable(svcs[k], svcs[o]); !ok {
					t.Fatalf("%s is held by %s and %s, which may not share: %s", a, k, o, why)
				}
			}
		}
	}
}

func holdersOf(rs []Result) map[netip.Addr][]string {
	m := map[netip.Addr][]string{}
	for _, r := range rs {
		for _, a := range r.Addrs() {
			m[a] = append(m[a], r.Key)
		}
	}
	return m
}

// Guarantee 1, and every IP comes from one of its Service's pools.
func TestNoIPIsHeldByTwoServicesThatMayNotShare(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pools := drawPools(t)
		svcs := drawServices(t, "ns", 8)
		rs := Allocate(pools, svcs)
		checkHolders(t, byKey(svcs), holdersOf(rs))
		idx := map[string]Pool{}
		for _, p := range pools {
			idx[p.Name] = p
		}
		for _, r := range rs {
			s := byKey(svcs)[r.Key]
			for _, a := range r.Addrs() {
				if !slices.ContainsFunc(s.Pools, func(n string) bool { p, ok := idx[n]; return ok && p.Usable(a) }) {
					t.Fatalf("%s got %s, usable in none of its pools %v", r.Key, a, s.Pools)
				}
			}
		}
	})
}

// Guarantee 2.
func TestEveryResultHasCountSlotsWithDistinctIPsOfTheServicesFamilies(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		svcs := drawServices(t, "ns", 8)
		rs := Allocate(drawPools(t), svcs)
		if len(rs) != len(svcs) {
			t.Fatalf("%d results for %d Services", len(rs), len(svcs))
		}
		for _, r := range rs {
			s := byKey(svcs)[r.Key]
			if want := max(s.Count, 1); len(r.Slots) != want {
				t.Fatalf("%s: %d slots, want %d", r.Key, len(r.Slots), want)
			}
			if all := r.Addrs(); len(slices.Compact(slices.SortedFunc(slices.Values(all), netip.Addr.Compare))) != len(all) {
				t.Fatalf("%s holds an IP twice: %v", r.Key, all)
			}
			fams := declaredFamilies(s)
			present := map[Family]bool{}
			for k, slot := range r.Slots {
				last := -1
				for _, a := range slot {
					pos := slices.Index(fams, FamilyOf(a))
					if pos <= last {
						t.Fatalf("%s slot %d: %v is not one IP per family in order %v", r.Key, k, slot, fams)
					}
					last = pos
					present[FamilyOf(a)] = true
				}
			}
			// Every missing IP of a family the Service uses has a Failure.
			for k, slot := range r.Slots {
				for _, f := range fams {
					if s.Policy == PreferDualStack && len(fams) > 1 && !present[f] {
						continue // dropped silently, or failed in every slot: not decidable here
					}
					has := slices.ContainsFunc(slot, func(a netip.Addr) bool { return FamilyOf(a) == f })
					failed := slices.ContainsFunc(r.Failures, func(x Failure) bool { return x.Slot == k && x.Family == f })
					if !has && !failed {
						t.Fatalf("%s slot %d has no %s IP and no failure: %+v", r.Key, k, f, r)
					}
				}
			}
		}
	})
}

// Guarantee 4.
func TestAllocateIgnoresTheOrderOfPoolsAndServices(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pools := drawPools(t)
		svcs := drawServices(t, "ns", 8)
		want := Allocate(pools, svcs)
		got := Allocate(rapid.Permutation(pools).Draw(t, "pool order"), rapid.Permutation(svcs).Draw(t, "service order"))
		if diff := cmp.Diff(want, got, equateAddr); diff != "" {
			t.Fatalf("shuffled input changed the result (-ordered +shuffled):\n%s", diff)
		}
	})
}

// withStatus returns svcs with Current set from their results, as the
// controller writes status.
func withStatus(svcs []Service, rs []Result) []Service {
	out := slices.Clone(svcs)
	byKey := map[string]Result{}
	for _, r := range rs {
		byKey[r.Key] = r
	}
	for i := range out {
		out[i].Current = byKey[out[i].Key].Addrs()
	}
	return out
}

// Guarantee 3, second half.
func TestAllocateIsAFixpointOfItsOwnStatus(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pools := drawPools(t)
		svcs := drawServices(t, "ns", 8)
		first := Allocate(pools, svcs)
		again := Allocate(pools, withStatus(svcs, first))
		if diff := cmp.Diff(first, again, equateAddr); diff != "" {
			t.Fatalf("writing the status back changed the result (-first +again):\n%s", diff)
		}
	})
}

// Guarantee 3: Services that hold IPs keep them when new Services arrive,
// however old (Order) they claim to be and whatever they request.
func TestCurrentHoldersAreNeverDisplacedByRequestsOrOtherServices(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pools := drawPools(t)
		old := drawServices(t, "old", 6)
		for i := range old {
			old[i].Current = nil
		}
		before := Allocate(pools, old)
		held := slices.Collect(func(yield func(netip.Addr) bool) {
			for _, r := range before {
				for _, a := range r.Addrs() {
					if !yield(a) {
						return
					}
				}
			}
		})
		newcomers := drawServices(t, "new", 6)
		for i := range newcomers {
			newcomers[i].Order = rapid.Int64Range(-1, 4).Draw(t, "newcomer order")
			newcomers[i].Current = nil
			if len(held) > 0 && rapid.Bool().Draw(t, "requests held IPs") {
				newcomers[i].Requested = rapid.SliceOfN(rapid.SampledFrom(held), 1, 3).Draw(t, "held requests")
			}
		}
		after := Allocate(rapid.Permutation(pools).Draw(t, "pool order"), slices.Concat(withStatus(old, before), newcomers))
		afterBy := map[string]Result{}
		for _, r := range after {
			afterBy[r.Key] = r
		}
		for _, r := range before {
			if diff := cmp.Diff(r.Slots, afterBy[r.Key].Slots, equateAddr); diff != "" {
				t.Fatalf("%s was displaced (-before +after):\n%s", r.Key, diff)
			}
		}
		checkHolders(t, byKey(slices.Concat(old, newcomers)), holdersOf(after))
	})
}

// allocatorHolders reads every IP's holders out of an Allocator.
func allocatorHolders(al *Allocator) map[netip.Addr][]string {
	m := map[netip.Addr][]string{}
	for _, a := range slices.Concat(universe, outside) {
		if h := al.Holders(a); h != nil {
			m[a] = h
		}
	}
	return m
}

// Guarantee 1 and 5 for the Allocator: through any sequence of Assign and
// Release, holders may share, usage adds up, and an IP whose last holder
// is released can be requested by a new Service.
func TestReleasedIPIsAllocatableAgain(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pools := drawPools(t)
		al := NewAllocator(pools)
		svcs := map[string]Service{}
		keys := []string{"ns/a", "ns/b", "ns/c", "ns/d", "ns/e"}
		for step := range rapid.IntRange(1, 20).Draw(t, "steps") {
			key := rapid.SampledFrom(keys).Draw(t, "key")
			if rapid.Float64Range(0, 1).Draw(t, "release") < 0.3 {
				was := allocatorHolders(al)
				al.Release(key)
				delete(svcs, key)
				now := allocatorHolders(al)
				for a, hs := range was {
					rest := slices.DeleteFunc(slices.Clone(hs), func(k string) bool { return k == key })
					if !slices.Equal(rest, now[a]) {
						t.Fatalf("step %d: releasing %s left %s with holders %v, want %v", step, key, a, now[a], rest)
					}
					if len(rest) > 0 || !slices.Contains(hs, key) {
						continue
					}
					probe := Service{Key: "probe/x", Pools: []string{"p0", "p1", "p2"}, Requested: []netip.Addr{a}, Families: []Family{FamilyOf(a)}}
					if got := al.Assign(probe).Addrs(); len(got) != 1 || got[0] != a {
						t.Fatalf("step %d: %s, released by %s, not granted again: %v", step, a, key, got)
					}
					al.Release(probe.Key)
				}
				continue
			}
			s := drawService(t, key)
			svcs[key] = s
			al.Assign(s)
			checkHolders(t, svcs, allocatorHolders(al))
			for _, p := range pools {
				n := 0
				for a := range allocatorHolders(al) {
					if p.Usable(a) {
						n++
					}
				}
				if got := al.Usage(p.Name); got != float64(n) {
					t.Fatalf("step %d: Usage(%s) = %v, want %d", step, p.Name, got, n)
				}
			}
		}
	})
}

// The Allocator follows Allocate's rules: one Service alone gets the same.
func TestAssignOnAnEmptyAllocatorEqualsAllocate(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pools := drawPools(t)
		s := drawService(t, "ns/a")
		want := Allocate(pools, []Service{s})[0]
		if diff := cmp.Diff(want, NewAllocator(pools).Assign(s), equateAddr); diff != "" {
			t.Fatalf("Assign differs from Allocate (-Allocate +Assign):\n%s", diff)
		}
	})
}

func TestSharableIsSymmetric(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := drawService(t, "ns/a"), drawService(t, rapid.SampledFrom([]string{"ns/a", "ns/b"}).Draw(t, "key"))
		ab, _ := Sharable(a, b)
		ba, _ := Sharable(b, a)
		if ab != ba {
			t.Fatalf("Sharable(a, b) = %v, Sharable(b, a) = %v", ab, ba)
		}
	})
}

// Size, Families and Overlaps agree with counting addresses one by one.
func TestPoolQueriesAgreeWithCountingAddresses(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pools := drawPools(t)
		for _, p := range pools {
			var n [2]float64
			for _, a := range universe {
				if p.Usable(a) {
					n[FamilyOf(a)-1]++
				}
			}
			if v4, v6 := p.Size(); v4 != n[0] || v6 != n[1] {
				t.Fatalf("%s: Size() = %v, %v; counted %v", p.Name, v4, v6, n)
			}
			if f4, f6 := p.Families(); f4 != (n[0] > 0) || f6 != (n[1] > 0) {
				t.Fatalf("%s: Families() = %v, %v; counted %v", p.Name, f4, f6, n)
			}
		}
		var want []string
		for i, p := range pools {
			for _, q := range pools[i+1:] {
				if slices.ContainsFunc(universe, func(a netip.Addr) bool { return p.Contains(a) && q.Contains(a) }) {
					want = append(want, p.Name+"+"+q.Name)
				}
			}
		}
		var got []string
		for _, o := range Overlaps(pools) {
			got = append(got, o.A+"+"+o.B)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Overlaps (-counted +got):\n%s", diff)
		}
	})
}

// The held set's free-address search equals a scan over the pool.
func TestFirstFreeIsTheLowestUsableUnheldAddress(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// A random subset of the universe, so the pool has gaps between
		// its ranges as well as .0/.255 to skip.
		var entries []string
		for _, a := range universe {
			if rapid.Float64Range(0, 1).Draw(t, "in pool "+a.String()) < 0.7 {
				entries = append(entries, a.String())
			}
		}
		p, err := ParsePool("p", entries, true, rapid.Bool().Draw(t, "avoid"))
		if err != nil {
			t.Fatal(err)
		}
		var h [2]heldSet
		held := map[netip.Addr]bool{}
		for range rapid.IntRange(0, 60).Draw(t, "ops") {
			a := rapid.SampledFrom(universe).Draw(t, "addr")
			if !p.Usable(a) {
				continue
			}
			x, fi := toU(a)
			if held[a] {
				h[fi].remove(&p, fi, x)
			} else {
				h[fi].insert(&p, fi, x)
			}
			held[a] = !held[a]
			for _, from := range universe {
				fx, ffi := toU(from)
				want, wantOK := netip.Addr{}, false
				for _, b := range universe {
					if FamilyOf(b) == FamilyOf(from) && from.Compare(b) <= 0 && p.Usable(b) && !held[b] {
						want, wantOK = b, true
						break
					}
				}
				gx, gotOK := h[ffi].firstFree(&p, ffi, fx)
				if gotOK != wantOK || (wantOK && fromU(gx, ffi) != want) {
					t.Fatalf("firstFree(%s) = %s, %v; want %s, %v (runs %v)", from, fromU(gx, ffi), gotOK, want, wantOK, h[ffi].runs)
				}
			}
		}
	})
}

// MetalLB's rule, against a naive scan: automatic allocation gives each
// slot the lowest address, in the first of the Service's pools that has
// one, that is free or held only by Services it may share with. The
// Allocator keeps its search cursors between Assigns (until a Release),
// so this also checks that a cursor never skips an acceptable address.
func TestAutomaticAllocationTakesTheLowestAcceptableAddress(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pools := drawPools(t)
		al := NewAllocator(pools)
		svcs := map[string]Service{}
		for step := range rapid.IntRange(1, 25).Draw(t, "steps") {
			key := fmt.Sprintf("ns/svc-%d", rapid.IntRange(0, 9).Draw(t, "key"))
			if _, ok := svcs[key]; ok && rapid.Float64Range(0, 1).Draw(t, "release") < 0.3 {
				al.Release(key)
				delete(svcs, key)
				continue
			}
			s := drawService(t, key)
			s.Requested, s.Current, s.Policy = nil, nil, SingleStack
			s.Pools = rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"p0", "p1", "p2"}), 1, 3, rapid.ID[string]).Draw(t, "pools")
			al.Release(key) // Assign would; do it first so the scan below sees the same state
			delete(svcs, key)
			var want []netip.Addr
			for range max(s.Count, 1) {
				want = append(want, lowestAcceptable(pools, al, svcs, s, want))
			}
			svcs[key] = s
			r := al.Assign(s)
			var got []netip.Addr
			for _, slot := range r.Slots {
				a := netip.Addr{}
				if len(slot) > 0 {
					a = slot[0]
				}
				got = append(got, a)
			}
			if diff := cmp.Diff(want, got, equateAddr); diff != "" {
				t.Fatalf("step %d: %s (-naive +Assign):\n%s", step, key, diff)
			}
		}
	})
}

// lowestAcceptable scans s's pools address by address.
func lowestAcceptable(pools []Pool, al *Allocator, svcs map[string]Service, s Service, taken []netip.Addr) netip.Addr {
	f := declaredFamilies(s)[0]
	for _, name := range s.Pools {
		i := slices.IndexFunc(pools, func(p Pool) bool { return p.Name == name })
		if i < 0 || !(pools[i].AutoAssign || s.Explicit) {
			continue
		}
		for _, a := range universe {
			if FamilyOf(a) != f || !pools[i].Usable(a) || slices.Contains(taken, a) {
				continue
			}
			if !slices.ContainsFunc(al.Holders(a), func(k string) bool { ok, _ := Sharable(s, svcs[k]); return !ok }) {
				return a
			}
		}
	}
	return netip.Addr{}
}
