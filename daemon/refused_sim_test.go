package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSimRefusedNodeTakesNothing: a daemon started with a member's name
// (a cloned host) is refused by the ring: it takes no IP, not even after
// the settle timeout that lets a node without reachable seeds serve alone;
// it is READY and its STATUS says why; the members keep their IPs.
func TestSimRefusedNodeTakesNothing(t *testing.T) {
	s := newSim(t, 3)
	twin := s.startAs("n2", 4, "n2-twin")
	var passesThen uint64
	s.waitFor(15*time.Second, "the twin refused, and a pass after its settle timeout", func() error {
		d := twin.d
		d.mu.Lock()
		line, readyAt, ready := d.lastLine, d.ring.readyAt, d.ready
		d.mu.Unlock()
		if !ready || !strings.Contains(line, "REFUSED by the gossip ring") || !strings.Contains(line, `"n2"`) {
			return fmt.Errorf("ready %v, status %q", ready, line)
		}
		passes, _ := d.loop.Stats()
		if readyAt.IsZero() || time.Since(readyAt) <= d.opts.SettleTimeout {
			passesThen = passes
			return fmt.Errorf("settle timeout not passed yet")
		}
		if passesThen == 0 {
			passesThen = passes
		}
		if passes <= passesThen {
			return fmt.Errorf("no pass since the settle timeout passed")
		}
		return nil
	})
	twin.ann.mu.Lock()
	most := twin.ann.most
	twin.ann.mu.Unlock()
	if most != 0 {
		t.Errorf("the refused twin answered for %d addresses at once", most)
	}
	if err := s.check([]string{"n1", "n2", "n3"}); err != nil {
		t.Errorf("the members' IPs: %v", err)
	}
}
