package netif

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mdlayher/ethernet"
)

// PacketConn is the seam between a responder and its link: a packet socket
// bound to one interface that reads and writes whole Ethernet frames. The real
// one is a *packet.Conn opened by ListenARP or ListenNDP; tests use a fake.
//
// Every method is safe for concurrent use; a responder reads from one
// goroutine and writes from several.
type PacketConn interface {
	// ReadFrom blocks until a frame arrives, the read deadline passes or the
	// conn is closed, and copies the frame into b, which the caller owns.
	ReadFrom(b []byte) (int, net.Addr, error)
	// WriteTo sends one whole Ethernet frame; addr names the destination
	// hardware address (a *packet.Addr for the real conn). It does not keep b.
	WriteTo(b []byte, addr net.Addr) (int, error)
	// SetReadDeadline makes a blocked and future ReadFrom return a timeout
	// error once t has passed.
	SetReadDeadline(t time.Time) error
	// JoinGroup asks the NIC to deliver frames sent to the link-layer
	// multicast address (PACKET_ADD_MEMBERSHIP, PACKET_MR_MULTICAST). It
	// does not block. The kernel refcounts memberships per socket; the
	// responder keeps its own count so each group is joined once.
	JoinGroup(addr net.HardwareAddr) error
	// LeaveGroup undoes one JoinGroup.
	LeaveGroup(addr net.HardwareAddr) error
	// Close unblocks ReadFrom and releases the socket and its memberships.
	Close() error
}

// A DropError says why a frame was not answered. Its string is the key under
// which the responder counts it in Stats. Parse functions return them, so
// errors.Is(err, ErrARPShort) works.
type DropError string

func (e DropError) Error() string { return "netif: frame dropped: " + string(e) }

// Reasons a frame is dropped. Frames that are well formed but not for us
// (another node's address, our own frames) are counted too: they show a
// responder is alive and listening on the right link.
const (
	ErrFrameShort      DropError = "frame_short" // shorter than an Ethernet header
	ErrFrameVLAN       DropError = "frame_vlan"  // 802.1Q tagged: belongs to a VLAN interface
	ErrFrameEtherType  DropError = "frame_bad_ethertype"
	ErrFrameFromSelf   DropError = "frame_from_self"   // our own MAC as source
	ErrFrameNotForUs   DropError = "frame_not_for_us"  // unicast to another MAC (promiscuous link)
	ErrFrameBadSrcMAC  DropError = "frame_bad_src_mac" // multicast source MAC: never valid
	ErrARPShort        DropError = "arp_short"
	ErrARPBadHType     DropError = "arp_bad_htype"
	ErrARPBadPType     DropError = "arp_bad_ptype"
	ErrARPBadHLen      DropError = "arp_bad_hlen"
	ErrARPBadPLen      DropError = "arp_bad_plen"
	ErrARPBadOp        DropError = "arp_bad_op"
	ErrARPBadSenderHW  DropError = "arp_bad_sender_hw" // broadcast/multicast sender hardware address
	ErrARPBadSenderIP  DropError = "arp_bad_sender_ip" // multicast, broadcast or loopback sender
	ErrARPNotRequest   DropError = "arp_not_request"   // replies are not questions
	ErrARPAnnouncement DropError = "arp_announcement"  // another host's gratuitous ARP
	ErrARPConflict     DropError = "arp_conflict"      // another host uses an address we own
	ErrARPNotOwned     DropError = "arp_not_owned"
	ErrARPYielded      DropError = "arp_yielded" // owned, but yielded to another node (fence.go)
	ErrNDPShort        DropError = "ndp_short"
	ErrNDPBadVersion   DropError = "ndp_bad_version"
	ErrNDPNotICMPv6    DropError = "ndp_not_icmpv6" // extension headers or another protocol
	ErrNDPBadHopLimit  DropError = "ndp_bad_hoplimit"
	ErrNDPNotNS        DropError = "ndp_not_ns"
	ErrNDPBadCode      DropError = "ndp_bad_code"
	ErrNDPBadChecksum  DropError = "ndp_bad_checksum"
	ErrNDPBadOption    DropError = "ndp_bad_option"
	ErrNDPBadSource    DropError = "ndp_bad_source" // multicast IPv6 source
	ErrNDPBadTarget    DropError = "ndp_bad_target" // multicast, unspecified or loopback target
	ErrNDPBadDest      DropError = "ndp_bad_dest"   // neither the target nor its solicited-node group
	ErrNDPL2Mismatch   DropError = "ndp_l2_mismatch"
	ErrNDPDADBadDest   DropError = "ndp_dad_bad_dest"  // DAD NS not sent to solicited-node group
	ErrNDPDADWithSLLA  DropError = "ndp_dad_with_slla" // DAD NS carrying a source LLA option
	ErrNDPNotOwned     DropError = "ndp_not_owned"
	ErrNDPBadNAFlags   DropError = "ndp_bad_na_flags" // NA: solicited flag on a multicast NA
	ErrNDPNotNA        DropError = "ndp_not_na"
	ErrNDPYielded      DropError = "ndp_yielded"  // owned, but yielded to another node (fence.go)
	ErrNDPNAConflict   DropError = "ndp_conflict" // another host's NA for an address we own
	ErrNDPNAOther      DropError = "ndp_na"       // an NA about an address we do not own
)

// Event counters that are not drops.
const (
	statRequests    = "requests"     // questions for an owned address
	statReplies     = "replies"      // answers written
	statAnnounced   = "announced"    // gratuitous ARP / unsolicited NA frames written
	statProbes      = "probes"       // ARP probes (RFC 5227) and DAD NS for owned addresses
	statUnicastNS   = "ns_unicast"   // NS sent to the address itself (NUD)
	statMulticastNS = "ns_multicast" // NS sent to the solicited-node group
	statReadErrors  = "read_errors"
	statWriteErrors = "write_errors"
	statJoinErrors  = "join_errors"
)

// dropCounters is a fixed set of named atomic counters. The map is built once by
// newDropCounters and only read afterwards, so lookups need no lock.
type dropCounters struct {
	m map[string]*atomic.Uint64
}

func newDropCounters(names ...string) *dropCounters {
	c := &dropCounters{m: make(map[string]*atomic.Uint64, len(names))}
	for _, n := range names {
		c.m[n] = new(atomic.Uint64)
	}
	return c
}

// inc counts one event; unknown names are a programming error and are
// counted under "other" rather than panicking in the packet path.
func (c *dropCounters) inc(name string) {
	if v, ok := c.m[name]; ok {
		v.Add(1)
		return
	}
	c.m["other"].Add(1)
}

// drop counts err under its DropError reason.
func (c *dropCounters) drop(err error) {
	var de DropError
	if errors.As(err, &de) {
		c.inc(string(de))
		return
	}
	c.inc("other")
}

func (c *dropCounters) snapshot() map[string]uint64 {
	out := make(map[string]uint64, len(c.m))
	for k, v := range c.m {
		out[k] = v.Load()
	}
	return out
}

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	zeroMAC      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
)

// isMulticastMAC reports whether the group bit is set (broadcast included).
func isMulticastMAC(hw net.HardwareAddr) bool { return len(hw) > 0 && hw[0]&1 == 1 }

// ethHeader is the part of an Ethernet frame a responder looks at.
type ethHeader struct {
	dst, src  net.HardwareAddr
	etherType ethernet.EtherType
	payload   []byte
}

// parseEthernet parses an untagged Ethernet II frame. Tagged frames belong to
// a VLAN interface, where a responder of their own answers them.
func parseEthernet(b []byte, want ethernet.EtherType) (ethHeader, error) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		return ethHeader{}, ErrFrameShort
	}
	if f.VLAN != nil || f.ServiceVLAN != nil {
		return ethHeader{}, ErrFrameVLAN
	}
	if f.EtherType != want {
		return ethHeader{}, ErrFrameEtherType
	}
	if isMulticastMAC(f.Source) {
		return ethHeader{}, ErrFrameBadSrcMAC
	}
	return ethHeader{dst: f.Destination, src: f.Source, etherType: f.EtherType, payload: f.Payload}, nil
}

// marshalEthernet builds an untagged Ethernet II frame, zero-padded to the
// 60-byte minimum (IEEE 802.3) so short ARP frames are valid on any link.
func marshalEthernet(dst, src net.HardwareAddr, et ethernet.EtherType, payload []byte) ([]byte, error) {
	f := ethernet.Frame{Destination: dst, Source: src, EtherType: et, Payload: payload}
	return f.MarshalBinary()
}

// sameMAC compares hardware addresses.
func sameMAC(a, b net.HardwareAddr) bool { return bytes.Equal(a, b) }

// normalizeAddrs unmaps and unzones addrs and keeps those of one family.
func normalizeAddrs(addrs []netip.Addr, want4 bool) map[netip.Addr]struct{} {
	set := make(map[netip.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if !a.IsValid() || a.Is4() != want4 {
			continue
		}
		set[a] = struct{}{}
	}
	return set
}
