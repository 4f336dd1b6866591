//go:build linux

package netif

import (
	"errors"
	"fmt"
	"net"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ListenARP opens the packet socket an ARPResponder reads and writes: raw
// Ethernet frames of type ARP on ifi, and nothing else. It needs
// CAP_NET_RAW, and no IPv4 address on ifi.
func ListenARP(ifi *net.Interface) (PacketConn, error) {
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
	if err != nil {
		return nil, fmt.Errorf("listen ARP on %q: %w", ifi.Name, err)
	}
	ignoreOutgoing(c)
	return blocking(c, ifi.Name)
}

// ListenNDP opens the packet socket an NDPResponder reads and writes: IPv6
// frames on ifi, filtered in the kernel to ICMPv6 Neighbor Solicitations
// without extension headers, so the responder never sees data traffic. It
// needs CAP_NET_RAW, and no IPv6 address (not even link-local) on ifi.
//
// The conn also carries IPv6 sockets through which the responder joins the
// solicited-node groups in the kernel's IPv6 stack too, so the kernel sends
// MLD reports for them (see groupJoiner); they are opened in the calling
// thread's network namespace and closed with the conn. Their failure (IPv6
// disabled) does not fail ListenNDP: NDP answering does not depend on them.
func ListenNDP(ifi *net.Interface) (PacketConn, error) {
	filter, err := bpf.Assemble(nsFilter)
	if err != nil {
		return nil, fmt.Errorf("listen NDP on %q: assemble filter: %w", ifi.Name, err)
	}
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_IPV6, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("listen NDP on %q: %w", ifi.Name, err)
	}
	ignoreOutgoing(c)
	b, err := blocking(c, ifi.Name)
	if err != nil {
		return nil, err
	}
	return &ndpConn{PacketConn: b, mld: newMLDSockets(ifi)}, nil
}

// ndpConn is the packet socket of an NDPResponder plus its MLD sockets.
type ndpConn struct {
	PacketConn
	mld *mldSockets
}

func (c *ndpConn) mldJoiner() groupJoiner { return c.mld }

// Close closes the packet socket and the MLD sockets, leaving every group.
func (c *ndpConn) Close() error {
	return errors.Join(c.PacketConn.Close(), c.mld.Close())
}

// nsFilter accepts Ethernet frames carrying IPv6 with next header ICMPv6 and
// ICMPv6 type 135 (Neighbor Solicitation) or 136 (Neighbor Advertisement:
// another host answering for an owned address is a conflict, fence.go). The
// kernel has removed any accelerated VLAN tag before the filter runs, so
// offsets are fixed.
var nsFilter = []bpf.Instruction{
	bpf.LoadAbsolute{Off: 12, Size: 2},                                    // EtherType
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.ETH_P_IPV6, SkipTrue: 6}, // -> drop
	bpf.LoadAbsolute{Off: 14 + 6, Size: 1},                                // IPv6 next header
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 4},     // -> drop
	bpf.LoadAbsolute{Off: 14 + 40, Size: 1},                               // ICMPv6 type
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpTypeNS, SkipTrue: 1},         // -> accept
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmpTypeNA, SkipTrue: 1},      // -> drop
	bpf.RetConstant{Val: readBufSize},
	bpf.RetConstant{Val: 0},
}

// ignoreOutgoing asks the kernel not to loop our own frames back to us
// (PACKET_IGNORE_OUTGOING, Linux 4.20). Best effort: on older kernels the
// responders recognise their own frames by source MAC anyway.
func ignoreOutgoing(c *packet.Conn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	})
}

func blocking(c *packet.Conn, ifname string) (PacketConn, error) {
	b, err := newBlockingConn(c)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("packet socket on %q: %w", ifname, err)
	}
	return b, nil
}
