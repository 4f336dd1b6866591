package daemon

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// recObserver records what an Observer is told.
type recObserver struct {
	mu        sync.Mutex
	passes    int
	takeovers []Takeover
}

func (o *recObserver) Pass(time.Duration, error) {
	o.mu.Lock()
	o.passes++
	o.mu.Unlock()
}

func (o *recObserver) Takeover(t Takeover) {
	o.mu.Lock()
	o.takeovers = append(o.takeovers, t)
	o.mu.Unlock()
}

func (o *recObserver) snapshot() (int, []Takeover) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.passes, slices.Clone(o.takeovers)
}

// A crash makes the nodes that take the dead node's IPs tell their
// Observer one takeover per IP, "dead", from the dead node, timed from the
// ring's dead event; a graceful stop makes them "left"; and nothing else
// is taken over meanwhile.
func TestSimObserverTakeovers(t *testing.T) {
	var mu sync.Mutex
	obs := map[string]*recObserver{}
	s := newSimFull(t, 3, false, nil, nil, func(node string, opts *Options) {
		mu.Lock()
		defer mu.Unlock()
		if obs[node] == nil {
			obs[node] = &recObserver{}
		}
		opts.Observer = obs[node]
	})
	// mark returns how many takeovers each node was told of so far: a
	// cluster starting moves IPs too, as each node joins and takes its
	// preferred IPs back from the first one (TakeoverMoved).
	mark := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for n, o := range obs {
			passes, tos := o.snapshot()
			if passes == 0 {
				t.Errorf("%s: no pass observed", n)
			}
			out[n] = len(tos)
		}
		return out
	}
	check := func(victim, reason string, lost []netip.Addr, before time.Time, seen map[string]int) {
		t.Helper()
		s.waitFor(10*time.Second, "takeovers of "+victim+"'s IPs", func() error {
			mu.Lock()
			defer mu.Unlock()
			got := map[netip.Addr]Takeover{}
			for n, o := range obs {
				_, tos := o.snapshot()
				for _, to := range tos[seen[n]:] {
					if _, dup := got[to.Addr]; dup {
						return fmt.Errorf("%s taken over twice", to.Addr)
					}
					if owner := s.ledger.owners()[to.Addr]; !slices.Equal(owner, []string{n}) {
						return fmt.Errorf("%s told of a takeover of %s, which %v answers", n, to.Addr, owner)
					}
					got[to.Addr] = to
				}
			}
			for _, a := range lost {
				to, ok := got[a]
				switch {
				case !ok:
					return fmt.Errorf("no takeover of %s yet", a)
				case !slices.Equal(to.From, []string{victim}) || to.Reason != reason:
					return fmt.Errorf("%s: from %v, reason %q; want %s, %q", a, to.From, to.Reason, victim, reason)
				case to.Took <= 0 || to.Took > time.Since(before):
					return fmt.Errorf("%s: took %v, want within the %v since the fault", a, to.Took, time.Since(before))
				case to.VIP == "":
					return fmt.Errorf("%s: no VIP name", a)
				}
			}
			if len(got) != len(lost) {
				return fmt.Errorf("%d takeovers, want %d, of %s's IPs (%v)", len(got), len(lost), victim, got)
			}
			return nil
		})
	}
	lost, seen, at := s.ownedBy("n3"), mark(), time.Now()
	s.crash("n3")
	check("n3", TakeoverDead, lost, at, seen)
	lost, seen, at = s.ownedBy("n2"), mark(), time.Now()
	s.stop("n2")
	check("n2", TakeoverLeft, lost, at, seen)
}
