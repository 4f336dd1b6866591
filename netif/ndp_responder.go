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
	// the packet socket is a member, so a failed join is retried on the
	// next change instead of being counted as done.
	refs   map[netip.Addr]int
	joined map[netip.Addr]bool
	// mldDone is closed when the MLD worker returns; nil until the first
	// change starts it. Guarded by c.mu.
	mldDone chan struct{}

	// The IPv6-stack memberships (MLD) follow refs in a worker of their
	// own: 10,000 joins take the kernel about a second, which must delay
	// neither answering nor takeover bursts. mld and mldSynced are set
	// before the worker starts; the rest is the worker's alone.
	mld       groupJoiner     // nil: link-layer joins only
	mldKick   chan struct{}   // buffered 1: refs changed, sync again
	mldSynced chan<- struct{} // tests only: told after every sync
	mldJoined map[netip.Addr]bool
	mldWarned bool // the first failure since the last success was logged
}

var _ Responder = (*NDPResponder)(nil)

// NewNDPResponder returns an inert responder that owns nothing; it takes
// ownership of conn (see ListenNDP), which Run and Close close. When conn
// comes from ListenNDP, the responder also joins each solicited-node group
// in the kernel's IPv6 stack, so the kernel reports it with MLD.
func NewNDPResponder(conn PacketConn, cfg ResponderConfig) *NDPResponder {
	var j groupJoiner
	if m, ok := conn.(mldConn); ok {
		j = m.mldJoiner()
	}
	return newNDPResponder(conn, cfg, j)
}

// newNDPResponder is NewNDPResponder with the joiner given: nil for none.
// The responder owns j and closes it in Close.
func newNDPResponder(conn PacketConn, cfg ResponderConfig, j groupJoiner) *NDPResponder {
	r := &NDPResponder{refs: map[netip.Addr]int{}, joined: map[netip.Addr]bool{},
		mld: j, mldKick: make(chan struct{}, 1), mldJoined: map[netip.Addr]bool{}}
	r.c = newResponderCore(conn, cfg, false, append(statNames(
		ErrNDPShort, ErrNDPBadVersion, ErrNDPNotICMPv6, ErrNDPBadHopLimit, ErrNDPNotNS,
		ErrNDPBadCode, ErrNDPBadChecksum, ErrNDPBadOption, ErrNDPBadSource, ErrNDPBadTarget,
		ErrNDPBadDest, ErrNDPL2Mismatch, ErrNDPDADBadDest, ErrNDPDADWithSLLA, ErrNDPNotOwned,
		ErrNDPYielded, ErrNDPNAConflict, ErrNDPNAOther, ErrNDPBadNAFlags,
	), statUnicastNS, statMulticastNS, statJoinErrors, statMLDJoinErrors))
	r.c.handle = r.handle
	r.c.frames = r.frames
	r.c.probe = func(addr netip.Addr, m Marker, _ [6]byte) ([]byte, error) {
		// Always to the solicited-node group: a unicast frame to a
		// multicast IPv6 destination is dropped by careful receivers.
		return dadProbe(addr, r.c.cfg.HardwareAddr, m).MarshalBinary()
	}
	r.c.onChange = r.updateGroups
	return r
}

func (r *NDPResponder) handle(ctx context.Context, b []byte) ([]byte, error) {
	ns, err := ParseNS(b)
	if errors.Is(err, ErrNDPNotNS) {
		return nil, r.handleNA(ctx, b)
	}
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
	if ns.IsDAD() && ns.Marker.IsHostlb() {
		// Another hostlb node probing an address we own: it answers for
		// it too (markerProbe), or has yielded it to us (markerYielded).
		r.c.observe(ctx, ns.Target, ns.EthSrc, ns.Marker)
	}
	if !r.c.answers(ns.Target) {
		return nil, ErrNDPYielded
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
	na := ndpAnswer(ns, hw)
	na.Marker = r.c.marker()
	return na.MarshalBinary()
}

// handleNA looks at a Neighbor Advertisement: another host's NA for an
// address we own is a conflict (counted, handed to the fence); NAs are
// never answered.
func (r *NDPResponder) handleNA(ctx context.Context, b []byte) error {
	na, err := ParseNA(b)
	if errors.Is(err, ErrNDPNotNA) {
		return ErrNDPNotNS // neither: counted as before NAs were read
	}
	if err != nil {
		return err
	}
	hw := r.c.cfg.HardwareAddr
	their := na.TargetLLA
	if their == nil {
		their = na.EthSrc
	}
	switch {
	case sameMAC(na.EthSrc, hw) || sameMAC(their, hw):
		return ErrFrameFromSelf
	case !isMulticastMAC(na.EthDst) && !sameMAC(na.EthDst, hw):
		return ErrFrameNotForUs
	case !r.c.owns(na.Target):
		return ErrNDPNAOther
	}
	r.c.observe(ctx, na.Target, their, na.Marker)
	return ErrNDPNAConflict
}

func (r *NDPResponder) frames(addr netip.Addr) ([][]byte, error) {
	na := unsolicitedNA(addr, r.c.cfg.HardwareAddr)
	na.Marker = r.c.marker()
	b, err := na.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return [][]byte{b}, nil
}

// updateGroups joins the solicited-node groups of added addresses and
// leaves those no owned address needs any more, at the link layer, then
// wakes the MLD worker to do the same in the IPv6 stack. Called with c.mu
// held.
func (r *NDPResponder) updateGroups(old, next map[netip.Addr]struct{}) error {
	var errs []error
	for a := range next {
		if _, ok := old[a]; !ok {
			r.refs[solicitedNode(a)]++
		}
	}
	for a := range old {
		if _, ok := next[a]; ok {
			continue
		}
		g := solicitedNode(a)
		if r.refs[g]--; r.refs[g] > 0 {
			continue
		}
		delete(r.refs, g)
		if r.joined[g] {
			delete(r.joined, g)
			mac := ipv6MulticastMAC(g)
			if err := r.c.conn.LeaveGroup(mac); err != nil && !r.c.isClosed() {
				errs = append(errs, fmt.Errorf("leave %v on %q: %w", mac, r.c.cfg.Ifname, err))
			}
		}
	}
	if r.c.isClosed() {
		return errors.Join(errs...) // the sockets and their memberships are gone
	}
	// Join every needed group not joined yet: new ones and earlier failures.
	for g := range r.refs {
		if r.joined[g] {
			continue
		}
		mac := ipv6MulticastMAC(g)
		if err := r.c.conn.JoinGroup(mac); err != nil {
			r.c.stats.inc(statJoinErrors)
			errs = append(errs, fmt.Errorf("join %v on %q: %w", mac, r.c.cfg.Ifname, err))
			continue
		}
		r.joined[g] = true
	}
	r.kickMLD()
	return errors.Join(errs...)
}

// kickMLD asks the MLD worker to sync, starting it on first use. Called with
// c.mu held and the responder not closed, so Close sees every worker started.
func (r *NDPResponder) kickMLD() {
	if r.mld == nil {
		return
	}
	if r.mldDone == nil {
		r.mldDone = make(chan struct{})
		go r.mldLoop()
	}
	select {
	case r.mldKick <- struct{}{}:
	default: // a sync is pending already and will see this change
	}
}

// mldLoop is the MLD worker: it syncs on every kick until Close.
func (r *NDPResponder) mldLoop() {
	defer close(r.mldDone)
	for {
		select {
		case <-r.c.done:
			return
		case <-r.mldKick:
		}
		r.syncMLD()
		if r.mldSynced != nil {
			r.mldSynced <- struct{}{}
		}
	}
}

// syncMLD makes the IPv6-stack memberships match refs: leaves first, to
// free room on full sockets, then joins, new groups and earlier failures.
//
// Failures are not returned to SetOwned: without MLD, NS still reach the
// packet socket; only an MLD-snooping switch may not forward multicast NS
// here. A failed join is counted, logged once, and retried on the next
// change. After the first failure the sync stops: its causes (IPv6 off in
// the kernel, the interface gone) fail every group alike, and 10,000 failing
// syscalls per change would help nobody.
func (r *NDPResponder) syncMLD() {
	r.c.mu.Lock()
	want := make(map[netip.Addr]bool, len(r.refs))
	for g := range r.refs {
		want[g] = true
	}
	r.c.mu.Unlock()
	for g := range r.mldJoined {
		if want[g] {
			continue
		}
		if r.c.isClosed() {
			return // Close leaves them all
		}
		delete(r.mldJoined, g)
		if err := r.mld.LeaveGroup(g); err != nil {
			r.c.log.Debug("MLD leave failed", "group", g, "err", err)
		}
	}
	for g := range want {
		if r.mldJoined[g] {
			continue
		}
		if r.c.isClosed() {
			return
		}
		if err := r.mld.JoinGroup(g); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return // Run has ended and closed the conn, and the joiner with it
			}
			r.c.stats.inc(statMLDJoinErrors)
			if !r.mldWarned {
				r.mldWarned = true
				r.c.log.Warn("MLD join failed: NS are still answered, but an MLD-snooping switch may not forward multicast NS here; will retry",
					"group", g, "err", err)
			} else {
				r.c.log.Debug("MLD join failed", "group", g, "err", err)
			}
			return
		}
		r.mldJoined[g] = true
		r.mldWarned = false
	}
}

// SetOwned implements Responder. IPv4 addresses are ignored. It joins the
// solicited-node group of every new address at the link layer and leaves
// unused groups; an error names groups it could not join or leave (unicast
// NS, as NUD sends, are answered regardless). The IPv6-stack joins that make
// the kernel send MLD reports follow in the background (see syncMLD).
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

// Close implements Responder. It also stops the MLD worker and closes the
// joiner, so the kernel leaves the groups.
func (r *NDPResponder) Close() error {
	err := r.c.close()
	if r.mld == nil {
		return err
	}
	r.c.mu.Lock()
	done := r.mldDone // no worker starts once c is closed
	r.c.mu.Unlock()
	if done != nil {
		<-done
	}
	if jerr := r.mld.Close(); jerr != nil {
		err = errors.Join(err, fmt.Errorf("close MLD sockets on %q: %w", r.c.cfg.Ifname, jerr))
	}
	return err
}

// Stats implements Responder.
func (r *NDPResponder) Stats() map[string]uint64 { return r.c.stats.snapshot() }

// Answers implements Responder.
func (r *NDPResponder) Answers(addr netip.Addr) bool { return r.c.answers(addr) }

// Conflicts implements Responder.
func (r *NDPResponder) Conflicts() []Conflict { return r.c.conflicts() }

// Recheck implements Responder.
func (r *NDPResponder) Recheck() { r.c.recheck() }
