package netif

import (
	"cmp"
	"maps"
	"slices"
	"sync"
)

// Protocols of ResponderStats.
const (
	ProtoARP = "arp"
	ProtoNDP = "ndp"
)

// Names of the event counters in ResponderStats.Counters (Responder.Stats);
// every other name there is a drop reason (a DropError string, or "other").
const (
	StatRequests         = statRequests      // questions for an owned address
	StatReplies          = statReplies       // answers written
	StatAnnounced        = statAnnounced     // gratuitous ARP / unsolicited NA frames written
	StatProbes           = statProbes        // ARP probes and DAD NS for owned addresses
	StatUnicastNS        = statUnicastNS     // NS sent to the address itself (NUD)
	StatMulticastNS      = statMulticastNS   // NS sent to the solicited-node group
	StatReadErrors       = statReadErrors    // socket read errors
	StatWriteErrors      = statWriteErrors   // socket write errors
	StatJoinErrors       = statJoinErrors    // link-layer multicast joins that failed
	StatMLDJoinErrors    = statMLDJoinErrors // IPv6 group joins (MLD reports) that failed
	StatConflictProbes   = statFenceProbes   // conflict probes of own addresses sent
	StatConflictDefended = statFenceDefended // wire conflicts this node kept the address in
	StatConflictYielded  = statFenceYielded  // wire conflicts this node yielded the address in
	StatConflictForeign  = statFenceForeign  // non-hostlb hosts seen answering for an owned address
)

// ResponderStats are the counters of the responders of one protocol on one
// interface since the L2 output started.
type ResponderStats struct {
	Iface    string
	Proto    string            // ProtoARP or ProtoNDP
	Counters map[string]uint64 // by Responder.Stats name
}

// respKey identifies the responders whose counters add up.
type respKey struct{ iface, proto string }

// l2Stats keeps every responder's counters across its close: a responder
// lives only while its interface has owned addresses of its family, and a
// counter that went back to zero with it would read as a reset.
type l2Stats struct {
	mu      sync.Mutex // guards live and retired
	live    map[Responder]respKey
	retired map[respKey]map[string]uint64
}

// opened starts counting r's counters under ifname.
func (s *l2Stats) opened(r Responder, ifname string, v6 bool) {
	k := respKey{ifname, ProtoARP}
	if v6 {
		k.proto = ProtoNDP
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live == nil {
		s.live = map[Responder]respKey{}
	}
	s.live[r] = k
}

// closed keeps the final counters of r, which has stopped.
func (s *l2Stats) closed(r Responder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.live[r]
	if !ok {
		return
	}
	delete(s.live, r)
	if s.retired == nil {
		s.retired = map[respKey]map[string]uint64{}
	}
	sum := s.retired[k]
	if sum == nil {
		sum = map[string]uint64{}
		s.retired[k] = sum
	}
	for n, v := range r.Stats() {
		sum[n] += v
	}
}

// Stats returns the counters of every interface and protocol the L2 output
// has answered on, sorted by interface and protocol: those of the running
// responders added to those of the closed ones, so they never go down. It
// never waits for a Sync. The caller owns the result.
func (l *L2) Stats() []ResponderStats {
	l.stats.mu.Lock()
	defer l.stats.mu.Unlock()
	byKey := make(map[respKey]map[string]uint64, len(l.stats.live)+len(l.stats.retired))
	for k, sum := range l.stats.retired {
		byKey[k] = maps.Clone(sum)
	}
	for r, k := range l.stats.live {
		sum := byKey[k]
		if sum == nil {
			sum = map[string]uint64{}
			byKey[k] = sum
		}
		for n, v := range r.Stats() { // atomic loads: never blocks
			sum[n] += v
		}
	}
	out := make([]ResponderStats, 0, len(byKey))
	for k, sum := range byKey {
		out = append(out, ResponderStats{Iface: k.iface, Proto: k.proto, Counters: sum})
	}
	slices.SortFunc(out, func(a, b ResponderStats) int {
		return cmp.Or(cmp.Compare(a.Iface, b.Iface), cmp.Compare(a.Proto, b.Proto))
	})
	return out
}
