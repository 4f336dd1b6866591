package netif

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// cmpNetip lets cmp compare netip values (opaque structs).
var cmpNetip = cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})

var testMAC = net.HardwareAddr{0x02, 0, 0x5e, 0, 0x53, 1}

const upBcast = unix.IFF_UP | unix.IFF_BROADCAST | unix.IFF_RUNNING | unix.IFF_MULTICAST

// linkMsg builds the LinkUpdate the kernel would send.
func linkMsg(typ uint16, index int, name, kind string, flags uint32, master int) netlink.LinkUpdate {
	attrs := netlink.LinkAttrs{Index: index, Name: name, RawFlags: flags, MasterIndex: master,
		HardwareAddr: testMAC, MTU: 1500}
	var l netlink.Link
	switch kind {
	case "device":
		l = &netlink.Device{LinkAttrs: attrs}
	case "bridge":
		l = &netlink.Bridge{LinkAttrs: attrs}
	case "vrf":
		l = &netlink.Vrf{LinkAttrs: attrs}
	default:
		l = &netlink.GenericLink{LinkAttrs: attrs, LinkType: kind}
	}
	return netlink.LinkUpdate{
		IfInfomsg: nl.IfInfomsg{IfInfomsg: unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(index), Flags: flags}},
		Header:    unix.NlMsghdr{Type: typ},
		Link:      l,
	}
}

func newLink(index int, name, kind string, flags uint32, master int) netlink.LinkUpdate {
	return linkMsg(unix.RTM_NEWLINK, index, name, kind, flags, master)
}

func addrMsg(add bool, index int, prefix string, flags int) netlink.AddrUpdate {
	p := netip.MustParsePrefix(prefix)
	return netlink.AddrUpdate{
		LinkAddress: net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		LinkIndex:   index, Flags: flags, NewAddr: add,
	}
}

func wantLink(index int, name, kind string, up bool, master int, addrs ...string) Link {
	l := Link{Index: index, Name: name, Type: kind, MAC: testMAC, MTU: 1500,
		Up: up, Running: up, Broadcast: true, MasterIndex: master}
	for _, a := range addrs {
		l.Addrs = append(l.Addrs, Addr{Prefix: netip.MustParsePrefix(a)})
	}
	return l
}

// apply feeds updates one at a time, as the Monitor does, and reports
// whether each changed the state.
func apply(t *testing.T, st State, updates ...any) (State, []bool) {
	t.Helper()
	var changed []bool
	for _, u := range updates {
		var c bool
		switch u := u.(type) {
		case netlink.LinkUpdate:
			st, c = st.applyLink(u)
		case netlink.AddrUpdate:
			st, c = st.applyAddr(u)
		default:
			t.Fatalf("unknown update %T", u)
		}
		changed = append(changed, c)
	}
	return st, changed
}

func TestStateApply(t *testing.T) {
	down := uint32(unix.IFF_BROADCAST | unix.IFF_MULTICAST)
	tests := []struct {
		name        string
		updates     []any
		want        []Link
		wantChanged []bool
	}{{
		name:        "link added",
		updates:     []any{newLink(2, "eth0", "device", upBcast, 0)},
		want:        []Link{wantLink(2, "eth0", "device", true, 0)},
		wantChanged: []bool{true},
	}, {
		name:        "same link again is no change",
		updates:     []any{newLink(2, "eth0", "device", upBcast, 0), newLink(2, "eth0", "device", upBcast, 0)},
		want:        []Link{wantLink(2, "eth0", "device", true, 0)},
		wantChanged: []bool{true, false},
	}, {
		name:        "link goes down and up",
		updates:     []any{newLink(2, "eth0", "device", upBcast, 0), newLink(2, "eth0", "device", down, 0), newLink(2, "eth0", "device", upBcast, 0)},
		want:        []Link{wantLink(2, "eth0", "device", true, 0)},
		wantChanged: []bool{true, true, true},
	}, {
		name:        "link down",
		updates:     []any{newLink(2, "eth0", "device", upBcast, 0), newLink(2, "eth0", "device", down, 0)},
		want:        []Link{wantLink(2, "eth0", "device", false, 0)},
		wantChanged: []bool{true, true},
	}, {
		name:        "rename keeps addresses",
		updates:     []any{newLink(2, "eth0", "device", upBcast, 0), addrMsg(true, 2, "192.0.2.1/24", 0), newLink(2, "lan0", "device", upBcast, 0)},
		want:        []Link{wantLink(2, "lan0", "device", true, 0, "192.0.2.1/24")},
		wantChanged: []bool{true, true, true},
	}, {
		name: "enslaved to a bridge, then released",
		updates: []any{newLink(2, "eth0", "device", upBcast, 0), newLink(3, "br0", "bridge", upBcast, 0),
			newLink(2, "eth0", "device", upBcast, 3)},
		want:        []Link{wantLink(2, "eth0", "device", true, 3), wantLink(3, "br0", "bridge", true, 0)},
		wantChanged: []bool{true, true, true},
	}, {
		name: "bridge-family DELLINK is a port leaving, not a deletion",
		updates: []any{newLink(2, "eth0", "device", upBcast, 3), newLink(3, "br0", "bridge", upBcast, 0),
			func() netlink.LinkUpdate {
				u := linkMsg(unix.RTM_DELLINK, 2, "eth0", "device", upBcast, 3)
				u.Family = unix.AF_BRIDGE
				return u
			}(),
			newLink(2, "eth0", "device", upBcast, 0)},
		want:        []Link{wantLink(2, "eth0", "device", true, 0), wantLink(3, "br0", "bridge", true, 0)},
		wantChanged: []bool{true, true, false, true},
	}, {
		name: "link deleted with its addresses",
		updates: []any{newLink(2, "eth0", "device", upBcast, 0), addrMsg(true, 2, "192.0.2.1/24", 0),
			newLink(4, "eth1", "device", upBcast, 0), linkMsg(unix.RTM_DELLINK, 2, "eth0", "device", upBcast, 0),
			linkMsg(unix.RTM_DELLINK, 2, "eth0", "device", upBcast, 0)},
		want:        []Link{wantLink(4, "eth1", "device", true, 0)},
		wantChanged: []bool{true, true, true, true, false},
	}, {
		name: "addresses added sorted, removed, duplicate ignored",
		updates: []any{newLink(2, "eth0", "device", upBcast, 0),
			addrMsg(true, 2, "2001:db8::1/64", 0), addrMsg(true, 2, "198.51.100.1/24", 0),
			addrMsg(true, 2, "192.0.2.1/24", 0), addrMsg(true, 2, "192.0.2.1/24", 0),
			addrMsg(false, 2, "198.51.100.1/24", 0), addrMsg(false, 2, "203.0.113.9/24", 0)},
		want:        []Link{wantLink(2, "eth0", "device", true, 0, "192.0.2.1/24", "2001:db8::1/64")},
		wantChanged: []bool{true, true, true, true, false, true, false},
	}, {
		name:        "address seen before its link",
		updates:     []any{addrMsg(true, 5, "203.0.113.5/24", 0), newLink(5, "eth5", "device", upBcast, 0)},
		want:        []Link{wantLink(5, "eth5", "device", true, 0, "203.0.113.5/24")},
		wantChanged: []bool{true, true},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, changed := apply(t, State{}, tt.updates...)
			if diff := cmp.Diff(tt.want, st.Links(), cmpNetip); diff != "" {
				t.Errorf("links (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantChanged, changed, cmpNetip); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStateApplyAddrFlags(t *testing.T) {
	st, _ := apply(t, State{}, newLink(2, "eth0", "device", upBcast, 0),
		addrMsg(true, 2, "fe80::1/64", unix.IFA_F_TENTATIVE|unix.IFA_F_PERMANENT))
	l, _ := st.Link(2)
	if len(l.Addrs) != 1 || l.Addrs[0].Usable() {
		t.Fatalf("tentative link-local: got %+v, want one unusable address", l.Addrs)
	}
	// DAD finishes: the kernel sends RTM_NEWADDR again with new flags.
	st, changed := apply(t, st, addrMsg(true, 2, "fe80::1/64", unix.IFA_F_PERMANENT))
	l, _ = st.Link(2)
	if !changed[0] || len(l.Addrs) != 1 || !l.Addrs[0].Usable() {
		t.Fatalf("after DAD: changed=%v addrs=%+v, want one usable address", changed, l.Addrs)
	}
}

// Snapshots handed out must never change: readers hold them without locks.
func TestStateApplyLeavesOldStateAlone(t *testing.T) {
	old, _ := apply(t, State{}, newLink(2, "eth0", "device", upBcast, 0), addrMsg(true, 2, "192.0.2.1/24", 0))
	before := old.Links()
	_, _ = apply(t, old, addrMsg(true, 2, "192.0.2.2/24", 0), addrMsg(false, 2, "192.0.2.1/24", 0),
		newLink(2, "eth0", "device", 0, 0), newLink(3, "eth1", "device", upBcast, 0),
		linkMsg(unix.RTM_DELLINK, 2, "eth0", "device", 0, 0))
	if diff := cmp.Diff(before, old.Links(), cmpNetip); diff != "" {
		t.Errorf("old state changed (-before +after):\n%s", diff)
	}
}

func TestStateLookups(t *testing.T) {
	st, _ := apply(t, State{}, newLink(2, "eth0", "device", upBcast, 0), addrMsg(true, 2, "192.0.2.1/24", 0),
		newLink(1, "lo", "device", unix.IFF_UP|unix.IFF_LOOPBACK, 0))
	if st.Len() != 2 {
		t.Errorf("Len = %d, want 2", st.Len())
	}
	l, ok := st.LinkByName("eth0")
	if !ok || l.Index != 2 || len(l.Addrs) != 1 {
		t.Errorf("LinkByName(eth0) = %+v, %v", l, ok)
	}
	if _, ok := st.LinkByName("eth9"); ok {
		t.Error("LinkByName(eth9) found a link")
	}
	if l, ok := st.Link(1); !ok || !l.Loopback || l.Name != "lo" {
		t.Errorf("Link(1) = %+v, %v", l, ok)
	}
	if got := st.Links(); got[0].Index != 1 || got[1].Index != 2 {
		t.Errorf("Links not ordered by index: %+v", got)
	}
}

func TestStateFromDump(t *testing.T) {
	eth := newLink(2, "eth0", "device", upBcast, 0).Link
	lo := newLink(1, "lo", "device", unix.IFF_UP|unix.IFF_LOOPBACK, 0).Link
	mk := func(s string, idx int) netlink.Addr {
		p := netip.MustParsePrefix(s)
		return netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, LinkIndex: idx}
	}
	st := stateFromDump([]netlink.Link{eth, lo}, []netlink.Addr{mk("127.0.0.1/8", 1), mk("192.0.2.1/24", 2), mk("2001:db8::1/64", 2)})
	want := []Link{
		{Index: 1, Name: "lo", Type: "device", MAC: testMAC, MTU: 1500, Up: true, Loopback: true,
			Addrs: []Addr{{Prefix: netip.MustParsePrefix("127.0.0.1/8")}}},
		wantLink(2, "eth0", "device", true, 0, "192.0.2.1/24", "2001:db8::1/64"),
	}
	if diff := cmp.Diff(want, st.Links(), cmpNetip); diff != "" {
		t.Errorf("dump (-want +got):\n%s", diff)
	}
}

func TestPrefixFromIPNet(t *testing.T) {
	for _, tt := range []struct {
		in   net.IPNet
		want string
	}{
		{net.IPNet{IP: net.ParseIP("192.0.2.7"), Mask: net.CIDRMask(24, 32)}, "192.0.2.7/24"},   // 16-byte IP, 4-byte mask
		{net.IPNet{IP: net.ParseIP("192.0.2.7"), Mask: net.CIDRMask(120, 128)}, "192.0.2.7/24"}, // 16-byte mask
		{net.IPNet{IP: net.ParseIP("2001:db8::7"), Mask: net.CIDRMask(64, 128)}, "2001:db8::7/64"},
	} {
		got, ok := prefixFromIPNet(tt.in)
		if !ok || got.String() != tt.want {
			t.Errorf("prefixFromIPNet(%v) = %v, %v; want %s", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := prefixFromIPNet(net.IPNet{IP: []byte{1, 2, 3}}); ok {
		t.Error("3-byte IP accepted")
	}
}
