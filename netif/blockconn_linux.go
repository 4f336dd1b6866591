//go:build linux

package netif

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// blockingConn reads a packet socket with plain blocking recvfrom(2) on the
// calling thread instead of through Go's network poller. An ARP or NDP
// answer is latency-bound: with the poller, every request costs an epoll
// wake-up plus a hand-off to the responder goroutine before the reply can
// even be built; a thread blocked in recvfrom is woken by the kernel with the
// frame in hand. Writes, multicast membership and the socket's lifetime stay
// with *packet.Conn.
//
// Read deadlines are honoured to within pollEvery: a blocked read wakes
// that often to look at the deadline and at Close.
type blockingConn struct {
	*packet.Conn
	fd       int
	deadline atomic.Int64 // unix nanoseconds; 0 = none

	mu     sync.RWMutex // held shared by ReadFrom for the syscall, exclusively by Close
	closed atomic.Bool
}

const pollEvery = 100 * time.Millisecond

func newBlockingConn(c *packet.Conn) (*blockingConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &blockingConn{Conn: c, fd: -1}
	if err := rc.Control(func(fd uintptr) { b.fd = int(fd) }); err != nil {
		return nil, err
	}
	return b, nil
}

// ReadFrom implements PacketConn. It blocks the calling OS thread.
func (b *blockingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		if b.closed.Load() {
			return 0, nil, net.ErrClosed
		}
		if d := b.deadline.Load(); d != 0 && time.Now().UnixNano() >= d {
			return 0, nil, os.ErrDeadlineExceeded
		}
		b.mu.RLock()
		if b.closed.Load() {
			b.mu.RUnlock()
			return 0, nil, net.ErrClosed
		}
		n, from, err := recvBlocking(b.fd, p)
		b.mu.RUnlock()
		switch {
		case err == nil:
			var addr net.Addr
			if ll, ok := from.(*unix.SockaddrLinklayer); ok {
				addr = &packet.Addr{HardwareAddr: net.HardwareAddr(ll.Addr[:ll.Halen])}
			}
			return n, addr, nil
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue
		default:
			return 0, nil, err
		}
	}
}

// recvBlocking waits in poll(2), on this thread, up to pollEvery for the
// socket to become readable, then reads one frame. The descriptor stays
// non-blocking (Go's poller owns that flag), hence MSG_DONTWAIT.
func recvBlocking(fd int, p []byte) (int, unix.Sockaddr, error) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(pollEvery/time.Millisecond))
	if err != nil {
		return 0, nil, err
	}
	if n == 0 {
		return 0, nil, unix.EAGAIN
	}
	m, from, err := unix.Recvfrom(fd, p, unix.MSG_DONTWAIT)
	return m, from, err
}

// SetReadDeadline implements PacketConn.
func (b *blockingConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		b.deadline.Store(0)
	} else {
		b.deadline.Store(t.UnixNano())
	}
	return nil
}

// Close waits for a read in progress (at most pollEvery) so the descriptor
// is never closed, and its number reused, under a blocked recvfrom.
func (b *blockingConn) Close() error {
	b.closed.Store(true)
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Conn.Close()
}
