package netif

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// NDPResponder answers Neighbor Solicitations for the owned IPv6 addresses
// on one interface. See the package documentation for the rules it follows.
type NDPResponder struct {
	c *responderCore

	// Solicited-node group memberships, guarded by c.mu (onChange runs
	// under it). refs counts owned addresses per group, since two VIPs
	// that share their low 24 bits share one group; joined says whether
	// the socket is a member, so a failed join is retried on the next
	// change instead of being counted as done.
	refs   map[string]int
	joined map[string]bool
}

var _ Responder = (*NDPResponder)(nil)

// NewNDPResponder returns an inert responder that owns nothing; it takes
// ownership of conn (see ListenNDP), which Run and Close close.
func NewNDPResponder(conn PacketConn, cfg ResponderConfig) *NDPResponder {
	r := &NDPResponder{refs: map[string]int{}, joined: map[string]bool{}}
	r.c = newResponderCore(conn, cfg, false, append(statNames(
		ErrNDPShort, ErrNDPBadVersion, ErrNDPNotICMPv6, ErrNDPBadHopLimit, ErrNDPNotNS,
		ErrNDPBadCode, ErrNDPBadChecksum, ErrNDPBadOption, ErrNDPBadSource, ErrNDPBadTarget,
		ErrNDPBadDest, ErrNDPL2Mismatch, ErrNDPDADBadDest, ErrNDPDADWithSLLA, ErrNDPNotOwned,
	), statUnicastNS, statMulticastNS, statJoinErrors))
	r.c.handle = r.handle
	r.c.frames = r.frames
	r.c.onChange = r.updateGroups
	return r
}

func (r *NDPResponder) handle(b []byte) ([]byte, error) {
	ns, err := ParseNS(b)
	if err != nil {
		return nil, err
	}
	hw := r.c.cfg.HardwareAddr
	switch {
	case sameMAC(ns.EthSrc, hw) || sameMAC(ns.SourceLLA, hw):
		return nil, ErrFrameFromSelf
	case !isMulticastMAC(ns.EthDst) && !sameMAC(ns.EthDst, hw):
		return nil, ErrFrameNotForUs
	case !r.c.owns(ns.Target):
		return nil, ErrNDPNotOwned
	}
	r.c.stats.inc(statRequests)
	switch {
	case ns.IsDAD():
		r.c.stats.inc(statProbes)
	case ns.Dst.IsMulticast():
		r.c.stats.inc(statMulticastNS)
	default:
		r.c.stats.inc(statUnicastNS)
	}
	return ndpAnswer(ns, hw).MarshalBinary()
}

func (r *NDPResponder) frames(addr netip.Addr) ([][]byte, error) {
	b, err := unsolicitedNA(addr, r.c.cfg.HardwareAddr).MarshalBinary()
	if err != nil {
		return nil, err
	}
	return [][]byte{b}, nil
}

// updateGroups joins the solicited-node groups of added addresses and
// leaves those no owned address needs any more. Called with c.mu held.
func (r *NDPResponder) updateGroups(old, next map[netip.Addr]struct{}) error {
	var errs []error
	for a := range next {
		if _, ok := old[a]; !ok {
			r.refs[string(ipv6MulticastMAC(solicitedNode(a)))]++
		}
	}
	for a := range old {
		if _, ok := next[a]; ok {
			continue
		}
		g := string(ipv6MulticastMAC(solicitedNode(a)))
		if r.refs[g]--; r.refs[g] > 0 {
			continue
		}
		delete(r.refs, g)
		if r.joined[g] {
			delete(r.joined, g)
			if err := r.c.conn.LeaveGroup(net.HardwareAddr(g)); err != nil && !r.c.isClosed() {
				errs = append(errs, fmt.Errorf("leave %v on %q: %w", net.HardwareAddr(g), r.c.cfg.Ifname, err))
			}
		}
	}
	if r.c.isClosed() {
		return errors.Join(errs...) // the socket and its memberships are gone
	}
	// Join every needed group not joined yet: new ones and earlier failures.
	for g := range r.refs {
		if r.joined[g] {
			continue
		}
		if err := r.c.conn.JoinGroup(net.HardwareAddr(g)); err != nil {
			r.c.stats.inc(statJoinErrors)
			errs = append(errs, fmt.Errorf("join %v on %q: %w", net.HardwareAddr(g), r.c.cfg.Ifname, err))
			continue
		}
		r.joined[g] = true
	}
	return errors.Join(errs...)
}

// SetOwned implements Responder. IPv4 addresses are ignored. It joins the
// solicited-node group of every new address and leaves unused groups; an
// error names groups it could not join or leave (unicast NS, as NUD sends,
// are answered regardless).
func (r *NDPResponder) SetOwned(addrs []netip.Addr) error { return r.c.setOwned(addrs) }

// Add implements Responder.
func (r *NDPResponder) Add(addrs ...netip.Addr) error { return r.c.add(addrs) }

// Remove implements Responder. A running burst for a removed address stops.
func (r *NDPResponder) Remove(addrs ...netip.Addr) error { return r.c.remove(addrs) }

// Owns implements Responder.
func (r *NDPResponder) Owns(addr netip.Addr) bool { return r.c.owns(addr) }

// Announce sends count unsolicited NAs for addr to ff02::1, interval apart;
// the first goes out at once. RFC 4861 §7.2.6 suggests at most
// MAX_NEIGHBOR_ADVERTISEMENT (3) of them, at least 1 s apart.
func (r *NDPResponder) Announce(ctx context.Context, addr netip.Addr, count int, interval time.Duration) error {
	return r.c.announce(ctx, addr, count, interval)
}

// Run implements Responder.
func (r *NDPResponder) Run(ctx context.Context) error { return r.c.run(ctx) }

// Close implements Responder.
func (r *NDPResponder) Close() error { return r.c.close() }

// Stats implements Responder.
func (r *NDPResponder) Stats() map[string]uint64 { return r.c.stats.snapshot() }
