//go:build linux

package netif

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// mldSockets is the Linux groupJoiner: IPV6_JOIN_GROUP on unbound UDP
// sockets. Unbound, a UDP socket has no port and receives nothing, so the
// memberships cost no receive traffic (a raw ICMPv6 socket would get a copy
// of every ICMPv6 packet); it needs no capability either.
//
// Linux charges each membership (struct ipv6_mc_socklist, 56 bytes on
// 6.18/amd64) to the socket's option memory, bounded by the per-namespace
// net.core.optmem_max: a socket holds 2,340 groups with the 128 KiB default
// of recent kernels and 365 with the old 20 KiB one (TestMLDManyGroups
// measures both). An owner of 10,000 VIPs needs up to 10,000 solicited-node
// groups, so when a socket is full (the join fails with ENOMEM, or ENOBUFS)
// the group goes on the next socket with room, or a new one: 5 sockets, or
// 28 with the old default. A leave makes room again.
//
// Sockets are created in the network namespace ListenNDP ran in, which is
// not necessarily the one of the goroutine that later joins (tests open the
// conn inside a namespace and use it from outside), hence ns.
type mldSockets struct {
	ifindex int
	ifname  string

	mu     sync.Mutex     // guards the fields below
	ns     netns.NsHandle // where to open sockets; not open: the caller's namespace
	socks  []*mldSocket
	member map[netip.Addr]*mldSocket // which socket holds each joined group
	closed bool
}

type mldSocket struct {
	fd   int
	n    int  // groups joined on it
	full bool // a join failed for lack of option memory; cleared by a leave
}

// newMLDSockets opens the first socket in the calling thread's namespace,
// which it remembers for later ones. Failures are not fatal: NDP works
// without MLD, and a join opens what is missing (or fails, and is counted).
func newMLDSockets(ifi *net.Interface) *mldSockets {
	m := &mldSockets{ifindex: ifi.Index, ifname: ifi.Name, ns: netns.None(),
		member: map[netip.Addr]*mldSocket{}}
	if h, err := netns.Get(); err == nil {
		m.ns = h
	}
	if s, err := openMLDSocket(); err == nil {
		m.socks = append(m.socks, s)
	}
	return m
}

func openMLDSocket() (*mldSocket, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("open IPv6 socket: %w", err)
	}
	return &mldSocket{fd: fd}, nil
}

// JoinGroup implements groupJoiner.
func (m *mldSockets) JoinGroup(group netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return net.ErrClosed
	}
	if _, ok := m.member[group]; ok {
		return nil
	}
	for _, s := range m.socks {
		if s.full {
			continue
		}
		err := m.setsockopt(s, unix.IPV6_JOIN_GROUP, group)
		if isOptmemFull(err) {
			s.full = true
			continue
		}
		if err != nil {
			return fmt.Errorf("join %v on %q: %w", group, m.ifname, err)
		}
		s.n++
		m.member[group] = s
		return nil
	}
	s, err := m.openLocked()
	if err != nil {
		return fmt.Errorf("join %v on %q: %w", group, m.ifname, err)
	}
	if err := m.setsockopt(s, unix.IPV6_JOIN_GROUP, group); err != nil {
		_ = unix.Close(s.fd) // an empty socket that cannot hold one group is of no use
		return fmt.Errorf("join %v on %q: %w", group, m.ifname, err)
	}
	s.n++
	m.socks = append(m.socks, s)
	m.member[group] = s
	return nil
}

// LeaveGroup implements groupJoiner. The membership is forgotten even when
// the kernel refuses (the interface is gone, say): there is nothing to retry.
func (m *mldSockets) LeaveGroup(group netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.member[group]
	if !ok || m.closed {
		return nil
	}
	delete(m.member, group)
	s.n--
	s.full = false
	if err := m.setsockopt(s, unix.IPV6_LEAVE_GROUP, group); err != nil {
		return fmt.Errorf("leave %v on %q: %w", group, m.ifname, err)
	}
	return nil
}

// Close implements groupJoiner. Closing a socket makes the kernel leave its
// groups, each with an MLD report.
func (m *mldSockets) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	for _, s := range m.socks {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("close MLD socket on %q: %w", m.ifname, err))
		}
	}
	m.socks, m.member = nil, nil
	if m.ns.IsOpen() {
		_ = m.ns.Close()
	}
	return errors.Join(errs...)
}

// sockets reports how many sockets are open and how many groups each holds;
// for tests and measurements.
func (m *mldSockets) sockets() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := make([]int, len(m.socks))
	for i, s := range m.socks {
		n[i] = s.n
	}
	return n
}

func (m *mldSockets) setsockopt(s *mldSocket, opt int, group netip.Addr) error {
	mreq := &unix.IPv6Mreq{Multiaddr: group.As16(), Interface: uint32(m.ifindex)}
	return unix.SetsockoptIPv6Mreq(s.fd, unix.IPPROTO_IPV6, opt, mreq)
}

// isOptmemFull reports a join refused because the socket's option memory
// (net.core.optmem_max) is used up: ENOMEM from sock_kmalloc in
// ipv6_sock_mc_join, ENOBUFS on kernels that return that instead.
func isOptmemFull(err error) bool {
	return errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ENOBUFS)
}

// openLocked opens one more socket in m.ns. Called with m.mu held.
func (m *mldSockets) openLocked() (*mldSocket, error) {
	var s *mldSocket
	err := doInNetNS(m.ns, func() error {
		var err error
		s, err = openMLDSocket()
		return err
	})
	return s, err
}
