package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ranges renders a pool's interval set, for comparisons.
func ranges(p Pool) []string {
	var out []string
	for fi, rs := range p.ranges {
		for _, s := range rs {
			out = append(out, formatSpan(fi, s))
		}
	}
	return out
}

func mustPool(t testing.TB, name string, auto, avoid bool, addrs ...string) Pool {
	t.Helper()
	p, err := ParsePool(name, addrs, auto, avoid)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParsePool(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs []string
		want  []string
	}{
		{"v4 CIDR", []string{"203.0.113.0/24"}, []string{"203.0.113.0-203.0.113.255"}},
		{"host bits are masked, as MetalLB does", []string{"203.0.113.5/24"}, []string{"203.0.113.0-203.0.113.255"}},
		{"v4 /32", []string{"203.0.113.7/32"}, []string{"203.0.113.7"}},
		{"v4 /0", []string{"0.0.0.0/0"}, []string{"0.0.0.0-255.255.255.255"}},
		{"v6 /64", []string{"2001:db8::/64"}, []string{"2001:db8::-2001:db8::ffff:ffff:ffff:ffff"}},
		{"v6 /48 with host bits", []string{"2001:db8:1:2::5/48"}, []string{"2001:db8:1::-2001:db8:1:ffff:ffff:ffff:ffff:ffff"}},
		{"v6 /120", []string{"2001:db8::100/120"}, []string{"2001:db8::100-2001:db8::1ff"}},
		{"v6 /128", []string{"2001:db8::1/128"}, []string{"2001:db8::1"}},
		{"v6 /127 across a word", []string{"2001:db8::/63"}, []string{"2001:db8::-2001:db8:0:1:ffff:ffff:ffff:ffff"}},
		{"range", []string{"10.0.0.1-10.0.0.9"}, []string{"10.0.0.1-10.0.0.9"}},
		{"range with spaces", []string{" 10.0.0.1 - 10.0.0.9 "}, []string{"10.0.0.1-10.0.0.9"}},
		{"range of one", []string{"10.0.0.1-10.0.0.1"}, []string{"10.0.0.1"}},
		{"v6 range", []string{"2001:db8::1-2001:db8::1:0"}, []string{"2001:db8::1-2001:db8::1:0"}},
		{"single v4", []string{"192.0.2.1"}, []string{"192.0.2.1"}},
		{"single v6", []string{"2001:db8::1"}, []string{"2001:db8::1"}},
		{"4-in-6 single is IPv4", []string{"::ffff:192.0.2.1"}, []string{"192.0.2.1"}},
		{"4-in-6 CIDR is IPv4", []string{"::ffff:192.0.2.0/120"}, []string{"192.0.2.0-192.0.2.255"}},
		{"overlapping and touching entries merge", []string{"10.0.0.5-10.0.0.9", "10.0.0.0/30", "10.0.0.4", "10.0.0.8-10.0.0.20", "10.0.1.0"},
			[]string{"10.0.0.0-10.0.0.20", "10.0.1.0"}},
		{"v6 entries touching across a 64-bit word merge", []string{"2001:db8::ffff:ffff:ffff:ffff", "2001:db8:0:1::/127"},
			[]string{"2001:db8::ffff:ffff:ffff:ffff-2001:db8:0:1::1"}},
		{"both families, sorted", []string{"2001:db8::1", "10.0.0.2", "10.0.0.1"}, []string{"10.0.0.1-10.0.0.2", "2001:db8::1"}},
		{"top of the v6 space", []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff8/125", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffe0/124"},
			[]string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffe0-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffef", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff8-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
		{"touching at the top of the v6 space", []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffe0/124"},
			[]string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffe0-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
		{"empty list", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePool("x", tc.addrs, true, false)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, ranges(p)); diff != "" {
				t.Errorf("ranges (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParsePoolErrorsNameEveryBadEntry(t *testing.T) {
	_, err := ParsePool("x", []string{
		"10.0.0.1-10.0.0.0",
		"10.0.0.0/24",
		"10.0.0.1-2001:db8::1",
		"10.0.0.300",
		"10.0.0.0/33",
		"",
		"fe80::1%eth0",
		"::/0",
		"nope-10.0.0.1",
		"10.0.0.1-",
	}, true, false)
	want := []string{
		`pool "x": "10.0.0.1-10.0.0.0": range end before start`,
		`pool "x": "10.0.0.1-2001:db8::1": range mixes IPv4 and IPv6`,
		`pool "x": "10.0.0.300": invalid address: ParseAddr("10.0.0.300"): IPv4 field has value >255`,
		`pool "x": "10.0.0.0/33": invalid CIDR: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`,
		`pool "x": "": empty entry`,
		`pool "x": "fe80::1%eth0": invalid address: an IPv6 zone is not allowed`,
		`pool "x": "::/0": covers IPv4-mapped addresses (::ffff:0:0/96); write them as IPv4`,
		`pool "x": "nope-10.0.0.1": invalid range start: ParseAddr("nope"): unable to parse IP`,
		`pool "x": "10.0.0.1-": invalid range end: ParseAddr(""): unable to parse IP`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Pool != "x" || pe.Entry != "10.0.0.1-10.0.0.0" {
		t.Errorf("errors.As gave %+v, want the first entry's *ParseError", pe)
	}
	if _, err := ParsePool("", []string{"10.0.0.1"}, true, false); err == nil || err.Error() != `pool "": "": empty pool name` {
		t.Errorf("empty name: %v", err)
	}
}

func TestAvoidBuggyIPs(t *testing.T) {
	p := mustPool(t, "x", true, true, "10.0.0.254-10.0.1.1", "2001:db8::ff-2001:db8::100")
	for _, tc := range []struct {
		addr             string
		contains, usable bool
	}{
		{"10.0.0.254", true, true},
		{"10.0.0.255", true, false},
		{"10.0.1.0", true, false},
		{"10.0.1.1", true, true},
		{"::ffff:10.0.1.0", true, false},
		{"10.0.1.2", false, false},
		{"2001:db8::ff", true, true}, // no effect on IPv6
		{"2001:db8::100", true, true},
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := p.Contains(a); got != tc.contains {
			t.Errorf("Contains(%s) = %v, want %v", a, got, tc.contains)
		}
		if got := p.Usable(a); got != tc.usable {
			t.Errorf("Usable(%s) = %v, want %v", a, got, tc.usable)
		}
	}
	if v4, v6 := p.Size(); v4 != 2 || v6 != 2 {
		t.Errorf("Size() = %v, %v; want 2, 2", v4, v6)
	}
	only := mustPool(t, "y", true, true, "10.0.0.255-10.0.1.0")
	if v4, v6 := only.Families(); v4 || v6 {
		t.Errorf("a pool of .255 and .0 under avoidBuggyIPs has families %v, %v; want none", v4, v6)
	}
	if p.Usable(netip.Addr{}) || p.Contains(netip.Addr{}) {
		t.Error("the zero Addr is in the pool")
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		addrs  []string
		avoid  bool
		v4, v6 float64
	}{
		{"/16", []string{"10.1.0.0/16"}, false, 65536, 0},
		{"/16 avoiding .0 and .255", []string{"10.1.0.0/16"}, true, 65536 - 2*256, 0},
		{"range across /24s avoiding", []string{"10.0.0.200-10.0.2.10"}, true, 55 + 254 + 10, 0},
		{"whole v4 space avoiding", []string{"0.0.0.0/0"}, true, 1 << 32 * 254 / 256, 0},
		{"/64, avoidBuggyIPs has no effect", []string{"2001:db8::/64"}, true, 0, 0x1p64},
		{"/32 of v6", []string{"2001:db8::/32"}, false, 0, 0x1p96},
		{"half of v6", []string{"8000::/1"}, false, 0, 0x1p127},
		{"both", []string{"192.0.2.0/24", "2001:db8::/120"}, false, 256, 256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPool(t, "x", true, tc.avoid, tc.addrs...)
			v4, v6 := p.Size()
			if v4 != tc.v4 || v6 != tc.v6 {
				t.Errorf("Size() = %v, %v; want %v, %v", v4, v6, tc.v4, tc.v6)
			}
			if f4, f6 := p.Families(); f4 != (tc.v4 > 0) || f6 != (tc.v6 > 0) {
				t.Errorf("Families() = %v, %v", f4, f6)
			}
		})
	}
}

func TestOverlaps(t *testing.T) {
	pools := []Pool{
		mustPool(t, "c", true, false, "10.0.0.0/24", "2001:db8::/64"),
		mustPool(t, "a", true, false, "10.0.0.200-10.0.1.5"),
		mustPool(t, "b", true, false, "10.0.1.0-10.0.1.255", "2001:db8::5"),
		mustPool(t, "d", true, false, "192.0.2.1"),
		mustPool(t, "e", true, false, "10.0.1.5"),
	}
	want := []Overlap{
		{A: "a", B: "b", Range: "10.0.1.0-10.0.1.5"},
		{A: "a", B: "c", Range: "10.0.0.200-10.0.0.255"},
		{A: "a", B: "e", Range: "10.0.1.5"},
		{A: "b", B: "c", Range: "2001:db8::5"},
		{A: "b", B: "e", Range: "10.0.1.5"},
	}
	if diff := cmp.Diff(want, Overlaps(pools)); diff != "" {
		t.Errorf("Overlaps (-want +got):\n%s", diff)
	}
	if got := Overlaps(pools[3:4]); got != nil {
		t.Errorf("one pool overlaps: %v", got)
	}
}

// The neighbour searches stop at the ends of the address space instead of
// wrapping around.
func TestUsableNeighboursAtTheEdgesOfTheAddressSpace(t *testing.T) {
	p := mustPool(t, "x", true, true, "0.0.0.0/30", "255.255.255.252/30", "::/126", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126")
	for _, tc := range []struct {
		name string
		fi   int
		got  func() (u128, bool)
		want string // "" for none
	}{
		{"before 0.0.0.1", fam4, func() (u128, bool) { return p.before(fam4, u128{0, 1}) }, ""},
		{"before 0.0.0.2", fam4, func() (u128, bool) { return p.before(fam4, u128{0, 2}) }, "0.0.0.1"},
		{"after 255.255.255.254", fam4, func() (u128, bool) { return p.after(fam4, u128{0, 0xffff_fffe}) }, ""},
		{"after 0.0.0.3", fam4, func() (u128, bool) { return p.after(fam4, u128{0, 3}) }, "255.255.255.252"},
		{"before ::", fam6, func() (u128, bool) { return p.before(fam6, u128{}) }, ""},
		{"after the last IPv6 address", fam6, func() (u128, bool) { return p.after(fam6, maxU128) }, ""},
		{"before the last IPv6 address", fam6, func() (u128, bool) { return p.before(fam6, maxU128) }, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"},
		{"after ::3", fam6, func() (u128, bool) { return p.after(fam6, u128{0, 3}) }, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc"},
	} {
		got := ""
		if x, ok := tc.got(); ok {
			got = fromU(x, tc.fi).String()
		}
		if got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, got, tc.want)
		}
	}
	var h heldSet
	top := maxU128
	h.insert(&p, fam6, top)
	if _, ok := h.firstFree(&p, fam6, top); ok {
		t.Error("a free address after the top of the IPv6 space")
	}
	h.remove(&p, fam6, top)
	if x, ok := h.firstFree(&p, fam6, top); !ok || x != top {
		t.Errorf("firstFree after release = %v, %v", x, ok)
	}
}
