package heartbeat

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults: the fast profile's timing (doc.go).
const (
	DefaultInterval   = 40 * time.Millisecond
	DefaultMisses     = 3
	DefaultStaleAfter = time.Second
	// PortOffset is where the heartbeat listens by default: the gossip
	// port plus one (AddrFor).
	PortOffset = 1
)

// Protocol constants. Multiples of an interval are the sender's or the
// watcher's own, as each side knows it.
const (
	// watchRefreshTicks: a watched node that is alive gets a watch request
	// at least every this many of the watcher's intervals (1 s at 40 ms);
	// one not heard, every interval.
	watchRefreshTicks = 25
	// requestTTLRefreshes: a node that asked for heartbeats gets them for
	// this many of its refresh periods after its last request (5 s at 40
	// ms): four requests in a row may be lost.
	requestTTLRefreshes = 5
	// sweepWindow: before it declares a loss, the receiver reads whatever
	// arrived for this long, so its own lag (a descheduled goroutine, a
	// full socket buffer) never passes for the sender's silence.
	sweepWindow = time.Millisecond
	// idleCheck bounds the receiver's sleep when no deadline is near.
	idleCheck = time.Second
	// bootForget: a sender silent this long may come back with a boot that
	// looks older (its clock was set back across a restart).
	bootForget = 10 * time.Second
	// peerForget: a sender neither watched nor asking, silent this long, is
	// forgotten.
	peerForget = time.Minute
	// maxPeers bounds the senders tracked (each ~200 bytes).
	maxPeers = 4096
	// maxMisses bounds Config.Misses.
	maxMisses = 100
	// readBuffer is larger than maxDatagram so that an oversized datagram
	// is seen as such rather than truncated to a valid-looking length.
	readBuffer = 2048
)

// Config configures a Heart.
type Config struct {
	// Node is this node's name in the ring (1–255 bytes).
	Node string
	// Bind is the UDP address to listen on and send from, by default
	// AddrFor(the gossip bind address). Ignored with Conn.
	Bind netip.AddrPort
	// Conn, when set, is the socket to use instead of opening Bind (tests;
	// a socket handed over by the daemon). Run owns it and closes it.
	Conn net.PacketConn
	// Keys are the ring's keys (16, 24 or 32 bytes each): the first seals,
	// every one opens. SetKeys changes them while the Heart runs. Empty
	// only with InsecurePlaintext.
	Keys [][]byte
	// InsecurePlaintext runs without a key, like the ring's
	// insecure_plaintext: datagrams are sealed with a fixed all-zero key,
	// which detects corruption and keeps the cluster label, and nothing
	// more: anyone on the network can forge a heartbeat.
	InsecurePlaintext bool
	// Cluster is the ring's label, authenticated with every datagram: a
	// Heart ignores those of another cluster.
	Cluster string
	// Interval is the send period (DefaultInterval when 0); Misses (3 when
	// 0) × the larger of the watcher's and the sender's interval without
	// a valid datagram makes a heard node lost.
	Interval time.Duration
	Misses   int
	// StaleAfter (DefaultStaleAfter when 0): a datagram read this much
	// later than the sender's fastest delivery so far is rejected as stale
	// rather than taken as proof that the sender is alive now.
	StaleAfter time.Duration
	// OnLoss is called when a watched node that was heard falls silent;
	// OnResume when a lost node is heard again. OnAccused is called when a
	// node starts telling this one that it declared it lost (the heir may
	// be answering for this node's IPs). They run on the receiving
	// goroutine, never under a lock of the Heart, and must not block; they
	// may call the Heart's methods.
	OnLoss, OnResume, OnAccused func(node string)
	// Logger receives the Heart's logs; nil discards them.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	var errs []error
	if n := len(c.Node); n == 0 || n > maxNameLen {
		errs = append(errs, fmt.Errorf("node name is %d bytes, want 1 to %d", n, maxNameLen))
	}
	switch {
	case c.InsecurePlaintext && len(c.Keys) > 0:
		errs = append(errs, errors.New("both keys and insecure plaintext are set"))
	case !c.InsecurePlaintext:
		if _, err := newKeyring(c.Keys, c.Cluster); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Conn == nil && !c.Bind.IsValid() {
		errs = append(errs, errors.New("no bind address and no socket"))
	}
	if c.Interval < 0 || c.Interval > maxInterval || (c.Interval > 0 && c.Interval < time.Millisecond) {
		errs = append(errs, fmt.Errorf("interval %v is outside 1ms to %v", c.Interval, maxInterval))
	}
	if c.Misses < 0 || c.Misses > maxMisses {
		errs = append(errs, fmt.Errorf("misses %d is outside 1 to %d", c.Misses, maxMisses))
	}
	if c.StaleAfter < 0 {
		errs = append(errs, fmt.Errorf("stale-after %v is negative", c.StaleAfter))
	}
	return errors.Join(errs...)
}

// AddrFor returns the default heartbeat address of a node whose gossip
// address is gossip: the same IP, the port plus PortOffset. It returns the
// zero AddrPort when there is no such port.
func AddrFor(gossip netip.AddrPort) netip.AddrPort {
	if !gossip.IsValid() || gossip.Port() == 0 || gossip.Port() > 65535-PortOffset {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(gossip.Addr(), gossip.Port()+PortOffset)
}

// State is what a Heart knows of a watched node.
type State uint8

// The states of a watched node.
const (
	// Pending: not heard since it was watched. A pending node is never
	// declared lost: memberlist decides about it (doc.go).
	Pending State = iota
	// Alive: heard within Misses × Interval.
	Alive
	// Lost: heard once, then silent for Misses × Interval (OnLoss).
	Lost
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Alive:
		return "alive"
	case Lost:
		return "lost"
	}
	return "invalid"
}

// Heart sends heartbeats to its targets and watches the nodes it is heir
// to. New makes it; Run runs it; the Set methods may be called at any
// time, before or during Run, from any goroutine.
type Heart struct {
	cfg        Config
	log        *slog.Logger
	interval   time.Duration
	misses     int
	staleAfter time.Duration
	boot       bootID
	start      time.Time // the origin of the clock sent in every datagram

	keys   atomic.Pointer[keyring]
	conn   atomic.Pointer[net.PacketConn] // set by Run, for wake
	dirty  atomic.Bool                    // the watch set changed: the receiver recomputes its deadline
	paused atomic.Bool
	// accuse wakes the sender to tell newly lost nodes at once (check).
	accuse  chan struct{}
	started atomic.Bool
	stats   counters

	// seq and sendBuf belong to the sending goroutine.
	seq     uint64
	sendBuf []byte
	out     []outgoing

	mu         sync.Mutex // guards everything below
	targets    map[string]*dest
	watched    map[string]*watch
	peers      map[string]*peer
	requesters map[string]*peer // the peers that asked for heartbeats, a subset of peers
}

// dest is an address to send to.
type dest struct {
	ap   netip.AddrPort
	addr net.Addr
}

func newDest(ap netip.AddrPort) dest {
	return dest{ap: ap, addr: net.UDPAddrFromAddrPort(ap)}
}

// watch is a watched node.
type watch struct {
	dest
	state     State
	since     time.Time // when state began
	nextWatch time.Time // when the next watch request is due
}

// peer is what the receiver knows of a sender.
type peer struct {
	boot      bootID
	seq       uint64        // the last accepted seq of boot
	base      time.Duration // the lowest (receive clock − send clock) of boot, rising slowly
	baseAt    time.Duration // when base was last updated (receiver's clock)
	heard     time.Time     // the last accepted datagram; zero if none
	interval  time.Duration // the sender's interval, as it says
	from      net.Addr      // where its last datagram came from
	asksUntil time.Time     // it asked for heartbeats; send them until then
	accusing  bool          // its last datagram had flagLost
}

// outgoing is one datagram of a send round.
type outgoing struct {
	addr  net.Addr
	flags byte
	beat  bool // a heartbeat to a target or requester, not a watch-only request
}

// New checks cfg and returns an idle Heart: no socket, no goroutine.
func New(cfg Config) (*Heart, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("heartbeat config: %w", err)
	}
	keys := cfg.Keys
	if cfg.InsecurePlaintext {
		keys = [][]byte{make([]byte, 32)}
	}
	kr, err := newKeyring(keys, cfg.Cluster)
	if err != nil {
		return nil, fmt.Errorf("heartbeat config: %w", err)
	}
	h := &Heart{
		cfg:        cfg,
		log:        cfg.Logger,
		interval:   cmpOr(cfg.Interval, DefaultInterval),
		misses:     cmpOr(cfg.Misses, DefaultMisses),
		staleAfter: cmpOr(cfg.StaleAfter, DefaultStaleAfter),
		start:      time.Now(),
		targets:    map[string]*dest{},
		watched:    map[string]*watch{},
		peers:      map[string]*peer{},
		requesters: map[string]*peer{},
		accuse:     make(chan struct{}, 1),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("node", cfg.Node)
	// The boot ID: the wall clock orders a node's boots (a restart has a
	// later one); the random half keeps two boots' keys apart even when
	// clocks agree to the nanosecond.
	binary.BigEndian.PutUint64(h.boot[:8], uint64(h.start.UnixNano()))
	_, _ = rand.Read(h.boot[8:]) // never fails (crypto/rand, Go ≥ 1.24)
	h.keys.Store(kr)
	return h, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Run opens the socket (unless Config.Conn is set) and sends and receives
// until ctx is done; then it closes the socket and returns once its
// goroutines have stopped. It fails only if the socket cannot be opened,
// and may be called once.
func (h *Heart) Run(ctx context.Context) error {
	if !h.started.CompareAndSwap(false, true) {
		return errors.New("heartbeat: Run called twice")
	}
	conn := h.cfg.Conn
	if conn == nil {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(h.cfg.Bind))
		if err != nil {
			return fmt.Errorf("listen heartbeat on %s: %w", h.cfg.Bind, err)
		}
		conn = c
	}
	h.conn.Store(&conn)
	h.log.Debug("heartbeat running", "addr", conn.LocalAddr(), "interval", h.interval, "misses", h.misses)
	var wg sync.WaitGroup
	wg.Go(func() { h.receiveLoop(conn) })
	wg.Go(func() { h.sendLoop(ctx, conn) })
	<-ctx.Done()
	_ = conn.Close() // ends the receive loop
	wg.Wait()
	return nil
}

// LocalAddr returns the address the Heart listens on, or nil before Run.
func (h *Heart) LocalAddr() net.Addr {
	if c := h.conn.Load(); c != nil {
		return (*c).LocalAddr()
	}
	return nil
}

// SetKeys replaces the keys: keys[0] seals from the next datagram on, every
// key opens. As with the ring, a rotation is three passes over the nodes
// (add the new key second, make it first, drop the old one), and each pass
// keeps every node able to open what every other sends. It fails, changing
// nothing, on a bad key set or on a Heart without encryption.
func (h *Heart) SetKeys(keys [][]byte) error {
	if h.cfg.InsecurePlaintext {
		return errors.New("set heartbeat keys: running without encryption; turning it on needs a restart")
	}
	kr, err := newKeyring(keys, h.cfg.Cluster)
	if err != nil {
		return fmt.Errorf("set heartbeat keys: %w", err)
	}
	h.keys.Store(kr)
	return nil
}

// SetTargets replaces the nodes this node sends heartbeats to: the heirs of
// the IPs it owns (Duties), with their heartbeat addresses. The Heart does
// not retain the map.
func (h *Heart) SetTargets(targets map[string]netip.AddrPort) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, ap := range targets {
		if name == h.cfg.Node {
			continue
		}
		if d := h.targets[name]; d == nil || d.ap != ap {
			nd := newDest(ap)
			h.targets[name] = &nd
		}
	}
	for name := range h.targets {
		if _, ok := targets[name]; !ok {
			delete(h.targets, name)
		}
	}
}

// SetWatched replaces the nodes this node watches: the owners of the IPs it
// is heir to (Duties), with their heartbeat addresses. A node newly watched
// starts Alive if it was heard within Misses × Interval, else Pending; one
// already watched keeps its state. A node no longer watched is forgotten:
// keep a lost node watched until memberlist has decided about it, or its
// OnResume never comes. The Heart does not retain the map.
func (h *Heart) SetWatched(watched map[string]netip.AddrPort) {
	now := time.Now()
	h.mu.Lock()
	for name, ap := range watched {
		if name == h.cfg.Node {
			continue
		}
		w := h.watched[name]
		if w == nil {
			w = &watch{state: Pending, since: now, nextWatch: now}
			if p := h.peers[name]; p != nil && !p.heard.IsZero() && now.Sub(p.heard) <= h.timeout(p) {
				w.state = Alive
			}
			h.watched[name] = w
		}
		if w.ap != ap {
			w.dest = newDest(ap)
		}
	}
	for name := range h.watched {
		if _, ok := watched[name]; !ok {
			delete(h.watched, name)
		}
	}
	h.mu.Unlock()
	h.wake()
}

// wake makes the receiver recompute when it next checks for losses.
func (h *Heart) wake() {
	h.dirty.Store(true)
	if c := h.conn.Load(); c != nil {
		_ = (*c).SetReadDeadline(time.Now()) // fails only once closed
	}
}

// PauseSending stops (true) or resumes (false) sending, as if the process
// were stopped, while receiving goes on: fault injection for tests and
// simulations of a stalled owner.
func (h *Heart) PauseSending(paused bool) { h.paused.Store(paused) }

// Stats returns the counters. The caller owns the result.
func (h *Heart) Stats() Stats { return h.stats.snapshot() }

// WatchStatus is the state of one watched node.
type WatchStatus struct {
	Node  string
	Addr  netip.AddrPort
	State State
	// Since is when State began; LastHeard the last accepted datagram
	// (zero: never).
	Since, LastHeard time.Time
}

// Watched returns the watched nodes, sorted by name.
func (h *Heart) Watched() []WatchStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]WatchStatus, 0, len(h.watched))
	for name, w := range h.watched {
		s := WatchStatus{Node: name, Addr: w.ap, State: w.state, Since: w.since}
		if p := h.peers[name]; p != nil {
			s.LastHeard = p.heard
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b WatchStatus) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// timeout is how long p may be silent before it is lost. Caller holds mu.
func (h *Heart) timeout(p *peer) time.Duration {
	return time.Duration(h.misses) * max(h.interval, p.interval)
}

// sendLoop sends a round every interval, from a random phase so that the
// nodes' rounds do not line up.
func (h *Heart) sendLoop(ctx context.Context, conn net.PacketConn) {
	phase := time.NewTimer(mrand.N(h.interval))
	defer phase.Stop()
	select {
	case <-ctx.Done():
		return
	case <-phase.C:
	}
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	for {
		h.round(conn, time.Now())
		for ticked := false; !ticked; {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				ticked = true
			case <-h.accuse:
				h.send(conn, h.planAccusations(time.Now()), false)
			}
		}
	}
}

// round sends one datagram to every target and every node that asked for
// heartbeats, and a watch request to every watched node that got none of
// those and is due one.
func (h *Heart) round(conn net.PacketConn, now time.Time) {
	h.send(conn, h.plan(now), true)
}

// send seals and sends out, counted as a round when it is one (not an
// accusation between rounds). Only the sending goroutine calls it (it owns
// seq and sendBuf).
func (h *Heart) send(conn net.PacketConn, out []outgoing, isRound bool) {
	if h.paused.Load() {
		return
	}
	kr := h.keys.Load()
	var beats, watches uint64
	defer func() {
		if isRound {
			h.stats.round(beats, watches)
		} else {
			h.stats.extra(watches)
		}
	}()
	for _, o := range out {
		h.seq++
		m := beat{flags: o.flags, interval: h.interval, sent: time.Since(h.start), node: h.cfg.Node}
		h.sendBuf = kr.seal(h.sendBuf[:0], header{format: formatV1, boot: h.boot, seq: h.seq}, m)
		if _, err := conn.WriteTo(h.sendBuf, o.addr); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			h.stats.sendErrors.Add(1)
			h.stats.logAggregated(h.log, slog.LevelWarn, "send-error", "heartbeat send failed", "peer", o.addr, "err", err)
			continue
		}
		if o.beat {
			beats++
		} else {
			watches++
		}
	}
}

// plan lists the datagrams of one round.
func (h *Heart) plan(now time.Time) []outgoing {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.out[:0]
	for name, d := range h.targets {
		out = append(out, outgoing{addr: d.addr, flags: h.flagsFor(name, now), beat: true})
	}
	for name, p := range h.requesters {
		if now.After(p.asksUntil) {
			delete(h.requesters, name)
			continue
		}
		if _, ok := h.targets[name]; !ok {
			out = append(out, outgoing{addr: p.from, flags: h.flagsFor(name, now), beat: true})
		}
	}
	for name, w := range h.watched {
		if _, ok := h.targets[name]; ok {
			continue
		}
		if _, ok := h.requesters[name]; ok || now.Before(w.nextWatch) {
			continue
		}
		out = append(out, outgoing{addr: w.addr, flags: h.flagsFor(name, now)})
	}
	h.out = out
	return out
}

// planAccusations lists a watch request with the lost flag to every node
// declared lost and not told since: sent as soon as the loss is declared,
// rather than with the next round, so that the message is in the owner's
// socket before the heir's takeover reaches the wire. A stalled owner then
// reads it when it wakes, however soon its own heartbeat ends the loss,
// and re-announces its IPs (OnAccused); a round later could come after the
// heir heard the owner again, and the owner would never learn that its
// neighbours' caches point at the heir.
func (h *Heart) planAccusations(now time.Time) []outgoing {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []outgoing
	for name, w := range h.watched {
		if w.state == Lost && !now.Before(w.nextWatch) {
			out = append(out, outgoing{addr: w.addr, flags: h.flagsFor(name, now)})
		}
	}
	return out
}

// flagsFor returns the flags of a datagram to name, and counts it as a
// watch request if name is watched. Caller holds mu.
func (h *Heart) flagsFor(name string, now time.Time) byte {
	w := h.watched[name]
	if w == nil {
		return 0
	}
	flags := flagWatching
	if w.state == Lost {
		flags |= flagLost
	}
	if w.state == Alive {
		w.nextWatch = now.Add(watchRefreshTicks * h.interval)
	} else {
		w.nextWatch = now.Add(h.interval)
	}
	return flags
}
