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

// Interface patterns: one rule for every list of interfaces, used by the
// config (which only validates and normalises) and by the Selector.
//
//   - An `interfaces` entry is an exact interface name, or a regular
//     expression written between slashes: "eth0", "/^bond[0-9]+$/".
//   - An `exclude` entry is always a regular expression, written bare as in
//     the defaults ("^veth") or between slashes like an `interfaces` entry
//     ("/^veth/"): the slashes are stripped, never matched (interface names
//     cannot contain '/').
//
// A regular expression (RE2 syntax) matches anywhere in the name unless
// anchored: "^lo$" matches only "lo", "lo" also matches "vlo1". An empty
// one would match every interface and is an error.

// Pattern is one parsed `interfaces` entry.
type Pattern struct {
	Name   string         // an exact interface name; "" when Regexp is set
	Regexp *regexp.Regexp // a "/regex/" entry, slashes stripped
}

// Match reports whether the interface called ifname matches p.
func (p Pattern) Match(ifname string) bool {
	if p.Regexp != nil {
		return p.Regexp.MatchString(ifname)
	}
	return p.Name == ifname
}

// ParsePattern parses one `interfaces` entry. The error says what is wrong
// and what is allowed, without the key; callers add it.
func ParsePattern(s string) (Pattern, error) {
	if re, ok := slashed(s); ok {
		r, err := compilePattern(s, re)
		if err != nil {
			return Pattern{}, err
		}
		return Pattern{Regexp: r}, nil
	}
	if s == "" || len(s) > 15 || strings.ContainsAny(s, "/ \t\n:") || s == "." || s == ".." {
		return Pattern{}, fmt.Errorf("%q is not an interface name (at most 15 characters, no '/', ':' or spaces) or a /regex/", s)
	}
	return Pattern{Name: s}, nil
}

// ParseExclude parses one `exclude` entry: a regular expression, bare or
// between slashes.
func ParseExclude(s string) (*regexp.Regexp, error) {
	re, _ := slashed(s)
	return compilePattern(s, re)
}

// slashed returns s without its slashes when it is written "/regex/".
func slashed(s string) (string, bool) {
	if len(s) >= 2 && s[0] == '/' && s[len(s)-1] == '/' {
		return s[1 : len(s)-1], true
	}
	return s, false
}

// compilePattern compiles re, the regular expression of the entry s as
// written (which the error names).
func compilePattern(s, re string) (*regexp.Regexp, error) {
	if re == "" {
		return nil, fmt.Errorf("%q: empty regular expression matches every interface", s)
	}
	r, err := regexp.Compile(re)
	if err != nil {
		return nil, fmt.Errorf("bad regular expression %q: %s", s, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return r, nil
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

// NewSelector compiles an allow list (ParsePattern entries) and an exclude
// list (ParseExclude entries). An empty allow list allows every
// interface. The error names every bad entry.
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
		p, err := ParsePattern(a)
		switch {
		case err != nil:
			errs = append(errs, "interfaces: "+err.Error())
		case p.Regexp != nil:
			s.allowRE = append(s.allowRE, p.Regexp)
		default:
			if s.names == nil {
				s.names = make(map[string]bool)
			}
			s.names[p.Name] = true
		}
	}
	for _, e := range exclude {
		r, err := ParseExclude(e)
		if err != nil {
			errs = append(errs, "exclude: "+err.Error())
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
