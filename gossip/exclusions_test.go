package gossip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// exclusionsAgree reports whether every observer holds owner's current set
// with exactly these exclusions.
func exclusionsAgree(observers []*node, owner string, cannot []netip.Addr, unhealthy []string) error {
	var errs []error
	for _, o := range observers {
		m, ok := member(o, owner)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s does not know %s", o.name, owner))
		case m.AnnouncedGen != m.Meta.AnnounceGen:
			errs = append(errs, fmt.Errorf("%s holds %s's set gen %d, meta says %d", o.name, owner, m.AnnouncedGen, m.Meta.AnnounceGen))
		case !slices.Equal(m.Cannot, cannot) || !slices.Equal(m.Unhealthy, unhealthy):
			errs = append(errs, fmt.Errorf("%s sees %s unable to announce %d IPs and failing %d VIPs, want %d and %d",
				o.name, owner, len(m.Cannot), len(m.Unhealthy), len(cannot), len(unhealthy)))
		}
	}
	return errors.Join(errs...)
}

// Exclusions of any size travel with the announced set, far beyond what
// memberlist's 512-byte node meta could carry: 10,000 failing VIPs and
// 2,000 addresses a node cannot announce reach every member, the meta
// stays small, and each change is an urgent event on the other nodes.
func TestRingExclusionsOfAnySizeSpread(t *testing.T) {
	c := newCluster(t, 3, nil)
	eventually(t, 3*time.Second, "all join", func() error { return seesAlive(c.nodes, c.names(c.nodes)) })
	n2 := c.nodes[1]
	announced, cannot, unhealthy := manyAddrs(500, 3), manyAddrs(2000, 5), manyNames(10000)
	before := n2.ring.LocalMeta().AnnounceGen
	n2.ring.SetAnnounced(announced)
	n2.ring.SetExclusions(cannot, unhealthy)
	took := eventually(t, 10*time.Second, "exclusions spread", func() error {
		if err := exclusionsAgree(c.nodes, "n2", cannot, unhealthy); err != nil {
			return err
		}
		return announcedAgree(c.nodes, map[string][]netip.Addr{"n2": announced})
	})
	t.Logf("%d failing VIPs and %d addresses n2 cannot announce seen everywhere after %v", len(unhealthy), len(cannot), took)
	lm := n2.ring.LocalMeta()
	if lm.AnnounceGen <= before {
		t.Errorf("AnnounceGen %d after SetExclusions, want > %d", lm.AnnounceGen, before)
	}
	if b, err := encodeMeta(lm); err != nil || len(b) > 100 {
		t.Errorf("n2's meta is %d bytes (%v); the exclusions must not ride in it", len(b), err)
	}
	// The same lists again: no new generation.
	n2.ring.SetExclusions(slices.Clone(cannot), slices.Clone(unhealthy))
	if got := n2.ring.LocalMeta().AnnounceGen; got != lm.AnnounceGen {
		t.Errorf("SetExclusions with the same lists moved AnnounceGen %d → %d", lm.AnnounceGen, got)
	}
	// Clearing them spreads as well, as an urgent event.
	n2.ring.SetExclusions(nil, nil)
	eventually(t, 5*time.Second, "exclusions cleared", func() error { return exclusionsAgree(c.nodes, "n2", nil, nil) })
	// The events reach OnEvent on each ring's notifier goroutine, after
	// the state they report is visible: wait for them too.
	eventually(t, 5*time.Second, "urgent exclusion events", func() error {
		var errs []error
		for _, o := range []*node{c.nodes[0], c.nodes[2]} {
			o.mu.Lock()
			var urgent int
			for _, ev := range o.events {
				if ev.Node == "n2" && ev.Kind == EventAnnounced && ev.Exclusions && ev.Urgent() {
					urgent++
				}
			}
			o.mu.Unlock()
			if urgent < 2 {
				errs = append(errs, fmt.Errorf("%s saw %d urgent exclusion events from n2, want ≥ 2 (set, cleared)", o.name, urgent))
			}
		}
		return errors.Join(errs...)
	})
}

// A peer that missed the broadcasts gets the exclusions by push-pull, with
// the set's generation; older sets never bring old exclusions back, and an
// announced-set change alone is not urgent.
func TestExclusionsRepairedByPushPull(t *testing.T) {
	owner := idleRing(t, "n2", nil)
	peer := idleRing(t, "n1", nil)
	cannot, unhealthy := addrs("192.0.2.7", "2001:db8::7"), []string{"api", "web"}
	owner.SetAnnounced(addrs("192.0.2.1"))
	owner.SetExclusions(cannot, unhealthy)
	(*events)(peer).NotifyJoin(peerNode(t, "n2", owner.LocalMeta()))
	old := (*delegate)(owner).LocalState(false)

	(*delegate)(peer).MergeRemoteState(old, false)
	m := mustMember(t, peer, "n2")
	if m.AnnouncedGen != owner.LocalMeta().AnnounceGen || !slices.Equal(m.Cannot, cannot) || !slices.Equal(m.Unhealthy, unhealthy) {
		t.Fatalf("after push-pull n1 sees n2 at gen %d cannot %v unhealthy %v; want gen %d, %v, %v",
			m.AnnouncedGen, m.Cannot, m.Unhealthy, owner.LocalMeta().AnnounceGen, cannot, unhealthy)
	}
	if evs := pendingEvents(peer); len(evs) == 0 || !evs[len(evs)-1].Exclusions || !evs[len(evs)-1].Urgent() {
		t.Errorf("new exclusions by push-pull: events %+v, want an urgent EventAnnounced", evs)
	}

	// n2 can announce 192.0.2.7 again; its announced set changes too.
	owner.SetExclusions(addrs("2001:db8::7"), unhealthy)
	owner.SetAnnounced(addrs("192.0.2.1", "192.0.2.7"))
	(*events)(peer).NotifyUpdate(peerNode(t, "n2", owner.LocalMeta()))
	for i, msg := range encodeSet("n2", owner.localSetForTest()) {
		if i == 0 {
			continue // lost: the set is incomplete, nothing changes
		}
		(*delegate)(peer).NotifyMsg(msg)
	}
	if m := mustMember(t, peer, "n2"); !slices.Equal(m.Cannot, cannot) {
		t.Errorf("an incomplete set changed the exclusions: %v", m.Cannot)
	}
	pendingEvents(peer)
	(*delegate)(peer).MergeRemoteState((*delegate)(owner).LocalState(false), false)
	if m := mustMember(t, peer, "n2"); !slices.Equal(m.Cannot, addrs("2001:db8::7")) || !slices.Equal(m.Announced, addrs("192.0.2.1", "192.0.2.7")) {
		t.Errorf("repaired: cannot %v announced %v", m.Cannot, m.Announced)
	}
	// The old state again: ignored.
	(*delegate)(peer).MergeRemoteState(old, false)
	if m := mustMember(t, peer, "n2"); !slices.Equal(m.Cannot, addrs("2001:db8::7")) {
		t.Errorf("an older state brought old exclusions back: %v", m.Cannot)
	}
	// A change of the announced set alone is news, but not urgent.
	pendingEvents(peer)
	owner.SetAnnounced(addrs("192.0.2.1"))
	(*events)(peer).NotifyUpdate(peerNode(t, "n2", owner.LocalMeta()))
	(*delegate)(peer).MergeRemoteState((*delegate)(owner).LocalState(false), false)
	for _, ev := range pendingEvents(peer) {
		if ev.Urgent() {
			t.Errorf("announced set alone: urgent event %+v", ev)
		}
	}
}

// A state or chunk from a build that predates the exclusions (no trailing
// part) reads as a set without exclusions.
func TestSetsWithoutExclusionsFromOlderBuilds(t *testing.T) {
	peer := idleRing(t, "n1", nil)
	g := uint64(time.Now().Add(-time.Minute).UnixNano())
	(*events)(peer).NotifyJoin(peerNode(t, "n2", Meta{Gen: g, AnnounceGen: g}))
	(*delegate)(peer).NotifyMsg(rawSetChunk("n2", 0, 1, announcedSet{gen: g + 1, addrs: addrs("192.0.2.1"), cannot: addrs("192.0.2.2"), unhealthy: []string{"web"}}))
	if m := mustMember(t, peer, "n2"); !slices.Equal(m.Cannot, addrs("192.0.2.2")) || !slices.Equal(m.Unhealthy, []string{"web"}) {
		t.Fatalf("chunk with exclusions: %+v", m)
	}
	(*delegate)(peer).NotifyMsg(rawChunk("n2", g+2, 0, 1, addrs("192.0.2.1")))
	if m := mustMember(t, peer, "n2"); m.AnnouncedGen != g+2 || len(m.Cannot)+len(m.Unhealthy) != 0 {
		t.Errorf("chunk of an older build: %+v", m)
	}
	(*delegate)(peer).MergeRemoteState(encodeState(map[string]announcedSet{"n2": {gen: g + 3, addrs: addrs("192.0.2.1")}}), false)
	if m := mustMember(t, peer, "n2"); m.AnnouncedGen != g+3 || len(m.Cannot)+len(m.Unhealthy) != 0 {
		t.Errorf("state of an older build: %+v", m)
	}
	// A state whose trailing part is cut short is corrupt: dropped whole.
	b := encodeState(map[string]announcedSet{"n2": {gen: g + 4, cannot: addrs("192.0.2.2")}})
	(*delegate)(peer).MergeRemoteState(b[:len(b)-2], false)
	if m := mustMember(t, peer, "n2"); m.AnnouncedGen != g+3 {
		t.Errorf("a truncated state was taken: gen %d", m.AnnouncedGen)
	}
}

// SetExclusions leaves out names it cannot send, and normalises the rest.
func TestSetExclusionsNormalises(t *testing.T) {
	r := idleRing(t, "n1", nil)
	long := string(make([]byte, maxNameLen+1))
	r.SetExclusions(addrs("192.0.2.9", "::ffff:192.0.2.1", "192.0.2.9"), []string{"web", "", long, "api", "web"})
	m := mustMember(t, r, "n1")
	if !slices.Equal(m.Cannot, addrs("192.0.2.1", "192.0.2.9")) || !slices.Equal(m.Unhealthy, []string{"api", "web"}) {
		t.Errorf("own exclusions: cannot %v unhealthy %q", m.Cannot, m.Unhealthy)
	}
}

func mustMember(t *testing.T, r *Ring, name string) Member {
	t.Helper()
	if name == r.cfg.NodeName {
		// An idle ring has no memberlist to report itself.
		r.mu.Lock()
		e := r.entryLocked(name)
		e.known, e.state = true, StateAlive
		r.mu.Unlock()
	}
	for _, m := range r.Members() {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("%s does not know %s", r.cfg.NodeName, name)
	return Member{}
}

// pendingEvents takes the events the ring has queued for its notifier.
func pendingEvents(r *Ring) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.pending
	r.pending = nil
	return evs
}

func (r *Ring) localSetForTest() announcedSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.localSetLocked()
}
