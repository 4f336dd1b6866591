package daemon

import (
	"net/netip"
	"slices"
	"time"

	"github.com/hostlb/hostlb/gossip"
	"github.com/hostlb/hostlb/netif"
)

// Observer is told about what the daemon does that a metric counts and the
// State cannot show after the fact (daemon/metrics implements it). Its
// methods run on the reconcile loop: they must be cheap and never block.
type Observer interface {
	// Pass is one reconcile pass: how long it ran and its error, nil when
	// it succeeded. A pass cut short by the daemon stopping is not told.
	Pass(took time.Duration, err error)
	// Takeover is this node starting to answer an L2 IP that another node
	// held (see Takeover).
	Takeover(Takeover)
}

// Why a node took an IP over (Takeover.Reason).
const (
	// TakeoverDead: the ring declared the previous owner dead (a crash,
	// a cut link).
	TakeoverDead = "dead"
	// TakeoverLeft: the previous owner left the ring or is draining
	// (SIGTERM: a graceful handover).
	TakeoverLeft = "left"
	// TakeoverMoved: the previous owner is alive and placement moved the
	// IP: its preferred node came back, its health check fails there, or
	// it cannot announce the IP.
	TakeoverMoved = "moved"
	// TakeoverHeartbeat: this node is heir to the previous owner and its
	// heartbeat fell silent; the ring has not declared it dead (yet).
	TakeoverHeartbeat = "heartbeat"
)

// Takeover is one L2 IP this node took over. A takeover happens on the node
// that starts answering an IP whose owner, in this node's view, was another
// node: the previous owners its placement recorded, else (a node that just
// joined) the members whose gossiped announced set held the IP. An IP new
// to the cluster, or one nobody held, is no takeover.
type Takeover struct {
	Addr   netip.Addr
	VIP    string
	From   []string // the previous owners
	Reason string   // TakeoverDead, TakeoverLeft, TakeoverMoved or TakeoverHeartbeat
	// Took runs from the moment this node's view lost the previous
	// owner to the end of the L2 sync that made this node answer the IP
	// (its responder answers from then on; the gratuitous ARP/NA burst
	// starts right after, in the background). The moment of loss is the
	// ring's dead or left event for that owner as this node received it,
	// the heartbeat's loss of it (TakeoverHeartbeat), or, when the owner is alive (draining, or TakeoverMoved), the pass
	// in which this node's placement moved the IP. What comes before the
	// ring's event — the probes and the suspicion timeout that detect a
	// crash — is not in it.
	Took time.Duration
}

// noteTakeovers tells the Observer about every L2 IP this pass made this
// node answer that another node held. before and after are the L2
// output's Status before and after the pass's Sync; end is when the Sync
// returned. Called by apply, with a ring only.
func (d *Daemon) noteTakeovers(before, after []netif.L2Status, end time.Time) {
	obs := d.opts.Observer
	if obs == nil || d.opts.Ring == nil {
		return
	}
	was := map[netip.Addr]bool{}
	for _, s := range before {
		for _, a := range s.Addrs {
			was[a] = true
		}
	}
	var fresh []netip.Addr
	for _, s := range after {
		for _, a := range s.Addrs {
			if !was[a] {
				was[a] = true
				fresh = append(fresh, a)
			}
		}
	}
	if len(fresh) == 0 {
		return
	}
	type took struct {
		rec ownersRecord
		vip string
	}
	d.mu.Lock()
	view := d.pass.view
	recs := make(map[netip.Addr]took, len(fresh))
	for _, a := range fresh {
		if r, ok := d.pass.owners[a]; ok {
			recs[a] = took{rec: *r, vip: d.desired[a].VIP}
		}
	}
	d.mu.Unlock()
	slices.SortFunc(fresh, netip.Addr.Compare)
	for _, a := range fresh {
		t, ok := recs[a]
		if !ok || !slices.Contains(t.rec.owners, view.self) || slices.Contains(t.rec.prev, view.self) {
			continue // not placed here (a hold), or this node held it already
		}
		from := slices.Clone(t.rec.prev)
		if len(from) == 0 {
			for _, n := range view.announcers[a] {
				if n != view.self {
					from = append(from, n)
				}
			}
		}
		if len(from) == 0 {
			continue // nobody held it: a new IP, or a cluster starting
		}
		reason, lost := TakeoverMoved, t.rec.since
		for _, m := range view.members {
			if !slices.Contains(from, m.Name) {
				continue
			}
			switch {
			case m.State == gossip.StateDead:
				reason, lost = TakeoverDead, m.Since
			case m.State == gossip.StateLeft:
				reason, lost = TakeoverLeft, m.Since
			case !view.lost[m.Name].IsZero():
				reason, lost = TakeoverHeartbeat, view.lost[m.Name]
			case reason == TakeoverMoved && (m.Meta.Leaving || m.Meta.Health == gossip.HealthDraining):
				reason = TakeoverLeft
			}
		}
		obs.Takeover(Takeover{Addr: a, VIP: t.vip, From: from, Reason: reason, Took: max(0, end.Sub(lost))})
	}
}
