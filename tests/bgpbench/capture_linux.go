package bgpbench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hostlb/hostlb/tests/netlab"
)

// bgpPort is BGP's TCP port (RFC 4271).
const bgpPort = 179

// keepaliveLen is a KEEPALIVE's length: segments of at most this payload
// carry no UPDATE (RFC 4271 §4.4), so the capture ignores them.
const keepaliveLen = 19

// Segment is one TCP segment of a BGP session with a payload longer than
// a KEEPALIVE, as the router's interface received it.
type Segment struct {
	At      time.Time // the kernel's receive timestamp (SO_TIMESTAMPNS)
	Src     netip.Addr
	Payload int // bytes
}

// Capture records BGP segments on one interface of a namespace, from a
// packet socket (AF_PACKET) opened inside it, until Close.
type Capture struct {
	fd   int
	stop atomic.Bool
	done chan struct{}

	mu   sync.Mutex // guards segs and err
	segs []Segment
	err  error
}

// StartCapture opens a packet socket on ifname inside ns and records
// every BGP segment it sees; Close stops it.
func StartCapture(ns *netlab.NS, ifname string) (*Capture, error) {
	c := &Capture{fd: -1, done: make(chan struct{})}
	proto := int(htons(unix.ETH_P_ALL))
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		c.fd = fd
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err == nil {
		err = errors.Join(
			unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20),
			unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1),
			// Wakes the reader to see Close.
			unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000}))
	}
	if err != nil {
		if c.fd >= 0 {
			_ = unix.Close(c.fd)
		}
		return nil, fmt.Errorf("capture on %s in %s: %w", ifname, ns.Name, err)
	}
	go c.read()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) read() {
	defer close(c.done)
	// Only the headers are read: the lengths come from the IP header, so
	// a segment GRO merged counts whole.
	buf := make([]byte, 256)
	oob := make([]byte, 128)
	for !c.stop.Load() {
		n, oobn, _, _, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_TRUNC)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.mu.Lock()
			c.err = fmt.Errorf("capture: %w", err)
			c.mu.Unlock()
			return
		}
		at := time.Now()
		if ts, ok := timestamp(oob[:oobn]); ok {
			at = ts
		}
		src, payload, ok := parseBGPSegment(buf[:min(n, len(buf))])
		if !ok || payload <= keepaliveLen {
			continue
		}
		c.mu.Lock()
		c.segs = append(c.segs, Segment{At: at, Src: src, Payload: payload})
		c.mu.Unlock()
	}
}

// timestamp reads SCM_TIMESTAMPNS from a message's control data.
func timestamp(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			return time.Unix(ts.Unix()), true
		}
	}
	return time.Time{}, false
}

// parseBGPSegment reads an Ethernet frame's IPv4 or IPv6 header (no
// extension headers) and TCP header, and returns the source address and
// the TCP payload's length of a segment from or to port 179.
func parseBGPSegment(f []byte) (src netip.Addr, payload int, ok bool) {
	if len(f) < 14 {
		return src, 0, false
	}
	var tcp []byte
	var ipPayload int
	switch binary.BigEndian.Uint16(f[12:14]) {
	case unix.ETH_P_IP:
		ip := f[14:]
		if len(ip) < 20 || ip[9] != unix.IPPROTO_TCP {
			return src, 0, false
		}
		ihl := int(ip[0]&0x0f) * 4
		if len(ip) < ihl {
			return src, 0, false
		}
		src = netip.AddrFrom4([4]byte(ip[12:16]))
		ipPayload = int(binary.BigEndian.Uint16(ip[2:4])) - ihl
		tcp = ip[ihl:]
	case unix.ETH_P_IPV6:
		ip := f[14:]
		if len(ip) < 40 || ip[6] != unix.IPPROTO_TCP {
			return src, 0, false
		}
		src = netip.AddrFrom16([16]byte(ip[8:24]))
		ipPayload = int(binary.BigEndian.Uint16(ip[4:6]))
		tcp = ip[40:]
	default:
		return src, 0, false
	}
	if len(tcp) < 20 {
		return src, 0, false
	}
	sport, dport := binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4])
	if sport != bgpPort && dport != bgpPort {
		return src, 0, false
	}
	return src, ipPayload - int(tcp[12]>>4)*4, true
}

// Span is what the capture saw from one source in a window: the first and
// last segment's time, how many, and their payload bytes.
type Span struct {
	First, Last time.Time
	Segments    int
	Bytes       int
}

// From returns the segments from src received at or after since. It
// first waits (up to a second) until the socket's queue is empty, so that
// what the kernel received before the call has been read.
func (c *Capture) From(src netip.Addr, since time.Time) (Span, error) {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if n, err := unix.IoctlGetInt(c.fd, unix.SIOCINQ); err != nil || n == 0 {
			break
		}
		time.Sleep(time.Millisecond) // polling the queue's length
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var s Span
	for _, g := range c.segs {
		if g.Src != src || g.At.Before(since) {
			continue
		}
		if s.Segments == 0 {
			s.First = g.At
		}
		s.Last = g.At
		s.Segments++
		s.Bytes += g.Payload
	}
	return s, c.err
}

// Close stops the capture and closes its socket; it waits.
func (c *Capture) Close() {
	c.stop.Store(true)
	<-c.done
	_ = unix.Close(c.fd)
}
