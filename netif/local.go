package netif

import "net/netip"

// LocalLinkName is the link that holds `local = true` VIPs while this node
// owns them.
const LocalLinkName = "hostlb0"

// AddrManager makes the node accept traffic for the VIPs it owns, by
// holding them as local addresses. It owns the addresses it adds and
// nothing else. Every method blocks on the kernel (a few netlink round
// trips) and is safe for concurrent use. The real one is LocalAddrs; the
// fake is netiftest.AddrManager.
type AddrManager interface {
	// Add makes ip a local address. Adding an address already held is
	// not an error.
	Add(ip netip.Addr) error
	// Remove stops holding ip. Removing an address not held is not an
	// error.
	Remove(ip netip.Addr) error
	// Sync makes the held set exactly want, repairing anything changed
	// behind the manager's back (a deleted link, a removed address).
	Sync(want []netip.Addr) error
	// Addrs returns the held addresses, sorted; the slice is the caller's.
	Addrs() []netip.Addr
	// Close removes every address the manager added and what it set up
	// for them. It is idempotent; after it, Add and Sync fail.
	Close() error
}
