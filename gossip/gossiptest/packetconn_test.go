package gossiptest

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// A node as the simulations lay it out: gossip at ip:7947, heartbeats at
// ip:7948 on the same IP.
func gossipAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 7947)
}

func hbAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(gossipAddr(i).Addr(), gossipAddr(i).Port()+1)
}

type simNode struct {
	tr *Transport
	hb *PacketConn
}

func newSimNodes(t *testing.T, n *Network, count int) []simNode {
	t.Helper()
	var out []simNode
	for i := 1; i <= count; i++ {
		tr, err := n.NewTransport(gossipAddr(i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Shutdown() })
		hb := listen(t, n, hbAddr(i))
		out = append(out, simNode{tr, hb})
	}
	return out
}

func listen(t *testing.T, n *Network, addr netip.AddrPort) *PacketConn {
	t.Helper()
	c, err := n.ListenPacket(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func send(t *testing.T, c *PacketConn, to netip.AddrPort, msg string) {
	t.Helper()
	if n, err := c.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(to)); err != nil || n != len(msg) {
		t.Fatalf("WriteTo %v: %d, %v", to, n, err)
	}
}

// read waits up to within for one datagram.
func read(t *testing.T, c *PacketConn, within time.Duration) (string, net.Addr, error) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(within)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, from, err := c.ReadFrom(buf)
	return string(buf[:n]), from, err
}

func expect(t *testing.T, c *PacketConn, msg string, from netip.AddrPort) {
	t.Helper()
	got, addr, err := read(t, c, time.Second)
	if err != nil || got != msg {
		t.Fatalf("%v read %q, %v; want %q", c.Addr(), got, err, msg)
	}
	if u, ok := addr.(*net.UDPAddr); !ok || u.AddrPort() != from {
		t.Fatalf("%v read %q from %#v, want from %v", c.Addr(), got, addr, from)
	}
}

// noDatagram checks that nothing arrives; delivery is synchronous without a
// delay, so a datagram that was not blocked is already queued and a short
// deadline is enough.
func noDatagram(t *testing.T, c *PacketConn) {
	t.Helper()
	got, from, err := read(t, c, 10*time.Millisecond)
	if !isTimeout(err) {
		t.Fatalf("%v got %q from %v (err %v), want nothing", c.Addr(), got, from, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
}

// tpacket sends a gossip packet and reports whether it arrived.
func tpacket(t *testing.T, from, to *Transport) bool {
	t.Helper()
	_, _ = from.WriteTo([]byte("g"), to.Addr().String())
	select {
	case <-to.PacketCh():
		return true
	default:
		return false
	}
}

func TestPacketConnDelivery(t *testing.T) {
	n := NewNetwork()
	a := listen(t, n, hbAddr(1))
	b := listen(t, n, hbAddr(2))
	if la, ok := a.LocalAddr().(*net.UDPAddr); !ok || la.AddrPort() != hbAddr(1) {
		t.Errorf("LocalAddr = %#v", a.LocalAddr())
	}
	send(t, a, hbAddr(2), "ping")
	expect(t, b, "ping", hbAddr(1))
	// Any net.Addr whose String is an IP:port will do.
	if _, err := b.WriteTo([]byte("pong"), &net.TCPAddr{IP: net.IP{198, 51, 100, 1}, Port: 7948}); err != nil {
		t.Fatal(err)
	}
	expect(t, a, "pong", hbAddr(2))

	// Truncated like UDP: the rest of the datagram is lost.
	send(t, a, hbAddr(2), "hello world")
	send(t, a, hbAddr(2), "next")
	buf := make([]byte, 5)
	if k, _, err := b.ReadFrom(buf); err != nil || string(buf[:k]) != "hello" {
		t.Errorf("short read: %q, %v", buf[:k], err)
	}
	expect(t, b, "next", hbAddr(1))

	// The sender's buffer is copied.
	msg := []byte("orig")
	_, _ = a.WriteTo(msg, net.UDPAddrFromAddrPort(hbAddr(2)))
	copy(msg, "XXXX")
	expect(t, b, "orig", hbAddr(1))

	for _, bad := range []net.Addr{nil, (*net.UDPAddr)(nil), &net.UnixAddr{Name: "/x", Net: "unixgram"}} {
		if _, err := a.WriteTo(nil, bad); err == nil {
			t.Errorf("WriteTo %#v: no error", bad)
		}
	}
	if _, err := n.ListenPacket(hbAddr(1)); err == nil {
		t.Error("second PacketConn on a bound address: no error")
	}
	if _, err := n.ListenPacket(netip.AddrPortFrom(hbAddr(3).Addr(), 0)); err == nil {
		t.Error("PacketConn without a port: no error")
	}
	// Transports and PacketConns share the address space but not traffic.
	tr, err := n.NewTransport(gossipAddr(1))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Shutdown() }()
	if _, err := n.NewTransport(hbAddr(1)); err == nil {
		t.Error("transport on a PacketConn's address: no error")
	}
	if _, err := n.ListenPacket(gossipAddr(1)); err == nil {
		t.Error("PacketConn on a transport's address: no error")
	}
	send(t, b, gossipAddr(1), "wrong kind")
	noPacket(t, tr)
	if _, err := tr.DialTimeout(hbAddr(2).String(), time.Second); !errors.Is(err, ErrUnreachable) {
		t.Errorf("dial a PacketConn: %v, want ErrUnreachable", err)
	}
	if got, want := n.Stats(), (Stats{Delivered: 5, Blocked: 1}); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

// Partition and Heal called with the gossip addresses cut and restore the
// heartbeat sockets on the same IPs too.
func TestPacketConnPartitionAndHeal(t *testing.T) {
	n := NewNetwork()
	s := newSimNodes(t, n, 3)
	n.Partition([]netip.AddrPort{gossipAddr(1)}, []netip.AddrPort{gossipAddr(2)})

	if tpacket(t, s[0].tr, s[1].tr) || tpacket(t, s[1].tr, s[0].tr) {
		t.Error("gossip crossed the partition")
	}
	send(t, s[0].hb, hbAddr(2), "1→2")
	send(t, s[1].hb, hbAddr(1), "2→1")
	noDatagram(t, s[0].hb)
	noDatagram(t, s[1].hb)
	// Links outside the cut still work, for both kinds.
	if !tpacket(t, s[0].tr, s[2].tr) {
		t.Error("gossip 1→3 lost")
	}
	send(t, s[1].hb, hbAddr(3), "2→3")
	expect(t, s[2].hb, "2→3", hbAddr(2))
	if got := n.Stats(); got.Blocked != 4 {
		t.Errorf("stats %+v, want 4 blocked", got)
	}

	n.Heal()
	if !tpacket(t, s[0].tr, s[1].tr) || !tpacket(t, s[1].tr, s[0].tr) {
		t.Error("gossip lost after heal")
	}
	send(t, s[0].hb, hbAddr(2), "healed")
	expect(t, s[1].hb, "healed", hbAddr(1))
	send(t, s[1].hb, hbAddr(1), "healed")
	expect(t, s[0].hb, "healed", hbAddr(2))

	// Partitioning an IP from itself cuts nothing (loopback).
	n.Partition([]netip.AddrPort{gossipAddr(1)}, []netip.AddrPort{hbAddr(1)})
	lo := listen(t, n, netip.AddrPortFrom(hbAddr(1).Addr(), 9999))
	send(t, s[0].hb, lo.Addr(), "lo")
	expect(t, lo, "lo", hbAddr(1))
}

// Kill with the gossip address crashes the whole node, heartbeats included.
func TestPacketConnKill(t *testing.T) {
	n := NewNetwork()
	s := newSimNodes(t, n, 2)
	send(t, s[0].hb, hbAddr(2), "queued before the kill")

	n.Kill(gossipAddr(2))
	if tpacket(t, s[0].tr, s[1].tr) {
		t.Error("gossip reached a killed node")
	}
	// Writes to and from the dead node succeed and vanish; the dead socket
	// is not closed, it just hears nothing, not even what was queued.
	send(t, s[0].hb, hbAddr(2), "to the dead")
	send(t, s[1].hb, hbAddr(1), "from the dead")
	noDatagram(t, s[1].hb)
	noDatagram(t, s[0].hb)
	if got := n.Stats(); got.Blocked != 3 {
		t.Errorf("stats %+v, want 3 blocked", got)
	}

	// The restarted node binds both addresses again.
	hb := listen(t, n, hbAddr(2))
	tr, err := n.NewTransport(gossipAddr(2))
	if err != nil {
		t.Fatalf("rebind transport after kill: %v", err)
	}
	defer func() { _ = tr.Shutdown() }()
	send(t, s[0].hb, hbAddr(2), "hi again")
	expect(t, hb, "hi again", hbAddr(1))
	send(t, hb, hbAddr(1), "back")
	expect(t, s[0].hb, "back", hbAddr(2))
	noDatagram(t, s[1].hb) // the killed socket stays dead

	// Close still releases a reader of a killed socket.
	_ = s[1].hb.Close()
	if _, _, err := s[1].hb.ReadFrom(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close of a killed socket: %v", err)
	}
}

// SetDelay with the gossip addresses delays heartbeats too, and a datagram
// in flight when the link is cut is lost.
func TestPacketConnDelay(t *testing.T) {
	n := NewNetwork()
	s := newSimNodes(t, n, 2)
	n.SetDelay(gossipAddr(1), gossipAddr(2), 60*time.Millisecond)
	start := time.Now()
	send(t, s[0].hb, hbAddr(2), "slow")
	expect(t, s[1].hb, "slow", hbAddr(1))
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("delayed datagram arrived after %v, want ≥ 60ms", d)
	}
	send(t, s[1].hb, hbAddr(1), "fast") // the reverse link is not delayed
	noDelay := time.Now()
	expect(t, s[0].hb, "fast", hbAddr(2))
	if d := time.Since(noDelay); d > 50*time.Millisecond {
		t.Errorf("undelayed datagram took %v", d)
	}

	send(t, s[0].hb, hbAddr(2), "cut")
	n.Partition([]netip.AddrPort{gossipAddr(1)}, []netip.AddrPort{gossipAddr(2)})
	if got, _, err := read(t, s[1].hb, 200*time.Millisecond); !isTimeout(err) {
		t.Errorf("datagram in flight crossed a new partition: %q, %v", got, err)
	}
	n.SetDelay(gossipAddr(1), gossipAddr(2), 0)
}

func TestPacketConnFullQueueDrops(t *testing.T) {
	n := NewNetwork()
	a := listen(t, n, hbAddr(1))
	b := listen(t, n, hbAddr(2))
	for range PacketQueue + 7 {
		send(t, a, hbAddr(2), "flood")
	}
	if got := b.Dropped(); got != 7 {
		t.Errorf("dropped %d, want 7", got)
	}
	if got := n.Stats(); got.Dropped != 7 || got.Delivered != PacketQueue {
		t.Errorf("stats %+v", got)
	}
	expect(t, b, "flood", hbAddr(1))
}

func TestPacketConnReadDeadline(t *testing.T) {
	n := NewNetwork()
	a := listen(t, n, hbAddr(1))
	b := listen(t, n, hbAddr(2))

	start := time.Now()
	if _, _, err := read(t, b, 20*time.Millisecond); !isTimeout(err) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("deadline fired after %v, want ≥ 20ms", d)
	}
	// A passed deadline wins over queued data; clearing it reads the data.
	send(t, a, hbAddr(2), "late")
	_ = b.SetReadDeadline(time.Now().Add(-time.Second))
	if _, _, err := b.ReadFrom(make([]byte, 8)); !isTimeout(err) {
		t.Errorf("read with a passed deadline: %v, want a timeout", err)
	}
	_ = b.SetReadDeadline(time.Time{})
	if k, _, err := b.ReadFrom(make([]byte, 8)); err != nil || k != 4 {
		t.Errorf("read without a deadline: %d, %v", k, err)
	}

	// A write deadline in the past fails writes; a future one does not.
	_ = a.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := a.WriteTo([]byte("x"), b.LocalAddr()); !isTimeout(err) {
		t.Errorf("write past its deadline: %v, want a timeout", err)
	}
	_ = a.SetDeadline(time.Now().Add(time.Hour))
	if _, err := a.WriteTo([]byte("x"), b.LocalAddr()); err != nil {
		t.Errorf("write before its deadline: %v", err)
	}
}

// blockedRead starts a ReadFrom on c and waits until it has read its
// deadline and is about to wait; the returned channel gets its result.
// While pause is open the reader holds there, so the caller can change the
// deadline knowing the read had already taken the old one.
func blockedRead(t *testing.T, c *PacketConn) (result <-chan error, resume func()) {
	t.Helper()
	waiting, proceed := make(chan struct{}), make(chan struct{})
	first := true
	c.testHookRead = func() {
		if first {
			first = false
			close(waiting)
			<-proceed
		}
	}
	res := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 8))
		res <- err
	}()
	select {
	case <-waiting:
	case err := <-res:
		t.Fatalf("read returned before blocking: %v", err)
	}
	return res, func() { close(proceed) }
}

func waitErr(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("blocked read never returned")
		return nil
	}
}

// The heartbeat moves its read deadline from another goroutine while a
// ReadFrom waits; the waiting read must obey the new deadline.
func TestPacketConnDeadlineMovedWhileBlocked(t *testing.T) {
	n := NewNetwork()
	c := listen(t, n, hbAddr(1))

	// Brought forward: an hour becomes 20ms.
	_ = c.SetReadDeadline(time.Now().Add(time.Hour))
	res, resume := blockedRead(t, c)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	resume()
	if err := waitErr(t, res); !isTimeout(err) {
		t.Errorf("read after the deadline moved forward: %v, want a timeout", err)
	}

	// Pushed back: the read must not fire at the old deadline.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	res, resume = blockedRead(t, c)
	later := time.Now().Add(100 * time.Millisecond)
	_ = c.SetReadDeadline(later)
	resume()
	if err := waitErr(t, res); !isTimeout(err) {
		t.Errorf("read after the deadline moved back: %v, want a timeout", err)
	}
	if time.Now().Before(later) {
		t.Error("read fired at the old deadline, not the new one")
	}

	// Cleared: the read waits for data past the old deadline.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	res, resume = blockedRead(t, c)
	_ = c.SetReadDeadline(time.Time{})
	resume()
	other := listen(t, n, hbAddr(2))
	send(t, other, hbAddr(1), "data")
	if err := waitErr(t, res); err != nil {
		t.Errorf("read with a cleared deadline: %v", err)
	}
}

func TestPacketConnCloseUnblocksAndRebinds(t *testing.T) {
	n := NewNetwork()
	a := listen(t, n, hbAddr(1))
	b := listen(t, n, hbAddr(2))
	res, resume := blockedRead(t, b)
	resume()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, res); !errors.Is(err, net.ErrClosed) {
		t.Errorf("blocked read after Close: %v, want net.ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := b.WriteTo([]byte("x"), a.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v, want net.ErrClosed", err)
	}
	if err := b.SetReadDeadline(time.Time{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetReadDeadline after Close: %v, want net.ErrClosed", err)
	}
	send(t, a, hbAddr(2), "to the closed")

	b2 := listen(t, n, hbAddr(2))
	send(t, a, hbAddr(2), "rebound")
	expect(t, b2, "rebound", hbAddr(1))
	if got := n.Stats(); got.Blocked != 1 || got.Delivered != 1 {
		t.Errorf("stats %+v, want 1 blocked, 1 delivered", got)
	}
}

// Heartbeat-like loops read with deadlines moved by another goroutine while
// the network partitions, heals, delays and kills (run with -race).
func TestPacketConnConcurrentUse(t *testing.T) {
	n := NewNetwork()
	s := newSimNodes(t, n, 6)
	const rounds = 300
	var wg, readers sync.WaitGroup
	for i, x := range s {
		wg.Go(func() { // sender
			for j := range rounds {
				_, _ = x.hb.WriteTo([]byte("hb"), net.UDPAddrFromAddrPort(hbAddr(1+(i+j)%len(s))))
			}
		})
		wg.Go(func() { // deadline mover
			for j := range rounds {
				_ = x.hb.SetReadDeadline(time.Now().Add(time.Duration(j%3) * time.Millisecond))
			}
		})
		readers.Go(func() { // reader: stops once closed
			buf := make([]byte, 2)
			for {
				if _, _, err := x.hb.ReadFrom(buf); errors.Is(err, net.ErrClosed) {
					return
				}
			}
		})
	}
	wg.Go(func() {
		for j := range rounds {
			n.Partition([]netip.AddrPort{gossipAddr(1 + j%6)}, []netip.AddrPort{gossipAddr(1 + (j+2)%6)})
			n.SetDelay(gossipAddr(1+j%6), gossipAddr(1+(j+1)%6), time.Duration(j%2)*time.Millisecond)
			if j%40 == 0 {
				n.Heal()
			}
			if j == rounds/2 {
				n.Kill(gossipAddr(4))
			}
		}
	})
	wg.Wait()
	before := n.Stats().Blocked
	send(t, s[0].hb, hbAddr(4), "to the dead")
	if got := n.Stats().Blocked; got != before+1 {
		t.Errorf("blocked %d after a write to a killed node, want %d", got, before+1)
	}
	for _, x := range s {
		_ = x.hb.Close()
	}
	readers.Wait()
}
