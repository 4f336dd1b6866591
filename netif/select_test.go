package netif

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// lk builds a link for selection tests: up, broadcast, ARP-capable unless
// changed by opts.
func lk(index int, name string, opts ...func(*Link)) Link {
	l := Link{Index: index, Name: name, Type: "device", Up: true, Running: true, Broadcast: true}
	for _, o := range opts {
		o(&l)
	}
	return l
}

func kind(k string) func(*Link) { return func(l *Link) { l.Type = k } }
func master(i int) func(*Link)  { return func(l *Link) { l.MasterIndex = i } }
func isDown(l *Link)            { l.Up, l.Running = false, false }
func noARP(l *Link)             { l.NoARP = true }
func noBcast(l *Link)           { l.Broadcast = false }
func loopback(l *Link)          { l.Loopback, l.Broadcast = true, false }
func noCarrier(l *Link)         { l.Running = false }
func addrs(ps ...string) func(*Link) {
	return func(l *Link) {
		for _, p := range ps {
			l.Addrs = append(l.Addrs, Addr{Prefix: netip.MustParsePrefix(p)})
		}
	}
}

func names(ls []Link) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Name)
	}
	return out
}

// host is a node with every kind of interface the rules care about.
var host = NewState(
	lk(1, "lo", loopback),
	lk(2, "eth0"),
	lk(3, "eth1", isDown),
	lk(4, "eth2", master(10)), // bond port
	lk(5, "eth3", master(11)), // bridge port
	lk(6, "eth4", noARP),
	lk(7, "tun0", noBcast, kind("tun")),
	lk(8, "docker0", kind("bridge")),
	lk(9, "veth12ab", kind("veth")),
	lk(10, "bond0", kind("bond")),
	lk(11, "br0", kind("bridge")),
	lk(12, "hostlb0", kind("dummy"), noARP),
	lk(13, "eth5", master(14)), // VRF slave: still L3
	lk(14, "vrf-blue", kind("vrf"), noARP),
	lk(15, "eth6", noCarrier),
	lk(16, "eth7", master(99)), // master not (yet) known
	lk(17, "eth0.100", kind("vlan")),
)

func TestSelectorEligible(t *testing.T) {
	tests := []struct {
		name           string
		allow, exclude []string
		want           []string
	}{{
		name:    "defaults",
		exclude: DefaultExclude,
		want:    []string{"eth0", "bond0", "br0", "eth5", "eth6", "eth0.100"},
	}, {
		name: "no excludes: bridges and veths too",
		want: []string{"eth0", "docker0", "veth12ab", "bond0", "br0", "eth5", "eth6", "eth0.100"},
	}, {
		name:    "allow by name",
		allow:   []string{"eth0", "br0"},
		exclude: DefaultExclude,
		want:    []string{"eth0", "br0"},
	}, {
		name:    "a name beats a default exclude",
		allow:   []string{"veth12ab", "docker0"},
		exclude: DefaultExclude,
		want:    []string{"docker0", "veth12ab"},
	}, {
		name:    "a regex does not beat an exclude",
		allow:   []string{"/^(veth|eth)/"},
		exclude: DefaultExclude,
		want:    []string{"eth0", "eth5", "eth6", "eth0.100"},
	}, {
		name:    "regex and name mixed",
		allow:   []string{"/^b/", "eth0"},
		exclude: DefaultExclude,
		want:    []string{"eth0", "bond0", "br0"},
	}, {
		name:    "naming an ineligible link does not make it eligible",
		allow:   []string{"eth1", "eth2", "eth3", "eth4", "lo", "tun0", "hostlb0", "eth7"},
		exclude: DefaultExclude,
		want:    nil,
	}, {
		name:    "custom exclude",
		allow:   nil,
		exclude: []string{`\.`, "^b"},
		want:    []string{"eth0", "docker0", "veth12ab", "eth5", "eth6"},
	}, {
		name:    "an exclude entry written /regex/ is the regex, not slashes",
		exclude: []string{"/^veth/", "/^docker/"},
		want:    []string{"eth0", "bond0", "br0", "eth5", "eth6", "eth0.100"},
	}, {
		name:    "unanchored patterns match anywhere in the name",
		exclude: []string{"/eth0/"},
		want:    []string{"docker0", "veth12ab", "bond0", "br0", "eth5", "eth6"},
	}, {
		name:    "an anchored pattern matches the whole name only",
		exclude: []string{"^eth0$"},
		want:    []string{"docker0", "veth12ab", "bond0", "br0", "eth5", "eth6", "eth0.100"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSelector(tt.allow, tt.exclude)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, names(s.Eligible(host))); diff != "" {
				t.Errorf("eligible (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSelectorCheckReasons(t *testing.T) {
	s, err := NewSelector(nil, DefaultExclude)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"lo": "excluded", "eth0": "", "eth1": "down", "eth2": "enslaved", "eth3": "enslaved",
		"eth4": "NOARP", "tun0": "not broadcast", "docker0": "excluded", "veth12ab": "excluded",
		"bond0": "", "br0": "", "hostlb0": "excluded", "eth5": "", "vrf-blue": "NOARP",
		"eth6": "", "eth7": "enslaved", "eth0.100": "",
	}
	got := map[string]string{}
	for _, l := range host.Links() {
		got[l.Name] = s.Check(host, l)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
	zero := Selector{}
	if r := zero.Check(host, lk(1, "lo", loopback)); r != "loopback" {
		t.Errorf("zero selector, lo: %q, want loopback", r)
	}
}

// The review's case: `[l2] exclude = ["/^veth/"]` once compiled the
// slashes into the pattern and so excluded nothing.
func TestSelectorSlashedExclude(t *testing.T) {
	st := NewState(lk(1, "eth0"), lk(2, "veth0", kind("veth")))
	s, err := NewSelector(nil, []string{"/^veth/"})
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Check(st, lk(2, "veth0", kind("veth"))); r != "excluded" {
		t.Errorf("veth0: %q, want excluded", r)
	}
	if got := names(s.Eligible(st)); !slices.Equal(got, []string{"eth0"}) {
		t.Errorf("eligible %v, want [eth0]", got)
	}
}

func TestParsePattern(t *testing.T) {
	tests := []struct {
		in      string
		name    string   // want an exact name
		matches []string // want a regex matching these...
		misses  []string // ...and not these
		err     string
	}{
		{in: "eth0", name: "eth0"},
		{in: "eth0.100", name: "eth0.100"},
		{in: "/^bond[0-9]+$/", matches: []string{"bond0", "bond12"}, misses: []string{"bond", "xbond0", "bond0a"}},
		{in: "/eth/", matches: []string{"eth0", "veth1"}, misses: []string{"bond0"}},
		{in: "//", err: "empty regular expression"},
		{in: "/(/", err: `bad regular expression "/(/"`},
		{in: "", err: "not an interface name"},
		{in: "/", err: "not an interface name"},
		{in: "/eth0", err: "not an interface name"},
		{in: "eth0:1", err: "not an interface name"},
		{in: "a b", err: "not an interface name"},
		{in: "abcdefghijklmnop", err: "at most 15 characters"},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParsePattern(%q) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePattern(%q): %v", tt.in, err)
			continue
		}
		if tt.name != "" && (p.Name != tt.name || p.Regexp != nil || !p.Match(tt.name) || p.Match(tt.name+"x")) {
			t.Errorf("ParsePattern(%q) = %+v, want the exact name %q", tt.in, p, tt.name)
		}
		for _, n := range tt.matches {
			if p.Regexp == nil || !p.Match(n) {
				t.Errorf("ParsePattern(%q) does not match %q", tt.in, n)
			}
		}
		for _, n := range tt.misses {
			if p.Match(n) {
				t.Errorf("ParsePattern(%q) matches %q", tt.in, n)
			}
		}
	}
}

func TestParseExclude(t *testing.T) {
	for in, want := range map[string]string{"^veth": "^veth", "/^veth/": "^veth", "/a/b/": "a/b", "^lo$": "^lo$"} {
		re, err := ParseExclude(in)
		if err != nil || re.String() != want {
			t.Errorf("ParseExclude(%q) = %v, %v; want %q", in, re, err, want)
		}
	}
	for in, want := range map[string]string{"": "empty regular expression", "//": "empty regular expression", "[": `bad regular expression "["`, "/[/": `"/[/"`} {
		if _, err := ParseExclude(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseExclude(%q) error %v, want %q", in, err, want)
		}
	}
}

func TestNewSelectorErrors(t *testing.T) {
	_, err := NewSelector([]string{"/(/", "", "a b", "eth0", "/ok/", "averyveryverylongname"}, []string{"[", "^ok"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`"/(/"`, `""`, `"a b"`, `"averyveryverylongname"`, `exclude: bad regular expression "["`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "eth0") || strings.Contains(err.Error(), "/ok/") {
		t.Errorf("error %q names a good entry", err)
	}
}

func TestInterfacesFor(t *testing.T) {
	eligible := []Link{
		lk(2, "eth0", addrs("192.0.2.10/24", "2001:db8:1::10/64", "fe80::1/64")),
		lk(3, "eth1", addrs("198.51.100.10/24")),
		lk(4, "eth2", addrs("198.51.100.200/25")),             // overlaps eth1's subnet
		lk(5, "eth3", addrs("203.0.113.50/32", "fe80::3/64")), // host prefix only
		lk(6, "eth4"), // no address at all
	}
	tests := []struct {
		ip   string
		want []string
	}{
		{"192.0.2.100", []string{"eth0"}},
		{"::ffff:192.0.2.100", []string{"eth0"}},
		{"2001:db8:1::100", []string{"eth0"}},
		{"198.51.100.5", []string{"eth1"}},
		{"198.51.100.130", []string{"eth1", "eth2"}}, // every subnet that holds it
		{"203.0.113.50", []string{"eth0", "eth1", "eth2", "eth3", "eth4"}},
		{"203.0.113.7", []string{"eth0", "eth1", "eth2", "eth3", "eth4"}},
		{"2001:db8:2::1", []string{"eth0", "eth1", "eth2", "eth3", "eth4"}},
	}
	for _, tt := range tests {
		got := names(InterfacesFor(netip.MustParseAddr(tt.ip), eligible))
		if !slices.Equal(got, tt.want) {
			t.Errorf("InterfacesFor(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	if got := InterfacesFor(netip.MustParseAddr("192.0.2.1"), nil); len(got) != 0 {
		t.Errorf("no candidates: got %v", names(got))
	}
}

// A per-VIP `interfaces` list replaces [l2]'s: it selects among the same
// links, with the same link checks, and its result feeds InterfacesFor.
func TestInterfacesForPerVIPOverride(t *testing.T) {
	st := NewState(
		lk(2, "eth0", addrs("192.0.2.10/24")),
		lk(3, "eth1", addrs("198.51.100.10/24")),
		lk(4, "eth2", addrs("192.0.2.20/24")),
	)
	l2, _ := NewSelector(nil, DefaultExclude)
	vip, _ := NewSelector([]string{"eth1", "eth2"}, DefaultExclude)
	ip := netip.MustParseAddr("192.0.2.100")
	if got := names(InterfacesFor(ip, l2.Eligible(st))); !slices.Equal(got, []string{"eth0", "eth2"}) {
		t.Errorf("[l2] set: %v", got)
	}
	if got := names(InterfacesFor(ip, vip.Eligible(st))); !slices.Equal(got, []string{"eth2"}) {
		t.Errorf("per-VIP set: %v", got)
	}
	if got := names(InterfacesFor(netip.MustParseAddr("203.0.113.1"), vip.Eligible(st))); !slices.Equal(got, []string{"eth1", "eth2"}) {
		t.Errorf("per-VIP fallback: %v", got)
	}
}
