package daemon

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hostlb/hostlb/daemon/bgp"
	"github.com/hostlb/hostlb/daemon/placement"
	"github.com/hostlb/hostlb/daemon/reconcile"
	"github.com/hostlb/hostlb/gossip"
	"github.com/hostlb/hostlb/netif"
)

// State is the node's picture of the cluster as of its last reconcile
// pass: what the control socket serves and the metrics read. Every slice
// is the caller's and sorted.
type State struct {
	Node    string
	Started time.Time
	// Ready: READY=1 was sent (the first full pass ran). Joined: the node
	// settled into the gossip ring (always true without a ring).
	Ready, Joined bool
	LastPass      time.Time // when the last pass ended; zero before the first
	PassError     string    // the last pass's error, "" when it succeeded
	Refused       string    // why the gossip ring refuses this node, "" if it does not
	Draining      bool      // SIGTERM: handing every IP over
	// FirstPass: the first full reconcile pass has run (READY=1 may still
	// be waiting for the Kubernetes caches). KubeSynced: every Kubernetes
	// cache holds a full list (true without Kubernetes).
	FirstPass, KubeSynced bool
	// CannotAnnounce counts the IPs this node's L2 output was asked to
	// announce and answers on no interface (the reason is in each IP's
	// NotHere entry for this node).
	CannotAnnounce int
	// Reloads and ReloadFailures count SIGHUP reloads since start;
	// ReloadError is the last failure's, "" after a success.
	Reloads, ReloadFailures uint64
	ReloadError             string
	LastReload              time.Time

	Members []MemberState // by name; nil without a ring
	IPs     []IPState     // by address
	// Wire are the ARP/NDP conflict events seen on the wire (fencing),
	// newest last, at most the last wireHistory; WireCounts counts every
	// event since start by action; WireNow are the current conflicts by
	// interface.
	Wire       []WireEvent
	WireCounts map[netif.ConflictAction]uint64
	WireNow    map[string][]netif.Conflict
	// Disagreements are the L2 IPs the ring's announced sets do not give
	// exactly one announcer, as of the last pass.
	Disagreements []Disagreement
	BGP           *bgp.Status // nil without a BGP speaker
	L2            []netif.L2Status
}

// MemberState is one member of the ring.
type MemberState struct {
	Name      string
	Addr      netip.AddrPort
	State     string    // alive, suspect, dead, left
	Since     time.Time // when this node saw State change
	Health    string    // ok, not-ready, draining
	Leaving   bool
	Self      bool
	Labels    map[string]string
	Announced []netip.Addr
	Cannot    []netip.Addr
	Unhealthy []string // VIP names whose health check fails there
}

// IPState is one IP the cluster serves.
type IPState struct {
	Addr   netip.Addr
	Name   string // VIP name, or namespace/name of a Service
	Source string // static, kubernetes
	Mode   string // l2, bgp
	// Owners are the nodes that should announce it (placement); Announcers
	// the ones whose gossiped announced set holds it. They differ during
	// a handover, and in a conflict.
	Owners     []string
	Announcers []string
	Preferred  string // L2: the preferred node, alive or not
	// Since is when this node saw Owners become what they are;
	// PrevOwners what they were before (nil for a new IP).
	Since      time.Time
	PrevOwners []string
	// Here: this node announces it. Interfaces are the links it answers
	// ARP/NDP on here (L2); Local: it is held as a local VIP.
	Here       bool
	Interfaces []string
	Local      bool
	// NotHere says, for every other member, why it does not announce the
	// IP.
	NotHere []NodeReason
}

// NodeReason is why a node does not announce an IP.
type NodeReason struct {
	Node   string
	Reason string
}

// Disagreement is an L2 IP with two or more announcers, or none while it
// has an owner.
type Disagreement struct {
	Addr       netip.Addr
	Name       string
	Announcers []string
	Since      time.Time
}

// wireHistory bounds State.Wire.
const wireHistory = 64

// ownersRecord is what ownership history the daemon keeps per IP.
type ownersRecord struct {
	owners, prev []string
	since        time.Time
}

// passRecord is what the last pass saw, for State. Written only by the
// reconcile loop, under Daemon.mu.
type passRecord struct {
	at     time.Time
	view   clusterView
	placed []placedIP
	groups []reconcile.Group
	owners map[netip.Addr]*ownersRecord
}

// recordPass keeps what the pass placed. Called by the reconcile loop.
func (d *Daemon) recordPass(view clusterView, ps []placedIP, groups []reconcile.Group, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := &d.pass
	if r.owners == nil {
		r.owners = map[netip.Addr]*ownersRecord{}
	}
	seen := make(map[netip.Addr]bool, len(ps))
	for _, p := range ps {
		seen[p.Addr] = true
		rec := r.owners[p.Addr]
		switch {
		case rec == nil:
			r.owners[p.Addr] = &ownersRecord{owners: p.Owners, since: now}
		case !slices.Equal(rec.owners, p.Owners):
			rec.prev, rec.owners, rec.since = rec.owners, p.Owners, now
		}
	}
	for a := range r.owners {
		if !seen[a] {
			delete(r.owners, a)
		}
	}
	r.at, r.view, r.placed, r.groups = now, view, ps, groups
}

// recordLocal keeps what a node without a ring announces: it alone owns
// each IP of next.
func (d *Daemon) recordLocal(self string, next reconcile.Desired, now time.Time) {
	ps := make([]placedIP, 0, len(next))
	for a := range next {
		ps = append(ps, placedIP{Assignment: placement.Assignment{Addr: a, Owners: []string{self}}})
	}
	d.recordPass(clusterView{self: self}, ps, nil, now)
}

// recordReload counts a reload.
func (d *Daemon) recordReload(err error, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reloads++
	d.lastReload = now
	if err != nil {
		d.reloadFailures++
	}
}

// State returns the node's picture as of its last pass. It never blocks on
// the network: the BGP status is the speaker's cached one.
func (d *Daemon) State() State {
	d.mu.Lock()
	cfg := d.cfg
	st := State{
		Node: cfg.Node.Name, Started: d.started, Ready: d.ready, LastPass: d.pass.at, PassError: d.passErr,
		Refused: d.ring.refused, Draining: d.ring.draining, Reloads: d.reloads, ReloadFailures: d.reloadFailures,
		LastReload: d.lastReload, Joined: d.opts.Ring == nil || d.ring.settled,
		L2:        slices.Clone(d.announced),
		FirstPass: isClosed(d.firstDone), KubeSynced: d.opts.Kube == nil || isClosed(d.opts.Kube.Synced()),
		CannotAnnounce: len(d.cannot),
	}
	if d.reloadE != nil {
		st.ReloadError = d.reloadE.Error()
	}
	view, placed, groups := d.pass.view, d.pass.placed, d.pass.groups
	owners := make(map[netip.Addr]ownersRecord, len(d.pass.owners))
	for a, r := range d.pass.owners {
		owners[a] = *r
	}
	desired := d.desired
	cannot := make(map[netip.Addr]string, len(d.cannot))
	for a, c := range d.cannot {
		if c.err != nil {
			cannot[a] = c.err.Error()
		}
	}
	dis := make([]Disagreement, 0, len(d.ring.episodes))
	for a, e := range d.ring.episodes {
		dis = append(dis, Disagreement{Addr: a, Since: e.since})
	}
	d.mu.Unlock()

	st.Wire, st.WireCounts = d.fence.history()
	if l2, ok := d.opts.L2.(interface {
		Conflicts() map[string][]netif.Conflict
	}); ok {
		st.WireNow = l2.Conflicts()
	}
	if d.opts.BGP != nil {
		s := d.opts.BGP.Status()
		st.BGP = &s
	}
	here := map[netip.Addr][]string{}
	for _, l := range st.L2 {
		for _, a := range l.Addrs {
			here[a] = append(here[a], l.Iface)
		}
	}
	if d.opts.Ring == nil {
		// One node: it owns what it announces.
		for _, a := range desired.Sorted() {
			ip := IPState{Addr: a.Addr, Name: a.VIP, Mode: a.Mode, Owners: []string{st.Node}, Announcers: []string{st.Node},
				Here: true, Interfaces: here[a.Addr], Local: a.Local}
			if r, ok := owners[a.Addr]; ok {
				ip.Since, ip.PrevOwners = r.since, r.prev
			}
			st.IPs = append(st.IPs, ip)
		}
		return st
	}
	for _, m := range view.members {
		st.Members = append(st.Members, MemberState{
			Name: m.Name, Addr: m.Addr, State: m.State.String(), Since: m.Since, Health: m.Meta.Health.String(),
			Leaving: m.Meta.Leaving, Self: m.Name == view.self, Labels: maps.Clone(m.Meta.Labels),
			Announced: slices.Clone(m.Announced), Cannot: slices.Clone(m.Cannot), Unhealthy: slices.Clone(m.Unhealthy),
		})
	}
	byGroup := make(map[*reconcile.Group]bool, len(groups))
	for i := range groups {
		byGroup[&groups[i]] = true
	}
	names := make(map[netip.Addr]string, len(placed))
	st.IPs = make([]IPState, 0, len(placed)) // not grown by appends: 10,000 IPs are some 3 MB
	for _, p := range placed {
		names[p.Addr] = p.group.Name
		_, mine := desired[p.Addr]
		ip := IPState{
			Addr: p.Addr, Name: p.group.Name, Source: p.group.Source, Mode: p.group.Mode,
			Owners: slices.Clone(p.Owners), Announcers: slices.Clone(view.announcers[p.Addr]), Preferred: p.Preferred,
			Here: mine, Interfaces: here[p.Addr], Local: p.group.Local && mine,
		}
		if r, ok := owners[p.Addr]; ok {
			ip.Since, ip.PrevOwners = r.since, slices.Clone(r.prev)
		}
		for _, m := range view.members {
			if p.owns(m.Name) {
				continue
			}
			ip.NotHere = append(ip.NotHere, NodeReason{Node: m.Name, Reason: whyNot(view, p, m, cannot)})
		}
		st.IPs = append(st.IPs, ip)
	}
	slices.SortFunc(st.IPs, func(a, b IPState) int { return a.Addr.Compare(b.Addr) })
	for i := range dis {
		dis[i].Name = names[dis[i].Addr]
		dis[i].Announcers = slices.Clone(view.announcers[dis[i].Addr])
	}
	slices.SortFunc(dis, func(a, b Disagreement) int { return a.Addr.Compare(b.Addr) })
	st.Disagreements = dis
	return st
}

// NotReady says why the node is not ready to serve (the metrics' /readyz),
// nil when it is: the Kubernetes caches have not synced, the node has not
// settled into the gossip ring (or the ring refuses it), the first full
// reconcile pass has not run, or the node is draining. Unlike State it
// reads a few flags only, so a probe may call it often.
func (d *Daemon) NotReady() []string {
	var out []string
	if k := d.opts.Kube; k != nil && !isClosed(k.Synced()) {
		out = append(out, "Kubernetes caches not synced yet")
	}
	d.mu.Lock()
	ringed, settled, refused, draining := d.opts.Ring != nil, d.ring.settled, d.ring.refused, d.ring.draining
	d.mu.Unlock()
	switch {
	case ringed && !settled && refused != "":
		out = append(out, "the gossip ring refuses this node: "+refused)
	case ringed && !settled:
		out = append(out, "not joined the gossip ring yet")
	}
	if !isClosed(d.firstDone) {
		out = append(out, "first reconcile pass not done yet")
	}
	if draining {
		out = append(out, "draining: stopping")
	}
	return out
}

// whyNot says why member m does not announce p, in the words an operator
// would look for first.
func whyNot(v clusterView, p placedIP, m gossip.Member, cannotHere map[netip.Addr]string) string {
	g := p.group
	switch {
	case !m.Alive:
		return m.State.String()
	case !v.lost[m.Name].IsZero():
		return "heartbeat lost (taken over before the ring decides)"
	case m.Meta.Leaving || m.Meta.Health == gossip.HealthDraining:
		return "draining"
	case m.Meta.Health != gossip.HealthOK:
		return "not ready (" + m.Meta.Health.String() + ")"
	case !g.Ranked(m.Name, m.Meta.Labels) && g.Nodes == nil:
		return "not eligible: labels do not match the node_selector " + fmtSelector(g.Selector)
	case !g.Ranked(m.Name, m.Meta.Labels):
		return "not eligible: not selected (node selector, or the Node is excluded)"
	case !g.Eligible(m.Name, m.Meta.Labels) && g.ETPLocal:
		return "no ready endpoint on the node (externalTrafficPolicy Local)"
	case !g.Eligible(m.Name, m.Meta.Labels):
		return "not eligible now (the Node is excluded or not ready)"
	case slices.Contains(v.failing[g.Name], m.Name):
		return "health check failing"
	case slices.Contains(v.cannot[p.Addr], m.Name):
		if r, ok := cannotHere[p.Addr]; ok && m.Name == v.self {
			return "cannot announce: " + r
		}
		return "cannot announce (see that node's log)"
	case p.Mode == placement.BGP:
		return "not advertising (no path for the node)"
	case len(p.Owners) == 0:
		return "nobody owns it"
	default:
		return "standby: one node announces an L2 IP, " + p.Owners[0] + " does"
	}
}

func fmtSelector(sel map[string]string) string {
	if len(sel) == 0 {
		return "{}"
	}
	var b strings.Builder
	b.WriteString("{")
	for i, k := range slices.Sorted(maps.Keys(sel)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%s", k, sel[k])
	}
	b.WriteString("}")
	return b.String()
}
