package gossiptest

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ap(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 7947)
}

func newTransports(t *testing.T, n *Network, count int) []*Transport {
	t.Helper()
	var out []*Transport
	for i := 1; i <= count; i++ {
		tr, err := n.NewTransport(ap(i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Shutdown() })
		out = append(out, tr)
	}
	return out
}

// recv waits for one packet.
func recv(t *testing.T, tr *Transport, within time.Duration) (*memberlist.Packet, bool) {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		return p, true
	case <-time.After(within):
		return nil, false
	}
}

// noPacket checks that nothing is queued; delivery is synchronous without a
// delay, so a packet that was not dropped is already in the queue.
func noPacket(t *testing.T, tr *Transport) {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		t.Fatalf("%v got an unexpected packet %q from %v", tr.Addr(), p.Buf, p.From)
	default:
	}
}

func TestPacketDelivery(t *testing.T) {
	n := NewNetwork()
	tr := newTransports(t, n, 2)
	if _, err := tr[0].WriteTo([]byte("hello"), ap(2).String()); err != nil {
		t.Fatal(err)
	}
	p, ok := recv(t, tr[1], time.Second)
	if !ok || string(p.Buf) != "hello" || p.From.String() != ap(1).String() || p.Timestamp.IsZero() {
		t.Fatalf("got %+v, want hello from %v", p, ap(1))
	}
	ip, port, err := tr[1].FinalAdvertiseAddr("", 0)
	if err != nil || ip.String() != "192.0.2.2" || port != 7947 {
		t.Errorf("FinalAdvertiseAddr = %v %d %v", ip, port, err)
	}
	if _, err := n.NewTransport(ap(2)); err == nil {
		t.Error("second transport on a bound address: no error")
	}
	if _, err := tr[0].WriteTo(nil, "not an address"); err == nil {
		t.Error("WriteTo a bad address: no error")
	}
	if got := n.Stats(); got.Delivered != 1 {
		t.Errorf("stats %+v, want 1 delivered", got)
	}
}

func TestPartitionAndHeal(t *testing.T) {
	n := NewNetwork()
	tr := newTransports(t, n, 3)
	n.Partition([]netip.AddrPort{ap(1)}, []netip.AddrPort{ap(2), ap(3)})

	_, _ = tr[0].WriteTo([]byte("x"), ap(2).String())
	_, _ = tr[1].WriteTo([]byte("x"), ap(1).String())
	noPacket(t, tr[0])
	noPacket(t, tr[1])
	if _, err := tr[0].DialTimeout(ap(3).String(), time.Minute); !errors.Is(err, ErrUnreachable) {
		t.Errorf("dial across partition: %v, want ErrUnreachable at once", err)
	}
	// The same side still talks.
	_, _ = tr[1].WriteTo([]byte("y"), ap(3).String())
	if _, ok := recv(t, tr[2], time.Second); !ok {
		t.Error("2→3 inside one side: lost")
	}

	n.Heal()
	_, _ = tr[0].WriteTo([]byte("z"), ap(2).String())
	if _, ok := recv(t, tr[1], time.Second); !ok {
		t.Error("after heal: lost")
	}
	if got := n.Stats(); got.Blocked != 2 {
		t.Errorf("stats %+v, want 2 blocked", got)
	}
}

func TestPartitionBreaksOpenStreams(t *testing.T) {
	n := NewNetwork()
	tr := newTransports(t, n, 2)
	c, err := tr[0].DialTimeout(ap(2).String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-tr[1].StreamCh()
	defer s.Close()
	if s.RemoteAddr().String() != ap(1).String() || c.RemoteAddr().String() != ap(2).String() {
		t.Errorf("addrs: %v ↔ %v", s.RemoteAddr(), c.RemoteAddr())
	}
	go func() { _, _ = c.Write([]byte("ping")) }()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("stream read %q %v", buf, err)
	}

	n.Partition([]netip.AddrPort{ap(1)}, []netip.AddrPort{ap(2)})
	_ = s.SetReadDeadline(time.Now().Add(time.Minute))
	start := time.Now()
	if _, err := s.Read(buf); err == nil {
		t.Error("read across a new partition: no error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("read across a partition blocked %v", d)
	}
}

func TestKill(t *testing.T) {
	n := NewNetwork()
	tr := newTransports(t, n, 2)
	c, err := tr[0].DialTimeout(ap(2).String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-tr[1].StreamCh()

	n.Kill(ap(2))
	_, _ = tr[0].WriteTo([]byte("to the dead"), ap(2).String())
	noPacket(t, tr[1])
	_, _ = tr[1].WriteTo([]byte("from the dead"), ap(1).String())
	noPacket(t, tr[0])
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("write on a stream to a killed node: no error")
	}
	if _, err := s.Read(make([]byte, 1)); err == nil {
		t.Error("read on a killed node's stream: no error")
	}
	start := time.Now()
	if _, err := tr[0].DialTimeout(ap(2).String(), time.Minute); !errors.Is(err, ErrUnreachable) {
		t.Errorf("dial a killed node: %v, want ErrUnreachable", err)
	}
	if _, err := tr[1].DialTimeout(ap(1).String(), time.Minute); !errors.Is(err, ErrUnreachable) {
		t.Errorf("dial from a killed node: %v, want ErrUnreachable", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("dials to and from a dead node took %v", d)
	}

	// A restarted node may bind the address again and is reachable.
	re, err := n.NewTransport(ap(2))
	if err != nil {
		t.Fatalf("rebind after kill: %v", err)
	}
	defer func() { _ = re.Shutdown() }()
	_, _ = tr[0].WriteTo([]byte("hi again"), ap(2).String())
	if _, ok := recv(t, re, time.Second); !ok {
		t.Error("restarted node: lost")
	}
	noPacket(t, tr[1]) // the killed transport stays dead
}

func TestDelay(t *testing.T) {
	n := NewNetwork()
	tr := newTransports(t, n, 2)
	n.SetDelay(ap(1), ap(2), 80*time.Millisecond)
	start := time.Now()
	_, _ = tr[0].WriteTo([]byte("slow"), ap(2).String())
	if _, ok := recv(t, tr[1], time.Second); !ok {
		t.Fatal("delayed packet lost")
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("delayed packet arrived after %v, want ≥ 80ms", d)
	}
	// The reverse link is not delayed.
	_, _ = tr[1].WriteTo([]byte("fast"), ap(1).String())
	noPacketDelay := time.Now()
	if _, ok := recv(t, tr[0], time.Second); !ok || time.Since(noPacketDelay) > 50*time.Millisecond {
		t.Error("reverse link delayed or lost")
	}
	// A dial slower than its timeout times out.
	if _, err := tr[0].DialTimeout(ap(2).String(), 10*time.Millisecond); err == nil {
		t.Error("dial with delay > timeout: no error")
	} else if ne, ok := err.(interface{ Timeout() bool }); !ok || !ne.Timeout() {
		t.Errorf("dial with delay > timeout: %v, want a timeout", err)
	}
	// A packet in flight when the link is cut is lost.
	_, _ = tr[0].WriteTo([]byte("cut"), ap(2).String())
	n.Partition([]netip.AddrPort{ap(1)}, []netip.AddrPort{ap(2)})
	if _, ok := recv(t, tr[1], 200*time.Millisecond); ok {
		t.Error("packet in flight crossed a new partition")
	}
	n.SetDelay(ap(1), ap(2), 0)
}

// A receiver that stopped reading must never block a sender.
func TestFullQueueDropsInsteadOfBlocking(t *testing.T) {
	n := NewNetwork()
	tr := newTransports(t, n, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range PacketQueue + 100 {
			_, _ = tr[0].WriteTo([]byte("flood"), ap(2).String())
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WriteTo blocked on a receiver that does not read")
	}
	if got := tr[1].Dropped(); got != 100 {
		t.Errorf("dropped %d, want 100", got)
	}
	if got := n.Stats(); got.Dropped != 100 || got.Delivered != PacketQueue {
		t.Errorf("stats %+v", got)
	}
	// A full stream accept queue times out the dial instead of blocking.
	for range streamQueue {
		c, err := tr[0].DialTimeout(ap(2).String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if _, err := tr[0].DialTimeout(ap(2).String(), 20*time.Millisecond); err == nil {
		t.Error("dial into a full accept queue: no error")
	}
}

// Many goroutines partition, heal, kill and send at once (run with -race).
func TestConcurrentUse(t *testing.T) {
	n := NewNetwork()
	tr := newTransports(t, n, 8)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, x := range tr {
		wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				case <-x.PacketCh():
				default:
				}
				to := ap(1 + (i+j)%len(tr))
				_, _ = x.WriteTo([]byte(fmt.Sprint(j)), to.String())
				if c, err := x.DialTimeout(to.String(), 10*time.Millisecond); err == nil {
					c.Close()
				}
			}
		})
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case c := <-x.StreamCh():
					c.Close()
				}
			}
		})
	}
	wg.Go(func() {
		for j := 0; ; j++ {
			select {
			case <-stop:
				return
			default:
			}
			n.Partition([]netip.AddrPort{ap(1 + j%8)}, []netip.AddrPort{ap(1 + (j+3)%8)})
			n.SetDelay(ap(1+j%8), ap(1+(j+1)%8), time.Duration(j%3)*time.Millisecond)
			if j%50 == 0 {
				n.Heal()
			}
		}
	})
	time.Sleep(300 * time.Millisecond) // let the workload run; not synchronisation
	n.Kill(ap(5))
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if s := n.Stats(); s.Delivered == 0 || s.Blocked == 0 {
		t.Errorf("stats %+v: expected traffic both delivered and blocked", s)
	}
}
