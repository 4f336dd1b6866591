package netif

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// fakePacketConn is an in-memory PacketConn: tests push frames with deliver
// and read what the responder wrote from written. Like the kernel, it counts
// multicast memberships per group.
type fakePacketConn struct {
	in      chan []byte
	written chan []byte
	closed  chan struct{}

	mu        sync.Mutex // guards the fields below
	closeOnce bool
	deadline  chan struct{} // closed once a past read deadline is set
	groups    map[string]int
	joinErr   error
	writeErr  error
}

func newFakePacketConn() *fakePacketConn {
	return &fakePacketConn{
		in:       make(chan []byte, 64),
		written:  make(chan []byte, 1024),
		closed:   make(chan struct{}),
		deadline: make(chan struct{}),
		groups:   map[string]int{},
	}
}

func (f *fakePacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	f.mu.Lock()
	dl := f.deadline
	f.mu.Unlock()
	select {
	case p := <-f.in:
		return copy(b, p), nil, nil
	case <-f.closed:
		return 0, nil, net.ErrClosed
	case <-dl:
		return 0, nil, os.ErrDeadlineExceeded
	}
}

func (f *fakePacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	f.mu.Lock()
	err := f.writeErr
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	select {
	case <-f.closed:
		return 0, net.ErrClosed
	default:
	}
	f.written <- append([]byte(nil), b...)
	return len(b), nil
}

// SetReadDeadline supports what responders use: a deadline in the past
// (to wake the reader) and the zero time.
func (f *fakePacketConn) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case t.IsZero():
		f.deadline = make(chan struct{})
	case !t.After(time.Now()):
		select {
		case <-f.deadline:
		default:
			close(f.deadline)
		}
	}
	return nil
}

func (f *fakePacketConn) JoinGroup(hw net.HardwareAddr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.joinErr != nil {
		return f.joinErr
	}
	f.groups[hw.String()]++
	return nil
}

func (f *fakePacketConn) LeaveGroup(hw net.HardwareAddr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.groups[hw.String()] == 0 {
		return errors.New("fake: not a member")
	}
	if f.groups[hw.String()]--; f.groups[hw.String()] == 0 {
		delete(f.groups, hw.String())
	}
	return nil
}

func (f *fakePacketConn) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closeOnce {
		return net.ErrClosed
	}
	f.closeOnce = true
	close(f.closed)
	return nil
}

func (f *fakePacketConn) isClosed() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

func (f *fakePacketConn) memberships() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.groups {
		out[k] = v
	}
	return out
}

func (f *fakePacketConn) deliver(t *testing.T, frame []byte) {
	t.Helper()
	select {
	case f.in <- frame:
	case <-time.After(5 * time.Second):
		t.Fatal("responder is not reading")
	}
}

// next returns the next written frame, failing after a generous deadline.
func (f *fakePacketConn) next(t *testing.T) []byte {
	t.Helper()
	select {
	case b := <-f.written:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no frame written within 5s")
		return nil
	}
}

// expectNone checks nothing has been written. Callers first deliver a
// sentinel frame that is answered and read its answer, so every frame
// delivered before it has been handled: no timing is involved.
func (f *fakePacketConn) expectNone(t *testing.T) {
	t.Helper()
	select {
	case b := <-f.written:
		t.Fatalf("unexpected frame written: % x", b)
	default:
	}
}

// leakCheck fails the test if it leaves goroutines behind. It ignores
// goroutines that were running before, so parallel tests elsewhere in the
// package do not make it flaky.
func leakCheck(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

var (
	ourMAC    = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	peerMAC   = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
	otherMAC  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x03}
	vip4      = netip.MustParseAddr("192.0.2.100")
	vip4b     = netip.MustParseAddr("192.0.2.101")
	peer4     = netip.MustParseAddr("192.0.2.2")
	vip6      = netip.MustParseAddr("2001:db8::100")
	vip6Twin  = netip.MustParseAddr("2001:db8:1::100") // same solicited-node group as vip6
	vip6b     = netip.MustParseAddr("2001:db8::200")
	peer6     = netip.MustParseAddr("2001:db8::2")
	testRcCfg = ResponderConfig{Ifindex: 7, Ifname: "test0", HardwareAddr: ourMAC}
)

func mustMarshal(t testing.TB, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal %+v: %v", m, err)
	}
	return b
}
