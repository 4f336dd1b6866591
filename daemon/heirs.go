package daemon

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/hostlb/hostlb/gossip"
	"github.com/hostlb/hostlb/heartbeat"
)

// Heartbeat is the heirs' direct watch of owners (*heartbeat.Heart, issue
// 12): every owner sends a datagram to the heirs of its L2 IPs every 40 ms,
// and an heir that stops hearing one takes its IPs over at once, before
// memberlist declares it dead (≈ 0.5 s). Main builds it with its OnLoss,
// OnResume and OnAccused calling HeartbeatLost, HeartbeatResumed and
// HeartbeatAccused; the daemon runs it, and tells it after every pass whom
// to send to and whom to watch.
type Heartbeat interface {
	Run(ctx context.Context) error
	SetTargets(targets map[string]netip.AddrPort)
	SetWatched(watched map[string]netip.AddrPort)
	SetKeys(keys [][]byte) error
}

var _ Heartbeat = (*heartbeat.Heart)(nil)

// HeartbeatAddr is where the heartbeat of a node with cfg listens: beside
// the gossip port (heartbeat.AddrFor) in the fast profile, none (the zero
// AddrPort) in lan and wan, which keep memberlist-only timing.
func HeartbeatAddr(bind netip.AddrPort, profile string) netip.AddrPort {
	if profile != "" && profile != gossip.ProfileFast {
		return netip.AddrPort{}
	}
	return heartbeat.AddrFor(bind)
}

// heirState is what the heartbeat told the daemon. Guarded by Daemon.mu.
type heirState struct {
	// lost are the members the heartbeat lost, with when: placement takes
	// them as down (they are out of every up set, like a dead member) until
	// the heartbeat hears them again, the ring declares them dead or gone,
	// or the ring has held them alive for its own worst-case detection
	// time since (gossip.DetectionBound): then the ring is right, the
	// heartbeat's path is what failed, and they are up again.
	lost map[string]time.Time
	// overruled are lost members the ring overruled; logged once each.
	overruled map[string]bool
	// targets and watched are what the Heart was last given.
	targets, watched map[string]netip.AddrPort
}

// HeartbeatLost is the Heart's OnLoss: node, which this node is heir to,
// fell silent. The next pass, at once, places as if it were dead.
func (d *Daemon) HeartbeatLost(node string) {
	d.mu.Lock()
	hs := &d.heirs
	_, had := hs.lost[node]
	if !had {
		if hs.lost == nil {
			hs.lost = map[string]time.Time{}
		}
		hs.lost[node] = time.Now()
		delete(hs.overruled, node)
	}
	d.mu.Unlock()
	if !had {
		d.log.Info("heartbeat lost; taking its IPs over before the ring decides", "peer", node)
		d.loop.Trigger("heartbeat: " + node + " lost")
	}
}

// HeartbeatResumed is the Heart's OnResume: a lost node is heard again
// (it was stalled, or its datagrams were lost). Placement counts it again
// at once, which gives its IPs back (make-before-break, like any move).
func (d *Daemon) HeartbeatResumed(node string) {
	d.mu.Lock()
	_, had := d.heirs.lost[node]
	delete(d.heirs.lost, node)
	d.mu.Unlock()
	if had {
		d.log.Info("heartbeat heard again; giving its IPs back", "peer", node)
		d.loop.Trigger("heartbeat: " + node + " resumed")
	}
}

// HeartbeatAccused is the Heart's OnAccused: node declared this one lost
// and may have pointed the neighbours' caches at itself. This node is
// alive, so it sends its takeover burst again for every IP it answers;
// the accuser gives the IPs back on hearing this node's heartbeat.
func (d *Daemon) HeartbeatAccused(node string) {
	l2, ok := d.opts.L2.(interface{ Reassert() int })
	n := 0
	if ok {
		n = l2.Reassert()
	}
	d.log.Warn("a peer's heartbeat lost this node; announcing its IPs again", "peer", node, "addrs", n)
}

// overrideLost takes the members the heartbeat lost out of v's up set, and
// ends the override of those the ring has decided about: dead or gone
// (nothing to do any more), or alive for longer than the ring's own
// detection bound (the ring is right). It returns when the next override
// ends, for a pass then. Called by the reconcile loop.
func (d *Daemon) overrideLost(v *clusterView, profile string, now time.Time) (next time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	hs := &d.heirs
	if len(hs.lost) == 0 {
		return time.Time{}
	}
	bound := gossip.DetectionBound(profile, v.alive())
	for _, name := range slices.Sorted(maps.Keys(hs.lost)) {
		at := hs.lost[name]
		i := slices.IndexFunc(v.members, func(m gossip.Member) bool { return m.Name == name })
		switch {
		case i < 0 || !v.members[i].Alive:
			// The ring agrees (dead), or the node left: the override is
			// the ring's verdict now.
			delete(hs.lost, name)
			continue
		case now.Sub(at) >= bound:
			delete(hs.lost, name)
			if hs.overruled == nil {
				hs.overruled = map[string]bool{}
			}
			if !hs.overruled[name] {
				hs.overruled[name] = true
				d.log.Warn("heartbeat still lost but the ring holds the node alive; trusting the ring (is UDP to its heartbeat port blocked?)",
					"peer", name, "lost_for", now.Sub(at).Round(time.Millisecond), "bound", bound)
			}
			continue
		}
		if v.lost == nil {
			v.lost = map[string]time.Time{}
		}
		v.lost[name] = at
		delete(v.up, name)
		if end := at.Add(bound); next.IsZero() || end.Before(next) {
			next = end
		}
	}
	return next
}

// heartbeatDuties tells the Heart, after placement, whom this node sends
// heartbeats to (the heirs of the L2 IPs it owns) and whom it watches (the
// owners of the IPs it is heir to, and the nodes it holds lost, whose
// resumption it must hear). Members without a heartbeat port (lan and wan
// profiles, earlier builds) are left out: memberlist alone covers them.
func (d *Daemon) heartbeatDuties(v clusterView, ps []placedIP, heirs map[netip.Addr]string) {
	hb := d.opts.Heartbeat
	if hb == nil {
		return
	}
	owners := make(map[netip.Addr]string, len(heirs))
	for _, p := range ps {
		if _, ok := heirs[p.Addr]; ok && len(p.Owners) == 1 {
			owners[p.Addr] = p.Owners[0]
		}
	}
	targets, watched := heartbeat.Duties(v.self, owners, func(a netip.Addr) string { return heirs[a] })
	for n := range v.lost {
		watched = append(watched, n)
	}
	addr := make(map[string]netip.AddrPort, len(v.members))
	for _, m := range v.members {
		if m.Alive && m.Meta.HeartbeatPort != 0 && m.Name != v.self {
			addr[m.Name] = netip.AddrPortFrom(m.Addr.Addr(), m.Meta.HeartbeatPort)
		}
	}
	pick := func(names []string) map[string]netip.AddrPort {
		out := make(map[string]netip.AddrPort, len(names))
		for _, n := range names {
			if ap, ok := addr[n]; ok {
				out[n] = ap
			}
		}
		return out
	}
	t, w := pick(targets), pick(watched)
	d.mu.Lock()
	hs := &d.heirs
	tc, wc := !maps.Equal(hs.targets, t), !maps.Equal(hs.watched, w)
	hs.targets, hs.watched = t, w
	d.mu.Unlock()
	if tc {
		hb.SetTargets(t)
	}
	if wc {
		hb.SetWatched(w)
		d.log.Debug("heartbeat duties", "targets", fmt.Sprint(slices.Sorted(maps.Keys(t))), "watched", fmt.Sprint(slices.Sorted(maps.Keys(w))))
	}
}
