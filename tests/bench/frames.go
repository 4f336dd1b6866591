package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Proto says which resolution protocol a run exercises.
type Proto string

// The two protocols.
const (
	ARP Proto = "arp" // IPv4, RFC 826
	NDP Proto = "ndp" // IPv6 Neighbor Discovery, RFC 4861
)

// Ethernet and protocol constants of the frames the generator builds. They
// are spelled out here rather than taken from netif, so a bug in netif's
// codecs cannot hide by agreeing with itself.
const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	ethHeaderLen  = 14
	arpLen        = 28 // RFC 826 for Ethernet/IPv4
	arpOpRequest  = 1
	arpOpReply    = 2
	ipv6HeaderLen = 40
	protoICMPv6   = 58
	icmpTypeNS    = 135
	icmpTypeNA    = 136
	nsLen         = 24 + 8 // RFC 4861 §4.3 plus the source link-layer address option
	// Offsets in a whole frame.
	arpOpOff      = ethHeaderLen + 6
	arpSenderIP   = ethHeaderLen + 14
	arpTargetIP   = ethHeaderLen + 24
	ipv6NextOff   = ethHeaderLen + 6
	ipv6SrcOff    = ethHeaderLen + 8
	ipv6DstOff    = ethHeaderLen + 24
	icmpOff       = ethHeaderLen + ipv6HeaderLen
	ndTargetOff   = icmpOff + 8
	arpFrameLen   = ethHeaderLen + arpLen
	nsFrameLen    = ethHeaderLen + ipv6HeaderLen + nsLen
	naMinFrameLen = ndTargetOff + 16
)

var errNotAnswer = errors.New("not an answer")

// requestBuilder writes the request for one target into a reusable frame.
type requestBuilder struct {
	proto Proto
	frame []byte // the template: everything but the target-dependent bytes
	src   [16]byte
}

// newRequestBuilder prepares requests sent from mac and src: ARP requests
// to broadcast (RFC 826) or Neighbor Solicitations to the target's
// solicited-node group with a source link-layer address option (RFC 4861
// §4.3, §7.2.2), as the Linux kernel sends them when it resolves.
func newRequestBuilder(proto Proto, mac net.HardwareAddr, src netip.Addr) (*requestBuilder, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("request builder: MAC %v is not Ethernet", mac)
	}
	b := &requestBuilder{proto: proto}
	switch proto {
	case ARP:
		if !src.Is4() {
			return nil, fmt.Errorf("request builder: ARP source %v is not IPv4", src)
		}
		f := make([]byte, arpFrameLen)
		copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		copy(f[6:12], mac)
		binary.BigEndian.PutUint16(f[12:], etherTypeARP)
		a := f[ethHeaderLen:]
		binary.BigEndian.PutUint16(a[0:], 1)      // hardware type Ethernet
		binary.BigEndian.PutUint16(a[2:], 0x0800) // protocol IPv4
		a[4], a[5] = 6, 4
		binary.BigEndian.PutUint16(a[6:], arpOpRequest)
		copy(a[8:14], mac)
		s4 := src.As4()
		copy(a[14:18], s4[:])
		// Target hardware address stays zero (RFC 5227 §2.1.1 style).
		b.frame = f
	case NDP:
		if !src.Is6() || src.Is4In6() {
			return nil, fmt.Errorf("request builder: NDP source %v is not IPv6", src)
		}
		f := make([]byte, nsFrameLen)
		copy(f[6:12], mac)
		binary.BigEndian.PutUint16(f[12:], etherTypeIPv6)
		ip := f[ethHeaderLen:]
		ip[0] = 6 << 4
		binary.BigEndian.PutUint16(ip[4:], nsLen)
		ip[6] = protoICMPv6
		ip[7] = 255 // RFC 4861 §7.1.1: hop limit 255
		b.src = src.As16()
		copy(ip[8:24], b.src[:])
		icmp := f[icmpOff:]
		icmp[0] = icmpTypeNS
		icmp[24], icmp[25] = 1, 1 // source link-layer address, 8 bytes
		copy(icmp[26:32], mac)
		b.frame = f
	default:
		return nil, fmt.Errorf("request builder: unknown protocol %q", proto)
	}
	return b, nil
}

// build fills frame (len(b.frame) bytes, reused across calls) with the
// request for target.
func (b *requestBuilder) build(frame []byte, target netip.Addr) []byte {
	frame = append(frame[:0], b.frame...)
	switch b.proto {
	case ARP:
		t := target.As4()
		copy(frame[arpTargetIP:], t[:])
	case NDP:
		t := target.As16()
		// Solicited-node multicast ff02::1:ffXX:XXXX (RFC 4291 §2.7.1) and
		// its Ethernet group 33:33:ff:XX:XX:XX (RFC 2464 §7).
		dst := [16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]}
		copy(frame[0:6], []byte{0x33, 0x33, 0xff, t[13], t[14], t[15]})
		copy(frame[ipv6DstOff:], dst[:])
		copy(frame[ndTargetOff:], t[:])
		icmp := frame[icmpOff:]
		icmp[2], icmp[3] = 0, 0
		binary.BigEndian.PutUint16(icmp[2:], icmpv6Checksum(b.src, dst, icmp))
	}
	return frame
}

// parseAnswer returns the address an answer resolves: the sender IP of an
// ARP reply, or the target of a Neighbor Advertisement. Anything else is
// errNotAnswer (the socket's filter should let nothing else through).
func parseAnswer(proto Proto, f []byte) (netip.Addr, error) {
	switch proto {
	case ARP:
		if len(f) < arpFrameLen || binary.BigEndian.Uint16(f[12:]) != etherTypeARP ||
			binary.BigEndian.Uint16(f[arpOpOff:]) != arpOpReply {
			return netip.Addr{}, errNotAnswer
		}
		return netip.AddrFrom4([4]byte(f[arpSenderIP : arpSenderIP+4])), nil
	case NDP:
		if len(f) < naMinFrameLen || binary.BigEndian.Uint16(f[12:]) != etherTypeIPv6 ||
			f[ipv6NextOff] != protoICMPv6 || f[icmpOff] != icmpTypeNA {
			return netip.Addr{}, errNotAnswer
		}
		return netip.AddrFrom16([16]byte(f[ndTargetOff : ndTargetOff+16])), nil
	}
	return netip.Addr{}, errNotAnswer
}

// icmpv6Checksum is the RFC 4443 §2.3 checksum over the pseudo-header
// (RFC 8200 §8.1) and msg, whose checksum field must be zero.
func icmpv6Checksum(src, dst [16]byte, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	var pseudo [8]byte
	binary.BigEndian.PutUint32(pseudo[0:], uint32(len(msg)))
	pseudo[7] = protoICMPv6
	add(pseudo[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
