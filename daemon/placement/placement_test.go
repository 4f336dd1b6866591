package placement

import (
	"encoding/binary"
	"fmt"
	fnv64 "hash/fnv"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	a, b, c, d, e = "node-a", "node-b", "node-c", "node-d", "node-e"
	web           = "default/web"
)

var (
	ip10 = netip.MustParseAddr("192.0.2.10")
	ip11 = netip.MustParseAddr("192.0.2.11")
	ip12 = netip.MustParseAddr("192.0.2.12")
	ip13 = netip.MustParseAddr("192.0.2.13")
)

// webIPs is default/web with one IP per slot, all with the same eligible nodes.
func webIPs(mode Mode, eligible []string, addrs ...netip.Addr) []Request {
	reqs := make([]Request, len(addrs))
	for i, ip := range addrs {
		reqs[i] = Request{Service: web, Slot: i, Addr: ip, Mode: mode, Eligible: eligible}
	}
	return reqs
}

func aliveSet(nodes ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range nodes {
		m[n] = true
	}
	return m
}

func l2(slot int, ip netip.Addr, preferred string, owner ...string) Assignment {
	if len(owner) == 0 {
		owner = nil
	}
	return Assignment{Service: web, Slot: slot, Addr: ip, Mode: L2, Owners: owner, Preferred: preferred}
}

// The hash orders used below, pinned by TestHashIsStable:
//
//	rank of default/web over {a,b,c}:     c, b, a
//	rank of default/web over {a,b,c,d}:   c, b, a, d
//	rank of default/web over {a,...,e}:   c, e, b, a, d
//	hash(node, 192.0.2.10): b < d < c < a
//	hash(node, 192.0.2.11): b < d < c < a
//	hash(node, 192.0.2.12): b < a < c < d
func TestPlace(t *testing.T) {
	abc := []string{a, b, c}
	abcd := []string{a, b, c, d}
	abcde := []string{a, b, c, d, e}
	tests := []struct {
		name  string
		reqs  []Request
		alive map[string]bool
		want  []Assignment
	}{{
		name:  "three nodes, three IPs: one each on its preferred node",
		reqs:  webIPs(L2, abc, ip10, ip11, ip12),
		alive: aliveSet(a, b, c),
		want:  []Assignment{l2(0, ip10, c, c), l2(1, ip11, b, b), l2(2, ip12, a, a)},
	}, {
		name:  "kill the preferred node of slot 0: every alive node holds one, so the lowest hash(node, ip) of all",
		reqs:  webIPs(L2, abc, ip10, ip11, ip12),
		alive: aliveSet(a, b),
		want:  []Assignment{l2(0, ip10, c, b), l2(1, ip11, b, b), l2(2, ip12, a, a)},
	}, {
		name:  "kill the preferred node of slot 2",
		reqs:  webIPs(L2, abc, ip10, ip11, ip12),
		alive: aliveSet(b, c),
		want:  []Assignment{l2(0, ip10, c, c), l2(1, ip11, b, b), l2(2, ip12, a, b)},
	}, {
		name:  "a spare node takes the orphan: it holds nothing of the Service",
		reqs:  webIPs(L2, abcd, ip10, ip11, ip12),
		alive: aliveSet(a, b, d),
		want:  []Assignment{l2(0, ip10, c, d), l2(1, ip11, b, b), l2(2, ip12, a, a)},
	}, {
		name:  "two orphans, one spare: slot order decides who gets it",
		reqs:  webIPs(L2, abcd, ip10, ip11, ip12),
		alive: aliveSet(a, d),
		want:  []Assignment{l2(0, ip10, c, d), l2(1, ip11, b, d), l2(2, ip12, a, a)},
	}, {
		name:  "nobody alive: no owner, preferred still reported",
		reqs:  webIPs(L2, abc, ip10),
		alive: aliveSet(),
		want:  []Assignment{l2(0, ip10, c)},
	}, {
		name:  "alive but not eligible does not count",
		reqs:  webIPs(L2, []string{c}, ip10),
		alive: aliveSet(a, b),
		want:  []Assignment{l2(0, ip10, c)},
	}, {
		name:  "nothing eligible",
		reqs:  webIPs(L2, nil, ip10),
		alive: aliveSet(a, b, c),
		want:  []Assignment{l2(0, ip10, "")},
	}, {
		name:  "more IPs than eligible nodes: slot 3 wraps to the node of slot 0",
		reqs:  webIPs(L2, abc, ip10, ip11, ip12, ip13),
		alive: aliveSet(a, b, c),
		want:  []Assignment{l2(0, ip10, c, c), l2(1, ip11, b, b), l2(2, ip12, a, a), l2(3, ip13, c, c)},
	}, {
		name:  "cascade: with slot 1's preferred node dead, losing c moves slot 1's fallback from d to a",
		reqs:  webIPs(L2, abcde, ip10, ip11, ip12),
		alive: aliveSet(a, b, d),
		want:  []Assignment{l2(0, ip10, c, d), l2(1, ip11, e, a), l2(2, ip12, b, b)},
	}, {
		name:  "BGP: every alive eligible node, sorted",
		reqs:  webIPs(BGP, []string{c, a, b, a}, ip10),
		alive: aliveSet(c, a, d),
		want:  []Assignment{{Service: web, Addr: ip10, Mode: BGP, Owners: []string{a, c}}},
	}, {
		name:  "invalid mode: nobody announces",
		reqs:  webIPs(Mode(0), abc, ip10),
		alive: aliveSet(a, b, c),
		want:  []Assignment{{Service: web, Addr: ip10}},
	}, {
		name: "sorted by address, Services independent",
		reqs: []Request{
			{Service: "z/last", Slot: 0, Addr: ip10, Mode: L2, Eligible: []string{e}},
			{Service: web, Slot: 0, Addr: ip12, Mode: L2, Eligible: []string{a}},
		},
		alive: aliveSet(a, e),
		want: []Assignment{
			{Service: "z/last", Addr: ip10, Mode: L2, Owners: []string{e}, Preferred: e},
			l2(0, ip12, a, a),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Place(tt.reqs, tt.alive)
			if diff := cmp.Diff(tt.want, got, equateAddr); diff != "" {
				t.Errorf("Place (-want +got):\n%s", diff)
			}
		})
	}
}

// The cascade row above, read as a sequence: it is the case where losing a
// node moves an IP it did not hold (doc.go, guarantee 2).
func TestLosingASecondNodeCanMoveALaterFallback(t *testing.T) {
	reqs := webIPs(L2, []string{a, b, c, d, e}, ip10, ip11, ip12)
	before := Place(reqs, aliveSet(a, b, c, d))
	after := Place(reqs, aliveSet(a, b, d))
	want := []Assignment{l2(0, ip10, c, c), l2(1, ip11, e, d), l2(2, ip12, b, b)}
	if diff := cmp.Diff(want, before, equateAddr); diff != "" {
		t.Fatalf("before (-want +got):\n%s", diff)
	}
	if before[1].Owners[0] == after[1].Owners[0] {
		t.Fatalf("slot 1 stayed on %s; this test documents that it moves", after[1].Owners[0])
	}
}

// A fallback IP moves to a returning node that is not its preferred node:
// unavoidable for any stateless rule (doc.go, guarantee 3).
func TestAddingANodeCanTakeAFallbackItIsNotPreferredFor(t *testing.T) {
	reqs := webIPs(L2, []string{a, b, c}, ip10) // preferred: c
	before := Place(reqs, aliveSet(a))
	after := Place(reqs, aliveSet(a, b))
	want := [][]Assignment{{l2(0, ip10, c, a)}, {l2(0, ip10, c, b)}}
	if diff := cmp.Diff(want, [][]Assignment{before, after}, equateAddr); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestPreferred(t *testing.T) {
	tests := []struct {
		service  string
		slot     int
		eligible []string
		want     string
	}{
		{web, 0, []string{a, b, c}, c},
		{web, 1, []string{c, b, a}, b},
		{web, 2, []string{b, a, c, b}, a},
		{web, 3, []string{a, b, c}, c},
		{web, -1, []string{a, b, c}, a},
		{web, 3, []string{a, b, c, d}, d},
		{"kube-system/api", 0, []string{a, b, c}, a},
		{"kube-system/api", 2, []string{a, b, c, d}, d},
		{web, 0, nil, ""},
	}
	for _, tt := range tests {
		if got := Preferred(tt.service, tt.slot, tt.eligible); got != tt.want {
			t.Errorf("Preferred(%q, %d, %v) = %q, want %q", tt.service, tt.slot, tt.eligible, got, tt.want)
		}
	}
}

// TestHashIsStable pins the hash. If it fails, you changed who announces
// what on a mixed-version cluster: that is a wire-compatibility change
// (see hash.go), not a test to update.
func TestHashIsStable(t *testing.T) {
	got := []string{
		fmt.Sprintf("%016x", rankHash(web, a)),
		fmt.Sprintf("%016x", rankHash("", "")),
		fmt.Sprintf("%016x", fallbackHash(a, ip10)),
		fmt.Sprintf("%016x", fallbackHash(c, netip.MustParseAddr("2001:db8::10"))),
		fmt.Sprintf("%016x", fallbackHash(a, netip.MustParseAddr("::ffff:192.0.2.10"))),
	}
	want := []string{
		"69cfb65d17d2092b",
		"79018756e58e2fee",
		"b87ddf7771fe299d",
		"2e6a93aab341758e",
		"5b1d78ec591a362d",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("placement hash changed (-pinned +got):\n%s", diff)
	}
	// The documented construction, rebuilt from the standard library: FNV-1a
	// 64 over tag, uvarint length, bytes, ..., then fmix64.
	enc := append([]byte{tagFallback, byte(len(a))}, a...)
	enc = append(append(enc, 4), ip10.AsSlice()...)
	h := fnv64.New64a()
	h.Write(enc)
	if got, want := fallbackHash(a, ip10), fmix64(h.Sum64()); got != want {
		t.Errorf("fallbackHash = %016x, FNV-1a+fmix64 of the encoding = %016x", got, want)
	}
	long := string(make([]byte, 300)) // two-byte uvarint length prefix
	enc = append(binary.AppendUvarint([]byte{tagRank}, uint64(len(long))), long...)
	enc = append(append(enc, byte(len(b))), b...)
	h.Reset()
	h.Write(enc)
	if got, want := rankHash(long, b), fmix64(h.Sum64()); got != want {
		t.Errorf("rankHash = %016x, FNV-1a+fmix64 of the encoding = %016x", got, want)
	}
	// Length prefixes keep the encoding injective.
	if rankHash("ab", "c") == rankHash("a", "bc") {
		t.Error(`hash("ab", "c") == hash("a", "bc")`)
	}
}

// fmix64 is murmur3's 64-bit finaliser, written out again so the test does
// not trust the code under test.
func fmix64(x uint64) uint64 {
	x = (x ^ x>>33) * 0xff51afd7ed558ccd
	x = (x ^ x>>33) * 0xc4ceb9fe1a85ec53
	return x ^ x>>33
}

// evenNodes are the nodes of the distribution test and the benchmark.
func evenNodes() []string {
	nodes := make([]string, 10)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("worker-%d", i)
	}
	return nodes
}

// manyIPs is services × perService L2 IPs over nodes, from 10.0.0.0 up.
func manyIPs(services, perService int, nodes []string) []Request {
	reqs := make([]Request, 0, services*perService)
	for s := range services {
		svc := fmt.Sprintf("ns-%d/svc-%d", s%37, s)
		for slot := range perService {
			n := uint32(len(reqs))
			ip := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
			reqs = append(reqs, Request{Service: svc, Slot: slot, Addr: ip, Mode: L2, Eligible: nodes})
		}
	}
	return reqs
}

func TestTenThousandIPsSpreadEvenlyOverTenNodes(t *testing.T) {
	nodes := evenNodes()
	for _, shape := range []struct{ services, perService int }{{10000, 1}, {1000, 10}, {2500, 4}} {
		for dead := range 2 {
			alive := aliveSet(nodes[dead:]...)
			name := fmt.Sprintf("%d services × %d IPs, %d dead", shape.services, shape.perService, dead)
			t.Run(name, func(t *testing.T) {
				count := map[string]int{}
				for _, as := range Place(manyIPs(shape.services, shape.perService, nodes), alive) {
					count[as.Owners[0]]++
				}
				even := float64(shape.services*shape.perService) / float64(len(alive))
				for _, n := range nodes[dead:] {
					if got := float64(count[n]); got < 0.9*even || got > 1.1*even {
						t.Errorf("%s holds %d IPs, even share %.0f ± 10%%; all: %v", n, count[n], even, count)
					}
				}
			})
		}
	}
}

// BenchmarkPlace10kIPs10Nodes places 10,000 IPs over 10 nodes, all alive
// (every IP on its preferred node) and with one node dead (a tenth of the
// IPs need a fallback).
func BenchmarkPlace10kIPs10Nodes(b *testing.B) {
	nodes := evenNodes()
	for _, shape := range []struct{ services, perService int }{{10000, 1}, {1000, 10}} {
		reqs := manyIPs(shape.services, shape.perService, nodes)
		for dead := range 2 {
			alive := aliveSet(nodes[dead:]...)
			b.Run(fmt.Sprintf("services=%dx%d/dead=%d", shape.services, shape.perService, dead), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					Place(reqs, alive)
				}
			})
		}
	}
}
