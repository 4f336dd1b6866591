package netif

import (
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// This file turns rtnetlink messages into State changes. It does no I/O, so
// it is tested with injected netlink.LinkUpdate and netlink.AddrUpdate values.

// applyLink returns s with the link update applied and whether it changed.
func (s State) applyLink(u netlink.LinkUpdate) (State, bool) {
	b := newBuilder(s)
	changed := b.applyLink(u)
	return b.state(), changed
}

// applyAddr returns s with the address update applied and whether it changed.
func (s State) applyAddr(u netlink.AddrUpdate) (State, bool) {
	b := newBuilder(s)
	changed := b.applyAddr(u)
	return b.state(), changed
}

func (b *builder) applyLink(u netlink.LinkUpdate) bool {
	// The bridge driver reports port changes as RTM_NEWLINK/RTM_DELLINK
	// with family AF_BRIDGE; an AF_BRIDGE DELLINK means "no longer a
	// bridge port", not "link gone". The link's own AF_UNSPEC message
	// carries the master change, so bridge-family messages are ignored.
	if u.Family == unix.AF_BRIDGE || u.Link == nil || u.Link.Attrs() == nil {
		return false
	}
	switch u.Header.Type {
	case unix.RTM_DELLINK:
		return b.delLink(int(u.Index))
	case unix.RTM_NEWLINK:
		return b.setLink(linkFromNetlink(u.Link))
	}
	return false
}

func (b *builder) applyAddr(u netlink.AddrUpdate) bool {
	p, ok := prefixFromIPNet(u.LinkAddress)
	if !ok {
		return false
	}
	if !u.NewAddr {
		return b.delAddr(u.LinkIndex, p)
	}
	return b.setAddr(u.LinkIndex, Addr{Prefix: p, Flags: u.Flags, Scope: u.Scope})
}

// linkFromNetlink converts a netlink link, copying what it keeps.
func linkFromNetlink(nl netlink.Link) Link {
	a := nl.Attrs()
	return Link{
		Index:       a.Index,
		Name:        a.Name,
		Type:        nl.Type(),
		MAC:         append(net.HardwareAddr(nil), a.HardwareAddr...),
		MTU:         a.MTU,
		Up:          a.RawFlags&unix.IFF_UP != 0,
		Running:     a.RawFlags&unix.IFF_RUNNING != 0,
		Broadcast:   a.RawFlags&unix.IFF_BROADCAST != 0,
		NoARP:       a.RawFlags&unix.IFF_NOARP != 0,
		Loopback:    a.RawFlags&unix.IFF_LOOPBACK != 0,
		MasterIndex: a.MasterIndex,
	}
}

// prefixFromIPNet converts an address as netlink reports it (the address
// itself, not the network, with the subnet's mask).
func prefixFromIPNet(n net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 0 { // non-canonical mask; treat as a host address
		ones = ip.BitLen()
	} else if bits != ip.BitLen() {
		// A 16-byte mask on an IPv4 address (To16 form).
		ones -= bits - ip.BitLen()
		if ones < 0 {
			return netip.Prefix{}, false
		}
	}
	return netip.PrefixFrom(ip, ones), true
}

// stateFromDump builds a State from a full dump of links and addresses.
func stateFromDump(links []netlink.Link, addrs []netlink.Addr) State {
	b := newBuilder(State{})
	for _, l := range links {
		if l == nil || l.Attrs() == nil {
			continue
		}
		b.setLink(linkFromNetlink(l))
	}
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		p, ok := prefixFromIPNet(*a.IPNet)
		if !ok {
			continue
		}
		b.setAddr(a.LinkIndex, Addr{Prefix: p, Flags: a.Flags, Scope: a.Scope})
	}
	return b.state()
}
