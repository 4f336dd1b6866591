package daemon

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/gossip"
)

// heirSim is a 3-node simulation with heartbeats, each node's Observer
// recorded.
func heirSim(t *testing.T) (*sim, func(node string) []Takeover) {
	t.Helper()
	var mu sync.Mutex
	obs := map[string]*recObserver{}
	s := newSimOpts(t, simOpts{n: 3, heartbeat: true, tweak: func(node string, opts *Options) {
		mu.Lock()
		defer mu.Unlock()
		obs[node] = &recObserver{}
		opts.Observer = obs[node]
	}})
	return s, func(node string) []Takeover {
		mu.Lock()
		o := obs[node]
		mu.Unlock()
		_, tos := o.snapshot()
		return tos
	}
}

// TestSimHeirTakesOverOnOwnerLoss: a crashed owner's IPs are taken over by
// the heirs that lost its heartbeat, before the ring declares it dead:
// every takeover of its IPs says "heartbeat", from the heartbeat's loss,
// and at the first of them the ring of the node that took over still held
// the owner alive.
func TestSimHeirTakesOverOnOwnerLoss(t *testing.T) {
	s, takeovers := heirSim(t)
	victim := "n2"
	lost := s.ownedBy(victim)
	if len(lost) == 0 {
		t.Fatalf("%s owns nothing", victim)
	}
	seen := map[string]int{}
	for _, n := range s.names {
		seen[n] = len(takeovers(n))
	}
	// The ring's verdict, watched from n1: when it declared the victim dead.
	var deadAt time.Time
	crashed := time.Now()
	s.crash(victim)
	took := s.waitFor(10*time.Second, "new owners of "+victim+"'s IPs", func() error { return s.check(s.runningNames()) })
	t.Logf("%s crashed: its %d IPs owned once each again after %v", victim, len(lost), took.Round(time.Millisecond))
	s.waitConverged(10*time.Second, "the rings agree after the crash of "+victim)

	var got []Takeover
	for _, n := range s.runningNames() {
		for _, to := range takeovers(n)[seen[n]:] {
			if slices.Contains(lost, to.Addr) {
				got = append(got, to)
			}
		}
	}
	if len(got) != len(lost) {
		t.Fatalf("%d takeovers of %s's %d IPs: %+v", len(got), victim, len(lost), got)
	}
	for _, to := range got {
		if to.Reason != TakeoverHeartbeat || !slices.Equal(to.From, []string{victim}) {
			t.Errorf("takeover of %s: reason %q from %v, want %q from %s", to.Addr, to.Reason, to.From, TakeoverHeartbeat, victim)
		}
	}
	s.mu.Lock()
	n1 := s.running["n1"]
	s.mu.Unlock()
	for _, m := range n1.ring.Members() {
		if m.Name == victim && m.State == gossip.StateDead {
			deadAt = m.Since
		}
	}
	t.Logf("the ring on n1 declared %s dead %v after the crash", victim, deadAt.Sub(crashed).Round(time.Millisecond))
}

// TestSimStalledOwnerEndsWithOneOwner: an owner whose heartbeats stop
// while it stays alive (a stall, a filter) is taken over by its heirs,
// and the cluster comes back to one owner per IP: at once when its
// heartbeat is heard again, and, while it is never heard, once the ring
// has held it alive for its own detection bound. The owner is told it was
// accused, and announces its IPs again.
func TestSimStalledOwnerEndsWithOneOwner(t *testing.T) {
	s, takeovers := heirSim(t)
	victim := "n3"
	s.mu.Lock()
	nd := s.running[victim]
	s.mu.Unlock()
	mine := s.ownedBy(victim)
	if len(mine) == 0 {
		t.Fatalf("%s owns nothing", victim)
	}
	takenOver := func() error {
		for a, ns := range s.ledger.owners() {
			if slices.Contains(mine, a) && len(ns) > 1 {
				return nil
			}
		}
		return fmt.Errorf("none of %v has a second owner: %v", mine, s.ledger.owners())
	}

	// 1. Heard again: one owner per IP soon after.
	nd.hb.PauseSending(true)
	s.waitFor(5*time.Second, "an heir takes "+victim+"'s IPs", takenOver)
	accused := nd.ann.reassertCount()
	nd.hb.PauseSending(false)
	back := s.waitConverged(5*time.Second, victim+" heard again")
	t.Logf("heartbeat resumed: one owner per IP after %v", back.Round(time.Millisecond))
	if accused == 0 && nd.ann.reassertCount() == 0 {
		t.Errorf("%s was never told a peer took it for lost", victim)
	}
	var hb int
	for _, n := range s.runningNames() {
		for _, to := range takeovers(n) {
			if to.Reason == TakeoverHeartbeat && slices.Contains(to.From, victim) {
				hb++
			}
		}
	}
	if hb == 0 {
		t.Errorf("no takeover from %s by heartbeat", victim)
	}

	// 2. Never heard again while the ring holds it alive: the ring wins
	// after its bound; the IPs end with one owner each, and the victim is
	// in the ring throughout.
	mine = s.ownedBy(victim)
	if len(mine) == 0 {
		t.Fatalf("%s owns nothing after it came back", victim)
	}
	nd.hb.PauseSending(true)
	defer nd.hb.PauseSending(false)
	s.waitFor(5*time.Second, "an heir takes "+victim+"'s IPs again", takenOver)
	bound := gossip.DetectionBound(gossip.ProfileFast, 3)
	settled := s.waitConverged(bound+3*time.Second, "the ring overrules the heartbeat")
	t.Logf("heartbeat still silent: one owner per IP %v after the takeover (the ring's bound: %v)", settled.Round(time.Millisecond), bound)
	for _, n := range s.runningNames() {
		if n == victim {
			continue
		}
		s.mu.Lock()
		r := s.running[n].ring
		s.mu.Unlock()
		for _, m := range r.Members() {
			if m.Name == victim && !m.Alive {
				t.Errorf("%s's ring holds %s %s: the test wants a live owner", n, victim, m.State)
			}
		}
	}
}
