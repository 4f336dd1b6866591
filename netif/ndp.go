package netif

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

const (
	protoICMPv6    = 58
	ndpHopLimit    = 255 // RFC 4861 §7.1: proves the sender is on-link
	icmpTypeNS     = 135
	icmpTypeNA     = 136
	icmpHeaderLen  = 4
	ndpMinLen      = 24 // ICMPv6 header + reserved/flags + target (§7.1.1)
	etherTypeIPv6  = ethernet.EtherTypeIPv6
	ipv6AddrOffset = 8
)

var allNodes = netip.MustParseAddr("ff02::1")

// NSMessage is a Neighbor Solicitation (RFC 4861 §4.3) with the IPv6 and
// Ethernet addresses it travelled with.
type NSMessage struct {
	EthDst, EthSrc net.HardwareAddr
	Src, Dst       netip.Addr
	Target         netip.Addr
	SourceLLA      net.HardwareAddr // nil when the option is absent
	Marker         Marker           // the hostlb marker option (fence.go), if any
}

// IsDAD reports whether m comes from a host doing Duplicate Address
// Detection (RFC 4862 §5.4.2): its source is the unspecified address.
func (m NSMessage) IsDAD() bool { return m.Src.IsUnspecified() }

// NAMessage is a Neighbor Advertisement (RFC 4861 §4.4).
type NAMessage struct {
	EthDst, EthSrc              net.HardwareAddr
	Src, Dst                    netip.Addr
	Router, Solicited, Override bool
	Target                      netip.Addr
	TargetLLA                   net.HardwareAddr // nil when the option is absent
	Marker                      Marker           // the hostlb marker option (fence.go), if any
}

// ipv6MulticastMAC maps an IPv6 multicast address to its Ethernet group
// (RFC 2464 §7): 33:33 followed by the low 32 bits.
func ipv6MulticastMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// solicitedNode returns the solicited-node group of ip (RFC 4291 §2.7.1).
func solicitedNode(ip netip.Addr) netip.Addr {
	snm, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return netip.Addr{}
	}
	return snm
}

func isSolicitedNode(ip netip.Addr) bool {
	return netip.MustParsePrefix("ff02::1:ff00:0/104").Contains(ip)
}

// icmpv6 is an ICMPv6 message that passed the checks shared by NS and NA.
type icmpv6 struct {
	eth      ethHeader
	src, dst netip.Addr
	msg      []byte // the whole ICMPv6 message, checksum verified
}

// parseICMPv6ND parses an Ethernet frame carrying an ICMPv6 Neighbor
// Discovery message of type typ and applies the RFC 4861 §7.1 checks that
// do not depend on the message type: hop limit 255, valid checksum, code 0,
// length at least 24, all options with non-zero length, and an Ethernet
// destination that matches the IPv6 destination.
func parseICMPv6ND(b []byte, typ uint8, wrongType DropError) (icmpv6, error) {
	eth, err := parseEthernet(b, etherTypeIPv6)
	if err != nil {
		return icmpv6{}, err
	}
	h, err := ipv6.ParseHeader(eth.payload)
	if err != nil {
		return icmpv6{}, ErrNDPShort
	}
	switch {
	case h.Version != 6:
		return icmpv6{}, ErrNDPBadVersion
	case h.NextHeader != protoICMPv6:
		return icmpv6{}, ErrNDPNotICMPv6
	case h.PayloadLen > len(eth.payload)-ipv6.HeaderLen:
		return icmpv6{}, ErrNDPShort
	}
	// Trailing bytes past PayloadLen are Ethernet padding.
	msg := eth.payload[ipv6.HeaderLen : ipv6.HeaderLen+h.PayloadLen]
	src, _ := netip.AddrFromSlice(h.Src)
	dst, _ := netip.AddrFromSlice(h.Dst)
	switch {
	case len(msg) < icmpHeaderLen:
		return icmpv6{}, ErrNDPShort
	case msg[0] != typ:
		return icmpv6{}, wrongType
	case h.HopLimit != ndpHopLimit:
		return icmpv6{}, ErrNDPBadHopLimit
	case icmpv6Checksum(src, dst, msg) != 0:
		return icmpv6{}, ErrNDPBadChecksum
	case msg[1] != 0:
		return icmpv6{}, ErrNDPBadCode
	case len(msg) < ndpMinLen:
		return icmpv6{}, ErrNDPShort
	case src.IsMulticast():
		return icmpv6{}, ErrNDPBadSource
	}
	for opts := msg[ndpMinLen:]; len(opts) > 0; {
		// Zero-length options must be discarded (RFC 4861 §4.6); they would
		// also make a naive parser loop forever.
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return icmpv6{}, ErrNDPBadOption
		}
		opts = opts[int(opts[1])*8:]
	}
	// A frame whose link-layer destination disagrees with its IPv6
	// destination was not sent to us by a sane neighbour.
	if dst.IsMulticast() {
		if !sameMAC(eth.dst, ipv6MulticastMAC(dst)) {
			return icmpv6{}, ErrNDPL2Mismatch
		}
	} else if isMulticastMAC(eth.dst) {
		return icmpv6{}, ErrNDPL2Mismatch
	}
	return icmpv6{eth: eth, src: src, dst: dst, msg: msg}, nil
}

// ParseNS parses an Ethernet frame carrying a Neighbor Solicitation and
// validates it per RFC 4861 §7.1.1. It also requires the IPv6 destination to
// be the target itself (unicast, as NUD sends it) or the target's
// solicited-node group. Errors are DropErrors. The result does not alias b.
func ParseNS(b []byte) (NSMessage, error) {
	p, err := parseICMPv6ND(b, icmpTypeNS, ErrNDPNotNS)
	if err != nil {
		return NSMessage{}, err
	}
	target, err := parseTarget(p.msg)
	if err != nil {
		return NSMessage{}, err
	}
	m, err := ndp.ParseMessage(p.msg)
	if err != nil {
		return NSMessage{}, ErrNDPBadOption
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok {
		return NSMessage{}, ErrNDPNotNS
	}
	out := NSMessage{EthDst: p.eth.dst, EthSrc: p.eth.src, Src: p.src, Dst: p.dst, Target: target}
	for _, o := range ns.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Source && out.SourceLLA == nil {
			if len(lla.Addr) != 6 || isMulticastMAC(lla.Addr) {
				return NSMessage{}, ErrNDPBadOption
			}
			out.SourceLLA = lla.Addr
		}
	}
	out.Marker = markerOption(ns.Options)
	if p.dst != target && p.dst != solicitedNode(target) {
		if out.IsDAD() {
			return NSMessage{}, ErrNDPDADBadDest
		}
		return NSMessage{}, ErrNDPBadDest
	}
	if out.IsDAD() {
		// RFC 4861 §7.1.1: a DAD NS goes to the solicited-node group and
		// carries no source link-layer address option.
		if !isSolicitedNode(p.dst) {
			return NSMessage{}, ErrNDPDADBadDest
		}
		if out.SourceLLA != nil {
			return NSMessage{}, ErrNDPDADWithSLLA
		}
	}
	return out, nil
}

// ParseNA parses an Ethernet frame carrying a Neighbor Advertisement and
// validates it per RFC 4861 §7.1.2. Responders never act on NAs; tests and
// tools use it to check what a responder sent.
func ParseNA(b []byte) (NAMessage, error) {
	p, err := parseICMPv6ND(b, icmpTypeNA, ErrNDPNotNA)
	if err != nil {
		return NAMessage{}, err
	}
	target, err := parseTarget(p.msg)
	if err != nil {
		return NAMessage{}, err
	}
	m, err := ndp.ParseMessage(p.msg)
	if err != nil {
		return NAMessage{}, ErrNDPBadOption
	}
	na, ok := m.(*ndp.NeighborAdvertisement)
	if !ok {
		return NAMessage{}, ErrNDPNotNA
	}
	if na.Solicited && p.dst.IsMulticast() {
		return NAMessage{}, ErrNDPBadNAFlags
	}
	out := NAMessage{
		EthDst: p.eth.dst, EthSrc: p.eth.src, Src: p.src, Dst: p.dst,
		Router: na.Router, Solicited: na.Solicited, Override: na.Override,
		Target: target,
	}
	for _, o := range na.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target && out.TargetLLA == nil {
			out.TargetLLA = lla.Addr
		}
	}
	out.Marker = markerOption(na.Options)
	return out, nil
}

// parseTarget reads and checks the target address of an NS or NA.
func parseTarget(msg []byte) (netip.Addr, error) {
	target := netip.AddrFrom16([16]byte(msg[ipv6AddrOffset:ndpMinLen]))
	if target.IsMulticast() || target.IsUnspecified() || target.IsLoopback() || target.Is4In6() {
		return netip.Addr{}, ErrNDPBadTarget
	}
	return target, nil
}

// MarshalBinary builds the Ethernet frame for m: hop limit 255 and the
// ICMPv6 checksum over the RFC 8200 §8.1 pseudo-header.
func (m NSMessage) MarshalBinary() ([]byte, error) {
	var opts []ndp.Option
	if m.SourceLLA != nil {
		opts = append(opts, &ndp.LinkLayerAddress{Direction: ndp.Source, Addr: m.SourceLLA})
	}
	opts = appendMarkerOption(opts, m.Marker)
	return marshalND(m.EthDst, m.EthSrc, m.Src, m.Dst,
		&ndp.NeighborSolicitation{TargetAddress: m.Target, Options: opts})
}

// MarshalBinary builds the Ethernet frame for m, like NSMessage's.
func (m NAMessage) MarshalBinary() ([]byte, error) {
	var opts []ndp.Option
	if m.TargetLLA != nil {
		opts = append(opts, &ndp.LinkLayerAddress{Direction: ndp.Target, Addr: m.TargetLLA})
	}
	opts = appendMarkerOption(opts, m.Marker)
	return marshalND(m.EthDst, m.EthSrc, m.Src, m.Dst, &ndp.NeighborAdvertisement{
		Router: m.Router, Solicited: m.Solicited, Override: m.Override,
		TargetAddress: m.Target, Options: opts,
	})
}

func marshalND(ethDst, ethSrc net.HardwareAddr, src, dst netip.Addr, msg ndp.Message) ([]byte, error) {
	if len(ethDst) != 6 || len(ethSrc) != 6 {
		return nil, fmt.Errorf("marshal %v: hardware addresses must be 6 bytes", msg.Type())
	}
	if !src.Is6() || !dst.Is6() {
		return nil, fmt.Errorf("marshal %v: %v or %v is not IPv6", msg.Type(), src, dst)
	}
	body, err := ndp.MarshalMessageChecksum(msg, src, dst)
	if err != nil {
		return nil, fmt.Errorf("marshal %v: %w", msg.Type(), err)
	}
	pkt := make([]byte, ipv6.HeaderLen+len(body))
	pkt[0] = 6 << 4 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(pkt[4:6], uint16(len(body)))
	pkt[6] = protoICMPv6
	pkt[7] = ndpHopLimit
	s, d := src.As16(), dst.As16()
	copy(pkt[8:24], s[:])
	copy(pkt[24:40], d[:])
	copy(pkt[40:], body)
	return marshalEthernet(ethDst, ethSrc, etherTypeIPv6, pkt)
}

// icmpv6Checksum returns the RFC 1071 checksum of msg with the IPv6
// pseudo-header (RFC 8200 §8.1). Over a message whose checksum field is set
// correctly it returns 0, which is how received messages are verified.
func icmpv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(b[0])<<8 | uint32(b[1])
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	sum += uint32(len(msg)>>16) + uint32(len(msg)&0xffff)
	sum += protoICMPv6
	add(msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ndpAnswer is the NA that answers ns for hw (RFC 4861 §7.2.4). A DAD NS
// (source ::) is answered to all-nodes with Solicited=0, since its sender
// has no address to receive a unicast answer; any other NS is answered to
// its source with Solicited=1, at the link-layer address in its source LLA
// option, else at the frame's source. Override=1 because we are the owner
// of the address, not a proxy; Router=0. The NA's source is the target
// itself, which is valid because the node owns it, and keeps the answer
// independent of the interface having any IPv6 address (even link-local).
func ndpAnswer(ns NSMessage, hw net.HardwareAddr) NAMessage {
	na := NAMessage{
		EthSrc: hw, Src: ns.Target, Target: ns.Target,
		Override: true, TargetLLA: hw,
	}
	if ns.IsDAD() {
		na.Dst, na.EthDst = allNodes, ipv6MulticastMAC(allNodes)
		return na
	}
	na.Dst, na.Solicited = ns.Src, true
	na.EthDst = ns.SourceLLA
	if na.EthDst == nil {
		na.EthDst = ns.EthSrc
	}
	return na
}

// unsolicitedNA announces ip at hw to all nodes (RFC 4861 §7.2.6):
// Solicited=0, Override=1 so neighbours replace a cached link-layer address.
func unsolicitedNA(ip netip.Addr, hw net.HardwareAddr) NAMessage {
	return NAMessage{
		EthDst: ipv6MulticastMAC(allNodes), EthSrc: hw,
		Src: ip, Dst: allNodes, Target: ip, Override: true, TargetLLA: hw,
	}
}

// markerOption finds the hostlb marker among NDP options (type 253).
func markerOption(opts []ndp.Option) Marker {
	for _, o := range opts {
		if raw, ok := o.(*ndp.RawOption); ok && raw.Type == ndpMarkerOption {
			if m := parseMarker(raw.Value); m.IsHostlb() {
				return m
			}
		}
	}
	return Marker{}
}

// appendMarkerOption adds m as an NDP option of type 253, zero-padded to a
// multiple of 8 bytes, unless m is the zero Marker.
func appendMarkerOption(opts []ndp.Option, m Marker) []ndp.Option {
	if !m.IsHostlb() {
		return opts
	}
	v := appendMarker(nil, m)
	units := (2 + len(v) + 7) / 8
	v = append(v, make([]byte, units*8-2-len(v))...)
	return append(opts, &ndp.RawOption{Type: ndpMarkerOption, Length: uint8(units), Value: v})
}

// dadProbe is a Duplicate Address Detection NS for ip from hw (RFC 4862
// §5.4.2: source ::, to the solicited-node group, no source link-layer
// option): any other answerer of ip answers it to all-nodes, and nothing
// learns hw for ip from it.
func dadProbe(ip netip.Addr, hw net.HardwareAddr, m Marker) NSMessage {
	snm := solicitedNode(ip)
	return NSMessage{
		EthDst: ipv6MulticastMAC(snm), EthSrc: hw,
		Src: netip.IPv6Unspecified(), Dst: snm, Target: ip, Marker: m,
	}
}
