package ipam

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// equateAddr lets go-cmp compare netip.Addr (unexported fields) by value.
var equateAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// res builds a Result; each slot is a comma-separated list of IPs, "" for
// an empty slot.
func res(key string, slots []string, failures ...Failure) Result {
	r := Result{Key: key, Failures: failures}
	for _, s := range slots {
		var slot []netip.Addr
		if s != "" {
			slot = addrs(strings.Split(s, ",")...)
		}
		r.Slots = append(r.Slots, slot)
	}
	return r
}

func TestAllocate(t *testing.T) {
	v4 := mustPool(t, "v4", true, true, "10.0.0.0/24")
	small := mustPool(t, "small", true, false, "10.0.1.0-10.0.1.1")
	v6 := mustPool(t, "v6", true, false, "2001:db8::/64")
	manual := mustPool(t, "manual", false, false, "192.0.2.0/28")
	plain := mustPool(t, "plain", true, false, "10.0.0.0/24")
	manual6 := mustPool(t, "manual6", false, false, "2001:db8:1::/120")
	pools := []Pool{v4, small, v6, manual, plain, manual6}
	dual := []Family{IPv4, IPv6}

	for _, tc := range []struct {
		name string
		svcs []Service
		want []Result
	}{{
		name: "lowest free address, older first, avoiding .0",
		svcs: []Service{
			{Key: "ns/b", Order: 2, Pools: []string{"v4"}},
			{Key: "ns/a", Order: 1, Pools: []string{"v4"}},
			{Key: "ns/c", Order: 2, Pools: []string{"plain"}},
		},
		want: []Result{res("ns/a", []string{"10.0.0.1"}), res("ns/b", []string{"10.0.0.2"}), res("ns/c", []string{"10.0.0.0"})},
	}, {
		name: "a request wins over the automatic allocation of an older Service",
		svcs: []Service{
			{Key: "ns/a", Order: 1, Pools: []string{"v4"}},
			{Key: "ns/b", Order: 2, Pools: []string{"v4"}, Requested: addrs("10.0.0.1")},
		},
		want: []Result{res("ns/a", []string{"10.0.0.2"}), res("ns/b", []string{"10.0.0.1"})},
	}, {
		name: "requests outside the pools, or excluded by avoidBuggyIPs, fail and do not fall back",
		svcs: []Service{
			{Key: "ns/a", Pools: []string{"v4", "small"}, Requested: addrs("192.0.2.1")},
			{Key: "ns/b", Pools: []string{"v4"}, Requested: addrs("::ffff:10.0.0.255")},
		},
		want: []Result{
			res("ns/a", []string{""}, Failure{Slot: 0, Family: IPv4, Reason: "requested IP 192.0.2.1 is not in pool(s) v4, small"}),
			res("ns/b", []string{""}, Failure{Slot: 0, Family: IPv4, Pool: "v4", Reason: "requested IP 10.0.0.255 is excluded by avoidBuggyIPs (it ends in .0 or .255) in pool(s) v4"}),
		},
	}, {
		name: "a holder keeps its IP against older and newer requesters",
		svcs: []Service{
			{Key: "ns/old", Order: 1, Pools: []string{"v4"}, Requested: addrs("10.0.0.5")},
			{Key: "ns/holder", Order: 5, Pools: []string{"v4"}, Current: addrs("10.0.0.5")},
			{Key: "ns/new", Order: 9, Pools: []string{"v4"}, Requested: addrs("10.0.0.5"), SharingKey: "k"},
		},
		want: []Result{
			res("ns/holder", []string{"10.0.0.5"}),
			res("ns/new", []string{""}, Failure{Slot: 0, Family: IPv4, Pool: "v4", Reason: "requested IP 10.0.0.5 is in use by ns/holder: ns/holder has no sharing key"}),
			res("ns/old", []string{""}, Failure{Slot: 0, Family: IPv4, Pool: "v4", Reason: "requested IP 10.0.0.5 is in use by ns/holder: ns/old has no sharing key"}),
		},
	}, {
		name: "sharing: same key, no common port, same backend",
		svcs: []Service{
			{Key: "ns/dns-tcp", Order: 1, Pools: []string{"v4"}, SharingKey: "dns", Ports: []Port{{"TCP", 53}}},
			{Key: "ns/dns-udp", Order: 2, Pools: []string{"v4"}, SharingKey: "dns", Ports: []Port{{"UDP", 53}}},
			{Key: "ns/dns-tcp2", Order: 3, Pools: []string{"v4"}, SharingKey: "dns", Ports: []Port{{"", 53}}},
			{Key: "ns/other-key", Order: 4, Pools: []string{"v4"}, SharingKey: "web", Ports: []Port{{"TCP", 80}}, Current: addrs("10.0.0.3")},
			{Key: "ns/local", Order: 5, Pools: []string{"v4"}, SharingKey: "dns", BackendKey: "app=x", Ports: []Port{{"TCP", 80}}},
			{Key: "ns/asks", Order: 6, Pools: []string{"v4"}, SharingKey: "dns", Ports: []Port{{"udp", 54}}, Requested: addrs("10.0.0.3")},
		},
		want: []Result{
			res("ns/asks", []string{""}, Failure{Slot: 0, Family: IPv4, Pool: "v4", Reason: `requested IP 10.0.0.3 is in use by ns/other-key: sharing keys differ ("dns", "web")`}),
			res("ns/dns-tcp", []string{"10.0.0.1"}),
			res("ns/dns-tcp2", []string{"10.0.0.2"}),
			res("ns/dns-udp", []string{"10.0.0.1"}),
			res("ns/local", []string{"10.0.0.4"}),
			res("ns/other-key", []string{"10.0.0.3"}),
		},
	}, {
		name: "current IPs stay even above free ones; invalid ones are replaced",
		svcs: []Service{
			{Key: "ns/a", Pools: []string{"v4"}, Current: addrs("10.0.0.9")},
			{Key: "ns/gone", Pools: []string{"v4"}, Current: addrs("10.0.1.0")},
			{Key: "ns/buggy", Pools: []string{"v4"}, Current: addrs("10.0.0.0")},
			{Key: "ns/v6now", Pools: []string{"v4", "v6"}, Families: []Family{IPv6}, Current: addrs("10.0.0.3")},
		},
		want: []Result{
			res("ns/a", []string{"10.0.0.9"}),
			res("ns/buggy", []string{"10.0.0.1"}),
			res("ns/gone", []string{"10.0.0.2"}),
			res("ns/v6now", []string{"2001:db8::"}),
		},
	}, {
		name: "count lowered keeps the first current IPs; count raised adds",
		svcs: []Service{
			{Key: "ns/down", Pools: []string{"v4"}, Count: 2, Current: addrs("10.0.0.7", "10.0.0.5", "10.0.0.6")},
			{Key: "ns/up", Pools: []string{"v4"}, Count: 3, Current: addrs("10.0.0.9")},
		},
		want: []Result{
			res("ns/down", []string{"10.0.0.7", "10.0.0.5"}),
			res("ns/up", []string{"10.0.0.9", "10.0.0.1", "10.0.0.2"}),
		},
	}, {
		name: "a current IP whose slot is now requested moves to a free slot",
		svcs: []Service{
			{Key: "ns/a", Pools: []string{"v4"}, Count: 2, Requested: addrs("10.0.0.20"), Current: addrs("10.0.0.9")},
			{Key: "ns/b", Pools: []string{"v4"}, Count: 1, Requested: addrs("10.0.0.21"), Current: addrs("10.0.0.8")},
		},
		want: []Result{
			res("ns/a", []string{"10.0.0.20", "10.0.0.9"}),
			res("ns/b", []string{"10.0.0.21"}),
		},
	}, {
		name: "dual stack: requests map per family, in order",
		svcs: []Service{
			{Key: "ns/a", Pools: []string{"v4", "v6"}, Count: 2, Families: dual, Policy: RequireDualStack,
				Requested: addrs("2001:db8::5", "10.0.0.5", "10.0.0.6")},
			{Key: "ns/b", Pools: []string{"v6", "v4"}, Families: []Family{IPv6, IPv4}, Policy: PreferDualStack},
		},
		want: []Result{
			res("ns/a", []string{"10.0.0.5,2001:db8::5", "10.0.0.6,2001:db8::"}),
			res("ns/b", []string{"2001:db8::1,10.0.0.1"}),
		},
	}, {
		name: "PreferDualStack degrades to the families the pools have; RequireDualStack fails",
		svcs: []Service{
			{Key: "ns/prefer", Pools: []string{"v4"}, Count: 2, Families: dual, Policy: PreferDualStack},
			{Key: "ns/require", Pools: []string{"v4"}, Families: dual, Policy: RequireDualStack},
			{Key: "ns/single6", Pools: []string{"v4"}, Families: []Family{IPv6, IPv4}},
			{Key: "ns/manual6", Pools: []string{"v4", "manual"}, Families: []Family{IPv6}},
			{Key: "ns/prefer-asks", Pools: []string{"v4", "manual6"}, Count: 2, Families: dual, Policy: PreferDualStack,
				Requested: addrs("2001:db8:1::5")},
		},
		want: []Result{
			res("ns/manual6", []string{""}, Failure{Slot: 0, Family: IPv6, Reason: "no pool for IPv6"}),
			res("ns/prefer", []string{"10.0.0.1", "10.0.0.2"}),
			res("ns/prefer-asks", []string{"10.0.0.3,2001:db8:1::5", "10.0.0.4"}, Failure{Slot: 1, Family: IPv6,
				Reason: "no pool for IPv6: manual6 do(es) not assign automatically; name the pool or request an IP"}),
			res("ns/require", []string{"10.0.0.5"}, Failure{Slot: 0, Family: IPv6, Reason: "no pool for IPv6"}),
			res("ns/single6", []string{""}, Failure{Slot: 0, Family: IPv6, Reason: "no pool for IPv6"}),
		},
	}, {
		name: "bad requests are reported and the rest proceeds",
		svcs: []Service{
			{Key: "ns/a", Pools: []string{"v4", "nope"}, Count: 2,
				Requested: addrs("10.0.0.7", "2001:db8::1", "10.0.0.7", "10.0.0.8"), Current: addrs("10.0.0.30")},
			{Key: "ns/b", Pools: []string{"v4"}, Requested: []netip.Addr{{}}},
		},
		want: []Result{
			res("ns/a", []string{"10.0.0.7", ""},
				Failure{Slot: -1, Pool: "nope", Reason: "pool nope does not exist"},
				Failure{Slot: -1, Family: IPv6, Reason: "requested IP 2001:db8::1 ignored: the Service does not use IPv6"},
				Failure{Slot: -1, Family: IPv4, Reason: "requested IP 10.0.0.8 ignored: the Service has 2 slots"},
				Failure{Slot: 1, Family: IPv4, Reason: "requested IP 10.0.0.7 is requested twice"}),
			res("ns/b", []string{"10.0.0.1"}, Failure{Slot: -1, Reason: "an invalid requested IP was ignored"}),
		},
	}, {
		name: "pools without AutoAssign serve requests and Services that name them",
		svcs: []Service{
			{Key: "ns/auto", Order: 1, Pools: []string{"manual"}},
			{Key: "ns/named", Order: 2, Pools: []string{"manual"}, Explicit: true},
			{Key: "ns/asks", Order: 3, Pools: []string{"manual"}, Requested: addrs("192.0.2.9")},
		},
		want: []Result{
			res("ns/asks", []string{"192.0.2.9"}),
			res("ns/auto", []string{""}, Failure{Slot: 0, Family: IPv4, Reason: "no pool for IPv4: manual do(es) not assign automatically; name the pool or request an IP"}),
			res("ns/named", []string{"192.0.2.0"}),
		},
	}, {
		name: "pools in preference order; an exhausted pool says how full it is",
		svcs: []Service{
			{Key: "ns/a", Order: 1, Pools: []string{"small", "v4"}, Count: 3},
			{Key: "ns/b", Order: 2, Pools: []string{"small"}},
		},
		want: []Result{
			res("ns/a", []string{"10.0.1.0", "10.0.1.1", "10.0.0.1"}),
			res("ns/b", []string{""}, Failure{Slot: 0, Family: IPv4, Pool: "small", Reason: "no free IPv4 address in pool small (2 of 2 used)"}),
		},
	}, {
		name: "duplicate keys: the oldest is allocated",
		svcs: []Service{
			{Key: "ns/a", Order: 2, Pools: []string{"v4"}, Requested: addrs("10.0.0.9")},
			{Key: "ns/a", Order: 1, Pools: []string{"v4"}},
		},
		want: []Result{res("ns/a", []string{"10.0.0.1"}, Failure{Slot: -1, Reason: "1 other Service(s) with the same key were ignored"})},
	}, {
		name: "no pools at all",
		svcs: []Service{{Key: "ns/a", Count: 2, Families: dual, Policy: PreferDualStack}},
		want: []Result{res("ns/a", []string{"", ""},
			Failure{Slot: 0, Family: IPv4, Reason: "no pool for IPv4"},
			Failure{Slot: 1, Family: IPv4, Reason: "no pool for IPv4"})},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := Allocate(pools, tc.svcs)
			if diff := cmp.Diff(tc.want, got, equateAddr); diff != "" {
				t.Errorf("Allocate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCountIsCapped(t *testing.T) {
	pools := []Pool{mustPool(t, "v6", true, false, "2001:db8::/64")}
	r := Allocate(pools, []Service{{Key: "ns/a", Pools: []string{"v6"}, Families: []Family{IPv6}, Count: 1 << 30}})[0]
	if len(r.Slots) != MaxCount || len(r.Addrs()) != MaxCount {
		t.Errorf("%d slots, %d IPs; want %d", len(r.Slots), len(r.Addrs()), MaxCount)
	}
	want := []Failure{{Slot: -1, Reason: "count 1073741824 is above the limit 1024; 1024 slots are allocated"}}
	if diff := cmp.Diff(want, r.Failures); diff != "" {
		t.Errorf("failures (-want +got):\n%s", diff)
	}
}

func TestSharable(t *testing.T) {
	base := Service{Key: "ns/a", SharingKey: "k", Ports: []Port{{"TCP", 53}, {"UDP", 53}}}
	with := func(f func(*Service)) Service {
		s := Service{Key: "ns/b", SharingKey: "k", Ports: []Port{{"TCP", 80}}}
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name string
		b    Service
		ok   bool
		why  string
	}{
		{"compatible", with(func(*Service) {}), true, ""},
		{"no ports", with(func(s *Service) { s.Ports = nil }), true, ""},
		{"same Service", with(func(s *Service) { s.Key = "ns/a" }), false, "it is the same Service"},
		{"no key", with(func(s *Service) { s.SharingKey = "" }), false, "ns/b has no sharing key"},
		{"other key", with(func(s *Service) { s.SharingKey = "j" }), false, `sharing keys differ ("k", "j")`},
		{"common port, protocol case and default", with(func(s *Service) { s.Ports = []Port{{"", 53}} }), false, "port TCP/53 is used by both"},
		{"other backend", with(func(s *Service) { s.BackendKey = "app=x" }), false,
			`backends differ ("", "app=x"): under externalTrafficPolicy Local both must select the same Pods`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, why := Sharable(base, tc.b)
			if ok != tc.ok || why != tc.why {
				t.Errorf("Sharable = %v, %q; want %v, %q", ok, why, tc.ok, tc.why)
			}
			if ok2, _ := Sharable(tc.b, base); ok2 != ok {
				t.Errorf("not symmetric")
			}
		})
	}
}

func TestAllocatorReleaseFreesAnIPWhenItsLastHolderGoes(t *testing.T) {
	pools := []Pool{
		mustPool(t, "a", true, true, "10.0.0.0/30"),
		mustPool(t, "b", true, false, "10.0.0.2-10.0.0.9"),
	}
	al := NewAllocator(pools)
	tcp := Service{Key: "ns/tcp", Pools: []string{"a"}, SharingKey: "k", Ports: []Port{{"TCP", 53}}}
	udp := Service{Key: "ns/udp", Pools: []string{"a"}, SharingKey: "k", Ports: []Port{{"UDP", 53}}}
	solo := Service{Key: "ns/solo", Pools: []string{"a"}}
	one := addrs("10.0.0.1")[0]
	for _, s := range []Service{tcp, udp} {
		if got := al.Assign(s).Addrs(); !cmp.Equal(got, []netip.Addr{one}, equateAddr) {
			t.Fatalf("%s got %v, want %v", s.Key, got, one)
		}
	}
	if diff := cmp.Diff([]string{"ns/tcp", "ns/udp"}, al.Holders(one)); diff != "" {
		t.Errorf("Holders (-want +got):\n%s", diff)
	}
	if got := al.Assign(solo).Addrs(); !cmp.Equal(got, addrs("10.0.0.2"), equateAddr) {
		t.Fatalf("solo got %v", got)
	}
	if a, b := al.Usage("a"), al.Usage("b"); a != 2 || b != 1 {
		t.Errorf("Usage = %v, %v; want 2 (shared counts once), 1 (overlap)", a, b)
	}
	al.Release("ns/tcp")
	if diff := cmp.Diff([]string{"ns/udp"}, al.Holders(one)); diff != "" {
		t.Errorf("after one release, Holders (-want +got):\n%s", diff)
	}
	r := al.Assign(Service{Key: "ns/want", Pools: []string{"a"}, Requested: []netip.Addr{one}})
	if len(r.Failures) != 1 || !strings.Contains(r.Failures[0].Reason, "in use by ns/udp") {
		t.Errorf("a shared IP with a holder left was granted: %+v", r)
	}
	al.Release("ns/udp")
	al.Release("ns/udp") // idempotent
	if h := al.Holders(one); h != nil {
		t.Errorf("Holders after the last release = %v", h)
	}
	if got := al.Assign(Service{Key: "ns/want", Pools: []string{"a"}, Requested: []netip.Addr{one}}).Addrs(); !cmp.Equal(got, []netip.Addr{one}, equateAddr) {
		t.Errorf("released IP not granted: %v", got)
	}
	// Re-assigning a Service releases what it held first.
	if got := al.Assign(Service{Key: "ns/want", Pools: []string{"b"}}).Addrs(); !cmp.Equal(got, addrs("10.0.0.3"), equateAddr) {
		t.Errorf("re-assign got %v", got)
	}
	if al.Holders(one) != nil || al.Usage("a") != 2 || al.Usage("nope") != 0 {
		t.Errorf("after re-assign: holders %v, usage %v", al.Holders(one), al.Usage("a"))
	}
}

// A /64's size is exact enough as a float (2^64) and costs nothing; used
// counts every held address of a family once, whoever holds it.
func TestAllocateUsage(t *testing.T) {
	pools := []Pool{
		mustPool(t, "dual", true, false, "192.0.2.0/30", "2001:db8::/64"),
		mustPool(t, "over", true, false, "192.0.2.0-192.0.2.1"),
	}
	dual := []Family{IPv4, IPv6}
	_, got := AllocateUsage(pools, []Service{
		{Key: "ns/a", Order: 1, Pools: []string{"dual"}, Families: dual, Policy: RequireDualStack},
		{Key: "ns/b", Order: 2, Pools: []string{"dual"}, Count: 2},
	})
	want := []PoolUsage{
		{Pool: "dual", Family: IPv4, Size: 4, Used: 3},
		{Pool: "dual", Family: IPv6, Size: 1 << 64, Used: 1},
		{Pool: "over", Family: IPv4, Size: 2, Used: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
}
