package bench

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"

	"github.com/hostlb/hostlb/netif"
)

// cmpAddr compares netip.Addr by value (it has unexported fields).
var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

var (
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	nodeMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// The generator's requests are what netif (and, in the lab, the kernel)
// accept as valid requests for the target.
func TestRequestsParse(t *testing.T) {
	b, err := newRequestBuilder(ARP, clientMAC, ClientIPv4)
	if err != nil {
		t.Fatal(err)
	}
	target := netip.MustParseAddr("198.51.100.7")
	m, err := netif.ParseARP(b.build(nil, target))
	if err != nil {
		t.Fatalf("ARP request does not parse: %v", err)
	}
	want := netif.ARPMessage{
		EthDst: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthSrc: clientMAC,
		Op: arp.OperationRequest, SenderHW: clientMAC, SenderIP: ClientIPv4,
		TargetHW: net.HardwareAddr{0, 0, 0, 0, 0, 0}, TargetIP: target,
	}
	if diff := cmp.Diff(want, m, cmpAddr); diff != "" {
		t.Errorf("ARP request (-want +got):\n%s", diff)
	}

	b, err = newRequestBuilder(NDP, clientMAC, ClientIPv6)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 0, nsFrameLen)
	// Reusing the frame must not leave anything of the previous target.
	for _, tc := range []struct {
		target, group string
		mac           net.HardwareAddr
	}{
		{"2001:db8:1::2710", "ff02::1:ff00:2710", net.HardwareAddr{0x33, 0x33, 0xff, 0, 0x27, 0x10}},
		{"2001:db8:1::1", "ff02::1:ff00:1", net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 1}},
	} {
		target := netip.MustParseAddr(tc.target)
		frame = b.build(frame, target)
		ns, err := netif.ParseNS(frame)
		if err != nil {
			t.Fatalf("NS for %v does not parse: %v", target, err)
		}
		want := netif.NSMessage{
			EthDst: tc.mac, EthSrc: clientMAC, Src: ClientIPv6, Dst: netip.MustParseAddr(tc.group),
			Target: target, SourceLLA: clientMAC,
		}
		if diff := cmp.Diff(want, ns, cmpAddr); diff != "" {
			t.Errorf("NS (-want +got):\n%s", diff)
		}
	}
}

func TestParseAnswer(t *testing.T) {
	vip4 := netip.MustParseAddr("203.0.113.9")
	reply, err := netif.ARPMessage{
		EthDst: clientMAC, EthSrc: nodeMAC, Op: arp.OperationReply,
		SenderHW: nodeMAC, SenderIP: vip4, TargetHW: clientMAC, TargetIP: ClientIPv4,
	}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parseAnswer(ARP, reply); err != nil || got != vip4 {
		t.Errorf("ARP reply: got %v, %v; want %v", got, err, vip4)
	}
	vip6 := netip.MustParseAddr("2001:db8:1::42")
	na, err := netif.NAMessage{
		EthDst: clientMAC, EthSrc: nodeMAC, Src: vip6, Dst: ClientIPv6,
		Solicited: true, Override: true, Target: vip6, TargetLLA: nodeMAC,
	}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parseAnswer(NDP, na); err != nil || got != vip6 {
		t.Errorf("NA: got %v, %v; want %v", got, err, vip6)
	}
	// Requests, the other protocol and short frames are not answers.
	b4, _ := newRequestBuilder(ARP, clientMAC, ClientIPv4)
	b6, _ := newRequestBuilder(NDP, clientMAC, ClientIPv6)
	for name, tc := range map[string]struct {
		proto Proto
		frame []byte
	}{
		"ARP request": {ARP, b4.build(nil, vip4)},
		"NS":          {NDP, b6.build(nil, vip6)},
		"NA as ARP":   {ARP, na},
		"ARP as NDP":  {NDP, reply},
		"short ARP":   {ARP, reply[:arpFrameLen-1]},
		"short NA":    {NDP, na[:naMinFrameLen-1]},
	} {
		if _, err := parseAnswer(tc.proto, tc.frame); !errors.Is(err, errNotAnswer) {
			t.Errorf("%s: got %v, want errNotAnswer", name, err)
		}
	}
}

func FuzzParseAnswer(f *testing.F) {
	b6, _ := newRequestBuilder(NDP, clientMAC, ClientIPv6)
	f.Add(b6.build(nil, netip.MustParseAddr("2001:db8:1::1")))
	f.Fuzz(func(_ *testing.T, b []byte) {
		_, _ = parseAnswer(ARP, b)
		_, _ = parseAnswer(NDP, b)
	})
}

func TestVIPs(t *testing.T) {
	docs := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32"),
	}
	inDocs := func(a netip.Addr) bool {
		for _, p := range docs {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if MaxIPv4VIPs != 761 {
		t.Errorf("MaxIPv4VIPs = %d, want 761 (3 × 254 less the client)", MaxIPv4VIPs)
	}
	for _, tc := range []struct {
		proto Proto
		n     int
	}{{ARP, MaxIPv4VIPs}, {NDP, 10000}} {
		vips, err := VIPs(tc.proto, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[netip.Addr]bool{ClientIPv4: true, ClientIPv6: true}
		groups := map[[3]byte]bool{}
		for _, v := range vips {
			if !inDocs(v) || seen[v] || (tc.proto == ARP) != v.Is4() {
				t.Fatalf("%s VIP %v: outside the documentation ranges, repeated, the client's or of the wrong family", tc.proto, v)
			}
			seen[v] = true
			if v.Is6() {
				b := v.As16()
				groups[[3]byte{b[13], b[14], b[15]}] = true
			}
		}
		if len(vips) != tc.n || (tc.proto == NDP && len(groups) != tc.n) {
			t.Errorf("%s: %d VIPs in %d solicited-node groups, want %d", tc.proto, len(vips), len(groups), tc.n)
		}
	}
	if _, err := VIPs(ARP, MaxIPv4VIPs+1); err == nil {
		t.Error("more IPv4 VIPs than the ranges hold: no error")
	}
}
