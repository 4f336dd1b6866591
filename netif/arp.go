package netif

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// ARP field values for IPv4 over Ethernet (RFC 826).
const (
	arpHTypeEthernet = 1
	arpPTypeIPv4     = uint16(ethernet.EtherTypeIPv4)
)

// ARPMessage is one ARP packet for IPv4 over Ethernet (RFC 826) together
// with the Ethernet addresses it travelled with.
type ARPMessage struct {
	EthDst, EthSrc net.HardwareAddr
	Op             arp.Operation
	SenderHW       net.HardwareAddr
	SenderIP       netip.Addr
	TargetHW       net.HardwareAddr
	TargetIP       netip.Addr
	// Marker is the hostlb marker after the ARP packet (fence.go); the
	// zero Marker when the frame has none.
	Marker Marker
}

// IsProbe reports whether m is an RFC 5227 §2.1.1 probe: a request whose
// sender IP is 0.0.0.0, sent by a host checking that an address is free.
func (m ARPMessage) IsProbe() bool {
	return m.Op == arp.OperationRequest && m.SenderIP == netip.IPv4Unspecified()
}

// IsAnnouncement reports whether m is gratuitous (RFC 5227 §2.3): the sender
// tells the link about its own address instead of asking for another's.
func (m ARPMessage) IsAnnouncement() bool {
	return m.SenderIP.IsValid() && m.SenderIP == m.TargetIP
}

// ParseARP parses an Ethernet frame carrying ARP. It checks the frame is ARP
// for IPv4 over Ethernet (hardware type 1, protocol 0x0800, lengths 6 and 4,
// operation request or reply) with a sane sender; it does not decide whether
// the frame is for us. Errors are DropErrors. The result does not alias b.
func ParseARP(b []byte) (ARPMessage, error) {
	eth, err := parseEthernet(b, ethernet.EtherTypeARP)
	if err != nil {
		return ARPMessage{}, err
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(eth.payload); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return ARPMessage{}, ErrARPShort
		}
		// The only other failure is an address length netip rejects.
		return ARPMessage{}, ErrARPBadPLen
	}
	switch {
	case p.HardwareType != arpHTypeEthernet:
		return ARPMessage{}, ErrARPBadHType
	case p.ProtocolType != arpPTypeIPv4:
		return ARPMessage{}, ErrARPBadPType
	case p.HardwareAddrLength != 6:
		return ARPMessage{}, ErrARPBadHLen
	case p.IPLength != 4 || !p.SenderIP.Is4() || !p.TargetIP.Is4():
		return ARPMessage{}, ErrARPBadPLen
	case p.Operation != arp.OperationRequest && p.Operation != arp.OperationReply:
		return ARPMessage{}, ErrARPBadOp
	case isMulticastMAC(p.SenderHardwareAddr):
		// Answering would teach the link that a group address owns an IP.
		return ARPMessage{}, ErrARPBadSenderHW
	case p.SenderIP.IsMulticast() || p.SenderIP.IsLoopback() || p.SenderIP == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return ARPMessage{}, ErrARPBadSenderIP
	}
	return ARPMessage{
		EthDst:   eth.dst,
		EthSrc:   eth.src,
		Op:       p.Operation,
		SenderHW: p.SenderHardwareAddr,
		SenderIP: p.SenderIP,
		TargetHW: p.TargetHardwareAddr,
		TargetIP: p.TargetIP,
		Marker:   parseMarker(eth.payload[arpPacketLen:]),
	}, nil
}

// arpPacketLen is the size of an ARP packet for IPv4 over Ethernet; what
// follows it in a frame is padding, or a hostlb marker.
const arpPacketLen = 28

// MarshalBinary builds the Ethernet frame for m.
func (m ARPMessage) MarshalBinary() ([]byte, error) {
	for _, hw := range []net.HardwareAddr{m.EthDst, m.EthSrc, m.SenderHW, m.TargetHW} {
		if len(hw) != 6 {
			return nil, fmt.Errorf("marshal ARP: hardware address %q is not 6 bytes", hw)
		}
	}
	if !m.SenderIP.Is4() || !m.TargetIP.Is4() {
		return nil, fmt.Errorf("marshal ARP: %v or %v is not IPv4", m.SenderIP, m.TargetIP)
	}
	p := arp.Packet{
		HardwareType:       arpHTypeEthernet,
		ProtocolType:       arpPTypeIPv4,
		HardwareAddrLength: 6,
		IPLength:           4,
		Operation:          m.Op,
		SenderHardwareAddr: m.SenderHW,
		SenderIP:           m.SenderIP,
		TargetHardwareAddr: m.TargetHW,
		TargetIP:           m.TargetIP,
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("marshal ARP: %w", err)
	}
	if m.Marker.IsHostlb() {
		pb = appendMarker(pb, m.Marker)
	}
	return marshalEthernet(m.EthDst, m.EthSrc, ethernet.EtherTypeARP, pb)
}

// arpReply answers req from hw (RFC 826 "swap" step): sent unicast to the
// asker, with the asker's addresses as target. For an RFC 5227 probe the
// target IP stays 0.0.0.0, which is what the prober looks for (§2.1.1: any
// ARP packet whose sender IP is the probed address is a conflict).
func arpReply(req ARPMessage, hw net.HardwareAddr, m Marker) ARPMessage {
	return ARPMessage{
		Marker:   m,
		EthDst:   req.SenderHW,
		EthSrc:   hw,
		Op:       arp.OperationReply,
		SenderHW: hw,
		SenderIP: req.TargetIP,
		TargetHW: req.SenderHW,
		TargetIP: req.SenderIP,
	}
}

// gratuitousARP returns the two broadcast announcements of ip at hw. The
// request form is the RFC 5227 §2.3 ARP Announcement (target hardware
// address zero); the reply form is the older RFC 826-style gratuitous reply
// that some hosts and switches only learn from (target hardware broadcast, as
// keepalived and arping -A send it). Sending both reaches every kind.
func gratuitousARP(ip netip.Addr, hw net.HardwareAddr, m Marker) (request, reply ARPMessage) {
	request = ARPMessage{
		EthDst: broadcastMAC, EthSrc: hw, Op: arp.OperationRequest,
		SenderHW: hw, SenderIP: ip, TargetHW: zeroMAC, TargetIP: ip, Marker: m,
	}
	reply = ARPMessage{
		EthDst: broadcastMAC, EthSrc: hw, Op: arp.OperationReply,
		SenderHW: hw, SenderIP: ip, TargetHW: broadcastMAC, TargetIP: ip, Marker: m,
	}
	return request, reply
}

// arpProbe is an RFC 5227 probe for ip from hw (sender IP 0.0.0.0): it
// asks who uses ip without claiming it, so no neighbour updates a cache. It
// goes to broadcast, or to `to` when set (telling one node it won).
func arpProbe(ip netip.Addr, hw net.HardwareAddr, m Marker, to [6]byte) ARPMessage {
	dst := broadcastMAC
	if to != ([6]byte{}) {
		dst = net.HardwareAddr(to[:])
	}
	return ARPMessage{
		EthDst: dst, EthSrc: hw, Op: arp.OperationRequest,
		SenderHW: hw, SenderIP: netip.IPv4Unspecified(), TargetHW: zeroMAC, TargetIP: ip, Marker: m,
	}
}
