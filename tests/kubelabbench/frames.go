package kubelabbench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
)

// Frame layout. Spelled out here, with mdlayher/ndp for the ICMPv6 body,
// rather than taken from netif: a bug in the daemon's codecs must not hide
// by agreeing with itself.
const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	ethHeaderLen  = 14
	arpLen        = 28 // RFC 826 for Ethernet and IPv4
	arpOpRequest  = 1
	arpOpReply    = 2
	ipv6HeaderLen = 40
	protoICMPv6   = 58
	icmpTypeNA    = 136
	ndHopLimit    = 255 // RFC 4861 §7.1.2: anything else was routed
	ndTargetOff   = 8   // in an NS or NA: after type, code, checksum, flags
	ndMinLen      = ndTargetOff + 16
	// Offsets in a whole frame, for the socket's BPF filter.
	arpOpOff    = ethHeaderLen + 6
	ipv6NextOff = ethHeaderLen + 6
	icmpOff     = ethHeaderLen + ipv6HeaderLen
)

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ParseFrame's errors: ErrNotHeard for a frame that resolves nothing (not
// ARP or a Neighbor Advertisement, someone else's request, an answer to
// another host); ErrBadFrame wrapped for an NA that fails a check a
// resolver makes, which a resolver would drop.
var (
	ErrNotHeard = errors.New("not an answer or announcement")
	ErrBadFrame = errors.New("malformed answer")
)

// Heard is one ARP reply, gratuitous ARP or Neighbor Advertisement.
type Heard struct {
	// Target is the address resolved: an ARP sender's IP, an NA's target.
	Target netip.Addr
	// MAC is the link-layer address given for Target: the ARP sender's
	// hardware address, the NA's target link-layer address option (the
	// frame's source without one).
	MAC net.HardwareAddr
	// Answer is true for an answer to a request of ours: an ARP reply, or
	// an NA with the Solicited flag (RFC 4861 §4.4), sent to our MAC. An
	// announcement (gratuitous ARP, RFC 5227 §2.3; unsolicited NA, RFC
	// 4861 §7.2.6) goes to broadcast or all-nodes and is false.
	Answer bool
}

// ARPRequest builds the Ethernet frame of an ARP request (RFC 826) for
// target from mac and src, to broadcast, target hardware address zero:
// what a Linux host sends when it resolves.
func ARPRequest(mac net.HardwareAddr, src, target netip.Addr) ([]byte, error) {
	if len(mac) != 6 || !src.Is4() || !target.Is4() {
		return nil, fmt.Errorf("ARP request for %v from %v (%v): need a MAC and IPv4 addresses", target, src, mac)
	}
	f := make([]byte, ethHeaderLen+arpLen)
	copy(f[0:6], broadcastMAC)
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:], etherTypeARP)
	a := f[ethHeaderLen:]
	binary.BigEndian.PutUint16(a[0:], 1)      // hardware type Ethernet
	binary.BigEndian.PutUint16(a[2:], 0x0800) // protocol IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], arpOpRequest)
	copy(a[8:14], mac)
	s, t := src.As4(), target.As4()
	copy(a[14:18], s[:])
	copy(a[24:28], t[:])
	return f, nil
}

// NeighborSolicitation builds the Ethernet frame of a Neighbor
// Solicitation for target from mac and src: to the target's solicited-node
// group (RFC 4291 §2.7.1) and its Ethernet group 33:33:ff:xx:xx:xx (RFC
// 2464 §7), hop limit 255, with a source link-layer address option (RFC
// 4861 §4.3, §7.2.2), as a Linux host sends it when it resolves.
func NeighborSolicitation(mac net.HardwareAddr, src, target netip.Addr) ([]byte, error) {
	if len(mac) != 6 || !src.Is6() || src.Is4In6() || !target.Is6() || target.Is4In6() {
		return nil, fmt.Errorf("NS for %v from %v (%v): need a MAC and IPv6 addresses", target, src, mac)
	}
	dst, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		return nil, fmt.Errorf("NS for %v: %w", target, err)
	}
	icmp, err := ndp.MarshalMessageChecksum(&ndp.NeighborSolicitation{
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac}},
	}, src, dst)
	if err != nil {
		return nil, fmt.Errorf("NS for %v: %w", target, err)
	}
	f := make([]byte, ethHeaderLen+ipv6HeaderLen+len(icmp))
	t := target.As16()
	copy(f[0:6], []byte{0x33, 0x33, 0xff, t[13], t[14], t[15]})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:], etherTypeIPv6)
	ip := f[ethHeaderLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:], uint16(len(icmp)))
	ip[6] = protoICMPv6
	ip[7] = ndHopLimit
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(f[icmpOff:], icmp)
	return f, nil
}

// ParseFrame reads what frame f, received on the interface whose MAC is
// self, resolves. An NA must be valid per RFC 4861 §7.1.2 as far as a
// resolver checks (hop limit 255, code 0, checksum), else the error wraps
// ErrBadFrame; everything that is not an answer to self or an
// announcement is ErrNotHeard.
func ParseFrame(f []byte, self net.HardwareAddr) (Heard, error) {
	if len(f) < ethHeaderLen {
		return Heard{}, ErrNotHeard
	}
	dst := net.HardwareAddr(f[0:6])
	toUs := sameMAC(dst, self)
	if !toUs && dst[0]&1 == 0 {
		return Heard{}, ErrNotHeard // unicast to another host
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case etherTypeARP:
		return parseARP(f[ethHeaderLen:], toUs)
	case etherTypeIPv6:
		return parseNA(f[ethHeaderLen:], net.HardwareAddr(f[6:12]), toUs)
	}
	return Heard{}, ErrNotHeard
}

func parseARP(a []byte, toUs bool) (Heard, error) {
	if len(a) < arpLen || binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != 0x0800 ||
		a[4] != 6 || a[5] != 4 {
		return Heard{}, ErrNotHeard
	}
	sender := netip.AddrFrom4([4]byte(a[14:18]))
	h := Heard{Target: sender, MAC: net.HardwareAddr(append([]byte(nil), a[8:14]...))}
	switch binary.BigEndian.Uint16(a[6:]) {
	case arpOpReply:
		h.Answer = toUs
		return h, nil
	case arpOpRequest:
		// Only the gratuitous form (sender IP = target IP) announces;
		// any other request is someone resolving.
		if sender == netip.AddrFrom4([4]byte(a[24:28])) && !toUs {
			return h, nil
		}
	}
	return Heard{}, ErrNotHeard
}

func parseNA(ip []byte, ethSrc net.HardwareAddr, toUs bool) (Heard, error) {
	if len(ip) < ipv6HeaderLen || ip[0]>>4 != 6 || ip[6] != protoICMPv6 {
		return Heard{}, ErrNotHeard
	}
	plen := int(binary.BigEndian.Uint16(ip[4:]))
	if len(ip) < ipv6HeaderLen+plen {
		return Heard{}, fmt.Errorf("NA: IPv6 payload length %d beyond the frame: %w", plen, ErrBadFrame)
	}
	msg := ip[ipv6HeaderLen : ipv6HeaderLen+plen]
	if len(msg) < ndMinLen || msg[0] != icmpTypeNA {
		return Heard{}, ErrNotHeard
	}
	src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	switch {
	case ip[7] != ndHopLimit:
		return Heard{}, fmt.Errorf("NA: hop limit %d: %w", ip[7], ErrBadFrame)
	case msg[1] != 0:
		return Heard{}, fmt.Errorf("NA: code %d: %w", msg[1], ErrBadFrame)
	case ICMPv6Checksum(src, dst, msg) != 0:
		return Heard{}, fmt.Errorf("NA: bad checksum: %w", ErrBadFrame)
	}
	m, err := ndp.ParseMessage(msg)
	if err != nil {
		return Heard{}, fmt.Errorf("NA: %w: %w", err, ErrBadFrame)
	}
	na, ok := m.(*ndp.NeighborAdvertisement)
	if !ok {
		return Heard{}, ErrNotHeard
	}
	h := Heard{Target: na.TargetAddress, Answer: na.Solicited && toUs}
	for _, o := range na.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
			h.MAC = append(net.HardwareAddr(nil), lla.Addr...) // not the reader's buffer
			break
		}
	}
	if h.MAC == nil {
		// RFC 4861 §4.4: a solicited NA to a unicast address may omit
		// the option; the sender's link-layer address is then the one.
		h.MAC = append(net.HardwareAddr(nil), ethSrc...)
	}
	return h, nil
}

// ICMPv6Checksum is the RFC 4443 §2.3 checksum of msg over the RFC 8200
// §8.1 pseudo-header; over a message that carries its checksum it is 0.
func ICMPv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
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

func sameMAC(a, b net.HardwareAddr) bool {
	return len(a) == len(b) && string(a) == string(b)
}
