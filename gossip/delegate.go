package gossip

import (
	"net/netip"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate is the Ring as memberlist's Delegate. memberlist calls it from
// its own goroutines, some with its node lock held: it must not call back
// into memberlist.
type delegate Ring

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta returns the compact summary (see meta.go); New and the setters
// guarantee it fits limit.
func (d *delegate) NodeMeta(limit int) []byte {
	r := (*Ring)(d)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.metaBytes) > limit {
		return nil
	}
	return slices.Clone(r.metaBytes)
}

// NotifyMsg receives a user message: an announced-set chunk.
func (d *delegate) NotifyMsg(b []byte) {
	r := (*Ring)(d)
	if len(b) < 2 || b[0] != formatV1 || b[1] != kindChunk {
		r.log.Debug("gossip message of unknown format dropped", "node", r.cfg.NodeName, "len", len(b))
		return
	}
	c, err := decodeChunk(b[2:])
	if err != nil {
		r.log.Warn("gossip message dropped", "node", r.cfg.NodeName, "err", err)
		return
	}
	r.receiveChunk(c, b)
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return (*Ring)(d).queue.GetBroadcasts(overhead, limit)
}

// LocalState sends every announced set this node knows, its own included:
// push-pull then repairs anything a lost broadcast left behind.
func (d *delegate) LocalState(join bool) []byte {
	r := (*Ring)(d)
	r.mu.Lock()
	defer r.mu.Unlock()
	sets := make(map[string]announcedSet, len(r.members)+1)
	for name, e := range r.members {
		// Dead members' sets stay out so that they stop circulating.
		if e.set.gen != 0 && name != r.cfg.NodeName && e.known && e.state == StateAlive {
			sets[name] = e.set
		}
	}
	sets[r.cfg.NodeName] = announcedSet{gen: r.local.AnnounceGen, addrs: r.localSet}
	return encodeState(sets)
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	r := (*Ring)(d)
	sets, err := decodeState(buf)
	if err != nil {
		r.log.Warn("gossip push-pull state dropped", "node", r.cfg.NodeName, "err", err)
		return
	}
	r.mergeSets(sets)
}

// receiveChunk assembles a chunk into the sender's next set and relays it
// the first time it is seen, so that sets spread epidemically like
// memberlist's own messages (memberlist sends user broadcasts only
// RetransmitMult×log10(n) times, from the origin alone).
func (r *Ring) receiveChunk(c chunk, raw []byte) {
	if c.node == r.cfg.NodeName {
		r.seenOwnGen(c.gen)
		return
	}
	r.mu.Lock()
	e := r.entryLocked(c.node)
	if c.gen <= e.set.gen || (e.pend != nil && c.gen < e.pend.gen) {
		r.mu.Unlock()
		return
	}
	if e.pend == nil || e.pend.gen != c.gen || len(e.pend.parts) != c.total {
		e.pend = &assembly{gen: c.gen, parts: make([][]netip.Addr, c.total), have: make([]bool, c.total)}
	}
	if e.pend.have[c.idx] {
		r.mu.Unlock()
		return
	}
	e.pend.have[c.idx] = true
	e.pend.parts[c.idx] = c.addrs
	e.pend.got++
	committed := e.pend.got == c.total
	if committed {
		e.set = announcedSet{gen: c.gen, addrs: normalizeAddrs(slices.Concat(e.pend.parts...))}
		e.pend = nil
		r.announcedLocked(c.node, e)
	}
	r.mu.Unlock()
	r.queue.Queue(&chunkBroadcast{node: c.node, gen: c.gen, idx: c.idx, msg: slices.Clone(raw)})
	if committed {
		r.wake()
	}
}

// mergeSets takes the newer of each node's set from push-pull state.
func (r *Ring) mergeSets(sets map[string]announcedSet) {
	if own, ok := sets[r.cfg.NodeName]; ok {
		r.seenOwnGen(own.gen)
	}
	changed := false
	r.mu.Lock()
	for node, s := range sets {
		if node == r.cfg.NodeName {
			continue
		}
		e := r.entryLocked(node)
		if s.gen <= e.set.gen {
			continue
		}
		e.set = s
		if e.pend != nil && e.pend.gen <= s.gen {
			e.pend = nil
		}
		r.announcedLocked(node, e)
		changed = true
	}
	r.mu.Unlock()
	if changed {
		r.wake()
	}
}

// announcedLocked queues an EventAnnounced for a committed set of a member
// memberlist knows (sets can arrive before the member's join event).
func (r *Ring) announcedLocked(node string, e *entry) {
	if e.known {
		r.pending = append(r.pending, Event{Kind: EventAnnounced, Node: node, Addr: e.addr, Time: time.Now()})
	}
}

// seenOwnGen handles peers that remember a generation of this node at least
// as new as the current one: the node restarted and its clock went back.
// Jump past it so that peers accept what this node says now.
func (r *Ring) seenOwnGen(gen uint64) {
	r.mu.Lock()
	if gen <= r.local.AnnounceGen {
		r.mu.Unlock()
		return
	}
	r.local.Gen = max(r.local.Gen, gen) + 1
	r.local.AnnounceGen = r.local.Gen
	if b, err := encodeMeta(r.local); err == nil {
		r.metaBytes, r.metaGen = b, r.local.Gen
	}
	r.mu.Unlock()
	r.log.Info("gossip peers remember a newer generation of this node; moving past it", "node", r.cfg.NodeName, "gen", gen)
	r.queueLocalSet()
	r.pushMeta()
}

// events is the Ring as memberlist's EventDelegate. memberlist calls it with
// its node lock held.
type events Ring

var _ memberlist.EventDelegate = (*events)(nil)

func (ev *events) NotifyJoin(n *memberlist.Node) {
	(*Ring)(ev).observe(n, StateAlive, EventJoin)
}

func (ev *events) NotifyUpdate(n *memberlist.Node) {
	(*Ring)(ev).observe(n, StateAlive, EventUpdate)
}

// NotifyLeave is called for both a failure and a graceful leave; n.State
// does not tell them apart (memberlist v0.7.0 never sets Node.State), so
// observe looks at the node's Leaving flag.
func (ev *events) NotifyLeave(n *memberlist.Node) {
	(*Ring)(ev).observe(n, StateDead, EventDead)
}

// pinger is the Ring as memberlist's PingDelegate: every probe ack carries
// the acking node's current generations (digest), so that each node learns
// within one probe round (n × ProbeInterval) whether it missed one of the
// others' broadcasts. Broadcasts do get lost: memberlist v0.7.0's own queue
// can drop a node's meta update at the origin (see broadcastQueue), and
// gossip is best effort (a few random peers per transmission, dead ones
// included for GossipToTheDeadTime). A node that misses a meta update
// cannot tell from the meta that its set is stale either. Without the
// digest it would wait for memberlist's push-pull to pair it with a node
// that knows: one random peer per PushPullInterval each, often longer than
// a handover may take. memberlist calls both methods without its locks.
type pinger Ring

var _ memberlist.PingDelegate = (*pinger)(nil)

// AckPayload returns this node's digest.
func (p *pinger) AckPayload() []byte {
	r := (*Ring)(p)
	r.mu.Lock()
	d := digest{gen: r.metaGen, announceGen: r.local.AnnounceGen}
	r.mu.Unlock()
	return encodeDigest(d)
}

// NotifyPingComplete records the probed member's digest; joinLoop pulls
// the member if this node still lags it after staleRepair. The digest
// replaces the previous one (not the maximum), so a member restarted with
// a clock set back is not pulled forever.
func (p *pinger) NotifyPingComplete(other *memberlist.Node, _ time.Duration, payload []byte) {
	r := (*Ring)(p)
	if other == nil || len(payload) == 0 {
		return
	}
	d, err := decodeDigest(payload)
	if err != nil {
		r.log.Debug("gossip probe digest dropped", "node", r.cfg.NodeName, "peer", other.Name, "err", err)
		return
	}
	r.mu.Lock()
	if e := r.members[other.Name]; e != nil && other.Name != r.cfg.NodeName {
		e.heard = d
	}
	r.mu.Unlock()
}
