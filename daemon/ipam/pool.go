package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Pool is a named set of addresses Services may get IPs from. It is an
// interval set (sorted, merged ranges per family), so its memory depends on
// how many ranges it was written as, never on how many addresses it holds.
// The zero Pool has no addresses; build pools with ParsePool.
type Pool struct {
	Name string
	// AutoAssign: automatic allocation may use the pool for any Service
	// that lists it; without it, only Services that name the pool
	// (Service.Explicit) or request one of its addresses get IPs from it.
	AutoAssign bool
	// AvoidBuggyIPs: IPv4 addresses ending in .0 or .255 are never
	// allocated from this pool (MetalLB's avoidBuggyIPs). No effect on
	// IPv6.
	AvoidBuggyIPs bool

	ranges [2][]span // per family, sorted and merged
}

// ParseError is one address entry of a pool that could not be parsed.
type ParseError struct {
	Pool   string
	Entry  string
	Reason string
	Err    error // the parser's error, if any
}

func (e *ParseError) Error() string {
	s := fmt.Sprintf("pool %q: %q: %s", e.Pool, e.Entry, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ParseError) Unwrap() error { return e.Err }

// mapped4 is ::ffff:0:0/96, the IPv4-mapped IPv6 addresses.
var mapped4 = span{u128{0, 0xffff_0000_0000}, u128{0, 0xffff_ffff_ffff}}

// ParsePool builds a pool from MetalLB-style address entries:
//
//   - a CIDR, "203.0.113.0/24" or "2001:db8::/64"; host bits are masked off
//     as MetalLB does, so "203.0.113.5/24" is the whole /24;
//   - an inclusive range "a-b" (spaces around '-' allowed), both ends of
//     one family, a <= b;
//   - a single address, the same as its /32 or /128.
//
// IPv4-mapped IPv6 spellings are read as IPv4. Entries may overlap. Every
// bad entry is reported, as a *ParseError each, joined with errors.Join.
func ParsePool(name string, addresses []string, autoAssign, avoidBuggyIPs bool) (Pool, error) {
	p := Pool{Name: name, AutoAssign: autoAssign, AvoidBuggyIPs: avoidBuggyIPs}
	var errs []error
	if name == "" {
		errs = append(errs, &ParseError{Pool: name, Reason: "empty pool name"})
	}
	for _, entry := range addresses {
		fi, s, reason, err := parseEntry(entry)
		if reason != "" {
			errs = append(errs, &ParseError{Pool: name, Entry: entry, Reason: reason, Err: err})
			continue
		}
		p.ranges[fi] = append(p.ranges[fi], s)
	}
	if len(errs) > 0 {
		return Pool{}, errors.Join(errs...)
	}
	for fi := range p.ranges {
		p.ranges[fi] = mergeSpans(p.ranges[fi])
	}
	return p, nil
}

// parseEntry returns the entry's family and interval, or a reason (and the
// parser's error) when it is not valid.
func parseEntry(entry string) (fi int, s span, reason string, err error) {
	e := strings.TrimSpace(entry)
	if e == "" {
		return 0, span{}, "empty entry", nil
	}
	if lo, hi, ok := strings.Cut(e, "-"); ok {
		a, err := parseHost(strings.TrimSpace(lo))
		if err != nil {
			return 0, span{}, "invalid range start", err
		}
		b, err := parseHost(strings.TrimSpace(hi))
		if err != nil {
			return 0, span{}, "invalid range end", err
		}
		if a.Is4() != b.Is4() {
			return 0, span{}, "range mixes IPv4 and IPv6", nil
		}
		x, fi := toU(a)
		y, _ := toU(b)
		if y.less(x) {
			return 0, span{}, "range end before start", nil
		}
		s = span{x, y}
		return fi, s, mappedReason(fi, s), nil
	}
	if strings.Contains(e, "/") {
		pfx, err := netip.ParsePrefix(e)
		if err != nil {
			return 0, span{}, "invalid CIDR", err
		}
		addr, bits := pfx.Masked().Addr(), pfx.Bits()
		if addr.Is4In6() && bits >= 96 {
			addr, bits = addr.Unmap(), bits-96
		}
		first, fi := toU(addr)
		s = span{first, first}
		host := addr.BitLen() - bits
		switch {
		case host >= 64:
			s.last.lo = ^uint64(0)
			s.last.hi |= ^uint64(0) >> (128 - host)
		case host > 0:
			s.last.lo |= ^uint64(0) >> (64 - host)
		}
		return fi, s, mappedReason(fi, s), nil
	}
	a, err := parseHost(e)
	if err != nil {
		return 0, span{}, "invalid address", err
	}
	x, fi := toU(a)
	return fi, span{x, x}, "", nil
}

func parseHost(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, errors.New("an IPv6 zone is not allowed")
	}
	return a.Unmap(), nil
}

// mappedReason rejects IPv6 intervals that reach into ::ffff:0:0/96 (one
// wholly inside it was already read as IPv4): an address allocated there
// would change family when normalised.
func mappedReason(fi int, s span) string {
	if fi == fam6 && !s.last.less(mapped4.first) && !mapped4.last.less(s.first) {
		return "covers IPv4-mapped addresses (::ffff:0:0/96); write them as IPv4"
	}
	return ""
}

// Contains reports whether a lies in the pool's ranges, whether or not
// AvoidBuggyIPs excludes it from allocation (see Usable).
func (p Pool) Contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	x, fi := toU(normAddr(a))
	return p.contains(fi, x)
}

// Usable reports whether a may be allocated from the pool: it is in the
// ranges and not excluded by AvoidBuggyIPs.
func (p Pool) Usable(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	x, fi := toU(normAddr(a))
	return p.usable(fi, x)
}

func (p *Pool) contains(fi int, x u128) bool {
	rs := p.ranges[fi]
	i := sort.Search(len(rs), func(i int) bool { return !rs[i].last.less(x) })
	return i < len(rs) && !x.less(rs[i].first)
}

func (p *Pool) usable(fi int, x u128) bool {
	return p.contains(fi, x) && !(fi == fam4 && p.AvoidBuggyIPs && buggy(x))
}

// Size returns the number of usable addresses of each family. float64
// because an IPv6 pool can hold up to 2^128 of them; IPv4 counts, buggy
// addresses excluded, are exact.
func (p Pool) Size() (v4, v6 float64) {
	return p.size(fam4), p.size(fam6)
}

func (p *Pool) size(fi int) float64 {
	var n float64
	for _, s := range p.ranges[fi] {
		n += s.size()
		if fi == fam4 && p.AvoidBuggyIPs {
			n -= buggyIn(s)
		}
	}
	return n
}

// Families reports whether the pool has at least one usable address of
// each family.
func (p Pool) Families() (v4, v6 bool) {
	_, ok4 := p.nextUsable(fam4, u128{})
	_, ok6 := p.nextUsable(fam6, u128{})
	return ok4, ok6
}

// nextUsable returns the smallest usable address >= x of family fi.
func (p *Pool) nextUsable(fi int, x u128) (u128, bool) {
	rs := p.ranges[fi]
	skip := fi == fam4 && p.AvoidBuggyIPs
	for i := sort.Search(len(rs), func(i int) bool { return !rs[i].last.less(x) }); i < len(rs); i++ {
		c := rs[i].first
		if c.less(x) {
			c = x
		}
		if skip {
			// IPv4 lives in the low 32 bits, so these cannot overflow.
			switch c.lo & 0xff {
			case 0:
				c.lo++
			case 0xff:
				c.lo += 2
			}
			if rs[i].last.less(c) {
				continue
			}
		}
		return c, true
	}
	return u128{}, false
}

// prevUsable returns the largest usable address <= x of family fi.
func (p *Pool) prevUsable(fi int, x u128) (u128, bool) {
	rs := p.ranges[fi]
	skip := fi == fam4 && p.AvoidBuggyIPs
	for i := sort.Search(len(rs), func(i int) bool { return x.less(rs[i].first) }) - 1; i >= 0; i-- {
		c := rs[i].last
		if x.less(c) {
			c = x
		}
		if skip {
			switch c.lo & 0xff {
			case 0xff:
				c.lo--
			case 0:
				if c.lo < 2 {
					continue // 0.0.0.0: nothing usable below it
				}
				c.lo -= 2
			}
			if c.less(rs[i].first) {
				continue
			}
		}
		return c, true
	}
	return u128{}, false
}

// after returns the smallest usable address > x.
func (p *Pool) after(fi int, x u128) (u128, bool) {
	y, ok := x.next()
	if !ok {
		return u128{}, false
	}
	return p.nextUsable(fi, y)
}

// before returns the largest usable address < x.
func (p *Pool) before(fi int, x u128) (u128, bool) {
	y, ok := x.prev()
	if !ok {
		return u128{}, false
	}
	return p.prevUsable(fi, y)
}

// Overlap is two pools that share addresses.
type Overlap struct {
	A, B string // pool names, A <= B
	// Range is the first shared interval, "a-b" or a single address.
	Range string
}

// Overlaps reports every pair of pools that share at least one address
// (in their ranges, AvoidBuggyIPs aside), sorted by A, then B, then Range.
// Overlapping pools are legal, but an address in two of them counts as
// used in both, which the operator should know.
func Overlaps(pools []Pool) []Overlap {
	var out []Overlap
	for i := range pools {
		for j := i + 1; j < len(pools); j++ {
			r, ok := firstCommon(&pools[i], &pools[j])
			if !ok {
				continue
			}
			a, b := pools[i].Name, pools[j].Name
			if b < a {
				a, b = b, a
			}
			out = append(out, Overlap{A: a, B: b, Range: r})
		}
	}
	slices.SortFunc(out, func(x, y Overlap) int {
		return cmpStrings(x.A, y.A, x.B, y.B, x.Range, y.Range)
	})
	return out
}

// cmpStrings compares pairs lexicographically: (a0, b0), then (a1, b1)...
func cmpStrings(pairs ...string) int {
	for i := 0; i+1 < len(pairs); i += 2 {
		if c := strings.Compare(pairs[i], pairs[i+1]); c != 0 {
			return c
		}
	}
	return 0
}

// firstCommon returns the lowest interval the two pools share.
func firstCommon(p, q *Pool) (string, bool) {
	for fi := range p.ranges {
		a, b := p.ranges[fi], q.ranges[fi]
		for i, j := 0, 0; i < len(a) && j < len(b); {
			first, last := a[i].first, a[i].last
			if first.less(b[j].first) {
				first = b[j].first
			}
			if b[j].last.less(last) {
				last = b[j].last
			}
			if !last.less(first) {
				return formatSpan(fi, span{first, last}), true
			}
			if a[i].last.less(b[j].last) {
				i++
			} else {
				j++
			}
		}
	}
	return "", false
}

func formatSpan(fi int, s span) string {
	if s.first == s.last {
		return fromU(s.first, fi).String()
	}
	return fromU(s.first, fi).String() + "-" + fromU(s.last, fi).String()
}
