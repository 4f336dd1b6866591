package daemon

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hostlb/hostlb/netif"
)

// # Wire conflicts
//
// The L2 output fences on the segment itself (netif/fence.go, docs/fencing.md): an owner that
// sees another hostlb node outside its ring answer for one of its IPs
// settles it with that node with no gossip (the larger ring keeps the IP,
// then the lower MAC), and a
// foreign host answering for a VIP is reported, not fought. The daemon
// gives the responders the ring's view (IsPeer: a claim from a live member
// is a handover in flight, which placement settles), logs every conflict
// with VIP, address, both MACs and the other node, re-runs a pass when a
// yield starts or ends (the announced set changed), and shows the current
// conflicts in STATUS.

// fenceState is the ring's live members as of the last membership change,
// read lock-free by the responders' packet path.
type fenceState struct {
	peers atomic.Pointer[map[string]bool]

	mu     sync.Mutex
	events []WireEvent // the last wireHistory, oldest first
	counts map[netif.ConflictAction]uint64
}

// WireEvent is a conflict event seen on the wire, with its time.
type WireEvent struct {
	At time.Time
	netif.ConflictEvent
}

// note keeps ev in the history and counts it.
func (f *fenceState) note(ev netif.ConflictEvent, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts == nil {
		f.counts = map[netif.ConflictAction]uint64{}
	}
	f.counts[ev.Action]++
	if len(f.events) == wireHistory {
		f.events = slices.Delete(f.events, 0, 1)
	}
	f.events = append(f.events, WireEvent{At: now, ConflictEvent: ev})
}

// history returns the kept events and the counts by action.
func (f *fenceState) history() ([]WireEvent, map[netif.ConflictAction]uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.events), maps.Clone(f.counts)
}

// FenceOptions is what main hands the L2 output to turn fencing on. d may
// be nil until daemon.New returns: responders only open in a pass.
func FenceOptions(node string, d **Daemon) *netif.L2Fence {
	return &netif.L2Fence{
		Node:     node,
		IsPeer:   func(n string) bool { return (*d).IsPeer(n) },
		RingSize: func() int { return (*d).RingSize() },
		OnEvent:  func(ev netif.ConflictEvent) { (*d).WireConflict(ev) },
	}
}

// IsPeer reports whether node is another live member of this node's ring
// (alive or suspected), as of the last membership change.
func (d *Daemon) IsPeer(node string) bool {
	p := d.fence.peers.Load()
	if p == nil {
		d.refreshPeers()
		p = d.fence.peers.Load()
	}
	return (*p)[node]
}

// RingSize is the number of live members of this node's ring, itself
// included, as of the last membership change.
func (d *Daemon) RingSize() int {
	p := d.fence.peers.Load()
	if p == nil {
		d.refreshPeers()
		p = d.fence.peers.Load()
	}
	return len(*p) + 1
}

// refreshPeers re-reads the ring's live members; GossipChanged calls it
// before the pass a membership change triggers, so that pass's Sync
// re-checks conflicts against the new ring.
func (d *Daemon) refreshPeers() {
	peers := map[string]bool{}
	if d.opts.Ring != nil {
		self := d.config().Node.Name
		for _, m := range d.opts.Ring.Members() {
			if m.Alive && m.Name != self {
				peers[m.Name] = true
			}
		}
	}
	d.fence.peers.Store(&peers)
}

// WireConflict logs a conflict change and, when this node's answers
// changed, asks for a pass so the ring hears the new announced set.
func (d *Daemon) WireConflict(ev netif.ConflictEvent) {
	d.fence.note(ev, time.Now())
	args := []any{"vip", ev.VIP, "addr", ev.Addr, "iface", ev.Iface,
		"our_mac", ev.OurMAC.String(), "their_mac", ev.TheirMAC.String()}
	if ev.Node != "" {
		args = append(args, "other_node", ev.Node)
	}
	switch ev.Action {
	case netif.ConflictDefending:
		d.log.Warn("CONFLICT: another hostlb node outside this node's ring answers for this IP; "+
			"this node keeps it (larger ring, or the same size and a lower MAC), the other yields", args...)
	case netif.ConflictYielding:
		d.log.Warn("CONFLICT: another hostlb node outside this node's ring answers for this IP; "+
			"yielding it to that node (its ring is larger, or the same size with a lower MAC) "+
			"until it goes quiet or joins the ring", args...)
	case netif.ConflictPeerYielded:
		d.log.Warn("CONFLICT: the other hostlb node yielded this IP to this node", args...)
	case netif.ConflictForeign:
		d.log.Warn("CONFLICT: a host that is not hostlb answers for this IP; not fighting it — "+
			"find the host by its MAC and remove the address there", args...)
	case netif.ConflictResumed:
		d.log.Info("conflict over: answering for this IP again", args...)
	case netif.ConflictEnded:
		d.log.Info("conflict over: the other answerer went quiet or joined the ring", args...)
	}
	if ev.Action == netif.ConflictYielding || ev.Action == netif.ConflictResumed {
		d.loop.Trigger("wire conflict")
	}
}

// wireConflictSummary is the STATUS part for current wire conflicts.
func (d *Daemon) wireConflictSummary() string {
	l2, ok := d.opts.L2.(interface {
		Conflicts() map[string][]netif.Conflict
	})
	if !ok {
		return ""
	}
	n, yielded, foreign := 0, 0, 0
	for _, cs := range l2.Conflicts() {
		for _, c := range cs {
			n++
			if c.Yielded {
				yielded++
			}
			if c.Node == "" {
				foreign++
			}
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; CONFLICT on the wire: %d (%d yielded to other nodes, %d foreign hosts)", n, yielded, foreign)
}
