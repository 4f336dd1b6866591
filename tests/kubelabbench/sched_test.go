package kubelabbench

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func addr(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("2001:db8:1000::%x", i+1)) }

func TestScheduleAsksANewAddressAtOnceThenEveryPeriod(t *testing.T) {
	s := Schedule{Every: 25 * time.Millisecond, Rate: 2000, Burst: 40}
	a, b := addr(0), addr(1)
	s.Add(a, t0)
	if got := s.Due(t0, nil); !slices.Equal(got, []netip.Addr{a}) {
		t.Fatalf("at 0: %v, want [%v]", got, a)
	}
	if got := s.Due(t0.Add(10*time.Millisecond), nil); len(got) != 0 {
		t.Errorf("at 10ms: %v, want nothing before the period", got)
	}
	s.Add(b, t0.Add(10*time.Millisecond))
	s.Add(b, t0.Add(11*time.Millisecond)) // already pending: no second entry
	if got := s.Due(t0.Add(12*time.Millisecond), nil); !slices.Equal(got, []netip.Addr{b}) {
		t.Errorf("at 12ms: %v, want the new [%v] alone", got, b)
	}
	if got := s.Due(t0.Add(25*time.Millisecond), nil); !slices.Equal(got, []netip.Addr{a}) {
		t.Errorf("at 25ms: %v, want [%v] again", got, a)
	}
	s.Remove(b)
	if got := s.Due(t0.Add(40*time.Millisecond), nil); len(got) != 0 {
		t.Errorf("at 40ms: %v, want nothing: %v was removed", got, b)
	}
	s.Add(b, t0.Add(41*time.Millisecond)) // back: a fresh entry, the stale one is skipped
	if got := s.Due(t0.Add(50*time.Millisecond), nil); !slices.Equal(got, []netip.Addr{b, a}) {
		t.Errorf("at 50ms: %v, want [%v %v]", got, b, a)
	}
	st := s.Stats()
	if st.Sent != 5 || st.MaxFirst != 9*time.Millisecond || st.MaxInterval != 25*time.Millisecond {
		t.Errorf("stats %+v, want 5 sent, first after 9ms at most, every 25ms", st)
	}
	if s.Pending() != 2 {
		t.Errorf("Pending = %d, want 2", s.Pending())
	}
}

// With more pending addresses than the rate can ask about each period,
// the rate holds and they go round in turn: each waits the same.
func TestScheduleHoldsTheRateAndGoesRound(t *testing.T) {
	const n = 100
	s := Schedule{Every: 25 * time.Millisecond, Rate: 1000, Burst: 5}
	for i := range n {
		s.Add(addr(i), t0)
	}
	counts := map[netip.Addr]int{}
	var buf []netip.Addr
	for ms := 0; ms <= 1000; ms += 5 {
		buf = s.Due(t0.Add(time.Duration(ms)*time.Millisecond), buf[:0])
		for _, a := range buf {
			counts[a]++
		}
	}
	st := s.Stats()
	// 5 at once, then 1,000/s over 1 s.
	if st.Sent < 1000 || st.Sent > 1005 {
		t.Errorf("sent %d in 1 s at 1,000/s (burst 5)", st.Sent)
	}
	for i := range n {
		if c := counts[addr(i)]; c < 9 || c > 11 {
			t.Errorf("%v asked %d times, want about 10 (every n/rate = 100ms)", addr(i), c)
		}
	}
	if st.MaxFirst > 100*time.Millisecond || st.MaxInterval > 105*time.Millisecond || st.MaxInterval < 95*time.Millisecond {
		t.Errorf("stats %+v, want the first within n/rate and the next after about n/rate = 100ms", st)
	}
}

func TestScheduleClearKeepsTheCounters(t *testing.T) {
	s := Schedule{Every: time.Millisecond, Rate: 1000, Burst: 10}
	s.Add(addr(0), t0)
	s.Add(addr(1), t0)
	s.Due(t0, nil)
	s.Clear()
	if got := s.Due(t0.Add(time.Second), nil); len(got) != 0 || s.Pending() != 0 {
		t.Errorf("after Clear: due %v, %d pending", got, s.Pending())
	}
	if diff := cmp.Diff(ScheduleStats{Sent: 2}, s.Stats()); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	s.ResetStats()
	if s.Stats() != (ScheduleStats{}) {
		t.Errorf("after ResetStats: %+v", s.Stats())
	}
}
