package daemon

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
	"github.com/hostlb/hostlb/gossip"
	"github.com/hostlb/hostlb/netif"
)

// Defaults of the ownership timings (Options).
const (
	defaultHandover = 3 * time.Second
	defaultSettle   = 2 * time.Second
	defaultGrace    = 2 * time.Second
)

// ringState is what the daemon tracks about the ring between passes. It is
// guarded by Daemon.mu, but only the reconcile loop writes it.
type ringState struct {
	readyAt   time.Time // when the first pass saw the ring started
	settled   bool      // this node has told the ring it is ready
	draining  bool      // SIGTERM: handing every IP over
	labels    map[string]string
	join      []string
	unhealthy []string  // the failing VIPs last gossiped
	metaErr   string    // the last metadata error logged
	refused   string    // why the ring refuses this node ("" = it does not)
	refusedAt time.Time // when that was last logged

	holding  map[netip.Addr]time.Time // lost IPs kept until their next owner answers
	episodes map[netip.Addr]*episode  // disagreements seen, by address
	counts   struct{ alive, nodes, conflicts, unannounced int }
}

// episode is one disagreement about one address, logged once when it has
// lasted the grace period.
type episode struct {
	conflict bool
	since    time.Time
	logged   bool
}

// clusterDesired is the ring half of a pass: it publishes this node's
// metadata, waits (without blocking) until the node has settled into the
// ring, places every group and returns what this node announces. ok
// is false while the node has not settled: it then announces nothing and
// the pass is not the first full one (READY=1 waits).
func (d *Daemon) clusterDesired(ctx context.Context, cfg *config.Config, groups []reconcile.Group, unhealthy []string) (next reconcile.Desired, ps []placedIP, ok bool, err error) {
	ring := d.opts.Ring
	select {
	case <-ring.Ready():
	case <-ctx.Done():
		return nil, nil, false, ctx.Err()
	}
	now := time.Now()
	d.mu.Lock()
	rs := &d.ring
	if rs.readyAt.IsZero() {
		rs.readyAt = now
	}
	d.mu.Unlock()
	d.publishMeta(cfg)
	d.publishExclusions(cfg, groups, unhealthy, now)

	view := newClusterView(cfg.Node.Name, ring.Members())
	why := ring.Refused()
	d.noteRefused(cfg, why, rs.settled, now)
	if why != "" {
		// A refusal ends without an event of its own: look again.
		d.wakeAt(now.Add(refusedRecheck), "refused: look again")
	}
	if !rs.settled && why != "" {
		// Seeds that answer but refuse this node are not an empty
		// network: taking every IP alone would make two nodes answer
		// them. Nothing is announced, however long it lasts.
		return reconcile.Desired{}, nil, false, nil
	}
	if !rs.settled {
		seeds := len(d.seeds(cfg))
		if d.opts.Kube != nil && !isClosed(d.opts.Kube.Synced()) {
			// The Nodes (the seeds of a node without a join list) are not
			// known yet: a restarted node must not take every IP alone
			// for the moment before its caches sync.
			seeds++
		}
		if !settled(view, seeds) && now.Sub(rs.readyAt) < d.opts.SettleTimeout {
			d.wakeAt(rs.readyAt.Add(d.opts.SettleTimeout), "settle timeout")
			return reconcile.Desired{}, nil, false, nil
		}
		if err := ring.SetHealth(gossip.HealthOK); err != nil {
			return nil, nil, false, fmt.Errorf("tell the ring this node is ready: %w", err)
		}
		d.mu.Lock()
		rs.settled = true
		d.mu.Unlock()
		d.log.Info("joined the gossip ring; taking IPs", "node", cfg.Node.Name,
			"alive", view.alive(), "members", len(view.members), "waited", now.Sub(rs.readyAt).Round(time.Millisecond))
		view = newClusterView(cfg.Node.Name, ring.Members()) // with this node up
	}
	if end := d.overrideLost(&view, cfg.Gossip.Profile, now); !end.IsZero() {
		d.wakeAt(end, "heartbeat: the ring's detection bound")
	}

	var heirs map[netip.Addr]string
	if d.opts.Heartbeat != nil {
		heirs = map[netip.Addr]string{}
	}
	ps = placeGroupsHeirs(view, groups, heirs)
	d.heartbeatDuties(view, ps, heirs)
	d.recordPass(view, ps, groups, now)
	next = ownedDesired(cfg.Node.Name, ps)
	d.mu.Lock()
	prev := d.desired
	draining := rs.draining
	if rs.holding == nil {
		rs.holding = map[netip.Addr]time.Time{}
	}
	expired := holdLost(view, prev, next, ps, rs.holding, now, d.opts.HandoverTimeout)
	var wake time.Time
	for _, since := range rs.holding {
		if at := since.Add(d.opts.HandoverTimeout); wake.IsZero() || at.Before(wake) {
			wake = at
		}
	}
	d.mu.Unlock()
	if !wake.IsZero() {
		d.wakeAt(wake, "handover timeout")
	}
	if len(expired) > 0 {
		d.log.Warn("no other node announced these IPs in time; stopping anyway", "node", cfg.Node.Name,
			"addrs", fmt.Sprint(expired), "waited", d.opts.HandoverTimeout, "draining", draining)
	}
	return next, ps, true, nil
}

// Refusals are re-read this often, and logged again this often while they
// last.
const (
	refusedRecheck = time.Second
	refusedLogEach = 30 * time.Second
)

// noteRefused logs a refusal by the ring when it starts, every 30 s while
// it lasts, and when it ends. A node not settled yet announces nothing
// while refused; one that is settled (it joined first: the refusal is
// another node claiming its name) keeps serving and says so.
func (d *Daemon) noteRefused(cfg *config.Config, why string, settled bool, now time.Time) {
	d.mu.Lock()
	rs := &d.ring
	was := rs.refused
	logIt := why != "" && (why != was || now.Sub(rs.refusedAt) >= refusedLogEach)
	rs.refused = why
	if logIt {
		rs.refusedAt = now
	}
	d.mu.Unlock()
	switch {
	case logIt && !settled:
		d.log.Error("the gossip ring refuses this node: announcing nothing until it is let in", "node", cfg.Node.Name,
			"why", why, "fix", "give every node the same [gossip] key file and cluster, and each node its own [node] name")
	case logIt:
		d.log.Warn("the gossip ring reports a problem with this node; it keeps serving, as it joined first",
			"node", cfg.Node.Name, "why", why)
	case why == "" && was != "":
		d.log.Info("the gossip ring no longer refuses this node", "node", cfg.Node.Name)
	}
}

// seeds are the gossip seeds: [gossip] join, and in Kubernetes mode the
// other Nodes' InternalIPs at this node's gossip port (every node listens
// on the same port), so a new node needs no seed list of its own; only
// those of the family the gossip socket is bound to (an unspecified IPv6
// bind takes both).
func (d *Daemon) seeds(cfg *config.Config) []string {
	out := slices.Clone(cfg.Gossip.Join)
	if d.opts.Kube != nil {
		bind := cfg.Gossip.Bind.Addr()
		port := cfg.Gossip.Bind.Port()
		for _, a := range d.opts.Kube.Seeds() {
			if (bind.Is4() && !a.Is4()) || (bind.Is6() && !bind.IsUnspecified() && a.Is4()) {
				continue
			}
			s := netip.AddrPortFrom(a, port).String()
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// publishMeta gossips what changed in this node's labels and seeds;
// level-triggered, so a reload needs nothing else.
func (d *Daemon) publishMeta(cfg *config.Config) {
	ring := d.opts.Ring
	d.mu.Lock()
	rs := &d.ring
	labelsChanged := rs.labels == nil || !maps.Equal(rs.labels, cfg.Node.Labels)
	seeds := d.seeds(cfg)
	joinChanged := rs.join == nil || !slices.Equal(rs.join, seeds)
	d.mu.Unlock()
	var errs []string
	if labelsChanged {
		if err := ring.SetLabels(cfg.Node.Labels); err != nil {
			errs = append(errs, err.Error())
		} else {
			d.mu.Lock()
			rs.labels = maps.Clone(cfg.Node.Labels)
			d.mu.Unlock()
		}
	}
	if joinChanged {
		ring.SetJoin(seeds)
		d.mu.Lock()
		rs.join = seeds
		d.mu.Unlock()
	}
	msg := strings.Join(errs, "; ")
	d.mu.Lock()
	same := msg == rs.metaErr
	rs.metaErr = msg
	d.mu.Unlock()
	if msg != "" && !same {
		d.log.Error("cannot gossip this node's metadata; peers see the previous labels", "err", msg)
	}
}

// announcedIPs tells the ring which IPs this node answers for now, after the
// L2 output applied the pass: what the L2 output reports, or, without one,
// the L2 part of the desired state.
func (d *Daemon) announcedIPs(next reconcile.Desired) []netip.Addr {
	var out []netip.Addr
	if d.opts.L2 != nil {
		for _, st := range d.opts.L2.Status() {
			out = append(out, st.Addrs...)
		}
	} else {
		for _, a := range next {
			if a.Mode == config.ModeL2 {
				out = append(out, a.Addr)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// checkDisagreements compares placement with what the ring says each node
// announces. An address with two or more announcers, or none while some
// node should announce it, for longer than the grace period is logged at
// warn once per episode (and its end at info); short overlaps and gaps are
// a handover or a failover in flight. It also keeps the STATUS counts.
func (d *Daemon) checkDisagreements(cfg *config.Config, ps []placedIP) {
	now := time.Now()
	view := newClusterView(cfg.Node.Name, d.opts.Ring.Members())
	cur := disagreements(view, ps)
	type logLine struct {
		dis      disagreement
		conflict bool
		resolved bool
		lasted   time.Duration
	}
	var lines []logLine
	var wake time.Time
	d.mu.Lock()
	rs := &d.ring
	if rs.episodes == nil {
		rs.episodes = map[netip.Addr]*episode{}
	}
	for a, e := range rs.episodes {
		dis, ok := cur[a]
		if ok && (len(dis.nodes) >= 2) == e.conflict {
			continue
		}
		if e.logged {
			lines = append(lines, logLine{dis: disagreement{addr: a}, conflict: e.conflict, resolved: true, lasted: now.Sub(e.since)})
		}
		delete(rs.episodes, a)
	}
	conflicts, unannounced := 0, 0
	for a, dis := range cur {
		e := rs.episodes[a]
		if e == nil {
			e = &episode{conflict: len(dis.nodes) >= 2, since: now}
			rs.episodes[a] = e
		}
		if !e.logged {
			if now.Sub(e.since) < d.opts.DisagreementGrace {
				if at := e.since.Add(d.opts.DisagreementGrace); wake.IsZero() || at.Before(wake) {
					wake = at
				}
				continue
			}
			e.logged = true
			lines = append(lines, logLine{dis: dis, conflict: e.conflict, lasted: now.Sub(e.since)})
		}
		if e.conflict {
			conflicts++
		} else {
			unannounced++
		}
	}
	rs.counts.alive, rs.counts.nodes = view.alive(), len(view.members)
	rs.counts.conflicts, rs.counts.unannounced = conflicts, unannounced
	d.mu.Unlock()
	if !wake.IsZero() {
		d.wakeAt(wake, "disagreement grace")
	}
	slices.SortFunc(lines, func(a, b logLine) int { return a.dis.addr.Compare(b.dis.addr) })
	for _, l := range lines {
		switch {
		case l.resolved:
			d.log.Info("IP ownership agrees again", "addr", l.dis.addr, "lasted", l.lasted.Round(time.Millisecond))
		case l.conflict:
			d.log.Warn("IP announced by several nodes", "vip", l.dis.vip, "addr", l.dis.addr,
				"nodes", strings.Join(l.dis.nodes, ","), "for", l.lasted.Round(time.Millisecond))
		default:
			d.log.Warn("IP announced by no node", "vip", l.dis.vip, "addr", l.dis.addr,
				"nodes", "", "for", l.lasted.Round(time.Millisecond))
		}
	}
}

// clusterSummary is the ring part of the STATUS line.
func (d *Daemon) clusterSummary() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.ring.counts
	if why := d.ring.refused; why != "" && !d.ring.settled {
		return "; REFUSED by the gossip ring, announcing nothing: " + why
	}
	return fmt.Sprintf("; cluster: %d of %d nodes alive, %d conflicts, %d unannounced",
		c.alive, c.nodes, c.conflicts, c.unannounced)
}

// wakeAt makes the loop run a pass at (or soon after) at, for conditions
// that change with time alone (settle and handover timeouts, the
// disagreement grace period). One timer: the earliest pending wake wins.
func (d *Daemon) wakeAt(at time.Time, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timerStopped {
		return
	}
	now := time.Now()
	if d.timer != nil && d.timerAt.After(now) && !d.timerAt.After(at) {
		return // an earlier wake is pending; its pass re-arms this one
	}
	if d.timer != nil {
		d.timer.Stop()
	}
	d.timerAt = at
	d.timer = time.AfterFunc(max(0, at.Sub(now))+time.Millisecond, func() { d.loop.Trigger(reason) })
}

func (d *Daemon) stopTimer() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.timerStopped = true
	if d.timer != nil {
		d.timer.Stop()
	}
}

// handover is the first step of a graceful stop, run while the reconcile
// loop and the L2 output still work: the node gossips HealthDraining, the
// others exclude it and take its IPs (each new owner sends its takeover
// burst), and this node keeps answering each IP until the ring shows its
// next owner announcing it (holdLost), within HandoverTimeout. Only then do
// the components stop: the L2 output goes quiet, and the ring is left last.
func (d *Daemon) handover() {
	ring := d.opts.Ring
	if ring == nil {
		return
	}
	d.mu.Lock()
	d.ring.draining = true
	settledNode := d.ring.settled
	d.mu.Unlock()
	if err := ring.SetHealth(gossip.HealthDraining); err != nil {
		d.log.Warn("cannot gossip draining; peers take over when this node leaves", "err", err)
		return
	}
	if !settledNode {
		return // it never took an IP
	}
	start := time.Now()
	d.loop.Trigger("draining")
	timer := time.NewTimer(d.opts.HandoverTimeout + 100*time.Millisecond)
	defer timer.Stop()
	select {
	case <-d.drained:
		d.log.Info("handed every IP over", "took", time.Since(start).Round(time.Millisecond))
	case <-timer.C:
		d.log.Warn("handover incomplete; stopping anyway", "after", time.Since(start).Round(time.Millisecond))
	}
}

// noteDrained closes d.drained once a draining pass leaves this node
// announcing no L2 IP.
func (d *Daemon) noteDrained(next reconcile.Desired) {
	d.mu.Lock()
	draining := d.ring.draining
	d.mu.Unlock()
	if !draining {
		return
	}
	for _, a := range next {
		if a.Mode == config.ModeL2 {
			return
		}
	}
	d.drainOnce.Do(func() { close(d.drained) })
}

// Retrying an IP this node could not announce (Options.CannotRetry).
const (
	defaultCannotRetry = time.Second
	maxCannotRetry     = time.Minute
	// cannotLogLines bounds the per-IP lines one pass logs about episodes
	// starting; one more line counts the rest.
	cannotLogLines = 20
)

// cannotEntry is one IP this node was asked to announce and that its L2
// output answers on no interface: an episode, from that failure until the
// IP is announced here again or is no longer this node's to announce.
// Guarded by Daemon.mu; only the reconcile loop writes it.
type cannotEntry struct {
	ann     netif.L2Announcement // as last asked for (Check needs its interfaces)
	err     error                // why, from the last try
	since   time.Time
	tries   int
	tried   time.Time     // the last try
	links   uint64        // linksKey at the last try
	backoff time.Duration // from the last try to the next periodic one
	retry   bool          // left out of the exclusions in this pass: being tried again
}

// publishExclusions gossips, before placement, what this node cannot serve:
// the VIPs whose health check fails here, and the IPs it could not
// announce, except those it tries again in this pass (retryDue). Its own
// placement reads them back from the ring, like every other node's.
func (d *Daemon) publishExclusions(cfg *config.Config, groups []reconcile.Group, unhealthy []string, now time.Time) {
	d.retryDue(cfg, groups, now)
	d.mu.Lock()
	d.ring.unhealthy = slices.Clone(unhealthy)
	cannot := d.excludedLocked()
	d.mu.Unlock()
	d.opts.Ring.SetExclusions(cannot, unhealthy)
}

// excludedLocked lists the IPs this node says it cannot announce: those
// it tracks, but not those it tries again in this pass.
func (d *Daemon) excludedLocked() []netip.Addr {
	out := make([]netip.Addr, 0, len(d.cannot))
	for a, e := range d.cannot {
		if !e.retry {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// retryDue decides which IPs this node could not announce it tries again
// in this pass, and forgets those no group places any more. Trying again
// means leaving the IP out of the gossiped exclusions for one pass: the
// IP's placement then gives it back to this node if it is its owner, and
// the L2 output tries it.
//
// A failed try loses nothing: this node's announced set holds only what
// its L2 output really answers for (announcedIPs), so the node that took
// the IP over never sees this node announce it, keeps answering it as a
// handover while placement names this node (holdLost: make-before-break,
// within HandoverTimeout), and owns it again
// as soon as this node gossips, at the end of the same pass, that it still
// cannot announce it. A try that works is a handover like any other: the
// other node stops once this node's announced set shows the IP.
//
//   - No eligible interface: tried as soon as the L2 output's Check finds
//     one (the link is back, up, or has its name again), never before,
//     since the try would fail.
//   - Other reasons (packet socket, local address, sysctls): tried
//     CannotRetry after the failure, doubling after each failed try up to
//     a minute, and on a change of the links once CannotRetry has passed
//     since the last try.
func (d *Daemon) retryDue(cfg *config.Config, groups []reconcile.Group, now time.Time) {
	d.mu.Lock()
	n := len(d.cannot)
	d.mu.Unlock()
	if n == 0 {
		return
	}
	placed := map[netip.Addr]bool{}
	for _, g := range groups {
		for _, slot := range g.Slots {
			for _, a := range slot {
				placed[a] = true
			}
		}
	}
	var st netif.State
	if d.opts.Links != nil {
		st = d.opts.Links.Snapshot()
	}
	key := linksKey(st)
	var noIface []netif.L2Announcement
	d.mu.Lock()
	for a, e := range d.cannot {
		e.retry = false
		switch {
		case !placed[a]:
			delete(d.cannot, a) // its VIP is gone
		case errors.Is(e.err, netif.ErrNoInterface):
			noIface = append(noIface, e.ann)
		case !now.Before(e.tried.Add(e.backoff)), key != e.links && now.Sub(e.tried) >= d.opts.CannotRetry:
			e.retry = true
		}
	}
	d.mu.Unlock()
	if len(noIface) == 0 || d.opts.L2 == nil {
		return
	}
	still := map[netip.Addr]bool{}
	for _, c := range d.opts.L2.Check(st, l2Config(cfg.L2), noIface) {
		still[c.Addr] = true
	}
	d.mu.Lock()
	for _, a := range noIface {
		if e := d.cannot[a.Addr]; e != nil && !still[a.Addr] {
			e.retry = true
		}
	}
	d.mu.Unlock()
}

// noteCannot records, after the L2 output applied a pass, which IPs it
// answers on no interface (failed, its Cannot), and logs each episode: a
// warning when it starts (VIP, address, reason), info when it ends. With a
// ring it reports whether the exclusions this node gossips must change
// (an episode started, or a try failed): the caller gossips them and runs
// another pass, which leaves the IP to the next node.
func (d *Daemon) noteCannot(next reconcile.Desired, st []netif.L2Status, failed []netif.L2Cannot, links netif.State, now time.Time) bool {
	announced := map[netip.Addr]bool{}
	for _, s := range st {
		for _, a := range s.Addrs {
			announced[a] = true
		}
	}
	byAddr := make(map[netip.Addr]netif.L2Cannot, len(failed))
	for _, c := range failed {
		byAddr[c.Addr] = c
	}
	key := linksKey(links)
	ringed := d.opts.Ring != nil
	type ended struct {
		c      netif.L2Cannot
		lasted time.Duration
		tries  int
		gone   bool
	}
	var (
		started []netif.L2Cannot
		over    []ended
		retried []netif.L2Cannot
		changed bool
		wake    time.Time
	)
	d.mu.Lock()
	if d.cannot == nil {
		d.cannot = map[netip.Addr]*cannotEntry{}
	}
	for a, e := range d.cannot {
		c, failedNow := byAddr[a]
		switch {
		case announced[a]:
			delete(d.cannot, a)
			over = append(over, ended{c: netif.L2Cannot{Addr: a, VIP: e.ann.VIP}, lasted: now.Sub(e.since), tries: e.tries})
			changed = changed || !e.retry
			continue
		case failedNow:
			e.err, e.ann = c.Err, wantedAnn(next, c)
			if e.retry || !ringed {
				e.tries++
				e.tried, e.links = now, key
				if e.retry {
					e.backoff = min(2*e.backoff, maxCannotRetry)
					retried = append(retried, c)
					changed = true
				}
			}
			e.retry = false
		case e.retry || !ringed:
			// Tried, but placement gave it to another node (or, without
			// a ring, it is not asked for any more).
			delete(d.cannot, a)
			over = append(over, ended{c: netif.L2Cannot{Addr: a, VIP: e.ann.VIP}, lasted: now.Sub(e.since), tries: e.tries, gone: true})
			continue
		}
		if !errors.Is(e.err, netif.ErrNoInterface) {
			if at := e.tried.Add(e.backoff); wake.IsZero() || at.Before(wake) {
				wake = at
			}
		}
	}
	for _, c := range failed {
		if d.cannot[c.Addr] != nil {
			continue
		}
		e := &cannotEntry{ann: wantedAnn(next, c), err: c.Err, since: now, tries: 1, tried: now, links: key, backoff: d.opts.CannotRetry}
		d.cannot[c.Addr] = e
		started = append(started, c)
		changed = true
		if at := now.Add(e.backoff); !errors.Is(c.Err, netif.ErrNoInterface) && (wake.IsZero() || at.Before(wake)) {
			wake = at
		}
	}
	d.mu.Unlock()

	effect := "the next node takes it"
	if !ringed {
		effect = "no other node can take it; trying again every pass"
	}
	for i, c := range started {
		if i == cannotLogLines {
			d.log.Warn("more IPs this node cannot announce", "count", len(started)-i, "effect", effect)
			break
		}
		retry := fmt.Sprintf("after %s, then backing off, and on link changes", d.opts.CannotRetry)
		if errors.Is(c.Err, netif.ErrNoInterface) {
			retry = "when a link is eligible for it again"
		}
		d.log.Warn("cannot announce this IP", "vip", c.VIP, "addr", c.Addr, "reason", c.Err, "effect", effect, "retry", retry)
	}
	for _, c := range retried {
		d.log.Debug("tried an IP this node could not announce again: still cannot", "vip", c.VIP, "addr", c.Addr, "reason", c.Err)
	}
	slices.SortFunc(over, func(a, b ended) int { return a.c.Addr.Compare(b.c.Addr) })
	for _, o := range over {
		msg := "announcing an IP again that this node could not announce"
		if o.gone {
			msg = "an IP this node could not announce is no longer its to announce"
		}
		d.log.Info(msg, "vip", o.c.VIP, "addr", o.c.Addr, "lasted", o.lasted.Round(time.Millisecond), "tries", o.tries)
	}
	if ringed && !wake.IsZero() {
		d.wakeAt(wake, "retry IPs this node could not announce")
	}
	return ringed && changed
}

// republishExclusions gossips the exclusions after noteCannot changed them.
func (d *Daemon) republishExclusions() {
	d.mu.Lock()
	cannot, unhealthy := d.excludedLocked(), d.ring.unhealthy
	d.mu.Unlock()
	d.opts.Ring.SetExclusions(cannot, unhealthy)
}

// wantedAnn is the announcement the L2 output was asked for at c.Addr.
func wantedAnn(next reconcile.Desired, c netif.L2Cannot) netif.L2Announcement {
	a, ok := next[c.Addr]
	if !ok {
		return netif.L2Announcement{Addr: c.Addr, VIP: c.VIP}
	}
	return netif.L2Announcement{Addr: a.Addr, VIP: a.VIP, Interfaces: a.Interfaces, Local: a.Local, Handover: a.Handover}
}

// linksKey is a fingerprint of the links and their addresses: a change of
// it is a link change, a reason to try again.
func linksKey(st netif.State) uint64 {
	h := fnv.New64a()
	for _, l := range st.Links() {
		fmt.Fprintf(h, "%d %s %s %v %v %v %v %d|", l.Index, l.Name, l.MAC, l.Up, l.Running, l.Broadcast, l.NoARP, l.MasterIndex)
		for _, a := range l.Addrs {
			fmt.Fprintf(h, "%s,", a.Prefix)
		}
	}
	return h.Sum64()
}
