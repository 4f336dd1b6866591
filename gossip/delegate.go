package gossip

import (
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// Bounds on the generations taken from the ring (doc.go, "Untrusted input").
const (
	// genAhead is how far beyond the generations in a member's own meta,
	// as memberlist delivered it, its set or digest may be: ~1 million
	// changes, while a chunk and the meta update sent with it race; far
	// less than a restart moves Gen (1 ms of wall clock).
	genAhead = 1 << 20
	// maxClockSkew is how far ahead of this node's clock a generation may
	// be where no meta anchors it: a member memberlist has not reported
	// yet, and this node's own generations as peers report them.
	maxClockSkew = 24 * time.Hour
	// maxUnknownMembers bounds the members memberlist has not reported
	// whose sets this node keeps (sets can arrive before the join event).
	maxUnknownMembers = 64
)

// clockLimit is the highest generation that a node can have reached
// without its clock running more than maxClockSkew ahead of this one's:
// far below math.MaxUint64 (year 2554), so that Gen+1 never wraps.
func clockLimit(now time.Time) uint64 {
	return uint64(now.Add(maxClockSkew).UnixNano())
}

// setLimitLocked returns the highest generation of e's set or digest this
// node takes: genAhead beyond what its meta says once memberlist has
// reported it, else clockLimit.
func setLimitLocked(e *entry, now time.Time) uint64 {
	if e == nil || !e.known {
		return clockLimit(now)
	}
	anchor := max(e.meta.Gen, e.meta.AnnounceGen)
	if anchor > math.MaxUint64-genAhead {
		return math.MaxUint64
	}
	return anchor + genAhead
}

// setEntryLocked returns node's entry if a set of generation gen from it
// is within setLimitLocked, creating the entry of an unknown member while
// fewer than maxUnknownMembers exist; else nil and the kind of rejection.
func (r *Ring) setEntryLocked(node string, gen uint64, now time.Time) (*entry, string) {
	e := r.members[node]
	if gen > setLimitLocked(e, now) {
		return nil, InputGeneration
	}
	if e == nil {
		unknown := 0
		for _, o := range r.members {
			if !o.known {
				unknown++
			}
		}
		if unknown >= maxUnknownMembers {
			return nil, InputUnknownMember
		}
		e = r.entryLocked(node)
	}
	return e, ""
}

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
		r.drops.note(r.log, slog.LevelDebug, InputChunk, "gossip message of unknown format dropped", "node", r.cfg.NodeName, "len", len(b))
		return
	}
	c, err := decodeChunk(b[2:])
	if err != nil {
		r.drops.note(r.log, slog.LevelWarn, InputChunk, "gossip message dropped", "node", r.cfg.NodeName, "err", err)
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
	sets[r.cfg.NodeName] = r.localSetLocked()
	return encodeState(sets)
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	r := (*Ring)(d)
	sets, err := decodeState(buf)
	if err != nil {
		r.drops.note(r.log, slog.LevelWarn, InputState, "gossip push-pull state dropped", "node", r.cfg.NodeName, "err", err)
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
	e, why := r.setEntryLocked(c.node, c.gen, time.Now())
	if e == nil {
		r.mu.Unlock()
		r.drops.note(r.log, slog.LevelWarn, why, "gossip chunk dropped", "node", r.cfg.NodeName, "peer", c.node, "gen", c.gen)
		return
	}
	if c.gen <= e.set.gen || (e.pend != nil && c.gen < e.pend.gen) {
		r.mu.Unlock()
		return
	}
	if e.pend == nil || e.pend.gen != c.gen || len(e.pend.parts) != c.total {
		e.pend = &assembly{gen: c.gen, parts: make([]chunk, c.total), have: make([]bool, c.total)}
	}
	if e.pend.have[c.idx] {
		r.mu.Unlock()
		return
	}
	e.pend.have[c.idx] = true
	e.pend.parts[c.idx] = chunk{addrs: c.addrs, cannot: c.cannot, unhealthy: c.unhealthy}
	e.pend.got++
	committed := e.pend.got == c.total
	if committed {
		prev := e.set
		e.set = e.pend.set()
		e.pend = nil
		r.announcedLocked(c.node, e, prev)
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
	rejected := make(map[string]int)
	now := time.Now()
	r.mu.Lock()
	for node, s := range sets {
		if node == r.cfg.NodeName {
			continue
		}
		e, why := r.setEntryLocked(node, s.gen, now)
		if e == nil {
			rejected[why]++
			continue
		}
		if s.gen <= e.set.gen {
			continue
		}
		prev := e.set
		e.set = s
		if e.pend != nil && e.pend.gen <= s.gen {
			e.pend = nil
		}
		r.announcedLocked(node, e, prev)
		changed = true
	}
	r.mu.Unlock()
	for why, n := range rejected {
		r.drops.note(r.log, slog.LevelWarn, why, "gossip push-pull sets dropped", "node", r.cfg.NodeName, "sets", n)
	}
	if changed {
		r.wake()
	}
}

// announcedLocked queues an EventAnnounced for a committed set of a member
// memberlist knows (sets can arrive before the member's join event); prev
// is the set it replaced, to tell whether its exclusions changed.
func (r *Ring) announcedLocked(node string, e *entry, prev announcedSet) {
	if e.known {
		r.pending = append(r.pending, Event{Kind: EventAnnounced, Node: node, Addr: e.addr, Time: time.Now(),
			Exclusions: !sameExclusions(prev, e.set)})
	}
}

// seenOwnGen handles peers that remember a generation of this node at least
// as new as the current one: the node restarted and its clock went back.
// Jump past it so that peers accept what this node says now. A generation
// beyond clockLimit is corrupt or forged, never this node's: following it
// could wrap Gen to 0 and freeze this node's set everywhere.
func (r *Ring) seenOwnGen(gen uint64) {
	r.mu.Lock()
	if gen <= r.local.AnnounceGen {
		r.mu.Unlock()
		return
	}
	if gen > clockLimit(time.Now()) {
		r.mu.Unlock()
		r.drops.note(r.log, slog.LevelWarn, InputGeneration, "gossip peers report a generation of this node beyond its clock; ignored", "node", r.cfg.NodeName, "gen", gen)
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
	(*Ring)(ev).observeScreened(n, StateAlive, EventJoin)
}

func (ev *events) NotifyUpdate(n *memberlist.Node) {
	(*Ring)(ev).observeScreened(n, StateAlive, EventUpdate)
}

// NotifyLeave is called for both a failure and a graceful leave; n.State
// does not tell them apart (memberlist v0.7.0 never sets Node.State), so
// observe looks at the node's Leaving flag.
func (ev *events) NotifyLeave(n *memberlist.Node) {
	(*Ring)(ev).observeScreened(n, StateDead, EventDead)
}

// observeScreened is observe behind two guards on what memberlist delivers:
//   - metadata that is oversized or does not decode is not taken: the
//     member keeps the last metadata this node could read (none for a new
//     member), and the rejection is logged once per member and interval;
//   - a set or pending chunks beyond the member's new bound are dropped:
//     they were taken before its meta anchored them (an unknown member), or
//     the member restarted with its clock set back. Its next set, or a
//     pull (it now lags its meta), replaces them.
func (r *Ring) observeScreened(n *memberlist.Node, state State, kind EventKind) {
	if _, err := decodeMeta(n.Meta); err != nil && len(n.Meta) > 0 {
		r.drops.noteKey(r.log, slog.LevelWarn, InputMeta, InputMeta+" "+n.Name, "gossip member metadata rejected; keeping the last readable",
			"node", r.cfg.NodeName, "peer", n.Name, "len", len(n.Meta), "err", err)
		good := *n
		good.Meta = nil
		r.mu.Lock()
		if e := r.members[n.Name]; e != nil && e.known {
			good.Meta, _ = encodeMeta(e.meta)
		}
		r.mu.Unlock()
		n = &good
	}
	r.observe(n, state, kind)
	r.mu.Lock()
	if e := r.members[n.Name]; e != nil {
		limit := setLimitLocked(e, time.Now())
		if e.set.gen > limit {
			e.set = announcedSet{}
		}
		if e.pend != nil && e.pend.gen > limit {
			e.pend = nil
		}
	}
	r.mu.Unlock()
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

// NotifyPingComplete tells Config.OnProbe the probe's round trip and
// records the probed member's digest; joinLoop pulls
// the member if this node still lags it after staleRepair. The digest
// replaces the previous one (not the maximum), so a member restarted with
// a clock set back is not pulled forever.
func (p *pinger) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	r := (*Ring)(p)
	if other != nil && r.cfg.OnProbe != nil && other.Name != r.cfg.NodeName {
		r.cfg.OnProbe(other.Name, rtt)
	}
	if other == nil || len(payload) == 0 {
		return
	}
	d, err := decodeDigest(payload)
	if err != nil {
		r.drops.note(r.log, slog.LevelDebug, InputDigest, "gossip probe digest dropped", "node", r.cfg.NodeName, "peer", other.Name, "err", err)
		return
	}
	var beyond uint64
	r.mu.Lock()
	if e := r.members[other.Name]; e != nil && other.Name != r.cfg.NodeName {
		// A digest beyond the member's bound would have it pulled every
		// staleRepair for nothing.
		if limit := setLimitLocked(e, time.Now()); max(d.gen, d.announceGen) > limit {
			beyond = max(d.gen, d.announceGen)
		} else {
			e.heard = d
		}
	}
	r.mu.Unlock()
	if beyond != 0 {
		r.drops.note(r.log, slog.LevelDebug, InputGeneration, "gossip probe digest beyond the member's generations dropped", "node", r.cfg.NodeName, "peer", other.Name, "gen", beyond)
	}
}
