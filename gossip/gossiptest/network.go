// Package gossiptest is an in-memory network for memberlist rings: a
// [memberlist.Transport] per node, all joined by one [Network] that can
// partition, heal, kill and delay links while the rings run.
//
// It exists because memberlist's own MockNetwork cannot partition and blocks
// forever on a node that stopped reading. Here nothing ever blocks on a dead,
// killed or partitioned peer: packets to it are dropped, streams to it fail
// at once, and packet queues that fill up drop (and count) instead of waiting.
//
// Semantics, chosen to look like UDP and TCP on a LAN:
//   - WriteTo never fails for an unreachable peer (UDP has no delivery
//     report); the packet is counted as blocked and vanishes.
//   - DialTimeout to an unreachable peer fails immediately, like a TCP RST.
//   - Partition and Kill close the streams that cross the cut, so a reader
//     on either side sees an error instead of hanging until its deadline.
//   - A per-link delay holds packets for that long before delivery and adds
//     the same delay to dialling a stream.
package gossiptest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// PacketQueue is the number of packets a transport buffers for its reader
// before it drops new ones.
const PacketQueue = 1024

// streamQueue is the number of accepted-but-unread streams per transport.
const streamQueue = 64

// ErrUnreachable is returned by DialTimeout when the peer is killed, shut
// down, unknown or on the other side of a partition.
var ErrUnreachable = errors.New("gossiptest: peer unreachable")

// Stats counts what the network did with packets.
type Stats struct {
	Delivered uint64 // handed to the receiver's packet queue
	Blocked   uint64 // sender or receiver killed, shut down, unknown or partitioned
	Dropped   uint64 // receiver's queue was full
}

type link struct{ from, to netip.AddrPort }

// Network joins in-memory transports. All methods are safe for concurrent
// use and none of them block on a transport.
type Network struct {
	mu sync.Mutex // guards nodes, cut and delay
	// nodes maps an address to the live transport bound to it. A killed or
	// shut-down transport is removed, so a restarted node can bind again.
	nodes map[netip.AddrPort]*Transport
	cut   map[link]bool // blocked directed links
	delay map[link]time.Duration

	delivered, blocked, dropped atomic.Uint64
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{
		nodes: make(map[netip.AddrPort]*Transport),
		cut:   make(map[link]bool),
		delay: make(map[link]time.Duration),
	}
}

// NewTransport binds a transport to addr. It fails if a live transport
// already holds addr.
func (n *Network) NewTransport(addr netip.AddrPort) (*Transport, error) {
	if !addr.IsValid() || addr.Port() == 0 {
		return nil, fmt.Errorf("gossiptest: bind %v: need an address with a port", addr)
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.nodes[addr]; ok {
		return nil, fmt.Errorf("gossiptest: bind %v: address in use", addr)
	}
	t := &Transport{
		net:      n,
		addr:     addr,
		packetCh: make(chan *memberlist.Packet, PacketQueue),
		streamCh: make(chan net.Conn, streamQueue),
		done:     make(chan struct{}),
		conns:    make(map[*conn]struct{}),
	}
	n.nodes[addr] = t
	return t, nil
}

// Partition cuts every link between a node in a and a node in b, both ways.
// Cuts accumulate until Heal. Streams that cross the cut are closed.
func (n *Network) Partition(a, b []netip.AddrPort) {
	n.mu.Lock()
	for _, x := range a {
		for _, y := range b {
			x, y := unmap(x), unmap(y)
			n.cut[link{x, y}] = true
			n.cut[link{y, x}] = true
		}
	}
	var victims []*Transport
	for _, t := range n.nodes {
		victims = append(victims, t)
	}
	n.mu.Unlock()
	for _, t := range victims {
		t.closeConnsIf(func(peer netip.AddrPort) bool { return !n.reachable(t, peer) })
	}
}

// Heal removes every partition. Killed nodes stay dead.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
}

// Kill crashes the node at addr: its transport stops sending and receiving
// for good, its open streams break, and the address becomes free for a new
// transport (a restarted node). Killing an unknown address does nothing.
func (n *Network) Kill(addr netip.AddrPort) {
	n.mu.Lock()
	t := n.nodes[unmap(addr)]
	n.mu.Unlock()
	if t != nil {
		t.close()
	}
}

// SetDelay delays packets and stream dials from one node to another (one
// direction). Zero removes the delay.
func (n *Network) SetDelay(from, to netip.AddrPort, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := link{unmap(from), unmap(to)}
	if d <= 0 {
		delete(n.delay, l)
		return
	}
	n.delay[l] = d
}

// Stats returns packet counters for the whole network.
func (n *Network) Stats() Stats {
	return Stats{
		Delivered: n.delivered.Load(),
		Blocked:   n.blocked.Load(),
		Dropped:   n.dropped.Load(),
	}
}

// route returns the live transport at to if from may reach it, and the
// link's delay.
func (n *Network) route(from *Transport, to netip.AddrPort) (*Transport, time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nodes[from.addr] != from || n.cut[link{from.addr, to}] {
		return nil, 0
	}
	return n.nodes[to], n.delay[link{from.addr, to}]
}

func (n *Network) reachable(from *Transport, to netip.AddrPort) bool {
	t, _ := n.route(from, to)
	return t != nil
}

func (n *Network) remove(t *Transport) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nodes[t.addr] == t {
		delete(n.nodes, t.addr)
	}
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Transport is one node's memberlist.Transport on a Network.
type Transport struct {
	net      *Network
	addr     netip.AddrPort
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	// done is closed when the transport is killed or shut down. packetCh and
	// streamCh are never closed: memberlist would read nil from them.
	done      chan struct{}
	closeOnce sync.Once
	dropped   atomic.Uint64

	mu    sync.Mutex // guards conns
	conns map[*conn]struct{}
}

var _ memberlist.Transport = (*Transport)(nil)

// Addr is the address the transport is bound to.
func (t *Transport) Addr() netip.AddrPort { return t.addr }

// Dropped counts packets to this transport lost because its queue was full.
func (t *Transport) Dropped() uint64 { return t.dropped.Load() }

// FinalAdvertiseAddr returns the bound address whatever memberlist asks for:
// it is the only address at which this transport can be reached.
func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.IP(t.addr.Addr().AsSlice()), int(t.addr.Port()), nil
}

// WriteTo sends a packet. It never blocks; an unreachable peer or a full
// queue drops the packet without an error, as UDP would.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	now := time.Now()
	to, err := netip.ParseAddrPort(addr)
	if err != nil {
		return now, fmt.Errorf("gossiptest: write to %q: %w", addr, err)
	}
	if t.isClosed() {
		t.net.blocked.Add(1)
		return now, nil
	}
	dst, delay := t.net.route(t, unmap(to))
	if dst == nil {
		t.net.blocked.Add(1)
		return now, nil
	}
	p := &memberlist.Packet{
		Buf:  append([]byte(nil), b...),
		From: net.UDPAddrFromAddrPort(t.addr),
	}
	if delay == 0 {
		dst.deliver(p)
		return now, nil
	}
	time.AfterFunc(delay, func() {
		// The partition or the kill may have happened while in flight.
		if d, _ := t.net.route(t, dst.addr); d != dst {
			t.net.blocked.Add(1)
			return
		}
		dst.deliver(p)
	})
	return now, nil
}

func (t *Transport) deliver(p *memberlist.Packet) {
	if t.isClosed() {
		t.net.blocked.Add(1)
		return
	}
	p.Timestamp = time.Now()
	select {
	case t.packetCh <- p:
		t.net.delivered.Add(1)
	default:
		t.dropped.Add(1)
		t.net.dropped.Add(1)
	}
}

// PacketCh returns the channel of received packets. It is never closed.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream to addr. It fails at once with ErrUnreachable
// if the peer cannot be reached, and with a timeout if the link's delay or
// the peer's full accept queue outlasts timeout.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	to, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gossiptest: dial %q: %w", addr, err)
	}
	to = unmap(to)
	if t.isClosed() {
		return nil, fmt.Errorf("gossiptest: dial %v from %v: transport closed: %w", to, t.addr, ErrUnreachable)
	}
	dst, delay := t.net.route(t, to)
	if dst == nil {
		return nil, fmt.Errorf("gossiptest: dial %v from %v: %w", to, t.addr, ErrUnreachable)
	}
	var deadline <-chan time.Time
	if timeout > 0 {
		tm := time.NewTimer(timeout)
		defer tm.Stop()
		deadline = tm.C
	}
	if delay > 0 {
		d := time.NewTimer(delay)
		defer d.Stop()
		select {
		case <-d.C:
		case <-deadline:
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(to), Err: errTimeout}
		case <-t.done:
			return nil, fmt.Errorf("gossiptest: dial %v from %v: transport closed: %w", to, t.addr, ErrUnreachable)
		}
		if d, _ := t.net.route(t, to); d != dst {
			return nil, fmt.Errorf("gossiptest: dial %v from %v: %w", to, t.addr, ErrUnreachable)
		}
	}
	a, b := net.Pipe()
	local := &conn{Conn: a, owner: t, peer: to, local: t.addr}
	remote := &conn{Conn: b, owner: dst, peer: t.addr, local: to}
	if !t.track(local) {
		return nil, fmt.Errorf("gossiptest: dial %v from %v: transport closed: %w", to, t.addr, ErrUnreachable)
	}
	if !dst.track(remote) {
		local.Close()
		return nil, fmt.Errorf("gossiptest: dial %v from %v: %w", to, t.addr, ErrUnreachable)
	}
	select {
	case dst.streamCh <- remote:
		return local, nil
	case <-dst.done:
	case <-t.done:
	case <-deadline:
		local.Close()
		remote.Close()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(to), Err: errTimeout}
	}
	local.Close()
	remote.Close()
	return nil, fmt.Errorf("gossiptest: dial %v from %v: %w", to, t.addr, ErrUnreachable)
}

// StreamCh returns the channel of accepted streams. It is never closed.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown closes the transport and its streams. It is idempotent.
func (t *Transport) Shutdown() error {
	t.close()
	return nil
}

func (t *Transport) close() {
	t.closeOnce.Do(func() {
		close(t.done)
		t.net.remove(t)
		t.closeConnsIf(func(netip.AddrPort) bool { return true })
	})
}

func (t *Transport) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// track registers c so that kill and partition can break it. It reports
// false if the transport is already closed.
func (t *Transport) track(c *conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isClosed() {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *Transport) untrack(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
}

// closeConnsIf closes the streams whose peer matches. Closing one end of a
// net.Pipe breaks both ends.
func (t *Transport) closeConnsIf(match func(peer netip.AddrPort) bool) {
	t.mu.Lock()
	var victims []*conn
	for c := range t.conns {
		if match(c.peer) {
			victims = append(victims, c)
		}
	}
	t.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

// conn is one end of a stream. It reports TCP addresses so memberlist's log
// lines name the peer.
type conn struct {
	net.Conn
	owner       *Transport
	local, peer netip.AddrPort
	once        sync.Once
}

func (c *conn) LocalAddr() net.Addr  { return net.TCPAddrFromAddrPort(c.local) }
func (c *conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.peer) }

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.owner.untrack(c) })
	return err
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var errTimeout net.Error = timeoutError{}
