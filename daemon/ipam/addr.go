package ipam

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// u128 is an address as a 128-bit unsigned integer: an IPv4 address in the
// low 32 bits, an IPv6 address whole. Pools and allocations are intervals
// of these, so arithmetic on them costs the same for a /64 as for a /120;
// netip.Addr has no successor or ordering arithmetic of its own beyond Next,
// and a comparable two-word value is what the sorted structures need.
type u128 struct{ hi, lo uint64 }

// Family indexes: per-family tables are [2]T indexed by these.
const (
	fam4 = 0
	fam6 = 1
)

var maxU128 = u128{^uint64(0), ^uint64(0)}

func (x u128) less(y u128) bool {
	return x.hi < y.hi || (x.hi == y.hi && x.lo < y.lo)
}

func (x u128) compare(y u128) int {
	switch {
	case x.less(y):
		return -1
	case y.less(x):
		return 1
	}
	return 0
}

// next returns x+1; ok is false when x is the largest value (no successor).
func (x u128) next() (u128, bool) {
	if x == maxU128 {
		return x, false
	}
	if x.lo == ^uint64(0) {
		return u128{x.hi + 1, 0}, true
	}
	return u128{x.hi, x.lo + 1}, true
}

// prev returns x-1; ok is false when x is zero.
func (x u128) prev() (u128, bool) {
	if x == (u128{}) {
		return x, false
	}
	if x.lo == 0 {
		return u128{x.hi - 1, ^uint64(0)}, true
	}
	return u128{x.hi, x.lo - 1}, true
}

// sub returns x-y for x >= y.
func (x u128) sub(y u128) u128 {
	lo := x.lo - y.lo
	borrow := uint64(0)
	if x.lo < y.lo {
		borrow = 1
	}
	return u128{x.hi - y.hi - borrow, lo}
}

// float is x as a float64: exact below 2^53, which covers every IPv4
// count; IPv6 counts only need to be of the right magnitude.
func (x u128) float() float64 {
	return float64(x.hi)*0x1p64 + float64(x.lo)
}

// famIndex maps a Family to its table index; ok is false for invalid ones.
func famIndex(f Family) (int, bool) {
	switch f {
	case IPv4:
		return fam4, true
	case IPv6:
		return fam6, true
	}
	return 0, false
}

func famOf(fi int) Family {
	if fi == fam4 {
		return IPv4
	}
	return IPv6
}

// normAddr is the form every address takes inside the package: 4-in-6
// mapped addresses become IPv4 (status and annotations may carry either
// spelling, and they must compare equal) and zones are dropped (a zone
// means nothing for a load-balancer IP).
func normAddr(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// toU converts a normalised address.
func toU(a netip.Addr) (u128, int) {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}, fam4
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}, fam6
}

func fromU(x u128, fi int) netip.Addr {
	if fi == fam4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(x.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], x.hi)
	binary.BigEndian.PutUint64(b[8:], x.lo)
	return netip.AddrFrom16(b)
}

// buggy reports whether an IPv4 address ends in .0 or .255: the addresses
// MetalLB's avoidBuggyIPs keeps out of allocation, because some old client
// stacks treat them as network or broadcast addresses whatever the prefix.
func buggy(x u128) bool {
	b := x.lo & 0xff
	return b == 0 || b == 0xff
}

// span is an inclusive interval [first, last] of one family.
type span struct{ first, last u128 }

// size returns the number of addresses in s.
func (s span) size() float64 {
	return s.last.sub(s.first).float() + 1
}

// buggyIn counts the IPv4 addresses of s ending in .0 or .255, exactly.
func buggyIn(s span) float64 {
	// upTo(n) counts them in [0, n].
	upTo := func(n uint64) uint64 { return n/256 + 1 + (n+1)/256 }
	n := upTo(s.last.lo)
	if s.first.lo > 0 {
		n -= upTo(s.first.lo - 1)
	}
	return float64(n)
}

// mergeSpans sorts spans and merges those that overlap or touch, giving
// the canonical interval set.
func mergeSpans(ss []span) []span {
	slices.SortFunc(ss, func(a, b span) int { return a.first.compare(b.first) })
	out := ss[:0]
	for _, s := range ss {
		if n := len(out); n > 0 {
			last := &out[n-1]
			after, ok := last.last.next()
			if !ok || !after.less(s.first) {
				if last.last.less(s.last) {
					last.last = s.last
				}
				continue
			}
		}
		out = append(out, s)
	}
	return slices.Clip(out)
}

// lowerBound returns the index of the first element of xs that is >= x.
func lowerBound(xs []u128, x u128) int {
	i, _ := slices.BinarySearchFunc(xs, x, u128.compare)
	return i
}
