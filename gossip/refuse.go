package gossip

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// A ring may refuse a node: its seeds answer, but they cannot read what it
// sends (another key: they answer with a message it cannot decrypt, or
// drop the stream), or another member already has its name. That is not
// the same as reaching nobody, and the daemon treats them differently: a
// node that reaches no seed (the first node of a new cluster, or one cut
// off by a firewall) serves alone after a short wait; a refused node takes
// nothing until the refusal ends (Refused).

// nameConflictFor is how long a report that another member has this
// node's name keeps the node refused: the other node's alive messages
// arrive when it gossips a change and at every push-pull (30 s with the
// lan profile), so the window spans two of them.
const nameConflictFor = time.Minute

type refusalState struct {
	mu       sync.Mutex
	join     string    // why the last join round was refused ("" = it was not)
	joinAt   time.Time // when join was set
	conflict string    // the last name conflict
	conflAt  time.Time
	now      func() time.Time // tests
}

func (s *refusalState) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// Refused says why the ring refuses this node now, or "" when it does not:
// the last round of joins, made while the node was alone, reached seeds
// that refused it and none that took it; or, within the last minute,
// another member announced this node's name from another address.
func (r *Ring) Refused() string {
	s := &r.refusal
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conflict != "" && s.clock().Sub(s.conflAt) < nameConflictFor {
		return s.conflict
	}
	return s.join
}

// noteJoins records the outcome of a round of joins made while alone:
// refused when no target took the node and at least one refused it (the
// others were unreachable).
func (r *Ring) noteJoins(alone bool, joined []string, failed map[string]error) {
	s := &r.refusal
	why := ""
	if alone && len(joined) == 0 {
		var refusals []string
		for t, err := range failed {
			if reason, ok := refusedBy(err); ok {
				refusals = append(refusals, t+": "+reason)
			}
		}
		if len(refusals) > 0 {
			slices.Sort(refusals)
			why = "seeds refuse this node (" + strings.Join(refusals, "; ") + ")"
		}
	}
	s.mu.Lock()
	if why != "" && s.join == "" {
		s.joinAt = s.clock()
	}
	s.join = why
	s.mu.Unlock()
}

// refusedBy tells a refusal from an unreachable peer. A dial that fails
// (nothing listens, no route, a timeout) is unreachable; a peer that
// answers with what this node cannot decrypt, or closes the stream on it
// (another key, another cluster's label), refuses.
func refusedBy(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "decrypt"):
		return "they use another gossip key (no installed key decrypts their answer)", true
	case strings.Contains(msg, "label"):
		return "they belong to another cluster (gossip label)", true
	case strings.Contains(msg, "dial"), strings.Contains(msg, "connection refused"),
		strings.Contains(msg, "i/o timeout"), strings.Contains(msg, "no route to host"),
		strings.Contains(msg, "network is unreachable"), strings.Contains(msg, "unreachable"):
		return "", false
	case strings.Contains(msg, "EOF"), strings.Contains(msg, "reset by peer"), strings.Contains(msg, "broken pipe"):
		return "they close the connection (another gossip key or cluster label?)", true
	}
	return "", false
}

// conflicts is the Ring as memberlist's ConflictDelegate.
type conflicts Ring

var _ memberlist.ConflictDelegate = (*conflicts)(nil)

// NotifyConflict is called when an alive message names a known node at
// another address. When that node is this one, another member uses this
// node's name.
func (c *conflicts) NotifyConflict(existing, other *memberlist.Node) {
	r := (*Ring)(c)
	if existing.Name != r.cfg.NodeName {
		return
	}
	s := &r.refusal
	s.mu.Lock()
	s.conflict = fmt.Sprintf("another gossip member uses this node's name %q, from %s", existing.Name, other.Address())
	s.conflAt = s.clock()
	s.mu.Unlock()
	// An event, so that the daemon looks at Refused now.
	r.mu.Lock()
	r.pending = append(r.pending, Event{Kind: EventConflict, Node: other.Name, Addr: nodeAddr(other), Time: time.Now()})
	r.mu.Unlock()
	r.wake()
}
