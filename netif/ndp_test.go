package netif

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func nsMulticastMsg(target netip.Addr) NSMessage {
	snm := solicitedNode(target)
	return NSMessage{
		EthDst: ipv6MulticastMAC(snm), EthSrc: peerMAC,
		Src: peer6, Dst: snm, Target: target, SourceLLA: peerMAC,
	}
}

// nsUnicastMsg is what a NUD probe looks like: sent to the address itself,
// at the MAC in the cache; Linux leaves out the source LLA option here.
func nsUnicastMsg(target netip.Addr) NSMessage {
	return NSMessage{EthDst: ourMAC, EthSrc: peerMAC, Src: peer6, Dst: target, Target: target}
}

func nsDADMsg(target netip.Addr) NSMessage {
	snm := solicitedNode(target)
	return NSMessage{
		EthDst: ipv6MulticastMAC(snm), EthSrc: peerMAC,
		Src: netip.IPv6Unspecified(), Dst: snm, Target: target,
	}
}

// fixChecksum recomputes the ICMPv6 checksum of an untagged IPv6 frame after
// a test changed it, so the change under test is the only defect.
func fixChecksum(b []byte) []byte {
	plen := int(binary.BigEndian.Uint16(b[18:20]))
	msg := b[54 : 54+plen]
	msg[2], msg[3] = 0, 0
	src := netip.AddrFrom16([16]byte(b[22:38]))
	dst := netip.AddrFrom16([16]byte(b[38:54]))
	binary.BigEndian.PutUint16(msg[2:4], icmpv6Checksum(src, dst, msg))
	return b
}

func TestSolicitedNode(t *testing.T) {
	if got := solicitedNode(vip6); got != netip.MustParseAddr("ff02::1:ff00:100") {
		t.Errorf("solicitedNode(%v) = %v", vip6, got)
	}
	if got := ipv6MulticastMAC(solicitedNode(vip6)).String(); got != "33:33:ff:00:01:00" {
		t.Errorf("group MAC = %s", got)
	}
	if solicitedNode(vip6Twin) != solicitedNode(vip6) {
		t.Errorf("%v and %v should share a group", vip6, vip6Twin)
	}
}

func TestNDPRoundTrip(t *testing.T) {
	for _, m := range []NSMessage{nsMulticastMsg(vip6), nsUnicastMsg(vip6), nsDADMsg(vip6)} {
		got, err := ParseNS(mustMarshal(t, m))
		if err != nil {
			t.Fatalf("ParseNS(%+v): %v", m, err)
		}
		if diff := cmp.Diff(m, got, addrComparer); diff != "" {
			t.Errorf("NS round trip (-want +got):\n%s", diff)
		}
	}
	for _, m := range []NAMessage{
		ndpAnswer(nsMulticastMsg(vip6), ourMAC), ndpAnswer(nsDADMsg(vip6), ourMAC), unsolicitedNA(vip6, ourMAC),
	} {
		b := mustMarshal(t, m)
		got, err := ParseNA(b)
		if err != nil {
			t.Fatalf("ParseNA(%+v): %v", m, err)
		}
		if diff := cmp.Diff(m, got, addrComparer); diff != "" {
			t.Errorf("NA round trip (-want +got):\n%s", diff)
		}
		// The checksum ndp/x/net computed verifies with ours.
		if sum := icmpv6Checksum(m.Src, m.Dst, b[54:]); sum != 0 {
			t.Errorf("checksum does not verify: %#x", sum)
		}
		if b[21] != 255 {
			t.Errorf("hop limit %d, want 255", b[21])
		}
	}
	// Ethernet padding after the IPv6 payload is ignored.
	padded := append(mustMarshal(t, nsUnicastMsg(vip6)), make([]byte, 12)...)
	if _, err := ParseNS(padded); err != nil {
		t.Errorf("padded NS: %v", err)
	}
}

func TestNDPAnswerFields(t *testing.T) {
	tests := []struct {
		name string
		ns   NSMessage
		want NAMessage
	}{
		{"multicast NS: to the solicitor's LLA option, S=1", nsMulticastMsg(vip6), NAMessage{
			EthDst: peerMAC, EthSrc: ourMAC, Src: vip6, Dst: peer6,
			Solicited: true, Override: true, Target: vip6, TargetLLA: ourMAC,
		}},
		{"unicast NS without LLA: to the frame's source, S=1", nsUnicastMsg(vip6), NAMessage{
			EthDst: peerMAC, EthSrc: ourMAC, Src: vip6, Dst: peer6,
			Solicited: true, Override: true, Target: vip6, TargetLLA: ourMAC,
		}},
		{"DAD NS: to all-nodes, S=0", nsDADMsg(vip6), NAMessage{
			EthDst: net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, EthSrc: ourMAC, Src: vip6, Dst: allNodes,
			Override: true, Target: vip6, TargetLLA: ourMAC,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, ndpAnswer(tc.ns, ourMAC), addrComparer); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
	na := unsolicitedNA(vip6, ourMAC)
	if na.Solicited || !na.Override || na.Router || na.Dst != allNodes {
		t.Errorf("unsolicited NA flags: %+v", na)
	}
}

// badNSFrames are frames ParseNS must reject, each with its reason.
func badNSFrames(t testing.TB) []struct {
	name  string
	frame []byte
	want  DropError
} {
	good := mustMarshal(t, nsMulticastMsg(vip6))
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	withOption := func(opt []byte) []byte {
		b := append(append([]byte(nil), good...), opt...)
		binary.BigEndian.PutUint16(b[18:20], binary.BigEndian.Uint16(b[18:20])+uint16(len(opt)))
		return fixChecksum(b)
	}
	variant := func(f func(m *NSMessage)) []byte {
		m := nsMulticastMsg(vip6)
		f(&m)
		return mustMarshal(t, m)
	}
	return []struct {
		name  string
		frame []byte
		want  DropError
	}{
		{"empty", nil, ErrFrameShort},
		{"ARP EtherType", mod(func(b []byte) []byte { b[12], b[13] = 0x08, 0x06; return b }), ErrFrameEtherType},
		{"no IPv6 header", good[:14+39], ErrNDPShort},
		{"payload cut", good[:len(good)-1], ErrNDPShort},
		{"ICMPv6 header cut", mod(func(b []byte) []byte { b[19] = 3; return b }), ErrNDPShort},
		{"version 4", mod(func(b []byte) []byte { b[14] = 0x40; return b }), ErrNDPBadVersion},
		{"hop-by-hop header", mod(func(b []byte) []byte { b[20] = 0; return b }), ErrNDPNotICMPv6},
		{"UDP", mod(func(b []byte) []byte { b[20] = 17; return b }), ErrNDPNotICMPv6},
		{"echo request", mod(func(b []byte) []byte { b[54] = 128; return fixChecksum(b) }), ErrNDPNotNS},
		{"hop limit 64 (routed)", mod(func(b []byte) []byte { b[21] = 64; return b }), ErrNDPBadHopLimit},
		{"bad checksum", mod(func(b []byte) []byte { b[57] ^= 0xff; return b }), ErrNDPBadChecksum},
		{"code 1", mod(func(b []byte) []byte { b[55] = 1; return fixChecksum(b) }), ErrNDPBadCode},
		{"ICMPv6 length 20", mod(func(b []byte) []byte { b[19] = 20; return fixChecksum(b) }), ErrNDPShort},
		{"zero-length option", withOption([]byte{14, 0, 0, 0, 0, 0, 0, 0}), ErrNDPBadOption},
		{"option past the end", withOption([]byte{14, 2, 0, 0, 0, 0, 0, 0}), ErrNDPBadOption},
		{"16-byte LLA option", withOption([]byte{1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}), ErrNDPBadOption},
		{"multicast source LLA", variant(func(m *NSMessage) { m.SourceLLA = broadcastMAC }), ErrNDPBadOption},
		{"multicast source", variant(func(m *NSMessage) { m.Src = allNodes }), ErrNDPBadSource},
		{"multicast target", variant(func(m *NSMessage) {
			m.Target = netip.MustParseAddr("ff02::1:ff00:100")
		}), ErrNDPBadTarget},
		{"unspecified target", variant(func(m *NSMessage) { m.Target = netip.IPv6Unspecified() }), ErrNDPBadTarget},
		{"v4-mapped target", mod(func(b []byte) []byte {
			mapped := netip.MustParseAddr("::ffff:192.0.2.100").As16()
			copy(b[62:78], mapped[:])
			return fixChecksum(b)
		}), ErrNDPBadTarget},
		{"sent to another group", variant(func(m *NSMessage) {
			m.Dst = solicitedNode(vip6b)
			m.EthDst = ipv6MulticastMAC(m.Dst)
		}), ErrNDPBadDest},
		{"sent to all-nodes", variant(func(m *NSMessage) { m.Dst, m.EthDst = allNodes, ipv6MulticastMAC(allNodes) }), ErrNDPBadDest},
		{"unicast to another address", variant(func(m *NSMessage) { m.Dst, m.EthDst = vip6b, ourMAC }), ErrNDPBadDest},
		{"multicast IP, unicast MAC", variant(func(m *NSMessage) { m.EthDst = ourMAC }), ErrNDPL2Mismatch},
		{"multicast IP, wrong group MAC", variant(func(m *NSMessage) { m.EthDst = ipv6MulticastMAC(allNodes) }), ErrNDPL2Mismatch},
		{"unicast IP, multicast MAC", variant(func(m *NSMessage) { m.Dst = vip6 }), ErrNDPL2Mismatch},
		{"DAD with source LLA", variant(func(m *NSMessage) { m.Src = netip.IPv6Unspecified() }), ErrNDPDADWithSLLA},
		{"DAD to the address", variant(func(m *NSMessage) {
			m.Src, m.SourceLLA, m.Dst, m.EthDst = netip.IPv6Unspecified(), nil, vip6, ourMAC
		}), ErrNDPDADBadDest},
		{"VLAN tagged", append(append(append([]byte(nil), good[:12]...), 0x81, 0x00, 0x00, 0x05), good[12:]...), ErrFrameVLAN},
	}
}

func TestParseNSRejects(t *testing.T) {
	for _, tc := range badNSFrames(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNS(tc.frame)
			if !errors.Is(err, tc.want) {
				t.Errorf("ParseNS: got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseNARejects(t *testing.T) {
	solicitedToGroup := unsolicitedNA(vip6, ourMAC)
	solicitedToGroup.Solicited = true
	if _, err := ParseNA(mustMarshal(t, solicitedToGroup)); !errors.Is(err, ErrNDPBadNAFlags) {
		t.Errorf("solicited NA to all-nodes: got %v", err)
	}
	if _, err := ParseNA(mustMarshal(t, nsMulticastMsg(vip6))); !errors.Is(err, ErrNDPNotNA) {
		t.Errorf("NS parsed as NA: got %v", err)
	}
}

func TestMarshalNDPRejects(t *testing.T) {
	m := nsUnicastMsg(vip6)
	m.Src = vip4
	if _, err := m.MarshalBinary(); err == nil {
		t.Error("IPv4 source marshalled")
	}
	m = nsUnicastMsg(vip6)
	m.EthSrc = nil
	if _, err := m.MarshalBinary(); err == nil {
		t.Error("missing MAC marshalled")
	}
}

func ndpSeeds(f *testing.F) {
	for _, m := range []NSMessage{nsMulticastMsg(vip6), nsUnicastMsg(vip6), nsDADMsg(vip6)} {
		f.Add(mustMarshal(f, m))
	}
	for _, m := range []NAMessage{ndpAnswer(nsMulticastMsg(vip6), ourMAC), unsolicitedNA(vip6, ourMAC)} {
		f.Add(mustMarshal(f, m))
	}
	for _, tc := range badNSFrames(f) {
		f.Add(tc.frame)
	}
}

func FuzzParseNS(f *testing.F) {
	ndpSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseNS(b)
		if err != nil {
			var de DropError
			if !errors.As(err, &de) {
				t.Fatalf("ParseNS error %v is not a DropError", err)
			}
			return
		}
		if m.Target.IsMulticast() || (m.IsDAD() && m.SourceLLA != nil) {
			t.Fatalf("accepted an invalid NS: %+v", m)
		}
		b2, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal parsed %+v: %v", m, err)
		}
		m2, err := ParseNS(b2)
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if diff := cmp.Diff(m, m2, addrComparer); diff != "" {
			t.Fatalf("reparse (-first +second):\n%s", diff)
		}
	})
}

func FuzzParseNA(f *testing.F) {
	ndpSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseNA(b); err != nil {
			var de DropError
			if !errors.As(err, &de) {
				t.Fatalf("ParseNA error %v is not a DropError", err)
			}
		}
	})
}

// FuzzNDPResponder runs whole frames through the responder's decision path:
// no input may panic, and an answer is always a valid NA from us for an
// owned address with Override set.
func FuzzNDPResponder(f *testing.F) {
	ndpSeeds(f)
	r := NewNDPResponder(newFakePacketConn(), testRcCfg)
	if err := r.SetOwned([]netip.Addr{vip6, vip4}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := r.handle(context.Background(), b)
		if err != nil {
			return
		}
		na, err := ParseNA(out)
		if err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
		if na.Target != vip6 || na.Src != vip6 || !na.Override || na.Router || !bytes.Equal(na.TargetLLA, ourMAC) {
			t.Fatalf("bad answer %+v", na)
		}
	})
}
