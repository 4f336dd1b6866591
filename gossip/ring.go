package gossip

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is a member's liveness as this node sees it.
type State uint8

// Member states. StateAlive includes a node that is suspected but not yet
// declared dead: memberlist does not report suspicion to its delegates, and
// placement keeps a suspect node until it is dead, which avoids flapping.
const (
	StateAlive State = iota // answering probes (or only suspected)
	StateDead               // declared failed by the ring
	StateLeft               // left gracefully
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Member is one node of the ring as this node sees it.
type Member struct {
	Name  string
	Addr  netip.AddrPort
	State State
	Alive bool // State == StateAlive
	// Since is when this node saw State change.
	Since time.Time
	Meta  Meta
	// Announced is the node's announced IPs, sorted, at AnnouncedGen. It
	// lags Meta while AnnouncedGen < Meta.AnnounceGen.
	Announced    []netip.Addr
	AnnouncedGen uint64
	// Cannot and Unhealthy are the node's exclusions at AnnouncedGen (see
	// SetExclusions): the addresses it cannot announce and the names of
	// the VIPs whose health check fails on it, both sorted. Placement
	// leaves the node out of those IPs and VIPs.
	Cannot    []netip.Addr
	Unhealthy []string
}

// EventKind says what happened to a member.
type EventKind uint8

// Member event kinds.
const (
	EventJoin      EventKind = iota // joined, or came back after dead/left
	EventUpdate                     // metadata changed
	EventLeave                      // left gracefully
	EventDead                       // declared dead
	EventAnnounced                  // its announced set changed
	EventConflict                   // another member uses this node's name (Node, Addr: the other)
)

func (k EventKind) String() string {
	return [...]string{"join", "update", "leave", "dead", "announced", "conflict"}[k]
}

// Event is one member change, for Config.OnEvent.
type Event struct {
	Kind EventKind
	Node string
	Addr netip.AddrPort
	Time time.Time
	// SetOnly marks an EventUpdate whose metadata changed only in what
	// says the announced set changed (AnnounceGen, AnnounceCount, Gen):
	// news about who announces what, not about who is up.
	SetOnly bool
	// Exclusions marks an EventAnnounced whose set came with other
	// exclusions (Member.Cannot, Member.Unhealthy): news about who may
	// take which IP.
	Exclusions bool
}

// Urgent reports whether the event may change who is up: a join, a leave,
// a death, metadata other than the announced set's, or a member's
// exclusions. A member's announced set changing alone is not urgent (see
// Event.SetOnly).
func (ev Event) Urgent() bool {
	switch ev.Kind {
	case EventAnnounced:
		return ev.Exclusions
	case EventUpdate:
		return !ev.SetOnly
	}
	return true
}

// setOnly reports whether b differs from a only in the announced set's
// generation and count (and so in Gen).
func setOnly(a, b Meta) bool {
	a.Gen, a.AnnounceGen, a.AnnounceCount = b.Gen, b.AnnounceGen, b.AnnounceCount
	return a.Version == b.Version && a.Health == b.Health && a.Leaving == b.Leaving &&
		a.HeartbeatPort == b.HeartbeatPort && maps.Equal(a.Labels, b.Labels)
}

// Ring is this node's membership in the gossip ring.
type Ring struct {
	cfg    Config
	log    *slog.Logger
	timing timing

	// keyring is memberlist's (nil with InsecurePlaintext); SetKeys
	// changes it in place, under its own lock. keysMu serialises SetKeys.
	keyring *memberlist.Keyring
	keysMu  sync.Mutex

	ml    atomic.Pointer[memberlist.Memberlist]
	ready chan struct{} // closed when memberlist is up
	// self is this node's advertised address, set before ready is closed
	// and never changed. memberlist's LocalNode returns its own node
	// struct, which UpdateNode rewrites under memberlist's lock, so it is
	// read once, before anything can call UpdateNode.
	self    netip.AddrPort
	started atomic.Bool

	// queue holds this node's announced-set chunks and the ones it relays.
	queue    *broadcastQueue
	numAlive atomic.Int32 // alive+suspect members incl. self, for queue sizing

	metaDirty chan struct{} // cap 1: local metadata changed, call UpdateNode
	notify    chan struct{} // cap 1: events are pending for OnEvent/OnChange
	drops     dropLog       // aggregated logs and counts of bad input (log.go)

	// mu guards everything below, and cfg.Join (SetJoin). Lock order:
	// memberlist's locks, then mu (memberlist calls the delegates with its
	// locks held), so never call memberlist while holding mu.
	mu       sync.Mutex
	local    Meta
	localSet []netip.Addr
	// localCannot and localUnhealthy are this node's exclusions; they
	// travel with localSet, under local.AnnounceGen.
	localCannot    []netip.Addr
	localUnhealthy []string
	metaBytes      []byte
	metaGen        uint64 // the Gen encoded in metaBytes (what peers can learn)
	members        map[string]*entry
	pending        []Event

	// refusal is why the ring refuses this node, if it does (refuse.go).
	refusal refusalState
}

// entry is what this node knows about another node.
type entry struct {
	known      bool // memberlist has told us about it (not only push-pull state)
	addr       netip.AddrPort
	state      State
	since      time.Time
	meta       Meta
	set        announcedSet
	pend       *assembly
	heard      digest    // the member's own generations, from its last probe ack
	staleSince time.Time // when this node was first seen lagging (see lagging)
}

// lagging reports whether this node holds an older set or older metadata
// than the member advertises, in its meta or in its last probe ack. A
// broadcast that reached no relay to this node leaves it lagging until a
// pull (see joinLoop): memberlist's own push-pull alone may take several
// PushPullIntervals to pair the two nodes.
func (e *entry) lagging() bool {
	return max(e.meta.AnnounceGen, e.heard.announceGen) > e.set.gen || e.heard.gen > e.meta.Gen
}

// assembly collects the chunks of one generation of a node's set.
type assembly struct {
	gen   uint64
	parts []chunk // by index: the lists only
	have  []bool
	got   int
}

// set joins the parts of a complete assembly.
func (a *assembly) set() announcedSet {
	var addrs, cannot []netip.Addr
	var unhealthy []string
	for _, p := range a.parts {
		addrs = append(addrs, p.addrs...)
		cannot = append(cannot, p.cannot...)
		unhealthy = append(unhealthy, p.unhealthy...)
	}
	slices.Sort(unhealthy)
	return announcedSet{gen: a.gen, addrs: normalizeAddrs(addrs), cannot: normalizeAddrs(cannot), unhealthy: slices.Compact(unhealthy)}
}

// New validates cfg and returns an inert Ring; Run starts it.
func New(cfg Config) (*Ring, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("gossip config: %w", err)
	}
	mc, tm, _ := profileConfig(cfg.Profile)
	if cfg.RejoinInterval > 0 {
		tm.rejoin = cfg.RejoinInterval
		tm.minBackoff = min(tm.minBackoff, tm.rejoin)
		tm.staleRepair = min(tm.staleRepair, tm.rejoin)
	}
	if cfg.LeaveTimeout > 0 {
		tm.leave = cfg.LeaveTimeout
	}
	if cfg.ReconnectTimeout > 0 {
		tm.reconnect = cfg.ReconnectTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Labels = maps.Clone(cfg.Labels)
	cfg.Join = slices.Clone(cfg.Join)
	r := &Ring{
		cfg:       cfg,
		log:       logger,
		timing:    tm,
		ready:     make(chan struct{}),
		metaDirty: make(chan struct{}, 1),
		notify:    make(chan struct{}, 1),
		members:   make(map[string]*entry),
	}
	if !cfg.InsecurePlaintext {
		kr, err := newKeyring(cfg.SecretKeys)
		if err != nil {
			return nil, fmt.Errorf("gossip config: %w", err)
		}
		r.keyring, r.cfg.SecretKeys = kr, nil // the keyring holds them
	}
	r.queue = &broadcastQueue{
		numNodes: func() int { return int(max(1, r.numAlive.Load())) },
		mult:     mc.RetransmitMult,
	}
	gen := uint64(time.Now().UnixNano())
	r.local = Meta{
		Gen:         gen,
		Version:     cfg.Version,
		Labels:      cfg.Labels,
		Health:      cfg.Health,
		AnnounceGen: gen,
		// Fixed for the ring's life: the heartbeat's socket is opened
		// once, beside the ring's.
		HeartbeatPort: cfg.HeartbeatPort,
	}
	b, err := encodeMeta(r.local)
	if err != nil {
		return nil, fmt.Errorf("gossip config: %w", err)
	}
	r.metaBytes, r.metaGen = b, gen
	return r, nil
}

// Ready is closed once Run has started memberlist.
func (r *Ring) Ready() <-chan struct{} { return r.ready }

// LocalAddr is the address this node advertises; zero before Ready.
func (r *Ring) LocalAddr() netip.AddrPort {
	select {
	case <-r.ready:
		return r.self
	default:
		return netip.AddrPort{}
	}
}

// Run starts memberlist, joins the seeds and keeps re-joining until ctx is
// done; then it leaves the ring gracefully (peers see "left", not "dead")
// and shuts memberlist and the transport down. It returns an error only if
// the ring could not start or shut down. Run may be called once.
func (r *Ring) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("gossip: Run called twice")
	}
	mc, mlLog, err := r.memberlistConfig()
	if err != nil {
		return err
	}
	defer mlLog.Close()
	mlLog.drops = &r.drops // before memberlist can log

	// The notifier runs before memberlist so that it sees the self-join
	// event, and after it, to flush the last events.
	notifyCtx, stopNotify := context.WithCancel(context.Background())
	var notifier sync.WaitGroup
	notifier.Go(func() { r.notifyLoop(notifyCtx) })
	defer func() {
		stopNotify()
		notifier.Wait()
	}()

	ml, err := memberlist.Create(mc)
	if err != nil {
		if r.cfg.Transport != nil {
			_ = r.cfg.Transport.Shutdown()
		}
		return fmt.Errorf("start gossip ring as %q: %w", r.cfg.NodeName, err)
	}
	r.self = nodeAddr(ml.LocalNode())
	r.ml.Store(ml)
	close(r.ready)
	r.log.Info("gossip ring started", "node", r.cfg.NodeName, "addr", r.LocalAddr(),
		"profile", cmp.Or(r.cfg.Profile, ProfileFast), "encrypted", !r.cfg.InsecurePlaintext)

	// Anything set before Run goes out now.
	r.queueLocalSet()
	loops, stopLoops := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.joinLoop(loops, ml) })
	wg.Go(func() { r.metaLoop(loops, ml) })
	<-ctx.Done()
	stopLoops()
	wg.Wait()

	// Say "leaving" in the meta first, so that peers can tell this leave
	// from a failure (see Meta.Leaving).
	if err := r.updateMeta(func(m *Meta) { m.Leaving = true }); err == nil {
		if err := ml.UpdateNode(r.timing.leave); err != nil {
			r.log.Debug("gossip leaving flag not confirmed", "node", r.cfg.NodeName, "err", err)
		}
	}
	if err := ml.Leave(r.timing.leave); err != nil {
		// Not fatal: peers will declare this node dead instead of left.
		r.log.Warn("gossip leave not confirmed; peers will detect the failure instead", "node", r.cfg.NodeName, "err", err)
	} else {
		r.log.Info("gossip ring left", "node", r.cfg.NodeName)
	}
	if err := ml.Shutdown(); err != nil {
		return fmt.Errorf("shut down gossip ring: %w", err)
	}
	return nil
}

// SetAnnounced replaces the set of IPs this node announces. Invalid
// addresses are ignored. It never blocks; the set is gossiped in the
// background. It does not call OnChange (the caller made the change).
func (r *Ring) SetAnnounced(addrs []netip.Addr) {
	set := normalizeAddrs(addrs)
	r.mu.Lock()
	if slices.Equal(set, r.localSet) {
		r.mu.Unlock()
		return
	}
	r.localSet = set
	r.newSetGenLocked()
	r.mu.Unlock()
	r.queueLocalSet()
	r.pushMeta()
}

// SetExclusions replaces what this node says it cannot serve: cannot are
// the addresses it cannot announce (invalid ones ignored), unhealthy the
// names of the VIPs whose health check fails here. Every node's placement
// leaves this node out of those IPs and VIPs, so the next node takes
// them. Both lists travel with the announced set, as part of it (a change
// is a new AnnounceGen, broadcast in chunks and repaired by push-pull), so
// they have no size limit of their own; peers report a change as an
// urgent EventAnnounced. Names that are empty or longer than 255 bytes
// cannot be sent and are left out, with an error logged. It never blocks
// and does not call OnChange.
func (r *Ring) SetExclusions(cannot []netip.Addr, unhealthy []string) {
	c := normalizeAddrs(cannot)
	u, dropped := normalizeNames(unhealthy)
	if dropped > 0 {
		r.log.Error("gossip: VIP names that are empty or longer than 255 bytes cannot be gossiped as failing their health check",
			"node", r.cfg.NodeName, "names", dropped)
	}
	r.mu.Lock()
	if slices.Equal(c, r.localCannot) && slices.Equal(u, r.localUnhealthy) {
		r.mu.Unlock()
		return
	}
	r.localCannot, r.localUnhealthy = c, u
	r.newSetGenLocked()
	r.mu.Unlock()
	r.queueLocalSet()
	r.pushMeta()
}

// newSetGenLocked gives the local set (announced IPs and exclusions) a new
// generation and re-encodes the meta that advertises it.
func (r *Ring) newSetGenLocked() {
	r.local.Gen++
	r.local.AnnounceGen = r.local.Gen
	r.local.AnnounceCount = len(r.localSet)
	// The count and generations cannot push meta over the limit that the
	// labels and version already passed by more than a few bytes; if they
	// ever do, keep the old meta rather than panic in memberlist.
	if b, err := encodeMeta(r.local); err == nil {
		r.metaBytes, r.metaGen = b, r.local.Gen
	} else {
		r.log.Error("gossip metadata too large", "node", r.cfg.NodeName, "err", err)
	}
}

// localSetLocked is this node's set as peers receive it.
func (r *Ring) localSetLocked() announcedSet {
	return announcedSet{gen: r.local.AnnounceGen, addrs: r.localSet, cannot: r.localCannot, unhealthy: r.localUnhealthy}
}

// SetHealth changes this node's gossiped health.
func (r *Ring) SetHealth(h Health) error {
	if h > HealthDraining {
		return fmt.Errorf("set gossip health: unknown health %d", h)
	}
	return r.updateMeta(func(m *Meta) { m.Health = h })
}

// SetLabels replaces this node's gossiped labels. It fails, keeping the old
// labels, if the metadata would not fit memberlist's 512 bytes.
func (r *Ring) SetLabels(labels map[string]string) error {
	labels = maps.Clone(labels)
	return r.updateMeta(func(m *Meta) { m.Labels = labels })
}

// SetJoin replaces the seeds the ring (re-)joins; the next maintenance pass
// uses them. Members already known are kept.
func (r *Ring) SetJoin(seeds []string) {
	seeds = slices.Clone(seeds)
	r.mu.Lock()
	r.cfg.Join = seeds
	r.mu.Unlock()
}

// LocalMeta returns this node's current metadata.
func (r *Ring) LocalMeta() Meta {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.local
	m.Labels = maps.Clone(m.Labels)
	return m
}

func (r *Ring) updateMeta(change func(*Meta)) error {
	r.mu.Lock()
	m := r.local
	change(&m)
	m.Gen++
	b, err := encodeMeta(m)
	if err != nil {
		r.mu.Unlock()
		return fmt.Errorf("update gossip metadata: %w", err)
	}
	r.local, r.metaBytes, r.metaGen = m, b, m.Gen
	r.mu.Unlock()
	r.pushMeta()
	return nil
}

// pushMeta asks metaLoop to re-advertise this node.
func (r *Ring) pushMeta() {
	select {
	case r.metaDirty <- struct{}{}:
	default:
	}
}

// metaLoop calls UpdateNode, which blocks until the broadcast goes out, for
// each burst of local metadata changes.
//
// An update that is not confirmed within metaConfirm (five gossip
// intervals) is sent again with a new incarnation. memberlist v0.7.0 can
// drop the update's broadcast from its queue before sending it, without
// ever confirming it (the queue flaw described at broadcastQueue; seen in
// the daemon's rolling-restart simulation: no peer saw HealthDraining),
// and UpdateNode can also lose a race with a refutation, which takes a
// higher incarnation without the new metadata. memberlist never retries,
// so the Ring does; peers that still miss it pull it (see pinger).
func (r *Ring) metaLoop(ctx context.Context, ml *memberlist.Memberlist) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.metaDirty:
		}
		if err := ml.UpdateNode(r.timing.metaConfirm); err != nil {
			r.log.Debug("gossip metadata update not sent in time; sending it again", "node", r.cfg.NodeName, "err", err)
			r.pushMeta()
		}
	}
}

// queueLocalSet broadcasts this node's current set.
func (r *Ring) queueLocalSet() {
	r.mu.Lock()
	set := r.localSetLocked()
	r.mu.Unlock()
	for i, msg := range encodeSet(r.cfg.NodeName, set) {
		r.queue.Queue(&chunkBroadcast{node: r.cfg.NodeName, gen: set.gen, idx: i, msg: msg})
	}
}

// Members returns a snapshot of every member this node knows, itself
// included, sorted by name. Dead and left members stay listed until
// ReconnectTimeout. The caller owns the result.
func (r *Ring) Members() []Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Member, 0, len(r.members)+1)
	for name, e := range r.members {
		if !e.known {
			continue
		}
		m := Member{
			Name:         name,
			Addr:         e.addr,
			State:        e.state,
			Since:        e.since,
			Meta:         e.meta,
			Announced:    slices.Clone(e.set.addrs),
			AnnouncedGen: e.set.gen,
			Cannot:       slices.Clone(e.set.cannot),
			Unhealthy:    slices.Clone(e.set.unhealthy),
		}
		if name == r.cfg.NodeName {
			m.Meta, m.Announced, m.AnnouncedGen = r.local, slices.Clone(r.localSet), r.local.AnnounceGen
			m.Cannot, m.Unhealthy = slices.Clone(r.localCannot), slices.Clone(r.localUnhealthy)
		}
		m.Meta.Labels = maps.Clone(m.Meta.Labels)
		m.Alive = m.State == StateAlive
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// entryLocked returns the entry for node, creating it.
func (r *Ring) entryLocked(node string) *entry {
	e := r.members[node]
	if e == nil {
		e = &entry{}
		r.members[node] = e
	}
	return e
}

// observe records a memberlist event. It runs with memberlist's node lock
// held, so it only updates the table and queues the event.
func (r *Ring) observe(n *memberlist.Node, state State, kind EventKind) {
	meta, err := decodeMeta(n.Meta)
	if err != nil && len(n.Meta) > 0 {
		r.log.Warn("gossip member metadata unreadable", "node", n.Name, "err", err)
	}
	if kind == EventDead && meta.Leaving {
		state, kind = StateLeft, EventLeave
	}
	now := time.Now()
	addr := nodeAddr(n)
	r.mu.Lock()
	e := r.entryLocked(n.Name)
	if !e.known || e.state != state {
		e.since = now
	}
	only := kind == EventUpdate && e.known && e.state == state && setOnly(e.meta, meta)
	e.known, e.addr, e.state, e.meta = true, addr, state, meta
	var alive int32
	for _, e := range r.members {
		if e.known && e.state == StateAlive {
			alive++
		}
	}
	r.numAlive.Store(alive)
	// This node's own metadata updates are its caller's doing: no event.
	if kind != EventUpdate || n.Name != r.cfg.NodeName {
		r.pending = append(r.pending, Event{Kind: kind, Node: n.Name, Addr: addr, Time: now, SetOnly: only})
	}
	r.mu.Unlock()
	r.wake()
}

// wake tells notifyLoop that events are pending.
func (r *Ring) wake() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// notifyLoop delivers events to OnEvent and OnChange away from memberlist's
// locks. On stop it flushes what is pending.
func (r *Ring) notifyLoop(ctx context.Context) {
	for {
		select {
		case <-r.notify:
			r.flush()
		case <-ctx.Done():
			r.flush()
			return
		}
	}
}

func (r *Ring) flush() {
	r.mu.Lock()
	evs := r.pending
	r.pending = nil
	r.mu.Unlock()
	if len(evs) == 0 {
		return
	}
	for _, ev := range evs {
		r.logEvent(ev)
		if r.cfg.OnEvent != nil {
			r.cfg.OnEvent(ev)
		}
	}
	if r.cfg.OnChange != nil {
		r.cfg.OnChange()
	}
}

func (r *Ring) logEvent(ev Event) {
	level := slog.LevelInfo
	if ev.Kind == EventUpdate || ev.Kind == EventAnnounced || ev.Node == r.cfg.NodeName {
		level = slog.LevelDebug
	}
	r.log.Log(context.Background(), level, "gossip member "+ev.Kind.String(), "node", r.cfg.NodeName, "peer", ev.Node, "addr", ev.Addr)
}

func nodeAddr(n *memberlist.Node) netip.AddrPort {
	a, ok := netip.AddrFromSlice(n.Addr)
	if !ok {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), n.Port)
}
