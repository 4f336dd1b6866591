package kubelabbench

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/ndp"
)

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	nodeMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}
	otherMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	client4   = netip.MustParseAddr("192.0.2.2")
	client6   = netip.MustParseAddr("2001:db8::2")
	vip4      = netip.MustParseAddr("192.0.2.40")
	vip6      = netip.MustParseAddr("2001:db8:1000::1:2345")
	allNodes  = netip.MustParseAddr("ff02::1")
)

func TestNeighborSolicitationIsWhatLinuxSends(t *testing.T) {
	f, err := NeighborSolicitation(clientMAC, client6, vip6)
	if err != nil {
		t.Fatal(err)
	}
	snm := netip.MustParseAddr("ff02::1:ff01:2345")
	if got, want := net.HardwareAddr(f[0:6]).String(), "33:33:ff:01:23:45"; got != want {
		t.Errorf("Ethernet destination %s, want the solicited-node group's %s", got, want)
	}
	ip := f[ethHeaderLen:]
	if src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40])); src != client6 || dst != snm {
		t.Errorf("IPv6 %s → %s, want %s → %s", src, dst, client6, snm)
	}
	if ip[7] != 255 || ip[6] != protoICMPv6 || int(binary.BigEndian.Uint16(ip[4:])) != len(f)-icmpOff {
		t.Errorf("IPv6 header: hop limit %d, next header %d, payload length %d", ip[7], ip[6], binary.BigEndian.Uint16(ip[4:]))
	}
	if sum := ICMPv6Checksum(client6, snm, f[icmpOff:]); sum != 0 {
		t.Errorf("checksum over the message = %#x, want 0", sum)
	}
	m, err := ndp.ParseMessage(f[icmpOff:])
	if err != nil {
		t.Fatal(err)
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok || ns.TargetAddress != vip6 || len(ns.Options) != 1 {
		t.Fatalf("message %#v, want an NS for %s with one option", m, vip6)
	}
	if lla, ok := ns.Options[0].(*ndp.LinkLayerAddress); !ok || lla.Direction != ndp.Source || lla.Addr.String() != clientMAC.String() {
		t.Errorf("option %#v, want the source link-layer address %s", ns.Options[0], clientMAC)
	}
}

func TestARPRequestIsWhatLinuxSends(t *testing.T) {
	f, err := ARPRequest(clientMAC, client4, vip4)
	if err != nil {
		t.Fatal(err)
	}
	a := f[ethHeaderLen:]
	switch {
	case net.HardwareAddr(f[0:6]).String() != "ff:ff:ff:ff:ff:ff":
		t.Errorf("destination %s, want broadcast", net.HardwareAddr(f[0:6]))
	case binary.BigEndian.Uint16(a[6:]) != arpOpRequest:
		t.Errorf("operation %d", binary.BigEndian.Uint16(a[6:]))
	case netip.AddrFrom4([4]byte(a[14:18])) != client4 || netip.AddrFrom4([4]byte(a[24:28])) != vip4:
		t.Errorf("sender %v, target %v", a[14:18], a[24:28])
	case net.HardwareAddr(a[18:24]).String() != "00:00:00:00:00:00":
		t.Errorf("target hardware address %s, want zero", net.HardwareAddr(a[18:24]))
	}
	if _, err := ARPRequest(clientMAC, client6, vip4); err == nil {
		t.Error("an IPv6 source was accepted")
	}
	if _, err := NeighborSolicitation(clientMAC, client4, vip6); err == nil {
		t.Error("an IPv4 source was accepted")
	}
}

// arpFrame builds an ARP packet from sender to target, on Ethernet to dst.
func arpFrame(dst net.HardwareAddr, op uint16, senderHW net.HardwareAddr, sender, target netip.Addr) []byte {
	f, _ := ARPRequest(senderHW, sender, target)
	copy(f[0:6], dst)
	binary.BigEndian.PutUint16(f[ethHeaderLen+6:], op)
	return f
}

// naFrame builds a Neighbor Advertisement for target from nodeMAC; tlla
// nil leaves the option out. mutate may spoil the IPv6 header or the
// message after the checksum is computed.
func naFrame(t testing.TB, ethDst net.HardwareAddr, dst netip.Addr, solicited bool, tlla net.HardwareAddr, mutate func(ip []byte)) []byte {
	t.Helper()
	na := &ndp.NeighborAdvertisement{Solicited: solicited, Override: true, TargetAddress: vip6}
	if tlla != nil {
		na.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: tlla}}
	}
	msg, err := ndp.MarshalMessageChecksum(na, vip6, dst)
	if err != nil {
		t.Fatal(err)
	}
	f := make([]byte, icmpOff+len(msg))
	copy(f[0:6], ethDst)
	copy(f[6:12], nodeMAC)
	binary.BigEndian.PutUint16(f[12:], etherTypeIPv6)
	ip := f[ethHeaderLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:], uint16(len(msg)))
	ip[6], ip[7] = protoICMPv6, 255
	s, d := vip6.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(f[icmpOff:], msg)
	if mutate != nil {
		mutate(ip)
	}
	return f
}

func TestParseFrameTellsAnswersFromAnnouncements(t *testing.T) {
	allNodesMAC := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	ns, _ := NeighborSolicitation(otherMAC, client6, vip6)
	tests := []struct {
		name    string
		frame   []byte
		want    Heard
		wantErr error
	}{
		{"ARP reply to us", arpFrame(clientMAC, arpOpReply, nodeMAC, vip4, client4),
			Heard{Target: vip4, MAC: nodeMAC, Answer: true}, nil},
		{"gratuitous ARP reply", arpFrame(broadcastMAC, arpOpReply, nodeMAC, vip4, vip4),
			Heard{Target: vip4, MAC: nodeMAC}, nil},
		{"gratuitous ARP request", arpFrame(broadcastMAC, arpOpRequest, nodeMAC, vip4, vip4),
			Heard{Target: vip4, MAC: nodeMAC}, nil},
		{"someone else's ARP request", arpFrame(broadcastMAC, arpOpRequest, otherMAC, client4, vip4), Heard{}, ErrNotHeard},
		{"ARP reply to another host", arpFrame(otherMAC, arpOpReply, nodeMAC, vip4, client4), Heard{}, ErrNotHeard},
		{"solicited NA to us", naFrame(t, clientMAC, client6, true, nodeMAC, nil),
			Heard{Target: vip6, MAC: nodeMAC, Answer: true}, nil},
		{"unsolicited NA to all nodes", naFrame(t, allNodesMAC, allNodes, false, nodeMAC, nil),
			Heard{Target: vip6, MAC: nodeMAC}, nil},
		{"solicited NA without the option: the frame's source", naFrame(t, clientMAC, client6, true, nil, nil),
			Heard{Target: vip6, MAC: nodeMAC, Answer: true}, nil},
		{"NA to another host", naFrame(t, otherMAC, client6, true, nodeMAC, nil), Heard{}, ErrNotHeard},
		{"routed NA (hop limit 64)", naFrame(t, clientMAC, client6, true, nodeMAC, func(ip []byte) { ip[7] = 64 }), Heard{}, ErrBadFrame},
		{"NA with a bad checksum", naFrame(t, clientMAC, client6, true, nodeMAC, func(ip []byte) { ip[ipv6HeaderLen+2] ^= 1 }), Heard{}, ErrBadFrame},
		{"NA cut short", naFrame(t, clientMAC, client6, true, nodeMAC, func(ip []byte) { binary.BigEndian.PutUint16(ip[4:], 200) }), Heard{}, ErrBadFrame},
		{"an NS (someone resolving)", ns, Heard{}, ErrNotHeard},
		{"a runt", []byte{1, 2, 3}, Heard{}, ErrNotHeard},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFrame(tt.frame, clientMAC)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got.Target != tt.want.Target || got.MAC.String() != tt.want.MAC.String() || got.Answer != tt.want.Answer {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseFrameDoesNotAliasTheBuffer(t *testing.T) {
	f := naFrame(t, clientMAC, client6, true, nodeMAC, nil)
	h, err := ParseFrame(f, clientMAC)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f {
		f[i] = 0
	}
	if h.MAC.String() != nodeMAC.String() {
		t.Errorf("MAC %s after the buffer was reused, want %s", h.MAC, nodeMAC)
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add(naFrame(f, clientMAC, client6, true, nodeMAC, nil))
	f.Add(arpFrame(clientMAC, arpOpReply, nodeMAC, vip4, client4))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseFrame(b, clientMAC)
		if err == nil && (!h.Target.IsValid() || len(h.MAC) == 0) {
			t.Errorf("no error but %+v", h)
		}
	})
}
