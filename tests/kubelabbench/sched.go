package kubelabbench

import (
	"net/netip"
	"time"
)

// Schedule decides which pending addresses to ask about next: each one
// every Every, within a total of Rate requests per second. It is pure
// (the caller passes the clock) and not safe for concurrent use.
//
// A new address is asked about first, ahead of the repeats: its first
// request is the one that can catch an owner already announcing. The
// repeats go round in the order they were last sent, so when Rate binds,
// every pending address waits the same, len(pending)/Rate at most.
type Schedule struct {
	Every time.Duration // period per address; > 0
	Rate  float64       // requests per second, all addresses together; > 0
	Burst int           // requests that may go at once after an idle spell; ≥ 1

	tokens  float64
	last    time.Time
	fresh   []entry // added, never sent: FIFO
	repeat  []entry // sent, in send order, so in due order
	pending map[netip.Addr]uint64
	gen     uint64 // tells a re-added address from its stale entries

	sent        int
	maxFirst    time.Duration // longest wait from Add to the first request
	maxInterval time.Duration // longest time between two requests for one address
}

type entry struct {
	addr netip.Addr
	gen  uint64
	at   time.Time // fresh: when added; repeat: when last sent
}

// Add makes addr pending from now; no-op if it already is.
func (s *Schedule) Add(addr netip.Addr, now time.Time) {
	if s.pending == nil {
		s.pending = map[netip.Addr]uint64{}
	}
	if _, ok := s.pending[addr]; ok {
		return
	}
	s.gen++
	s.pending[addr] = s.gen
	s.fresh = append(s.fresh, entry{addr: addr, gen: s.gen, at: now})
}

// Remove stops asking about addr (answered, or given up).
func (s *Schedule) Remove(addr netip.Addr) { delete(s.pending, addr) }

// Clear stops asking about every address; the counters of Stats stay.
func (s *Schedule) Clear() {
	clear(s.pending)
	s.fresh, s.repeat = nil, nil
}

// Pending is how many addresses are asked about.
func (s *Schedule) Pending() int { return len(s.pending) }

// Due returns the addresses to ask about now (appended to buf), as many as
// the rate allows.
func (s *Schedule) Due(now time.Time, buf []netip.Addr) []netip.Addr {
	if s.last.IsZero() {
		s.tokens = float64(s.Burst)
	} else if el := now.Sub(s.last); el > 0 {
		s.tokens = min(float64(s.Burst), s.tokens+el.Seconds()*s.Rate)
	}
	s.last = now
	for s.tokens >= 1 {
		e, ok := s.next(now)
		if !ok {
			break
		}
		s.tokens--
		s.sent++
		buf = append(buf, e.addr)
		s.repeat = append(s.repeat, entry{addr: e.addr, gen: e.gen, at: now})
	}
	// The queues pop from the front and append at the back; append
	// reallocates with the live part only, so they stay bounded.
	return buf
}

// next pops the next live entry that is due: a fresh one, else the oldest
// repeat once Every has passed since it was sent.
func (s *Schedule) next(now time.Time) (entry, bool) {
	for len(s.fresh) > 0 {
		e := s.fresh[0]
		s.fresh = s.fresh[1:]
		if s.pending[e.addr] == e.gen {
			s.maxFirst = max(s.maxFirst, now.Sub(e.at))
			return e, true
		}
	}
	for len(s.repeat) > 0 {
		e := s.repeat[0]
		if s.pending[e.addr] != e.gen {
			s.repeat = s.repeat[1:]
			continue
		}
		if now.Sub(e.at) < s.Every {
			return entry{}, false
		}
		s.repeat = s.repeat[1:]
		s.maxInterval = max(s.maxInterval, now.Sub(e.at))
		return e, true
	}
	return entry{}, false
}

// ScheduleStats says how the schedule kept up.
type ScheduleStats struct {
	Sent int
	// MaxFirst is the longest wait from Add to an address's first
	// request; MaxInterval the longest between two requests for one
	// address. With Rate not binding they are about the caller's tick
	// and Every.
	MaxFirst, MaxInterval time.Duration
}

// Stats returns the counters since the last ResetStats.
func (s *Schedule) Stats() ScheduleStats {
	return ScheduleStats{Sent: s.sent, MaxFirst: s.maxFirst, MaxInterval: s.maxInterval}
}

// ResetStats starts the counters of Stats again (one per wave).
func (s *Schedule) ResetStats() { s.sent, s.maxFirst, s.maxInterval = 0, 0, 0 }
