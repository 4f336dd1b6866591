package netif

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
)

// Link is one network interface as the kernel last reported it.
//
// A Link taken from a State is a value shared with that State: callers must
// not modify MAC or Addrs.
type Link struct {
	Index int
	Name  string
	// Type is the rtnetlink kind: "device" (a plain NIC), "bridge", "bond",
	// "vlan", "veth", "dummy", "ifb", "vrf", ...
	Type string
	MAC  net.HardwareAddr
	MTU  int

	Up        bool // IFF_UP: administratively up
	Running   bool // IFF_RUNNING: operationally up (carrier present)
	Broadcast bool // IFF_BROADCAST
	NoARP     bool // IFF_NOARP
	Loopback  bool // IFF_LOOPBACK

	// MasterIndex is the index of the bond, bridge, VRF ... this link is
	// enslaved to; 0 when it has none.
	MasterIndex int

	// Addrs are the link's addresses, sorted, each with its prefix length
	// (its connected subnet).
	Addrs []Addr
}

// Addr is one address on a link.
type Addr struct {
	// Prefix is the address with the length of its connected subnet, as
	// configured: 192.0.2.10/24 (not masked).
	Prefix netip.Prefix
	// Flags are the IFA_F_* flags (tentative, deprecated, nodad ...).
	Flags int
	// Scope is the rtnetlink scope: 0 universe, 200 site, 253 link, 254 host.
	Scope int
}

const (
	ifaFTentative = 0x40 // IFA_F_TENTATIVE; spelled out so this file builds everywhere
	ifaFDadFailed = 0x08 // IFA_F_DADFAILED
)

// Usable reports whether the address can be used as a source: it is not
// still in (or failed) duplicate address detection.
func (a Addr) Usable() bool { return a.Flags&(ifaFTentative|ifaFDadFailed) == 0 }

// State is an immutable snapshot of the links and addresses of one network
// namespace. The zero State is empty and ready to use. States are values:
// every change makes a new one, and a State held by a reader never changes
// under it.
type State struct {
	links map[int]Link // by index; Link.Addrs is unset here
	// addrs by link index. It may hold entries for indexes with no link:
	// address and link events arrive on separate netlink sockets, so an
	// address can be seen before its link (or after its deletion).
	// Accessors only expose addresses of known links.
	addrs map[int][]Addr
}

// Link returns the link with the given index.
func (s State) Link(index int) (Link, bool) {
	l, ok := s.links[index]
	if !ok {
		return Link{}, false
	}
	l.Addrs = s.addrs[index]
	return l, true
}

// LinkByName returns the link with the given name.
func (s State) LinkByName(name string) (Link, bool) {
	for _, l := range s.links {
		if l.Name == name {
			l.Addrs = s.addrs[l.Index]
			return l, true
		}
	}
	return Link{}, false
}

// Links returns every link, ordered by index.
func (s State) Links() []Link {
	out := make([]Link, 0, len(s.links))
	for _, l := range s.links {
		l.Addrs = s.addrs[l.Index]
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Link) int { return cmp.Compare(a.Index, b.Index) })
	return out
}

// Len returns the number of links.
func (s State) Len() int { return len(s.links) }

// compareAddr orders addresses by address, then prefix length.
func compareAddr(a, b Addr) int {
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
}

// sameLink reports whether two links are equal, ignoring addresses.
func sameLink(a, b Link) bool {
	return a.Index == b.Index && a.Name == b.Name && a.Type == b.Type &&
		slices.Equal(a.MAC, b.MAC) && a.MTU == b.MTU &&
		a.Up == b.Up && a.Running == b.Running && a.Broadcast == b.Broadcast &&
		a.NoARP == b.NoARP && a.Loopback == b.Loopback && a.MasterIndex == b.MasterIndex
}

// builder makes a new State from an old one with copy-on-write: the old
// State's maps and slices are copied once, on the first change that touches
// them, so a burst of updates applied together costs one copy, not one per
// update.
type builder struct {
	old        State
	links      map[int]Link
	addrs      map[int][]Addr
	ownedAddrs map[int]bool // addrs[i] is a private copy we may modify in place
}

func newBuilder(s State) *builder { return &builder{old: s} }

func (b *builder) state() State {
	s := b.old
	if b.links != nil {
		s.links = b.links
	}
	if b.addrs != nil {
		s.addrs = b.addrs
	}
	return s
}

func (b *builder) mutLinks() map[int]Link {
	if b.links == nil {
		b.links = make(map[int]Link, len(b.old.links)+1)
		for k, v := range b.old.links {
			b.links[k] = v
		}
	}
	return b.links
}

func (b *builder) curLinks() map[int]Link {
	if b.links != nil {
		return b.links
	}
	return b.old.links
}

func (b *builder) curAddrs() map[int][]Addr {
	if b.addrs != nil {
		return b.addrs
	}
	return b.old.addrs
}

// mutAddrs returns the address slice of link index, safe to modify in place.
func (b *builder) mutAddrs(index int) []Addr {
	if b.addrs == nil {
		b.addrs = make(map[int][]Addr, len(b.old.addrs)+1)
		for k, v := range b.old.addrs {
			b.addrs[k] = v
		}
		b.ownedAddrs = make(map[int]bool)
	}
	if !b.ownedAddrs[index] {
		b.addrs[index] = slices.Clone(b.addrs[index])
		b.ownedAddrs[index] = true
	}
	return b.addrs[index]
}

// setLink adds or replaces a link. It reports whether anything changed.
func (b *builder) setLink(l Link) bool {
	l.Addrs = nil
	if old, ok := b.curLinks()[l.Index]; ok && sameLink(old, l) {
		return false
	}
	b.mutLinks()[l.Index] = l
	return true
}

// delLink removes a link and its addresses.
func (b *builder) delLink(index int) bool {
	_, hadLink := b.curLinks()[index]
	_, hadAddrs := b.curAddrs()[index]
	if hadLink {
		delete(b.mutLinks(), index)
	}
	if hadAddrs {
		b.mutAddrs(index)
		delete(b.addrs, index)
		delete(b.ownedAddrs, index)
	}
	return hadLink || hadAddrs
}

// setAddr adds or replaces (same prefix) an address of link index.
func (b *builder) setAddr(index int, a Addr) bool {
	cur := b.curAddrs()[index]
	i, found := slices.BinarySearchFunc(cur, a, compareAddr)
	if found && cur[i] == a {
		return false
	}
	as := b.mutAddrs(index)
	if found {
		as[i] = a
	} else {
		as = slices.Insert(as, i, a)
	}
	b.addrs[index] = as
	return true
}

// delAddr removes an address of link index.
func (b *builder) delAddr(index int, p netip.Prefix) bool {
	cur := b.curAddrs()[index]
	i, found := slices.BinarySearchFunc(cur, Addr{Prefix: p}, compareAddr)
	if !found {
		return false
	}
	as := slices.Delete(b.mutAddrs(index), i, i+1)
	if len(as) == 0 {
		delete(b.addrs, index)
		delete(b.ownedAddrs, index)
	} else {
		b.addrs[index] = as
	}
	return true
}

// NewState builds a State from links and their Addrs (for fakes and tests).
// A later link with the same index replaces an earlier one; their addresses
// accumulate.
func NewState(links ...Link) State {
	b := newBuilder(State{})
	for _, l := range links {
		b.setLink(l)
		for _, a := range l.Addrs {
			b.setAddr(l.Index, a)
		}
	}
	return b.state()
}
