// Package gossiptest is an in-memory network for memberlist rings: a
// [memberlist.Transport] per node, all joined by one [Network] that can
// partition, heal, kill and delay links while the rings run. The same
// network also carries plain datagram sockets ([Network.ListenPacket]), so
// that a second protocol of the node (a heartbeat, say) is cut, delayed and
// killed together with its gossip.
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
//
// A node is an IP address; ports only tell its sockets apart. Partition and
// SetDelay act on the IPs of the addresses they are given, so cutting or
// delaying 198.51.100.1:7947 from 198.51.100.2:7947 also cuts or delays
// 198.51.100.1:7948 from 198.51.100.2:7948 (and any other port pair between
// those two IPs). Traffic between two sockets on the same IP (loopback) is
// never cut. Kill crashes the whole node: every transport and datagram
// socket bound on the IP of its address. Give each node its own IP.
//
// Transports and datagram sockets share one address space (both are UDP
// ports in real life, so binding one where the other is fails), but each
// only talks to its own kind: a transport's packet to an address held by a
// [PacketConn], or the other way round, is blocked, and dialling a
// PacketConn fails with [ErrUnreachable].
package gossiptest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// PacketQueue is the number of packets a transport, or datagrams a
// PacketConn, buffers for its reader before it drops new ones.
const PacketQueue = 1024

// streamQueue is the number of accepted-but-unread streams per transport.
const streamQueue = 64

// ErrUnreachable is returned by DialTimeout when the peer is killed, shut
// down, unknown or on the other side of a partition.
var ErrUnreachable = errors.New("gossiptest: peer unreachable")

// Stats counts what the network did with packets. Transport packets and
// PacketConn datagrams are counted together.
type Stats struct {
	Delivered uint64 // handed to the receiver's packet queue
	Blocked   uint64 // sender or receiver killed, shut down, unknown or partitioned
	Dropped   uint64 // receiver's queue was full
}

// link is a directed link between two nodes, named by their IP addresses.
type link struct{ from, to netip.Addr }

func linkOf(from, to netip.AddrPort) link { return link{from.Addr(), to.Addr()} }

// Network joins in-memory transports. All methods are safe for concurrent
// use and none of them block on a transport.
type Network struct {
	mu sync.Mutex // guards nodes, pconns, cut and delay
	// nodes maps an address to the live transport bound to it. A killed or
	// shut-down transport is removed, so a restarted node can bind again.
	nodes map[netip.AddrPort]*Transport
	// pconns maps an address to the live PacketConn bound to it; killed and
	// closed ones are removed like transports.
	pconns map[netip.AddrPort]*PacketConn
	cut    map[link]bool // blocked directed links
	delay  map[link]time.Duration

	delivered, blocked, dropped atomic.Uint64
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{
		nodes:  make(map[netip.AddrPort]*Transport),
		pconns: make(map[netip.AddrPort]*PacketConn),
		cut:    make(map[link]bool),
		delay:  make(map[link]time.Duration),
	}
}

// NewTransport binds a transport to addr. It fails if a live transport or
// PacketConn already holds addr.
func (n *Network) NewTransport(addr netip.AddrPort) (*Transport, error) {
	if !addr.IsValid() || addr.Port() == 0 {
		return nil, fmt.Errorf("gossiptest: bind %v: need an address with a port", addr)
	}
	addr = unmap(addr)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.boundLocked(addr) {
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

// ListenPacket binds a datagram socket to addr, like net.ListenPacket("udp",
// addr). It fails if a live transport or PacketConn already holds addr; a
// killed or closed PacketConn frees its address.
func (n *Network) ListenPacket(addr netip.AddrPort) (*PacketConn, error) {
	if !addr.IsValid() || addr.Port() == 0 {
		return nil, fmt.Errorf("gossiptest: listen %v: need an address with a port", addr)
	}
	addr = unmap(addr)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.boundLocked(addr) {
		return nil, fmt.Errorf("gossiptest: listen %v: address in use", addr)
	}
	c := &PacketConn{
		net:        n,
		addr:       addr,
		queue:      make(chan datagram, PacketQueue),
		closed:     make(chan struct{}),
		dead:       make(chan struct{}),
		rdlChanged: make(chan struct{}),
	}
	n.pconns[addr] = c
	return c, nil
}

func (n *Network) boundLocked(addr netip.AddrPort) bool {
	_, t := n.nodes[addr]
	_, c := n.pconns[addr]
	return t || c
}

// Partition cuts every link between a node in a and a node in b, both ways.
// Nodes are named by the IP of each address: the cut applies to every port
// on those IPs (see the package comment). Cuts accumulate until Heal.
// Streams that cross the cut are closed.
func (n *Network) Partition(a, b []netip.AddrPort) {
	n.mu.Lock()
	for _, x := range a {
		for _, y := range b {
			x, y := unmap(x), unmap(y)
			if x.Addr() == y.Addr() {
				continue // loopback is never cut
			}
			n.cut[linkOf(x, y)] = true
			n.cut[linkOf(y, x)] = true
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

// Kill crashes the node at addr's IP: every transport and PacketConn bound
// on that IP, whatever its port, stops sending and receiving for good, open
// streams break, and the addresses become free for new sockets (a restarted
// node). A killed PacketConn is not closed: its reads block until their
// deadline or Close and its writes vanish, as on a host cut off from the
// network. Killing an unknown address does nothing.
func (n *Network) Kill(addr netip.AddrPort) {
	ip := unmap(addr).Addr()
	n.mu.Lock()
	var ts []*Transport
	var cs []*PacketConn
	for a, t := range n.nodes {
		if a.Addr() == ip {
			ts = append(ts, t)
		}
	}
	for a, c := range n.pconns {
		if a.Addr() == ip {
			cs = append(cs, c)
		}
	}
	n.mu.Unlock()
	for _, t := range ts {
		t.close()
	}
	for _, c := range cs {
		c.kill()
	}
}

// SetDelay delays packets and stream dials from one node to another (one
// direction), for every port on the two IPs. Zero removes the delay.
func (n *Network) SetDelay(from, to netip.AddrPort, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := linkOf(unmap(from), unmap(to))
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
	l := linkOf(from.addr, to)
	if n.nodes[from.addr] != from || n.cut[l] {
		return nil, 0
	}
	return n.nodes[to], n.delay[l]
}

// routePacket is route for datagram sockets.
func (n *Network) routePacket(from *PacketConn, to netip.AddrPort) (*PacketConn, time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := linkOf(from.addr, to)
	if n.pconns[from.addr] != from || n.cut[l] {
		return nil, 0
	}
	return n.pconns[to], n.delay[l]
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

func (n *Network) removePacketConn(c *PacketConn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pconns[c.addr] == c {
		delete(n.pconns, c.addr)
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

// PacketConn is a UDP-like datagram socket on a Network. It implements
// [net.PacketConn] with the network's semantics: WriteTo to an unreachable
// address succeeds and the datagram vanishes (counted as blocked), a full
// receive queue drops (counted as dropped), and nothing blocks but ReadFrom.
type PacketConn struct {
	net    *Network
	addr   netip.AddrPort
	queue  chan datagram
	closed chan struct{} // closed by Close
	dead   chan struct{} // closed by Kill or Close: off the network
	// dropped counts datagrams to this socket lost to a full queue.
	dropped   atomic.Uint64
	closeOnce sync.Once
	killOnce  sync.Once

	mu         sync.Mutex // guards rdl, wdl and rdlChanged
	rdl, wdl   time.Time  // read and write deadlines; zero is none
	rdlChanged chan struct{}

	// testHookRead, if set, runs in ReadFrom after it has read the deadline
	// and before it waits.
	testHookRead func()
}

var _ net.PacketConn = (*PacketConn)(nil)

type datagram struct {
	from netip.AddrPort
	buf  []byte
}

// Addr is the address the socket is bound to.
func (c *PacketConn) Addr() netip.AddrPort { return c.addr }

// Dropped counts datagrams to this socket lost because its queue was full.
func (c *PacketConn) Dropped() uint64 { return c.dropped.Load() }

// LocalAddr returns the bound address as a *net.UDPAddr.
func (c *PacketConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.addr) }

// ReadFrom waits for a datagram, the read deadline or Close. It copies the
// datagram into b, truncating it if b is too short (the rest is lost, as
// with UDP), and returns the sender as a *net.UDPAddr. Past the deadline it
// returns an error that wraps os.ErrDeadlineExceeded, even if datagrams are
// queued; a deadline changed while it waits takes effect at once. After
// Close it returns an error that wraps net.ErrClosed. A killed socket
// receives nothing more, not even what was queued before the kill.
func (c *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		dl, changed := c.rdl, c.rdlChanged
		c.mu.Unlock()
		if c.isClosed() {
			return 0, nil, c.opError("read", nil, net.ErrClosed)
		}
		var timeout <-chan time.Time
		var timer *time.Timer
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, c.opError("read", nil, os.ErrDeadlineExceeded)
			}
			timer = time.NewTimer(d)
			timeout = timer.C
		}
		queue, dead := c.queue, c.dead
		if c.isDead() {
			queue, dead = nil, nil
		}
		if c.testHookRead != nil {
			c.testHookRead()
		}
		select {
		case d := <-queue:
			if timer != nil {
				timer.Stop()
			}
			return copy(b, d.buf), net.UDPAddrFromAddrPort(d.from), nil
		case <-c.closed:
		case <-dead:
		case <-changed:
		case <-timeout:
		}
		if timer != nil {
			timer.Stop()
		}
		// Look again: closed, killed, deadline passed or changed.
	}
}

// WriteTo sends b as one datagram to addr, a *net.UDPAddr or any net.Addr
// whose String is an IP:port. It never blocks: to an unbound, killed or
// partitioned address, or from a killed socket, it reports success and the
// datagram vanishes. It fails only for a bad address, a closed socket or a
// passed write deadline.
func (c *PacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	to, err := addrPortOf(addr)
	if err != nil {
		return 0, c.opError("write", addr, err)
	}
	if c.isClosed() {
		return 0, c.opError("write", addr, net.ErrClosed)
	}
	c.mu.Lock()
	wdl := c.wdl
	c.mu.Unlock()
	if !wdl.IsZero() && !time.Now().Before(wdl) {
		return 0, c.opError("write", addr, os.ErrDeadlineExceeded)
	}
	if c.isDead() {
		c.net.blocked.Add(1)
		return len(b), nil
	}
	dst, delay := c.net.routePacket(c, to)
	if dst == nil {
		c.net.blocked.Add(1)
		return len(b), nil
	}
	d := datagram{from: c.addr, buf: append([]byte(nil), b...)}
	if delay == 0 {
		dst.deliver(d)
		return len(b), nil
	}
	time.AfterFunc(delay, func() {
		// The partition or the kill may have happened while in flight.
		if got, _ := c.net.routePacket(c, dst.addr); got != dst {
			c.net.blocked.Add(1)
			return
		}
		dst.deliver(d)
	})
	return len(b), nil
}

func addrPortOf(addr net.Addr) (netip.AddrPort, error) {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case nil:
		return ap, errors.New("missing address")
	case *net.UDPAddr:
		if a == nil {
			return ap, errors.New("missing address")
		}
		ap = a.AddrPort()
	default:
		var err error
		if ap, err = netip.ParseAddrPort(addr.String()); err != nil {
			return ap, err
		}
	}
	if !ap.IsValid() || ap.Port() == 0 {
		return ap, fmt.Errorf("bad address %v", addr)
	}
	return unmap(ap), nil
}

func (c *PacketConn) deliver(d datagram) {
	if c.isDead() {
		c.net.blocked.Add(1)
		return
	}
	select {
	case c.queue <- d:
		c.net.delivered.Add(1)
	default:
		c.dropped.Add(1)
		c.net.dropped.Add(1)
	}
}

// Close unbinds the socket, so the address can be bound again, and makes
// blocked and later reads and writes fail with an error that wraps
// net.ErrClosed. It is idempotent and always returns nil.
func (c *PacketConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	c.kill()
	return nil
}

// kill takes the socket off the network without closing it.
func (c *PacketConn) kill() {
	c.killOnce.Do(func() {
		close(c.dead)
		c.net.removePacketConn(c)
		// Free the queued datagrams; a killed socket never reads them.
		for {
			select {
			case <-c.queue:
			default:
				return
			}
		}
	})
}

// SetDeadline sets both the read and the write deadline.
func (c *PacketConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the time after which ReadFrom fails with a timeout;
// zero means none. It also applies to a ReadFrom already waiting.
func (c *PacketConn) SetReadDeadline(t time.Time) error {
	if c.isClosed() {
		return c.opError("set", nil, net.ErrClosed)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	close(c.rdlChanged)
	c.rdlChanged = make(chan struct{})
	return nil
}

// SetWriteDeadline sets the time after which WriteTo fails with a timeout;
// zero means none. WriteTo never waits, so only a passed deadline matters.
func (c *PacketConn) SetWriteDeadline(t time.Time) error {
	if c.isClosed() {
		return c.opError("set", nil, net.ErrClosed)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wdl = t
	return nil
}

func (c *PacketConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *PacketConn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

func (c *PacketConn) opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Addr: addr, Err: err}
}
