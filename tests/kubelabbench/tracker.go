package kubelabbench

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hostlb/hostlb/tests/kubebench"
)

// Tracker holds, per Service, when the client created it and first saw its
// IP and its ready endpoints, and per IP, every MAC that answered or
// announced it and when: the measurements of a wave. Its methods are safe
// for concurrent use (the watches and the prober's reader feed it).
type Tracker struct {
	mu        sync.Mutex // guards the fields below
	svcs      map[string]*svcTimes
	byIP      map[netip.Addr]string // IP → the Service that holds it
	answers   map[netip.Addr][]hearing
	announces map[netip.Addr][]hearing
	ipChanges int
}

type svcTimes struct {
	sent, created time.Time // create call sent, and returned
	ip            netip.Addr
	ipAt          time.Time // the watch first showed it with an IP
	readyAt       time.Time // the watch first showed a ready endpoint
	probed        bool      // ReadyToProbe returned its IP
}

// hearing is one MAC heard for one IP: first and last time.
type hearing struct {
	mac         string
	first, last time.Time
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{svcs: map[string]*svcTimes{}, byIP: map[netip.Addr]string{},
		answers: map[netip.Addr][]hearing{}, announces: map[netip.Addr][]hearing{}}
}

// svc returns name's entry, new if need be; with t.mu held. A watch may
// see a Service before its create call returned.
func (t *Tracker) svc(name string) *svcTimes {
	s := t.svcs[name]
	if s == nil {
		s = &svcTimes{}
		t.svcs[name] = s
	}
	return s
}

// Created notes that the create call of Service name was sent at sent and
// returned at returned.
func (t *Tracker) Created(name string, sent, returned time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.svc(name)
	s.sent, s.created = sent, returned
}

// SawIP notes that a watch showed Service name with ip at at; first is
// true the first time the Service is seen with an IP. A later different
// IP counts as an IP change (nothing here changes a Service, so never is
// right) and replaces the first.
func (t *Tracker) SawIP(name string, ip netip.Addr, at time.Time) (first bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.svc(name)
	switch {
	case !s.ip.IsValid():
		s.ip, s.ipAt = ip, at
		t.byIP[ip] = name
		return true
	case s.ip != ip:
		t.ipChanges++
		delete(t.byIP, s.ip)
		s.ip = ip
		t.byIP[ip] = name
	}
	return false
}

// SawReady notes that a watch showed a ready endpoint of Service name.
func (t *Tracker) SawReady(name string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.svc(name); s.readyAt.IsZero() {
		s.readyAt = at
	}
}

// ReadyToProbe returns the IP of Service name, once, when the watches
// have shown both its IP and a ready endpoint: before that nobody may
// announce it (no ready endpoint, nobody announces), so asking would
// only load the nodes' responders. ok is false before, and after the
// first time.
func (t *Tracker) ReadyToProbe(name string) (ip netip.Addr, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.svcs[name]
	if s == nil || s.probed || !s.ip.IsValid() || s.readyAt.IsZero() {
		return netip.Addr{}, false
	}
	s.probed = true
	return s.ip, true
}

// Heard notes an answer or announcement received at at; firstAnswer is
// true for the first answer for its target.
func (t *Tracker) Heard(h Heard, at time.Time) (firstAnswer bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.announces
	if h.Answer {
		m = t.answers
		firstAnswer = len(m[h.Target]) == 0
	}
	mac := h.MAC.String()
	hs := m[h.Target]
	if i := slices.IndexFunc(hs, func(x hearing) bool { return x.mac == mac }); i >= 0 {
		hs[i].last = at
		return firstAnswer
	}
	m[h.Target] = append(hs, hearing{mac: mac, first: at, last: at})
	return firstAnswer
}

// IPChanges is how often a Service's IP changed after it was first seen.
func (t *Tracker) IPChanges() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ipChanges
}

// IPs returns the IPs of the Services named, in their order (none for a
// Service without one).
func (t *Tracker) IPs(names []string) []netip.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []netip.Addr
	for _, n := range names {
		if s := t.svcs[n]; s != nil && s.ip.IsValid() {
			out = append(out, s.ip)
		}
	}
	return out
}

// Unanswered returns how many of the Services named have no answer yet
// for their IP (a Service without an IP counts).
func (t *Tracker) Unanswered(names []string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, name := range names {
		s := t.svcs[name]
		if s == nil || !s.ip.IsValid() || len(t.answers[s.ip]) == 0 {
			n++
		}
	}
	return n
}

// Wave is what one wave of creates measured. Latencies are nearest-rank
// over the Services that reached the stage.
type Wave struct {
	Name     string
	Proto    string // "ARP" or "NDP"
	Services int    // created in the wave
	Total    int    // Services of the benchmark's class held at its end
	Workers  int
	// Creates runs from the first create sent to the last one returned.
	Creates time.Duration
	// Per Service, from its create call's return to: its IP in status,
	// a ready endpoint in its EndpointSlices, the first answer from the
	// owner, the owner's first announcement. Share runs from the later
	// of the IP and the ready endpoint (as the client's watches saw
	// them) to the first answer: hostlbd's own part.
	ToIP, ToReady, ToAnswer, ToAnnounce, Share kubebench.Latencies
	// AllAnswered runs from the first create sent to the last first
	// answer; meaningful when Unanswered is 0. AllReady, to the last
	// Service's first ready endpoint: how long the EndpointSlice
	// controller took over the wave.
	AllAnswered, AllReady time.Duration
	Answered              int
	Unanswered            int
	// MultiOwner counts IPs that more than one MAC answered or announced
	// over the run; MultiOwnerAt groups them by the second (UTC) at which
	// the second MAC was first heard, the busiest first ("07:40:44 ×1,185").
	// DualAnswer counts IPs that two MACs answered (requests stop at the
	// first answer, so these answered the same request or nearly).
	MultiOwner   int
	MultiOwnerAt []string
	DualAnswer   int
	// Probe is how the requests kept up (Schedule stats over the wave).
	Probe ScheduleStats
	// Stopped says why the wave ended early ("" when it did not).
	Stopped string
	// Goal marks the wave the p99 goal is about.
	Goal bool
}

// Wave measures the Services named.
func (t *Tracker) Wave(names []string) Wave {
	t.mu.Lock()
	defer t.mu.Unlock()
	var (
		w                                       = Wave{Services: len(names)}
		toIP, toReady, toAnswer, toAnnounce, sh []time.Duration
		firstSent, lastCreated, lastAnswer      time.Time
		lastReady                               time.Time
		moves                                   = map[string]int{}
	)
	since := func(from, to time.Time) time.Duration { return max(to.Sub(from), 0) }
	for _, name := range names {
		s := t.svcs[name]
		if s == nil || s.created.IsZero() {
			w.Unanswered++
			continue
		}
		if firstSent.IsZero() || s.sent.Before(firstSent) {
			firstSent = s.sent
		}
		if s.created.After(lastCreated) {
			lastCreated = s.created
		}
		if !s.readyAt.IsZero() {
			toReady = append(toReady, since(s.created, s.readyAt))
			if s.readyAt.After(lastReady) {
				lastReady = s.readyAt
			}
		}
		if !s.ip.IsValid() {
			w.Unanswered++
			continue
		}
		toIP = append(toIP, since(s.created, s.ipAt))
		if hs := t.announces[s.ip]; len(hs) > 0 {
			toAnnounce = append(toAnnounce, since(s.created, earliest(hs)))
		}
		if at, ok := secondMAC(t.answers[s.ip], t.announces[s.ip]); ok {
			w.MultiOwner++
			moves[at.UTC().Format(time.TimeOnly)]++
		}
		if len(t.answers[s.ip]) > 1 {
			w.DualAnswer++
		}
		hs := t.answers[s.ip]
		if len(hs) == 0 {
			w.Unanswered++
			continue
		}
		w.Answered++
		at := earliest(hs)
		toAnswer = append(toAnswer, since(s.created, at))
		if !s.readyAt.IsZero() {
			seen := s.ipAt
			if s.readyAt.After(seen) {
				seen = s.readyAt
			}
			sh = append(sh, since(seen, at))
		}
		if at.After(lastAnswer) {
			lastAnswer = at
		}
	}
	w.Creates = since(firstSent, lastCreated)
	w.AllAnswered, w.AllReady = since(firstSent, lastAnswer), since(firstSent, lastReady)
	w.ToIP, w.ToReady = kubebench.Summarise(toIP), kubebench.Summarise(toReady)
	w.ToAnswer, w.ToAnnounce = kubebench.Summarise(toAnswer), kubebench.Summarise(toAnnounce)
	w.Share = kubebench.Summarise(sh)
	w.MultiOwnerAt = busiest(moves, 3)
	return w
}

// secondMAC returns when a second MAC was first heard for an IP, over its
// answers and announcements together; ok is false with one MAC or none.
func secondMAC(lists ...[]hearing) (at time.Time, ok bool) {
	first := map[string]time.Time{}
	for _, hs := range lists {
		for _, h := range hs {
			if f, seen := first[h.mac]; !seen || h.first.Before(f) {
				first[h.mac] = h.first
			}
		}
	}
	if len(first) < 2 {
		return time.Time{}, false
	}
	ts := make([]time.Time, 0, len(first))
	for _, f := range first {
		ts = append(ts, f)
	}
	slices.SortFunc(ts, time.Time.Compare)
	return ts[1], true
}

// busiest renders the n largest counts as "key ×count", largest first
// (ties by key), plus "and k more" when some are left out.
func busiest(counts map[string]int, n int) []string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return strings.Compare(a, b)
	})
	var out []string
	for i, k := range keys {
		if i == n {
			out = append(out, fmt.Sprintf("and %d more", len(keys)-n))
			break
		}
		out = append(out, fmt.Sprintf("%s ×%s", k, kubebench.Thousands(counts[k])))
	}
	return out
}

func earliest(hs []hearing) time.Time {
	at := hs[0].first
	for _, h := range hs[1:] {
		if h.first.Before(at) {
			at = h.first
		}
	}
	return at
}

// Sweep is one request for each held IP, at the end: who answers now.
type Sweep struct {
	IPs     int
	PerNode map[string]int // node (or MAC) → IPs it alone answered
	None    int            // IPs nobody answered
	Several int            // IPs more than one MAC answered
}

// Sweep counts, for each of ips, the MACs whose answers arrived at or
// after since, named by node (a MAC no node has stands for itself).
func (t *Tracker) Sweep(ips []netip.Addr, since time.Time, node func(mac string) string) Sweep {
	t.mu.Lock()
	defer t.mu.Unlock()
	sw := Sweep{IPs: len(ips), PerNode: map[string]int{}}
	for _, ip := range ips {
		var who []string
		for _, h := range t.answers[ip] {
			if !h.last.Before(since) {
				who = append(who, h.mac)
			}
		}
		switch len(who) {
		case 0:
			sw.None++
		case 1:
			name := node(who[0])
			if name == "" {
				name = who[0]
			}
			sw.PerNode[name]++
		default:
			sw.Several++
		}
	}
	return sw
}
