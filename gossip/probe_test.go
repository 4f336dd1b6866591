package gossip

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// probeRec records what one node's OnProbe is told.
type probeRec struct {
	mu   sync.Mutex
	seen map[string]int
	bad  []string
}

func (r *probeRec) note(node string, rtt time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rtt < 0 || rtt > time.Second {
		r.bad = append(r.bad, fmt.Sprintf("%s in %v", node, rtt))
	}
	r.seen[node]++
}

// OnProbe is told of every probe of another member that was acked, with
// its round trip, and never of the node itself.
func TestOnProbeReportsRoundTrips(t *testing.T) {
	var recs []*probeRec // recs[i] is node n(i+1)'s
	newCluster(t, 3, func(c *Config) {
		r := &probeRec{seen: map[string]int{}}
		recs = append(recs, r)
		c.OnProbe = r.note
	})
	eventually(t, 10*time.Second, "every node probed both others", func() error {
		for i, r := range recs {
			self := fmt.Sprintf("n%d", i+1)
			r.mu.Lock()
			seen, bad := len(r.seen), r.bad
			_, probedSelf := r.seen[self]
			r.mu.Unlock()
			switch {
			case len(bad) > 0:
				t.Fatalf("%s: implausible round trips: %v", self, bad)
			case probedSelf:
				t.Fatalf("%s was told of a probe of itself", self)
			case seen != 2:
				return fmt.Errorf("%s was told of probes of %d members, want 2", self, seen)
			}
		}
		return nil
	})
}
