//go:build linux

package bench

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// clientRcvBuf is large enough that a burst of answers is never dropped by
// the client's socket: losses must be the responder's.
const clientRcvBuf = 4 << 20

// ListenClient opens the load generator's socket on ifi: raw Ethernet
// frames, filtered in the kernel to ARP replies (proto ARP) or Neighbor
// Advertisements without extension headers (proto NDP), with our own
// requests not looped back. It needs CAP_NET_RAW, and opens the socket in
// the calling thread's network namespace.
func ListenClient(ifi *net.Interface, proto Proto) (*ClientConn, error) {
	var (
		ethType int
		prog    []bpf.Instruction
	)
	switch proto {
	case ARP:
		ethType = unix.ETH_P_ARP
		prog = []bpf.Instruction{
			bpf.LoadAbsolute{Off: 12, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeARP, SkipTrue: 3},
			bpf.LoadAbsolute{Off: arpOpOff, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: arpOpReply, SkipTrue: 1},
			bpf.RetConstant{Val: 256},
			bpf.RetConstant{Val: 0},
		}
	case NDP:
		ethType = unix.ETH_P_IPV6
		prog = []bpf.Instruction{
			bpf.LoadAbsolute{Off: 12, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv6, SkipTrue: 5},
			bpf.LoadAbsolute{Off: ipv6NextOff, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},
			bpf.LoadAbsolute{Off: icmpOff, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmpTypeNA, SkipTrue: 1},
			bpf.RetConstant{Val: 256},
			bpf.RetConstant{Val: 0},
		}
	default:
		return nil, fmt.Errorf("listen client on %q: unknown protocol %q", ifi.Name, proto)
	}
	filter, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("listen client on %q: assemble filter: %w", ifi.Name, err)
	}
	c, err := packet.Listen(ifi, packet.Raw, ethType, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("listen client on %q: %w", ifi.Name, err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("listen client on %q: %w", ifi.Name, err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		// Our own requests are not answers (PACKET_IGNORE_OUTGOING, 4.20).
		serr = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		if serr == nil {
			// FORCE: root may exceed net.core.rmem_max.
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, clientRcvBuf)
		}
		if serr == nil {
			// The kernel's receive time of each frame, in a control message.
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
		}
	}); err != nil {
		serr = err
	}
	if serr != nil {
		c.Close()
		return nil, fmt.Errorf("listen client on %q: set socket options: %w", ifi.Name, serr)
	}
	return &ClientConn{Conn: c, raw: rc}, nil
}

// ClientConn is the load generator's socket (see ListenClient). It
// implements Conn; Close closes it.
type ClientConn struct {
	*packet.Conn
	raw syscall.RawConn
}

var _ Conn = (*ClientConn)(nil)

// Recv implements Conn with recvmsg(2), taking the receive time from the
// SO_TIMESTAMPNS control message. It honours the read deadline.
func (c *ClientConn) Recv(b []byte) (int, time.Time, error) {
	var (
		n, oobn int
		rerr    error
		oob     [64]byte
	)
	err := c.raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), b, oob[:], 0)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("receive: %w", err)
	}
	return n, rxTime(oob[:oobn]), nil
}

// rxTime returns the SCM_TIMESTAMPNS time in oob, or now without it.
func rxTime(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS &&
				len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
				ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
				return time.Unix(ts.Unix())
			}
		}
	}
	return time.Now().Round(0)
}
