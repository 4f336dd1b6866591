package netif

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// # Fencing on the wire
//
// Placement gives every IP one owner, but only within one gossip ring: two
// nodes that cannot gossip (a firewalled port, a partition) can both decide
// to answer the same IP, and a host that is not hostlb at all can use it.
// A responder with a FenceConfig learns that from the segment itself
// (SPEC §6 "Never two owners"):
//
//   - Every frame a fencing responder sends carries a marker: "HLB1", a
//     kind and the node's name — after the 28 bytes of an ARP packet (in
//     what is otherwise Ethernet padding; ARP receivers read the fixed
//     fields only) and as an NDP option of type 253 (RFC 4727's
//     experimental type; RFC 4861 §4.6 makes receivers skip options they do
//     not know).
//   - Evidence that another MAC answers for an owned address: an ARP
//     packet whose sender IP is the address, an NA for it, an ARP probe or
//     DAD NS for it marked as a hostlb owner's probe.
//   - A low-rate probe of the node's own addresses, an ARP probe (sender IP
//     0.0.0.0, RFC 5227) or a DAD-form NS, which any other answerer
//     answers: at most one probe per probeTick per responder however many
//     addresses it owns, each address at most once per probeEvery.
//
// A claim from another hostlb node that has not been a live member of this
// node's ring for settleDelay (a node joining the ring announces a little
// before every member has seen it join) is settled by a rule both sides
// apply without talking, from what the markers say: the node whose ring has
// more live members keeps the address — the majority side of a partition
// keeps serving, a node cut off alone yields — and between rings of the same
// size the lower MAC does. The loser stops answering (yields) and tells the
// winner with a marked probe; the winner defends with a marked gratuitous
// round (at most once per defendEvery), so the loser hears it even when the
// loser's own frames were missed. A loser yields only to a winner it heard
// answer after it sent a probe of its own (break after make): claims carry
// ring sizes that age while memberlist is still declaring members dead, so
// both sides can briefly each believe the other wins, and must not both go
// quiet. A claim is dropped when a probe of the
// address goes unanswered by its MAC for probeTimeout, or when the claiming
// node becomes a live member of the ring (then placement and its
// make-before-break handover decide, as for any two members). A yielded
// address comes back, with a takeover burst, as soon as no better claim is
// left. A claim from a host without the marker (not hostlb) is reported and
// never fought: the node keeps answering and sends nothing extra.

// Marker kinds: what a marked frame says about its sender.
const (
	markerNone    byte = 0
	markerClaim   byte = 1 // an answer or announcement: the sender answers for the address
	markerProbe   byte = 2 // a conflict probe by a node that answers for the address
	markerYielded byte = 3 // a probe by a node that yielded the address: not a claim
)

const (
	markerMagic   = "HLB1"
	maxMarkerName = 63
	// ndpMarkerOption is the NDP option type of the marker (RFC 4727 §5.1.5
	// reserves 253 and 254 for experiments).
	ndpMarkerOption = 253
)

// Marker is the hostlb signature of a frame: its kind, the size of the
// sender's ring (live members, itself included) and the sending node.
type Marker struct {
	Kind byte
	Ring uint16
	Node string
}

// IsHostlb says whether the frame came from a fencing hostlb responder.
func (m Marker) IsHostlb() bool { return m.Kind != markerNone }

// appendMarker appends "HLB1" kind ring(2, big endian) len(name) name (the
// name cut to 63 bytes).
func appendMarker(b []byte, m Marker) []byte {
	name := m.Node
	if len(name) > maxMarkerName {
		name = name[:maxMarkerName]
	}
	b = append(b, markerMagic...)
	b = append(b, m.Kind, byte(m.Ring>>8), byte(m.Ring), byte(len(name)))
	return append(b, name...)
}

// parseMarker reads a marker at the start of b. Anything else (zero
// padding, another stack's trailer, a truncated marker) is no marker.
func parseMarker(b []byte) Marker {
	const head = len(markerMagic) + 4
	if len(b) < head || string(b[:len(markerMagic)]) != markerMagic {
		return Marker{}
	}
	kind, ring, n := b[4], uint16(b[5])<<8|uint16(b[6]), int(b[7])
	if kind < markerClaim || kind > markerYielded || n > maxMarkerName || len(b) < head+n {
		return Marker{}
	}
	return Marker{Kind: kind, Ring: ring, Node: string(b[head : head+n])}
}

// Fencing timing. The probe budget is per responder (one interface, one
// family): probeTick apart, whatever the number of owned addresses.
const (
	probeTick    = 100 * time.Millisecond // at most 10 probes a second
	probeEvery   = time.Second            // an uncontested address at most this often
	probeRetry   = 300 * time.Millisecond // a contested address at most this often
	probeTimeout = 300 * time.Millisecond // a claim not re-heard this long after a probe is dropped
	settleDelay  = 200 * time.Millisecond // a claim is acted on once this old
	defendEvery  = time.Second            // at most one defending round per address
	foreignEvery = 5 * time.Minute        // one report per foreign host per address
)

// FenceConfig turns fencing on for a responder (see the comment above).
type FenceConfig struct {
	// Node is this node's name, sent in the marker.
	Node string
	// IsPeer says whether node is another live member of this node's ring.
	// It is called from the packet path and must be cheap. Nil: no peers.
	IsPeer func(node string) bool
	// RingSize is the number of live members of this node's ring, itself
	// included (the tie-break's first key). Nil: 1.
	RingSize func() int
	// OnEvent is told about every conflict change. It runs on the
	// responder's goroutines and must not block.
	OnEvent func(ConflictEvent)
	// Burst returns the takeover burst (rounds, interval) sent when a
	// yielded address is answered again. Nil: one round.
	Burst func() (int, time.Duration)
	// Now is the clock; nil means time.Now (tests pass a fake).
	Now func() time.Time
}

// ConflictAction is what a responder did about a conflict.
type ConflictAction string

// Conflict actions.
const (
	// ConflictDefending: another hostlb node outside the ring answers for
	// an address this node keeps (its MAC is lower).
	ConflictDefending ConflictAction = "defending"
	// ConflictYielding: this node stopped answering for the address; the
	// other node's MAC is lower.
	ConflictYielding ConflictAction = "yielding"
	// ConflictPeerYielded: the other node said it yielded the address to
	// this node.
	ConflictPeerYielded ConflictAction = "peer-yielded"
	// ConflictForeign: a host that is not hostlb answers for the address.
	// Reported, not fought.
	ConflictForeign ConflictAction = "foreign"
	// ConflictResumed: this node answers a yielded address again (the
	// other node went quiet or joined the ring).
	ConflictResumed ConflictAction = "resumed"
	// ConflictEnded: the other answerer went quiet (a probe went
	// unanswered) or joined the ring.
	ConflictEnded ConflictAction = "ended"
)

// ConflictEvent reports a conflict change on one interface.
type ConflictEvent struct {
	Action   ConflictAction
	Iface    string
	Addr     netip.Addr
	OurMAC   net.HardwareAddr
	TheirMAC net.HardwareAddr
	// Node is the other hostlb node's name; "" for a foreign host.
	Node string
	// VIP names the address's owner; filled in by the L2 output.
	VIP string
}

// Conflict is one current conflict, for status output.
type Conflict struct {
	Addr     netip.Addr
	TheirMAC net.HardwareAddr
	Node     string // "" for a foreign host
	Yielded  bool   // this node does not answer for Addr
	Since    time.Time
}

// claim is another MAC answering for an owned address.
type claim struct {
	node    string // "" when foreign
	foreign bool
	ring    int // the claimer's ring size, from its latest marker
	first   time.Time
	last    time.Time
	// notified is when the conflict was reported (zero: not yet; a claim
	// that was never reported ends silently).
	notified time.Time
}

// contest is everything known about other answerers of one address.
type contest struct {
	claims    map[[6]byte]*claim
	probedAt  time.Time // last probe sent
	defended  time.Time // last defending round
	yieldedTo [6]byte   // the winner while yielded; zero otherwise
	winner    string    // the winner's node name while yielded
	confirm   [6]byte   // the winner a probe at probedAt asked to confirm
}

// toldKey is a loser that told this node it yielded an address.
type toldKey struct {
	addr netip.Addr
	mac  [6]byte
}

// toldFor is how long a "yielded to you" stays reported without repeats.
const toldFor = 10 * time.Second

// fence is a responder's conflict state.
type fence struct {
	cfg FenceConfig
	mac [6]byte
	log *slog.Logger

	mu       sync.Mutex
	contests map[netip.Addr]*contest
	// The uncontested round-robin: a snapshot of owned addresses and a
	// cursor, rebuilt when the owned set changes.
	probeSet  *ownedSet
	probeList []netip.Addr
	probeNext int
	lastProbe map[netip.Addr]time.Time
	told      map[toldKey]time.Time

	// yielded is read lock-free by the packet path; replaced under mu.
	yielded atomic.Pointer[map[netip.Addr]struct{}]
}

func newFence(cfg FenceConfig, mac net.HardwareAddr, log *slog.Logger) *fence {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &fence{cfg: cfg, log: log, contests: map[netip.Addr]*contest{},
		lastProbe: map[netip.Addr]time.Time{}, told: map[toldKey]time.Time{}}
	copy(f.mac[:], mac)
	empty := map[netip.Addr]struct{}{}
	f.yielded.Store(&empty)
	return f
}

func (f *fence) isYielded(addr netip.Addr) bool {
	_, ok := (*f.yielded.Load())[addr]
	return ok
}

// ringSize is this node's side of the tie-break, at least 1.
func (f *fence) ringSize() int {
	if f.cfg.RingSize == nil {
		return 1
	}
	return max(1, min(f.cfg.RingSize(), 0xffff))
}

// marker is what this node's frames of kind k carry.
func (f *fence) marker(k byte) Marker {
	return Marker{Kind: k, Ring: uint16(f.ringSize()), Node: f.cfg.Node}
}

// contest returns addr's contest, created empty if needed. Called with mu.
func (f *fence) contest(addr netip.Addr) *contest {
	c := f.contests[addr]
	if c == nil {
		c = &contest{claims: map[[6]byte]*claim{}}
		f.contests[addr] = c
	}
	return c
}

// retryEvery is how often a contested address is probed: often while a
// hostlb node is involved (a yield ends when its winner goes quiet), at the
// uncontested pace when only foreign hosts are.
func (c *contest) retryEvery() time.Duration {
	if c.yieldedTo != [6]byte{} {
		return probeRetry
	}
	for _, cl := range c.claims {
		if !cl.foreign {
			return probeRetry
		}
	}
	return probeEvery
}

// contested says whether c holds a live dispute.
func (c *contest) contested() bool { return len(c.claims) > 0 || c.yieldedTo != [6]byte{} }

func (f *fence) isPeer(node string) bool {
	return node != f.cfg.Node && f.cfg.IsPeer != nil && f.cfg.IsPeer(node)
}

func mac6(hw net.HardwareAddr) (m [6]byte) {
	copy(m[:], hw)
	return m
}

// beats is the tie-break: a larger ring wins, then the lower MAC.
func beats(ringA int, macA [6]byte, ringB int, macB [6]byte) bool {
	if ringA != ringB {
		return ringA > ringB
	}
	return bytes.Compare(macA[:], macB[:]) < 0
}

// outcome is what the caller must do after the fence's state changed.
type outcome struct {
	events []ConflictEvent
	defend bool // send one marked gratuitous round for the address
	resume bool // send a takeover burst for the address
	notify bool // tell the winner this node yielded (a markerYielded probe)
	to     [6]byte
	probe  bool // probe the address now (a markerProbe): confirm a winner answers
}

func (o outcome) any() bool {
	return len(o.events) > 0 || o.defend || o.resume || o.notify || o.probe
}

// evidence records that hw answers for addr (an owned address), with the
// frame's marker, and returns what to send and report.
func (f *fence) evidence(addr netip.Addr, hw net.HardwareAddr, m Marker) outcome {
	now := f.cfg.Now()
	their := mac6(hw)
	f.mu.Lock()
	defer f.mu.Unlock()
	var out outcome
	if m.Kind == markerYielded {
		// Not a claim: the other node stopped answering in our favour. It
		// says so every probeRetry; report it once per episode.
		k := toldKey{addr, their}
		if _, ok := f.told[k]; !ok && !f.isPeer(m.Node) {
			out.events = append(out.events, f.event(ConflictPeerYielded, addr, their, m.Node))
		}
		f.told[k] = now
		return out
	}
	c := f.contest(addr)
	cl := c.claims[their]
	if cl == nil {
		cl = &claim{first: now}
		c.claims[their] = cl
	}
	cl.last, cl.node, cl.foreign, cl.ring = now, m.Node, !m.IsHostlb(), int(m.Ring)
	if cl.foreign {
		if cl.notified.IsZero() || now.Sub(cl.notified) >= foreignEvery {
			cl.notified = now
			out.events = append(out.events, f.event(ConflictForeign, addr, their, ""))
		}
		return out
	}
	f.settleLocked(addr, c, now, &out)
	return out
}

// settleLocked applies the tie-break to addr's claims: claims of live
// members are dropped (placement settles those), and among this node and
// the settled claims of other hostlb nodes the best keeps answering.
func (f *fence) settleLocked(addr netip.Addr, c *contest, now time.Time, out *outcome) {
	for mac, cl := range c.claims {
		if cl.foreign || !f.isPeer(cl.node) {
			continue
		}
		delete(c.claims, mac)
		if !cl.notified.IsZero() {
			out.events = append(out.events, f.event(ConflictEnded, addr, mac, cl.node))
		}
	}
	myRing := f.ringSize()
	best, bestRing, bestNode := f.mac, myRing, ""
	for mac, cl := range c.claims {
		if cl.foreign || now.Sub(cl.first) < settleDelay {
			continue
		}
		if told, ok := f.told[toldKey{addr, mac}]; ok && !told.Before(cl.last) {
			continue // it yielded to us since it last claimed: not answering
		}
		if beats(cl.ring, mac, bestRing, best) {
			best, bestRing, bestNode = mac, cl.ring, cl.node
		}
	}
	if best != f.mac {
		if c.yieldedTo != best && (c.confirm != best || c.claims[best].last.Before(c.probedAt)) {
			// Break after make: yield only to a node seen answering after
			// this node asked. Claims carry ring sizes that age while
			// memberlist declares members dead, so both sides can each
			// believe the other wins; a node that already yielded to us
			// does not answer the probe, and its claim then times out.
			if c.confirm != best || now.Sub(c.probedAt) >= probeRetry {
				c.confirm, c.probedAt = best, now
				out.probe = true
			}
			return
		}
		if c.yieldedTo != best {
			first := c.yieldedTo == [6]byte{}
			c.yieldedTo, c.winner = best, bestNode
			c.claims[best].notified = now
			out.events = append(out.events, f.event(ConflictYielding, addr, best, bestNode))
			out.notify, out.to = true, best
			if first {
				f.publishYieldedLocked()
			}
		}
		return
	}
	if c.yieldedTo != [6]byte{} {
		was, node := c.yieldedTo, c.winner
		c.yieldedTo, c.winner = [6]byte{}, ""
		out.events = append(out.events, f.event(ConflictResumed, addr, was, node))
		out.resume = true
		f.publishYieldedLocked()
	}
	// This node wins: defend against settled claims heard since the last
	// defending round.
	fresh := false
	for mac, cl := range c.claims {
		if cl.foreign || now.Sub(cl.first) < settleDelay {
			continue
		}
		if cl.notified.IsZero() {
			cl.notified = now
			out.events = append(out.events, f.event(ConflictDefending, addr, mac, cl.node))
		}
		fresh = fresh || cl.last.After(c.defended)
	}
	if fresh && now.Sub(c.defended) >= defendEvery {
		c.defended = now
		out.defend = true
	}
}

func (f *fence) publishYieldedLocked() {
	next := map[netip.Addr]struct{}{}
	for a, c := range f.contests {
		if c.yieldedTo != [6]byte{} {
			next[a] = struct{}{}
		}
	}
	f.yielded.Store(&next)
}

func (f *fence) event(a ConflictAction, addr netip.Addr, their [6]byte, node string) ConflictEvent {
	return ConflictEvent{
		Action: a, Addr: addr, Node: node,
		OurMAC: net.HardwareAddr(slices.Clone(f.mac[:])), TheirMAC: net.HardwareAddr(slices.Clone(their[:])),
	}
}

// addrOutcome pairs an outcome with its address.
type addrOutcome struct {
	outcome
	addr netip.Addr
}

// forgetLocked drops the contests of addresses no longer owned.
func (f *fence) forgetLocked(owned *ownedSet) {
	changed := false
	for a, c := range f.contests {
		if _, ok := owned.addrs[a]; !ok {
			changed = changed || c.yieldedTo != [6]byte{}
			delete(f.contests, a)
		}
	}
	if changed {
		f.publishYieldedLocked()
	}
}

// recheck re-applies the tie-break to every contested address (the ring
// changed: a claimer may have joined) and forgets addresses no longer owned.
func (f *fence) recheck(owned *ownedSet) []addrOutcome {
	now := f.cfg.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgetLocked(owned)
	var outs []addrOutcome
	for addr, c := range f.contests {
		var out outcome
		f.settleLocked(addr, c, now, &out)
		if out.any() {
			outs = append(outs, addrOutcome{outcome: out, addr: addr})
		}
	}
	return outs
}

// probeDue runs once per probeTick: it drops claims whose probe went
// unanswered, settles every contest again (claims come of age, the ring
// changes), and picks at most one address to probe — a contested address
// due for a retry before the next uncontested one.
func (f *fence) probeDue(owned *ownedSet) (addr netip.Addr, kind byte, to [6]byte, outs []addrOutcome) {
	now := f.cfg.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, at := range f.told {
		if now.Sub(at) >= toldFor {
			delete(f.told, k)
		}
	}
	f.forgetLocked(owned)
	for a, c := range f.contests {
		var out outcome
		if !c.probedAt.IsZero() && now.Sub(c.probedAt) >= probeTimeout {
			for mac, cl := range c.claims {
				if cl.last.Before(c.probedAt) {
					delete(c.claims, mac)
					if !cl.notified.IsZero() {
						out.events = append(out.events, f.event(ConflictEnded, a, mac, cl.node))
					}
				}
			}
		}
		f.settleLocked(a, c, now, &out)
		if !c.contested() && (c.probedAt.IsZero() || now.Sub(c.probedAt) >= probeTimeout) {
			delete(f.contests, a)
		}
		if out.any() {
			outs = append(outs, addrOutcome{outcome: out, addr: a})
		}
	}
	// A contested address due for its retry.
	var best netip.Addr
	var bestAt time.Time
	for a, c := range f.contests {
		if !c.contested() || now.Sub(c.probedAt) < c.retryEvery() {
			continue
		}
		if !best.IsValid() || c.probedAt.Before(bestAt) {
			best, bestAt = a, c.probedAt
		}
	}
	if best.IsValid() {
		c := f.contests[best]
		c.probedAt = now
		if c.yieldedTo != [6]byte{} {
			return best, markerYielded, c.yieldedTo, outs
		}
		return best, markerProbe, [6]byte{}, outs
	}
	// The next uncontested address, round robin, each at most once per
	// probeEvery.
	if f.probeSet != owned {
		f.probeSet = owned
		f.probeList = f.probeList[:0]
		for a := range owned.addrs {
			f.probeList = append(f.probeList, a)
		}
		slices.SortFunc(f.probeList, netip.Addr.Compare)
		for a := range f.lastProbe {
			if _, ok := owned.addrs[a]; !ok {
				delete(f.lastProbe, a)
			}
		}
		f.probeNext = 0
	}
	for range len(f.probeList) {
		if f.probeNext >= len(f.probeList) {
			f.probeNext = 0
		}
		a := f.probeList[f.probeNext]
		f.probeNext++
		if now.Sub(f.lastProbe[a]) < probeEvery {
			continue
		}
		if c, ok := f.contests[a]; ok && c.contested() {
			continue // probed above on its own schedule
		}
		f.lastProbe[a] = now
		f.contest(a).probedAt = now
		return a, markerProbe, [6]byte{}, outs
	}
	return netip.Addr{}, markerNone, [6]byte{}, outs
}

// conflicts lists the current conflicts, for status output.
func (f *fence) conflicts() []Conflict {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Conflict
	for a, c := range f.contests {
		for mac, cl := range c.claims {
			if !cl.foreign && f.isPeer(cl.node) {
				continue
			}
			out = append(out, Conflict{
				Addr: a, TheirMAC: net.HardwareAddr(slices.Clone(mac[:])), Node: cl.node,
				Yielded: c.yieldedTo == mac, Since: cl.first,
			})
		}
	}
	slices.SortFunc(out, func(a, b Conflict) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return bytes.Compare(a.TheirMAC, b.TheirMAC)
	})
	return out
}

// fenceRun is the responder's probe loop: one probe per probeTick at most.
func (c *responderCore) fenceRun(ctx context.Context) {
	t := time.NewTicker(probeTick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		case <-c.done:
			return
		}
		addr, kind, to, outs := c.fence.probeDue(c.owned.Load())
		for _, o := range outs {
			c.act(ctx, o.addr, o.outcome)
		}
		if kind == markerNone {
			continue
		}
		frame, err := c.probe(addr, c.fence.marker(kind), to)
		if err != nil {
			c.log.Debug("build conflict probe", "addr", addr, "err", err)
			continue
		}
		if err := c.write(frame); err == nil {
			c.stats.inc(statFenceProbes)
		}
	}
}

// act sends and reports what an outcome asks for.
func (c *responderCore) act(ctx context.Context, addr netip.Addr, o outcome) {
	f := c.fence
	for _, ev := range o.events {
		ev.Iface = c.cfg.Ifname
		ev.Addr = addr
		switch ev.Action {
		case ConflictDefending:
			c.stats.inc(statFenceDefended)
		case ConflictYielding:
			c.stats.inc(statFenceYielded)
		case ConflictForeign:
			c.stats.inc(statFenceForeign)
		}
		if f.cfg.OnEvent != nil {
			f.cfg.OnEvent(ev)
		}
	}
	if o.probe {
		if frame, err := c.probe(addr, f.marker(markerProbe), [6]byte{}); err == nil && c.write(frame) == nil {
			c.stats.inc(statFenceProbes)
		}
	}
	if o.notify {
		if frame, err := c.probe(addr, f.marker(markerYielded), o.to); err == nil {
			_ = c.write(frame)
		}
	}
	if o.defend {
		if frames, err := c.frames(addr); err == nil {
			for _, fr := range frames {
				if c.write(fr) == nil {
					c.stats.inc(statAnnounced)
				}
			}
		}
	}
	if o.resume && ctx != nil {
		count, interval := 1, time.Duration(0)
		if f.cfg.Burst != nil {
			count, interval = f.cfg.Burst()
		}
		go func() {
			if err := c.announce(ctx, addr, max(count, 1), interval); err != nil {
				c.log.Debug("resume burst", "addr", addr, "err", err)
			}
		}()
	}
}

// Fencing counters.
const (
	statFenceProbes   = "conflict_probes"    // probes of own addresses sent
	statFenceDefended = "conflicts_defended" // conflicts this node kept the address in
	statFenceYielded  = "conflicts_yielded"  // conflicts this node yielded the address in
	statFenceForeign  = "conflicts_foreign"  // non-hostlb hosts answering for an owned address
)
