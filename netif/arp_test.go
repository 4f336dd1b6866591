package netif

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
)

var addrComparer = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func arpRequestMsg(srcHW net.HardwareAddr, srcIP, target netip.Addr) ARPMessage {
	return ARPMessage{
		EthDst: broadcastMAC, EthSrc: srcHW, Op: arp.OperationRequest,
		SenderHW: srcHW, SenderIP: srcIP, TargetHW: zeroMAC, TargetIP: target,
	}
}

func TestARPRoundTrip(t *testing.T) {
	req, rep := gratuitousARP(vip4, ourMAC, Marker{})
	for _, m := range []ARPMessage{
		arpRequestMsg(peerMAC, peer4, vip4),
		arpRequestMsg(peerMAC, netip.IPv4Unspecified(), vip4),
		arpReply(arpRequestMsg(peerMAC, peer4, vip4), ourMAC, Marker{}),
		req, rep,
	} {
		b := mustMarshal(t, m)
		if len(b) != 60 {
			t.Errorf("frame is %d bytes, want 60 (padded minimum)", len(b))
		}
		got, err := ParseARP(b)
		if err != nil {
			t.Fatalf("ParseARP(%+v): %v", m, err)
		}
		if diff := cmp.Diff(m, got, addrComparer); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestARPReplyFields(t *testing.T) {
	got := arpReply(arpRequestMsg(peerMAC, peer4, vip4), ourMAC, Marker{})
	want := ARPMessage{
		EthDst: peerMAC, EthSrc: ourMAC, Op: arp.OperationReply,
		SenderHW: ourMAC, SenderIP: vip4, TargetHW: peerMAC, TargetIP: peer4,
	}
	if diff := cmp.Diff(want, got, addrComparer); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
	req, rep := gratuitousARP(vip4, ourMAC, Marker{})
	if !req.IsAnnouncement() || !rep.IsAnnouncement() || req.Op != arp.OperationRequest || rep.Op != arp.OperationReply {
		t.Errorf("gratuitous ARP: %+v %+v", req, rep)
	}
	if !bytes.Equal(req.EthDst, broadcastMAC) || !bytes.Equal(rep.EthDst, broadcastMAC) {
		t.Errorf("gratuitous ARP not broadcast")
	}
}

// badARPFrames are frames ParseARP must reject, each with its reason.
func badARPFrames(t testing.TB) []struct {
	name  string
	frame []byte
	want  DropError
} {
	good := mustMarshal(t, arpRequestMsg(peerMAC, peer4, vip4))
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	return []struct {
		name  string
		frame []byte
		want  DropError
	}{
		{"empty", nil, ErrFrameShort},
		{"half an Ethernet header", good[:10], ErrFrameShort},
		{"no ARP header", good[:14+7], ErrARPShort},
		{"addresses cut", good[:14+20], ErrARPShort},
		{"IPv4 EtherType", mod(func(b []byte) []byte { b[12], b[13] = 0x08, 0x00; return b }), ErrFrameEtherType},
		{"VLAN tagged", append(append(append([]byte(nil), good[:12]...), 0x81, 0x00, 0x00, 0x05), good[12:]...), ErrFrameVLAN},
		{"multicast source MAC", mod(func(b []byte) []byte { b[6] |= 1; return b }), ErrFrameBadSrcMAC},
		{"hardware type 6", mod(func(b []byte) []byte { b[15] = 6; return b }), ErrARPBadHType},
		{"protocol IPv6", mod(func(b []byte) []byte { b[16], b[17] = 0x86, 0xdd; return b }), ErrARPBadPType},
		{"hardware length 8", mod(func(b []byte) []byte { b[18] = 8; return b }), ErrARPBadHLen},
		{"protocol length 5", mod(func(b []byte) []byte { b[19] = 5; return b }), ErrARPBadPLen},
		{"protocol length 16", mod(func(b []byte) []byte { b[19] = 16; return append(b, make([]byte, 64)...) }), ErrARPBadPLen},
		{"huge lengths", mod(func(b []byte) []byte { b[18], b[19] = 255, 255; return b }), ErrARPShort},
		{"operation 3", mod(func(b []byte) []byte { b[21] = 3; return b }), ErrARPBadOp},
		{"multicast sender MAC", mod(func(b []byte) []byte { b[22] = 0x01; return b }), ErrARPBadSenderHW},
		{"broadcast sender MAC", mod(func(b []byte) []byte { copy(b[22:28], broadcastMAC); return b }), ErrARPBadSenderHW},
		{"multicast sender IP", mod(func(b []byte) []byte { b[28] = 224; return b }), ErrARPBadSenderIP},
		{"loopback sender IP", mod(func(b []byte) []byte { b[28] = 127; return b }), ErrARPBadSenderIP},
		{"broadcast sender IP", mod(func(b []byte) []byte { copy(b[28:32], []byte{255, 255, 255, 255}); return b }), ErrARPBadSenderIP},
	}
}

func TestParseARPRejects(t *testing.T) {
	for _, tc := range badARPFrames(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseARP(tc.frame)
			if !errors.Is(err, tc.want) {
				t.Errorf("ParseARP: got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMarshalARPRejects(t *testing.T) {
	bad := arpRequestMsg(peerMAC, peer4, vip4)
	bad.TargetIP = vip6
	if _, err := bad.MarshalBinary(); err == nil {
		t.Error("IPv6 target marshalled")
	}
	bad = arpRequestMsg(net.HardwareAddr{1, 2, 3}, peer4, vip4)
	if _, err := bad.MarshalBinary(); err == nil {
		t.Error("3-byte MAC marshalled")
	}
}

func FuzzParseARP(f *testing.F) {
	req, rep := gratuitousARP(vip4, ourMAC, Marker{})
	for _, m := range []ARPMessage{
		arpRequestMsg(peerMAC, peer4, vip4),
		arpRequestMsg(peerMAC, netip.IPv4Unspecified(), vip4),
		arpReply(arpRequestMsg(peerMAC, peer4, vip4), ourMAC, Marker{}), req, rep,
	} {
		f.Add(mustMarshal(f, m))
	}
	for _, tc := range badARPFrames(f) {
		f.Add(tc.frame)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseARP(b)
		if err != nil {
			var de DropError
			if !errors.As(err, &de) {
				t.Fatalf("ParseARP error %v is not a DropError", err)
			}
			return
		}
		// Whatever parses must marshal and parse back to itself.
		b2, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal parsed %+v: %v", m, err)
		}
		m2, err := ParseARP(b2)
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if diff := cmp.Diff(m, m2, addrComparer); diff != "" {
			t.Fatalf("reparse (-first +second):\n%s", diff)
		}
	})
}

// FuzzARPResponder runs whole frames through the responder's decision path:
// no input may panic, and an answer is always a valid reply from us for an
// owned address.
func FuzzARPResponder(f *testing.F) {
	f.Add(mustMarshal(f, arpRequestMsg(peerMAC, peer4, vip4)))
	f.Add(mustMarshal(f, arpRequestMsg(peerMAC, netip.IPv4Unspecified(), vip4)))
	for _, tc := range badARPFrames(f) {
		f.Add(tc.frame)
	}
	r := NewARPResponder(newFakePacketConn(), testRcCfg)
	if err := r.SetOwned([]netip.Addr{vip4, vip6}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := r.handle(context.Background(), b)
		if err != nil {
			return
		}
		m, err := ParseARP(out)
		if err != nil {
			t.Fatalf("answer does not parse: %v", err)
		}
		if m.Op != arp.OperationReply || m.SenderIP != vip4 || !bytes.Equal(m.SenderHW, ourMAC) || !bytes.Equal(m.EthSrc, ourMAC) {
			t.Fatalf("bad answer %+v", m)
		}
	})
}
