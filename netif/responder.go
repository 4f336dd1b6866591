package netif

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
)

// Errors returned by responders.
var (
	// ErrNotOwned is returned by Announce when the address is not (or is no
	// longer) owned: a burst stops as soon as ownership is lost.
	ErrNotOwned = errors.New("netif: address not owned")
	// ErrClosed is returned by Announce once the responder is closed.
	ErrClosed = errors.New("netif: responder closed")
)

// Responder answers ARP or NDP for the VIPs this node owns on one interface.
//
// # ARP and NDP responders
//
// An L2 owner makes its VIPs reachable by answering address resolution for
// them from user space: ARPResponder answers ARP (RFC 826) for IPv4 and
// NDPResponder answers Neighbor Solicitations (RFC 4861) for IPv6, one of
// each per chosen interface, on AF_PACKET sockets bound to that interface.
// Raw sockets make answering independent of the interface's own addresses:
// ARP works on an interface with no IPv4 address, and NDP works before (or
// without) a link-local address and its DAD, because each NA is sourced from
// the VIP itself and NS reach the packet socket through its link-layer
// membership of each solicited-node group (PACKET_ADD_MEMBERSHIP,
// PACKET_MR_MULTICAST). Each group is also joined in the kernel's IPv6 stack
// (IPV6_JOIN_GROUP on sockets ListenNDP opens, see groupJoiner), only so that
// the kernel sends MLDv2 reports (RFC 3810) and answers MLD queries: an
// MLD-snooping switch forwards multicast NS only to ports that reported the
// group. Those joins run in the background after SetOwned; a failure is
// counted as "mld_join_errors" and retried on the next change, never fatal.
//
// A responder answers only for the addresses given to it with SetOwned (or
// Add/Remove), and since one responder serves one interface, only on the
// interfaces the caller chose for each address. Lookups are O(1) on an
// immutable set behind an atomic pointer, so losing an address stops the
// answers at once, from the very next frame. Its own frames (our MAC as
// Ethernet or ARP sender) are never answered.
//
// ARP (RFC 826, RFC 5227): requests for an owned address are answered
// unicast to the asker. ARP probes (sender IP 0.0.0.0, RFC 5227 §2.1.1) for
// an owned address are answered too, with target IP 0.0.0.0: a real owner
// defends its address, and the prober then sees the conflict instead of
// taking the VIP. Another host's announcement or reply that uses an owned
// address is counted as "arp_conflict" and not answered; placement, not the
// responder, decides who owns an address. Takeover sends a burst of
// gratuitous ARP, each round both the RFC 5227 §2.3 request form and the
// reply form, to broadcast.
//
// NDP (RFC 4861): multicast NS (to the solicited-node group) and unicast NS
// (to the VIP itself, as NUD probes from routers and hosts are sent) for an
// owned address are answered after the §7.1.1 checks (hop limit 255, code 0,
// valid checksum, target not multicast, DAD source rules). The NA has
// Solicited=1, Override=1, Router=0 and the target link-layer address option,
// and goes to the solicitor; a DAD NS (source ::) gets Solicited=0 to
// ff02::1. Takeover sends a burst of unsolicited NAs (Override=1) to ff02::1
// (§7.2.6).
//
// Frames that are malformed, truncated, hostile or simply not for us are
// counted by reason (the DropError strings) in Stats and never stop a
// responder.
//
// ARPResponder and NDPResponder implement it.
type Responder interface {
	// SetOwned replaces the set of owned addresses; addresses of the other
	// family are ignored. It does not block on the network. An error means
	// some multicast group could not be joined; the set is replaced anyway.
	SetOwned(addrs []netip.Addr) error
	// Add and Remove change the owned set by a diff.
	Add(addrs ...netip.Addr) error
	Remove(addrs ...netip.Addr) error
	// Owns reports whether addr is owned now.
	Owns(addr netip.Addr) bool
	// Announce blocks while it sends count rounds of gratuitous frames for
	// addr, interval apart. It returns ErrNotOwned as soon as addr is not
	// owned, ctx.Err() when ctx is done, and ErrClosed after Close.
	Announce(ctx context.Context, addr netip.Addr, count int, interval time.Duration) error
	// Run reads and answers until ctx is done or Close is called, then
	// closes the socket and returns nil. It may be called once.
	Run(ctx context.Context) error
	// Close stops Run, closes the socket and waits for Run to return. It is
	// idempotent.
	Close() error
	// Stats returns a copy of the counters: events and drops by reason.
	Stats() map[string]uint64
	// Answers reports whether addr is owned and answered: not yielded to
	// another node in a wire conflict (fence.go).
	Answers(addr netip.Addr) bool
	// Conflicts lists the current wire conflicts (nil without fencing).
	Conflicts() []Conflict
	// Recheck re-applies the conflict tie-break, after the ring changed.
	Recheck()
}

// ResponderConfig names the interface a responder serves.
type ResponderConfig struct {
	Ifindex      int
	Ifname       string
	HardwareAddr net.HardwareAddr // the interface's MAC: the answer, and "ourselves"
	Logger       *slog.Logger     // nil: discard
	// Fence turns on fencing (fence.go): marked frames, conflict probes
	// and the lower-MAC tie-break. Nil: off.
	Fence *FenceConfig
}

// ownedSet is immutable once published; changed is closed when it is
// replaced, which wakes bursts waiting to re-check ownership.
type ownedSet struct {
	addrs   map[netip.Addr]struct{}
	changed chan struct{}
}

// readBufSize holds any frame on a jumbo-frame link; NDP and ARP frames are
// far smaller, and a longer frame is truncated by the kernel, then dropped.
const readBufSize = 9216

// responderCore is the protocol-independent part of a responder.
type responderCore struct {
	cfg   ResponderConfig
	conn  PacketConn
	log   *slog.Logger
	stats *dropCounters
	is4   bool
	// handle parses one received frame and returns the answer to write, or
	// a DropError saying why there is none. It reads owned and cfg, and
	// tells the fence what it saw.
	handle func(ctx context.Context, frame []byte) ([]byte, error)
	// frames returns the gratuitous frames of one burst round for addr.
	frames func(addr netip.Addr) ([][]byte, error)
	// onChange runs under mu before a new owned set is published (NDP:
	// multicast memberships).
	onChange func(old, next map[netip.Addr]struct{}) error
	// probe builds a conflict probe for addr carrying m, unicast to `to`
	// when the family allows it and to is set (fence.go).
	probe func(addr netip.Addr, m Marker, to [6]byte) ([]byte, error)
	// fence is the conflict state; nil when fencing is off.
	fence *fence

	owned atomic.Pointer[ownedSet] // read lock-free by the packet path
	// runCtx is Run's context, for bursts started outside Run's goroutine.
	runCtx atomic.Pointer[context.Context]

	// mu serialises writers of owned (SetOwned, Add, Remove) and guards
	// started and runDone, and everything onChange touches.
	mu      sync.Mutex
	started bool
	runDone chan struct{} // closed when Run returns

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	connOnce  sync.Once
	connErr   error
}

func newResponderCore(conn PacketConn, cfg ResponderConfig, is4 bool, names []string) *responderCore {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &responderCore{
		cfg:   cfg,
		conn:  conn,
		log:   log.With("iface", cfg.Ifname),
		stats: newDropCounters(names...),
		is4:   is4,
		done:  make(chan struct{}),
	}
	c.owned.Store(&ownedSet{addrs: map[netip.Addr]struct{}{}, changed: make(chan struct{})})
	if cfg.Fence != nil {
		c.fence = newFence(*cfg.Fence, cfg.HardwareAddr, c.log)
	}
	return c
}

// answers says whether addr is owned and not yielded to another node.
func (c *responderCore) answers(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	if _, ok := c.owned.Load().addrs[addr]; !ok {
		return false
	}
	return c.fence == nil || !c.fence.isYielded(addr)
}

// marker is what this responder's answers and announcements carry.
func (c *responderCore) marker() Marker {
	if c.fence == nil {
		return Marker{}
	}
	return c.fence.marker(markerClaim)
}

// observe records that hw answers for addr, an owned address, and acts on
// the outcome (yield, defend, report). It runs on the read goroutine.
func (c *responderCore) observe(ctx context.Context, addr netip.Addr, hw net.HardwareAddr, m Marker) {
	if c.fence == nil {
		return
	}
	c.act(ctx, addr, c.fence.evidence(addr, hw, m))
}

// recheck re-applies the tie-break after a ring change.
func (c *responderCore) recheck() {
	if c.fence == nil {
		return
	}
	ctx := c.runCtx.Load()
	for _, o := range c.fence.recheck(c.owned.Load()) {
		var rc context.Context
		if ctx != nil {
			rc = *ctx
		}
		c.act(rc, o.addr, o.outcome)
	}
}

// conflicts lists the current wire conflicts.
func (c *responderCore) conflicts() []Conflict {
	if c.fence == nil {
		return nil
	}
	return c.fence.conflicts()
}

// statNames lists every counter of a responder, so Stats shows zeros too.
func statNames(reasons ...DropError) []string {
	names := []string{
		statRequests, statReplies, statAnnounced, statProbes,
		statReadErrors, statWriteErrors, "other",
		statFenceProbes, statFenceDefended, statFenceYielded, statFenceForeign,
		string(ErrFrameShort), string(ErrFrameVLAN), string(ErrFrameEtherType),
		string(ErrFrameFromSelf), string(ErrFrameNotForUs), string(ErrFrameBadSrcMAC),
	}
	for _, r := range reasons {
		names = append(names, string(r))
	}
	return names
}

func (c *responderCore) owns(addr netip.Addr) bool {
	_, ok := c.owned.Load().addrs[addr.Unmap().WithZone("")]
	return ok
}

func (c *responderCore) setOwned(addrs []netip.Addr) error {
	next := normalizeAddrs(addrs, c.is4)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.publishLocked(next)
}

func (c *responderCore) add(addrs []netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.owned.Load().addrs
	next := make(map[netip.Addr]struct{}, len(old)+len(addrs))
	for a := range old {
		next[a] = struct{}{}
	}
	for a := range normalizeAddrs(addrs, c.is4) {
		next[a] = struct{}{}
	}
	return c.publishLocked(next)
}

func (c *responderCore) remove(addrs []netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.owned.Load().addrs
	next := make(map[netip.Addr]struct{}, len(old))
	for a := range old {
		next[a] = struct{}{}
	}
	for a := range normalizeAddrs(addrs, c.is4) {
		delete(next, a)
	}
	return c.publishLocked(next)
}

func (c *responderCore) publishLocked(next map[netip.Addr]struct{}) error {
	old := c.owned.Load()
	var err error
	if c.onChange != nil {
		err = c.onChange(old.addrs, next)
	}
	c.owned.Store(&ownedSet{addrs: next, changed: make(chan struct{})})
	close(old.changed)
	return err
}

func (c *responderCore) run(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("netif: responder Run called twice")
	}
	c.started = true
	c.runDone = make(chan struct{})
	c.mu.Unlock()
	defer close(c.runDone)
	defer func() { _ = c.closeConn() }()

	select {
	case <-c.done:
		return nil
	default:
	}

	// The watcher turns ctx cancellation and Close into a read deadline, so
	// the blocked ReadFrom returns and the loop notices.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-c.done:
		case <-stop:
			return
		}
		_ = c.conn.SetReadDeadline(time.Now())
	}()
	defer wg.Wait()
	defer close(stop)

	c.runCtx.Store(&ctx)
	if c.fence != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.fenceRun(ctx)
		}()
	}
	c.log.Debug("responder running", "ifindex", c.cfg.Ifindex, "mac", c.cfg.HardwareAddr.String())
	buf := make([]byte, readBufSize)
	var backoff time.Duration
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || c.isClosed() {
				return nil
			}
			// A link going down makes the next read fail with ENETDOWN; the
			// socket works again when the link comes back, so keep reading.
			c.stats.inc(statReadErrors)
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			c.log.Debug("read failed", "err", err, "retry_in", backoff)
			if !c.sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff = 0
		reply, err := c.handle(ctx, buf[:n])
		if err != nil {
			c.stats.drop(err)
			continue
		}
		if err := c.write(reply); err != nil {
			c.log.Debug("write reply failed", "err", err)
			continue
		}
		c.stats.inc(statReplies)
	}
}

// sleep waits d; false means the responder is stopping.
func (c *responderCore) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-c.done:
	}
	return false
}

func (c *responderCore) write(frame []byte) error {
	// A raw packet socket takes the destination from the frame itself; the
	// address only has to be a *packet.Addr.
	_, err := c.conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[0:6])})
	if err != nil {
		c.stats.inc(statWriteErrors)
	}
	return err
}

func (c *responderCore) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *responderCore) closeConn() error {
	c.connOnce.Do(func() { c.connErr = c.conn.Close() })
	return c.connErr
}

func (c *responderCore) close() error {
	c.closeOnce.Do(func() { close(c.done) })
	err := c.closeConn()
	c.mu.Lock()
	runDone := c.runDone
	c.mu.Unlock()
	if runDone != nil {
		<-runDone
	}
	if err != nil {
		return fmt.Errorf("close responder on %q: %w", c.cfg.Ifname, err)
	}
	return nil
}

func (c *responderCore) announce(ctx context.Context, addr netip.Addr, count int, interval time.Duration) error {
	addr = addr.Unmap().WithZone("")
	if addr.Is4() != c.is4 {
		return fmt.Errorf("announce %v on %q: wrong address family", addr, c.cfg.Ifname)
	}
	var failed int
	var lastErr error
	for i := 0; i < count; i++ {
		if i > 0 {
			if err := c.waitOwned(ctx, addr, interval); err != nil {
				return err
			}
		}
		if c.isClosed() {
			return ErrClosed
		}
		if !c.answers(addr) {
			return ErrNotOwned
		}
		frames, err := c.frames(addr)
		if err != nil {
			return fmt.Errorf("announce %v on %q: %w", addr, c.cfg.Ifname, err)
		}
		for _, f := range frames {
			if err := c.write(f); err != nil {
				failed++
				lastErr = err
				continue
			}
			c.stats.inc(statAnnounced)
		}
	}
	if lastErr != nil {
		return fmt.Errorf("announce %v on %q: %d frames failed: %w", addr, c.cfg.Ifname, failed, lastErr)
	}
	return nil
}

// waitOwned waits d, returning early with ErrNotOwned the moment addr stops
// being owned, so a burst never outlives ownership.
func (c *responderCore) waitOwned(ctx context.Context, addr netip.Addr, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		set := c.owned.Load()
		if _, ok := set.addrs[addr]; !ok {
			return ErrNotOwned
		}
		select {
		case <-t.C:
			return nil
		case <-set.changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return ErrClosed
		}
	}
}
