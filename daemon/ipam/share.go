package ipam

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// shareInfo is what IP sharing looks at in a Service, normalised once.
type shareInfo struct {
	key, sharing, backend string
	ports                 []Port // protocol upper-cased, "" read as TCP; sorted, unique
	// sig is equal for Services that every holder treats alike (same
	// sharing key, backend key and port set), so they may share one
	// search cursor (state.search).
	sig string
}

func newShareInfo(s Service) *shareInfo {
	sh := &shareInfo{key: s.Key, sharing: s.SharingKey, backend: s.BackendKey}
	for _, p := range s.Ports {
		p.Protocol = strings.ToUpper(strings.TrimSpace(p.Protocol))
		if p.Protocol == "" {
			p.Protocol = "TCP" // the Kubernetes default
		}
		sh.ports = append(sh.ports, p)
	}
	slices.SortFunc(sh.ports, comparePorts)
	sh.ports = slices.Compact(sh.ports)
	if sh.sharing != "" {
		var b strings.Builder
		b.WriteString(strconv.Quote(sh.sharing))
		b.WriteString(strconv.Quote(sh.backend))
		for _, p := range sh.ports {
			fmt.Fprintf(&b, "%q%d", p.Protocol, p.Port)
		}
		sh.sig = b.String()
	}
	return sh
}

func comparePorts(a, b Port) int {
	if c := strings.Compare(a.Protocol, b.Protocol); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// Sharable reports whether a and b may hold the same IP, and if not, why
// (for an Event). MetalLB's rules: both have the same non-empty
// SharingKey, their BackendKeys are equal (under externalTrafficPolicy
// Local the controller passes the selector, so both must select the same
// Pods), and no port (protocol and number) is used by both. A Service
// never shares with itself (same Key): its slots get distinct IPs. The
// answer is symmetric. An IP is shared by a group of Services only when
// every pair of them is sharable.
func Sharable(a, b Service) (ok bool, why string) {
	return sharable(newShareInfo(a), newShareInfo(b))
}

// conflict is why two Services may not share, without the cost of a
// message: the search asks this for every address it passes.
type conflict uint8

const (
	noConflict conflict = iota
	sameService
	noKeyA
	noKeyB
	keysDiffer
	backendsDiffer
	portUsedByBoth
)

func conflictOf(a, b *shareInfo) (conflict, Port) {
	switch {
	case a.key == b.key:
		return sameService, Port{}
	case a.sharing == "":
		return noKeyA, Port{}
	case b.sharing == "":
		return noKeyB, Port{}
	case a.sharing != b.sharing:
		return keysDiffer, Port{}
	case a.backend != b.backend:
		return backendsDiffer, Port{}
	}
	// Both port lists are sorted: walk them together.
	for i, j := 0, 0; i < len(a.ports) && j < len(b.ports); {
		switch c := comparePorts(a.ports[i], b.ports[j]); {
		case c == 0:
			return portUsedByBoth, a.ports[i]
		case c < 0:
			i++
		default:
			j++
		}
	}
	return noConflict, Port{}
}

func sharable(a, b *shareInfo) (bool, string) {
	c, p := conflictOf(a, b)
	switch c {
	case sameService:
		return false, "it is the same Service"
	case noKeyA:
		return false, a.key + " has no sharing key"
	case noKeyB:
		return false, b.key + " has no sharing key"
	case keysDiffer:
		return false, fmt.Sprintf("sharing keys differ (%q, %q)", a.sharing, b.sharing)
	case backendsDiffer:
		return false, fmt.Sprintf("backends differ (%q, %q): under externalTrafficPolicy Local both must select the same Pods", a.backend, b.backend)
	case portUsedByBoth:
		return false, fmt.Sprintf("port %s/%d is used by both", p.Protocol, p.Port)
	}
	return true, ""
}
