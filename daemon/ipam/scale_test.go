package ipam

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"testing"
)

// scaleServices returns n one-slot Services over pools "v4" and "v6";
// share decides each one's sharing key and ports.
func scaleServices(n int, fams []Family, share func(i int, s *Service)) []Service {
	svcs := make([]Service, n)
	for i := range svcs {
		svcs[i] = Service{
			Key:      fmt.Sprintf("ns/svc-%05d", i),
			Order:    int64(i),
			Pools:    []string{"v4", "v6"},
			Families: fams,
			Policy:   PreferDualStack,
		}
		if share != nil {
			share(i, &svcs[i])
		}
	}
	return svcs
}

func scalePools(t testing.TB, avoid bool) []Pool {
	return []Pool{
		mustPool(t, "v4", true, avoid, "10.0.0.0/16"),
		mustPool(t, "v6", true, false, "2001:db8::/64"),
	}
}

var scaleCases = []struct {
	name  string
	avoid bool
	share func(i int, s *Service)
}{
	{"no sharing", false, nil},
	{"avoidBuggyIPs", true, nil},
	// Every Service refuses every other: without the search cursor each
	// would rescan all the addresses held under the key.
	{"one sharing key, one port", false, func(_ int, s *Service) {
		s.SharingKey, s.Ports = "k", []Port{{"TCP", 80}}
	}},
	// Groups of ten share one IP each.
	{"ten per sharing key", false, func(i int, s *Service) {
		s.SharingKey, s.Ports = fmt.Sprint("k", i/10), []Port{{"TCP", int32(i % 10)}}
	}},
	// One IP shared by every Service, one port each (game servers): each
	// newcomer is checked against the port index, not every holder.
	{"one IP for all", false, func(i int, s *Service) {
		s.SharingKey, s.Ports = "k", []Port{{"UDP", int32(i)}}
	}},
	// Requests of IPs another Service gets first.
	{"contended requests", false, func(i int, s *Service) {
		if i%2 == 1 {
			s.Requested = []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})}
		}
	}},
}

// Allocation work is counted, not timed, so the test is deterministic on
// a loaded machine: the number of search steps must grow linearly with
// the number of Services (a quadratic search would take ~n²/2 = 5e7).
func TestAllocationWorkGrowsLinearlyWithTheNumberOfServices(t *testing.T) {
	const n = 10_000
	for _, tc := range scaleCases {
		t.Run(tc.name, func(t *testing.T) {
			rs, st := allocate(scalePools(t, tc.avoid), scaleServices(n, []Family{IPv4, IPv6}, tc.share))
			for _, r := range rs {
				if len(r.Addrs()) != 2 && !slices.ContainsFunc(r.Failures, func(f Failure) bool { return f.Slot == 0 }) {
					t.Fatalf("%s: %v without a failure", r.Key, r.Addrs())
				}
			}
			if limit := 4 * 2 * n; st.steps > limit {
				t.Errorf("%d search steps for %d Services, want at most %d", st.steps, n, limit)
			}
		})
	}
}

// footprint measures the state's size in elements: every run, held IP,
// holder entry, keyed address and cursor is one fixed-size element, and
// maps grow with their entry counts alone. Equal footprints are equal
// memory up to the size of the pools' own range lists.
func (st *state) footprint() int {
	n := len(st.ips) + len(st.svcs) + len(st.cursors) + len(st.keyed)
	for _, g := range st.ips {
		n += len(g.holders) + len(g.ports)
	}
	for _, h := range st.svcs {
		n += len(h.addrs)
	}
	for _, l := range st.keyed {
		n += len(l[fam4]) + len(l[fam6])
	}
	for pi := range st.held {
		for fi := range st.held[pi] {
			n += len(st.held[pi][fi].runs)
		}
	}
	return n
}

// memoryServices are 1,000 IPv6 Services in groups of four sharing an IP
// (one sharing key per group, distinct ports), so that even a /120 (256
// addresses) holds all of them and every pool size sees the same
// allocations.
func memoryServices() []Service {
	svcs := scaleServices(1000, []Family{IPv6}, func(i int, s *Service) {
		s.SharingKey, s.Ports = fmt.Sprint("g", i/4), []Port{{"TCP", int32(i % 4)}}
	})
	for i := range svcs {
		svcs[i].Pools = []string{"v6"}
		svcs[i].Policy = SingleStack
	}
	return svcs
}

func memoryAllocator(t testing.TB, cidr string, svcs []Service) *Allocator {
	al := NewAllocator([]Pool{mustPool(t, "v6", true, false, cidr)})
	for _, s := range svcs {
		if r := al.Assign(s); len(r.Failures) > 0 {
			t.Fatalf("%s in %s: %+v", s.Key, cidr, r.Failures)
		}
	}
	return al
}

// heapDelta returns the live heap an Allocator built by build holds, as
// the median of five measurements after a full GC each.
func heapDelta(build func() *Allocator) uint64 {
	var deltas []uint64
	for range 5 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		al := build()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(al)
		deltas = append(deltas, after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))
	}
	slices.Sort(deltas)
	return deltas[len(deltas)/2]
}

// Guarantee 6: a /64 (or a /48) pool costs what a /120 costs for the same
// allocations. Checked twice: exactly, on the state's element count, and
// on the measured heap, within 10%.
func TestMemoryOfAPoolDoesNotDependOnItsSize(t *testing.T) {
	svcs := memoryServices()
	small := memoryAllocator(t, "2001:db8::/120", svcs)
	want := small.st.footprint()
	if n := len(small.st.ips); n != 250 {
		t.Fatalf("%d IPs held, want 250 (groups of four sharing)", n)
	}
	for _, cidr := range []string{"2001:db8::/64", "2001:db8::/48"} {
		if got := memoryAllocator(t, cidr, svcs).st.footprint(); got != want {
			t.Errorf("%s: footprint %d elements, /120: %d", cidr, got, want)
		}
	}
	smallHeap := heapDelta(func() *Allocator { return memoryAllocator(t, "2001:db8::/120", svcs) })
	bigHeap := heapDelta(func() *Allocator { return memoryAllocator(t, "2001:db8::/64", svcs) })
	t.Logf("heap: /120 %d bytes, /64 %d bytes", smallHeap, bigHeap)
	if d := max(smallHeap, bigHeap) - min(smallHeap, bigHeap); d*10 > max(smallHeap, bigHeap) {
		t.Errorf("heap: /64 %d bytes, /120 %d bytes: more than 10%% apart", bigHeap, smallHeap)
	}
}

// BenchmarkAllocate10k is one leader pass over 10,000 dual-stack
// one-slot Services on a /16 and a /64: from nothing (a fresh cluster),
// and from their status (every pass after).
func BenchmarkAllocate10k(b *testing.B) {
	for _, tc := range scaleCases {
		pools := scalePools(b, tc.avoid)
		svcs := scaleServices(10_000, []Family{IPv4, IPv6}, tc.share)
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				Allocate(pools, svcs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(svcs)), "ns/service")
		})
		if tc.share != nil {
			continue
		}
		current := withStatus(svcs, Allocate(pools, svcs))
		b.Run(tc.name+", from status", func(b *testing.B) {
			for b.Loop() {
				Allocate(pools, current)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(svcs)), "ns/service")
		})
	}
}

// BenchmarkAllocateIncremental is one Service deleted and another created
// next to 10,000 held ones: a Release and an Assign that finds the hole.
func BenchmarkAllocateIncremental(b *testing.B) {
	for _, tc := range scaleCases {
		if tc.name == "contended requests" {
			continue // a re-created Service asking for a taken IP gets nothing
		}
		b.Run(tc.name, func(b *testing.B) {
			svcs := scaleServices(10_000, []Family{IPv4, IPv6}, tc.share)
			al := NewAllocator(scalePools(b, tc.avoid))
			for _, s := range svcs {
				al.Assign(s)
			}
			i := 0
			for b.Loop() {
				s := svcs[(i*7919)%len(svcs)] // spread the holes
				al.Release(s.Key)
				if r := al.Assign(s); len(r.Addrs()) != 2 {
					b.Fatalf("%s: %+v", s.Key, r)
				}
				i++
			}
		})
	}
}
