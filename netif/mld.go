package netif

import "net/netip"

// groupJoiner makes one interface a listener of IPv6 multicast groups
// through the kernel's IPv6 stack, so that the kernel itself sends the MLDv2
// reports (RFC 3810 §6.1) when a group is joined or left and answers MLD
// queries for it (§6.2). An MLD-snooping switch forwards a group's traffic
// only to ports that reported it; without a report, multicast NS for a VIP
// would never reach its owner there.
//
// This is on top of the packet socket's link-layer membership, never
// instead of it: the packet socket stays the only path by which an
// NDPResponder receives NS, and it works where this cannot (IPv6 disabled in
// the kernel, no IPv6 socket). On Linux the real one is *mldSockets, which
// ListenNDP opens with the packet socket; tests use a fake.
//
// Methods do not block on the network (the kernel sends reports on its own
// timers) and are safe for concurrent use. The caller counts references:
// each group is joined once and left once.
type groupJoiner interface {
	// JoinGroup makes the interface a listener of group. Joining a group
	// already joined is not an error.
	JoinGroup(group netip.Addr) error
	// LeaveGroup undoes JoinGroup; leaving a group not joined is a no-op.
	LeaveGroup(group netip.Addr) error
	// Close leaves every group and releases the sockets. It is idempotent;
	// JoinGroup fails afterwards.
	Close() error
}

// mldConn is a PacketConn that carries the groupJoiner for its interface,
// as the one ListenNDP returns on Linux does. NewNDPResponder uses that
// joiner; with any other PacketConn (fakes) it joins at the link layer only.
type mldConn interface {
	PacketConn
	// mldJoiner returns the joiner, which the conn owns and its Close closes.
	mldJoiner() groupJoiner
}

// statMLDJoinErrors counts failed IPv6-stack joins of solicited-node groups
// (no MLD report, so an MLD-snooping switch may not forward NS to us); they
// are retried on every later change of the owned set.
const statMLDJoinErrors = "mld_join_errors"
