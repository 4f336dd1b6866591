package gossip

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// Fuzz targets for every decoder of gossip input and for the merge of
// announced sets. `make fuzz-short` runs each for a few seconds; `go test`
// runs their seed corpora (f.Add and testdata/fuzz).
//
// The allocation invariant: a decoder allocates at most allocPerByte times
// the bytes it was given, plus allocSlack (error strings, a small map):
// never from a count the bytes cannot hold.
const (
	allocPerByte = 32
	allocSlack   = 64 << 10
)

func checkAlloc(t *testing.T, what string, in []byte, f func()) {
	t.Helper()
	if got, limit := allocated(f), uint64(allocPerByte*len(in)+allocSlack); got > limit {
		t.Fatalf("%s: %d bytes allocated for %d bytes of input, want ≤ %d", what, got, len(in), limit)
	}
}

func FuzzDecodeChunk(f *testing.F) {
	for _, m := range encodeChunks("n1", 7, manyAddrs(300, 1)) {
		f.Add(m)
	}
	for _, m := range encodeSet("n1", announcedSet{gen: 8, addrs: manyAddrs(50, 1), cannot: manyAddrs(120, 2), unhealthy: manyNames(300)}) {
		f.Add(m)
	}
	f.Add(rawChunk("n1", math.MaxUint64, 4095, 4096, addrs("2001:db8::1")))
	f.Add([]byte{formatV1, kindChunk, 2, 'n', '1', 1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{formatV1, kindChunk, 2, 'n', '1', 1, 0, 1, 0, 0, 0xff, 0xff, 0x03})
	f.Add([]byte{formatV1, kindChunk, 2, 'n', '1', 1, 0, 1, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 2 {
			return
		}
		var (
			c   chunk
			err error
		)
		checkAlloc(t, "decodeChunk", b, func() { c, err = decodeChunk(b[2:]) })
		if err != nil {
			return
		}
		if c.node == "" || c.total < 1 || c.total > maxChunks || c.idx < 0 || c.idx >= c.total {
			t.Fatalf("accepted a bad chunk header %+v", c)
		}
		for _, as := range [][]netip.Addr{c.addrs, c.cannot} {
			if n := len(as); n > maxChunkAddrs || n > len(b)/minAddrSize || cap(as) > len(b)/minAddrSize {
				t.Fatalf("%d addresses (capacity %d) from %d bytes", n, cap(as), len(b))
			}
			for _, a := range as {
				if !a.IsValid() {
					t.Fatalf("invalid address decoded: %v", as)
				}
			}
		}
		if n := len(c.unhealthy); n > maxChunkNames || cap(c.unhealthy) > len(b)/minNameSize {
			t.Fatalf("%d names (capacity %d) from %d bytes", n, cap(c.unhealthy), len(b))
		}
		if used := minAddrSize*(len(c.addrs)+len(c.cannot)) + minNameSize*len(c.unhealthy); used > len(b) {
			t.Fatalf("%d items need at least %d bytes, got %d", len(c.addrs)+len(c.cannot)+len(c.unhealthy), used, len(b))
		}
		for _, n := range c.unhealthy {
			if n == "" || len(n) > maxNameLen {
				t.Fatalf("bad VIP name of %d bytes decoded", len(n))
			}
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(map[string]announcedSet{
		"n1": {gen: 3, addrs: addrs("192.0.2.1", "2001:db8::1")},
		"n2": {gen: math.MaxUint64},
	}))
	f.Add(encodeState(map[string]announcedSet{
		"n1": {gen: 3, addrs: addrs("192.0.2.1"), cannot: addrs("192.0.2.2", "2001:db8::2"), unhealthy: []string{"api", "web"}},
		"n2": {gen: 4},
	}))
	f.Add(encodeState(nil))
	f.Add([]byte{formatV1, kindState, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{formatV1, kindState, 1, 2, 'n', '1', 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{formatV1, kindState, 1, 2, 'n', '1', 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{formatV1, kindState, 1, 2, 'n', '1', 1, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var (
			sets map[string]announcedSet
			err  error
		)
		checkAlloc(t, "decodeState", b, func() { sets, err = decodeState(b) })
		if err != nil {
			return
		}
		if len(sets) > maxStateSets || len(sets) > len(b)/minSetSize {
			t.Fatalf("%d sets from %d bytes", len(sets), len(b))
		}
		addrsN, namesN := 0, 0
		for node, s := range sets {
			if node == "" {
				t.Fatal("set of a node with no name")
			}
			if err := checkSetLists(s); err != nil {
				t.Fatalf("%s: %v", node, err)
			}
			addrsN += len(s.addrs) + len(s.cannot)
			namesN += len(s.unhealthy)
		}
		if minAddrSize*addrsN+minNameSize*namesN > len(b) {
			t.Fatalf("%d addresses and %d names from %d bytes", addrsN, namesN, len(b))
		}
		// What decodes re-encodes to the same sets.
		again, err := decodeState(encodeState(sets))
		if err != nil || len(again) != len(sets) {
			t.Fatalf("re-decode: %d sets, %v; want %d", len(again), err, len(sets))
		}
		for node, s := range sets {
			if a := again[node]; a.gen != s.gen || !slices.Equal(a.addrs, s.addrs) || !sameExclusions(a, s) {
				t.Fatalf("re-decode of %s: %+v, want %+v", node, a, s)
			}
		}
	})
}

func FuzzDecodeDigest(f *testing.F) {
	f.Add(encodeDigest(digest{gen: 9, announceGen: 8}))
	f.Add(encodeDigest(digest{gen: math.MaxUint64, announceGen: math.MaxUint64}))
	f.Add([]byte{formatV1, kindDigest, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var (
			d   digest
			err error
		)
		checkAlloc(t, "decodeDigest", b, func() { d, err = decodeDigest(b) })
		if err != nil {
			return
		}
		if d2, err := decodeDigest(encodeDigest(d)); err != nil || d2 != d {
			t.Fatalf("digest re-decode: %+v, %v vs %+v", d2, err, d)
		}
	})
}

// checkSetLists checks that a set's lists are sorted, free of duplicates,
// and its VIP names neither empty nor too long.
func checkSetLists(s announcedSet) error {
	for _, as := range [][]netip.Addr{s.addrs, s.cannot} {
		if !slices.IsSortedFunc(as, netip.Addr.Compare) || len(slices.Compact(slices.Clone(as))) != len(as) {
			return fmt.Errorf("addresses not sorted or duplicated: %v", as)
		}
	}
	if !slices.IsSorted(s.unhealthy) || len(slices.Compact(slices.Clone(s.unhealthy))) != len(s.unhealthy) {
		return fmt.Errorf("names not sorted or duplicated: %q", s.unhealthy)
	}
	for _, n := range s.unhealthy {
		if n == "" || len(n) > maxNameLen {
			return fmt.Errorf("bad VIP name of %d bytes", len(n))
		}
	}
	return nil
}

// mergeOp is one step of FuzzMergeAnnounced's program: 4 bytes.
//
//	op%6: 0 a chunk, 1 a push-pull state, 2 a meta update of a member,
//	      3 a probe-ack digest, 4 the rest of the program as raw input,
//	      5 a join of an unknown member
//	who:  the node the step is about (this node, two members, two unknown)
//	sel:  the generation (pickGen)
//	n:    addresses, chunk index and total, meta step; its bit 7 adds
//	      exclusions (cannot, unhealthy) to chunks and states
var mergeNames = []string{"self", "n2", "n3", "ghost1", "ghost2"}

// pickGen chooses a generation around the edges of the bounds.
func pickGen(sel, n byte, anchor uint64, now time.Time) uint64 {
	switch sel % 12 {
	case 0:
		return math.MaxUint64
	case 1:
		return math.MaxUint64 - uint64(n)
	case 2:
		return anchor - uint64(n) - 1
	case 3:
		return anchor
	case 4:
		return anchor + uint64(n) + 1
	case 5:
		return anchor + genAhead
	case 6:
		return anchor + genAhead + 1 + uint64(n)
	case 7:
		return clockLimit(now)
	case 8:
		return clockLimit(now) + 1 + uint64(n)
	case 9:
		return uint64(n)
	case 10:
		return anchor + uint64(n)*1000
	}
	return anchor + uint64(time.Duration(n)*time.Second)
}

// FuzzMergeAnnounced runs programs of chunks, states, meta updates and
// digests, forged or not, against one node and checks after every step:
//   - no member's set moves back, unless its meta moved back (a restart
//     with the clock set back) and the set was beyond its new bound;
//   - no set or pending assembly is beyond its member's bound;
//   - this node's generations only grow and stay below clockLimit, so they
//     never wrap;
//   - unknown members are at most maxUnknownMembers.
func FuzzMergeAnnounced(f *testing.F) {
	f.Add([]byte{0, 1, 3, 1, 0, 1, 0, 1, 0, 1, 4, 2, 1, 2, 8, 3})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 7, 0, 1, 0, 10, 9, 0, 1, 6, 0})
	f.Add([]byte{0, 3, 7, 5, 5, 3, 3, 0, 0, 3, 4, 1, 1, 4, 8, 0})
	f.Add([]byte{2, 1, 11, 200, 0, 1, 2, 4, 3, 2, 0, 0, 2, 2, 9, 1})
	f.Add([]byte{0, 2, 4, 7, 0, 2, 4, 10, 0, 2, 4, 4, 4, 0, 0, 0, 1, 2, 0, 1, 2, 'n', '2'})
	f.Fuzz(func(t *testing.T, prog []byte) {
		r := idleRing(t, "self", nil)
		d := (*delegate)(r)
		now := time.Now()
		base := uint64(now.Add(-time.Hour).UnixNano())
		metas := map[string]Meta{"n2": {Gen: base, AnnounceGen: base}, "n3": {Gen: base + 1000, AnnounceGen: base + 999}}
		for name, m := range metas {
			(*events)(r).NotifyJoin(peerNode(t, name, m))
		}
		prev := make(map[string]uint64)
		prevSets := make(map[string]announcedSet)
		prevLocal := r.LocalMeta()
		firstGen := prevLocal.Gen
		steps := 0
		for len(prog) >= 4 {
			op, who, sel, n := prog[0], prog[1], prog[2], prog[3]
			prog = prog[4:]
			steps++
			node := mergeNames[int(who)%len(mergeNames)]
			anchor := base
			if node == "self" {
				anchor = r.LocalMeta().AnnounceGen
			} else if m, ok := metas[node]; ok {
				anchor = m.Gen
			}
			gen := pickGen(sel, n, anchor, now)
			set := announcedSet{gen: gen, addrs: manyAddrs(int(n%8), n)}
			if n&0x80 != 0 {
				set.cannot = manyAddrs(int(n%5), n+1)
				set.unhealthy = manyNames(int(n % 7))
			}
			switch op % 6 {
			case 0:
				total := 1 + int(n%3)
				d.NotifyMsg(rawSetChunk(node, int(n/3)%total, total, set))
			case 1:
				d.MergeRemoteState(encodeState(map[string]announcedSet{node: set}), false)
			case 2, 5:
				if _, ok := metas[node]; (!ok && op%6 == 2) || node == "self" {
					continue
				}
				// A member's meta moves on, or back (a restart with
				// its clock set back) when sel says so.
				m := metas[node]
				if sel%4 == 0 {
					m.Gen -= min(m.Gen, uint64(n)*uint64(time.Second))
				} else {
					m.Gen += uint64(n) + 1
				}
				m.AnnounceGen = m.Gen
				metas[node] = m
				(*events)(r).NotifyUpdate(peerNode(t, node, m))
			case 3:
				if node != "self" {
					(*pinger)(r).NotifyPingComplete(peerNode(t, node, Meta{}), time.Millisecond, encodeDigest(digest{gen: gen, announceGen: gen}))
				}
			case 4:
				d.NotifyMsg(prog)
				d.MergeRemoteState(prog, false)
			}
			if err := checkMerge(r, prev, prevSets, prevLocal, firstGen, steps); err != nil {
				t.Fatalf("step %d (op %d on %s, gen %d): %v", steps, op%6, node, gen, err)
			}
			prevLocal = r.LocalMeta()
		}
	})
}

// checkMerge checks FuzzMergeAnnounced's invariants and records the sets'
// generations in prev, and the sets in prevSets: a member's exclusions
// change only with its set's generation (they travel with the set), and
// every list stays sorted and free of duplicates.
func checkMerge(r *Ring, prev map[string]uint64, prevSets map[string]announcedSet, prevLocal Meta, firstGen uint64, steps int) error {
	now := time.Now() // the Ring checked the bounds a moment ago: they only grow with time
	local := r.LocalMeta()
	if local.Gen < prevLocal.Gen || local.AnnounceGen < prevLocal.AnnounceGen || local.Gen < local.AnnounceGen {
		return fmt.Errorf("own generations moved back: %d/%d → %d/%d", prevLocal.Gen, prevLocal.AnnounceGen, local.Gen, local.AnnounceGen)
	}
	if local.Gen > clockLimit(now)+uint64(steps)+1 || local.Gen < firstGen {
		return fmt.Errorf("own Gen %d beyond the clock bound or wrapped", local.Gen)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	unknown := 0
	for name, e := range r.members {
		if !e.known {
			unknown++
		}
		limit := setLimitLocked(e, now)
		if e.set.gen > limit || (e.pend != nil && e.pend.gen > limit) {
			return fmt.Errorf("%s: set gen %d (pending %v) beyond its bound %d", name, e.set.gen, e.pend != nil, limit)
		}
		if p := prev[name]; e.set.gen < p && p <= limit {
			return fmt.Errorf("%s: set moved back from gen %d to %d within its bound %d", name, p, e.set.gen, limit)
		}
		if err := checkSetLists(e.set); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if p, ok := prevSets[name]; ok && p.gen == e.set.gen && (!slices.Equal(p.addrs, e.set.addrs) || !sameExclusions(p, e.set)) {
			return fmt.Errorf("%s: set changed within generation %d: %+v → %+v", name, e.set.gen, p, e.set)
		}
		prev[name] = e.set.gen
		prevSets[name] = e.set
	}
	if unknown > maxUnknownMembers {
		return fmt.Errorf("%d unknown members held, want ≤ %d", unknown, maxUnknownMembers)
	}
	return nil
}
