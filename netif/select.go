package netif

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// DefaultExclude is the default `[l2] exclude` list (SPEC §4): interfaces
// of container runtimes, CNIs, tunnels and hostlb's own dummy link.
var DefaultExclude = []string{
	"^docker", "^cbr", "^dummy", "^virbr", "^lxc", "^veth", "^lo$", "^cali", "^tunl",
	"^flannel", "^kube-ipvs", "^cni", "^nodelocaldns", "^cilium_vxlan", "^hostlb",
}

// Selector chooses the interfaces L2 announcements may use, per `[l2]`
// (and a static VIP's own `interfaces`, which replaces the `[l2]` list).
// The zero Selector allows every interface that passes the link checks.
// Selectors are immutable and safe for concurrent use.
type Selector struct {
	names   map[string]bool  // allowed by exact name
	allowRE []*regexp.Regexp // allowed by /regex/
	exclude []*regexp.Regexp
}

// NewSelector compiles an allow list (interface names, or regular
// expressions written as "/regex/") and an exclude list (regular
// expressions). An empty allow list allows every interface. The error
// names every bad entry.
//
// An interface named exactly in the allow list is selected even if an
// exclude pattern matches it: naming it is a stronger statement than a
// default pattern (lab setups announce on veths, which the defaults
// exclude). Interfaces matched by an allow /regex/ are still subject to
// the exclude list.
func NewSelector(allow, exclude []string) (Selector, error) {
	var (
		s    Selector
		errs []string
	)
	for _, a := range allow {
		if re, ok := strings.CutPrefix(a, "/"); ok && len(re) > 0 && strings.HasSuffix(re, "/") {
			r, err := regexp.Compile(strings.TrimSuffix(re, "/"))
			if err != nil {
				errs = append(errs, fmt.Sprintf("interfaces: %q: %v", a, err))
				continue
			}
			s.allowRE = append(s.allowRE, r)
			continue
		}
		if a == "" || strings.ContainsAny(a, "/ \t\n") || len(a) > 15 {
			errs = append(errs, fmt.Sprintf("interfaces: %q is neither an interface name nor a /regex/", a))
			continue
		}
		if s.names == nil {
			s.names = make(map[string]bool)
		}
		s.names[a] = true
	}
	for _, e := range exclude {
		r, err := regexp.Compile(e)
		if err != nil {
			errs = append(errs, fmt.Sprintf("exclude: %q: %v", e, err))
			continue
		}
		s.exclude = append(s.exclude, r)
	}
	if len(errs) > 0 {
		return Selector{}, fmt.Errorf("interface selection: %s", strings.Join(errs, "; "))
	}
	return s, nil
}

// Check returns "" when l may carry announcements, or why not.
func (s Selector) Check(st State, l Link) string {
	named := s.names[l.Name]
	switch {
	case len(s.names)+len(s.allowRE) > 0 && !named && !matchAny(s.allowRE, l.Name):
		return "not in interfaces"
	case !named && matchAny(s.exclude, l.Name):
		return "excluded"
	case l.Loopback:
		return "loopback"
	case !l.Up:
		return "down"
	case !l.Broadcast:
		return "not broadcast"
	case l.NoARP:
		return "NOARP"
	}
	if l.MasterIndex != 0 {
		// A port of a bond or bridge does not own its traffic: the master
		// does, and the master itself is eligible. A VRF slave is still an
		// ordinary L3 interface.
		m, ok := st.Link(l.MasterIndex)
		if !ok || m.Type != "vrf" {
			return "enslaved"
		}
	}
	return ""
}

// Eligible returns the links of st that may carry announcements, ordered
// by index. The result is freshly allocated.
func (s Selector) Eligible(st State) []Link {
	var out []Link
	for _, l := range st.Links() {
		if s.Check(st, l) == "" {
			out = append(out, l)
		}
	}
	return out
}

// InterfacesFor returns the links an IP is announced on: those of
// candidates (normally a Selector's Eligible links) that have a connected
// subnet containing ip; if none has, all candidates. Neighbours only ask
// for an IP on a segment whose subnet they think holds it, so when a
// subnet matches, answering elsewhere only invites traffic on the wrong
// NIC. Every matching link is returned, not only the longest match: a host
// on a wider overlapping subnet also asks for the IP. The result keeps the
// order of candidates and is freshly allocated.
func InterfacesFor(ip netip.Addr, candidates []Link) []Link {
	ip = ip.Unmap()
	var out []Link
	for _, l := range candidates {
		for _, a := range l.Addrs {
			// A host prefix is an address, not a subnet: a /32 VIP copy on
			// an interface says nothing about which segment asks for it.
			if a.Prefix.IsSingleIP() || a.Prefix.Addr().Is6() != ip.Is6() {
				continue
			}
			if a.Prefix.Masked().Contains(ip) {
				out = append(out, l)
				break
			}
		}
	}
	if len(out) == 0 {
		out = append(out, candidates...)
	}
	return out
}

func matchAny(res []*regexp.Regexp, name string) bool {
	for _, r := range res {
		if r.MatchString(name) {
			return true
		}
	}
	return false
}
