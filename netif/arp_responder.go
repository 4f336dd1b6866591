package netif

import (
	"context"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
)

// ARPResponder answers ARP for the owned IPv4 addresses on one interface.
// See the package documentation for the rules it follows.
type ARPResponder struct {
	c *responderCore
}

var _ Responder = (*ARPResponder)(nil)

// NewARPResponder returns an inert responder that owns nothing; it takes
// ownership of conn (see ListenARP), which Run and Close close.
func NewARPResponder(conn PacketConn, cfg ResponderConfig) *ARPResponder {
	r := &ARPResponder{}
	r.c = newResponderCore(conn, cfg, true, statNames(
		ErrARPShort, ErrARPBadHType, ErrARPBadPType, ErrARPBadHLen, ErrARPBadPLen,
		ErrARPBadOp, ErrARPBadSenderHW, ErrARPBadSenderIP, ErrARPNotRequest,
		ErrARPAnnouncement, ErrARPConflict, ErrARPNotOwned, ErrARPYielded,
	))
	r.c.handle = r.handle
	r.c.frames = r.frames
	r.c.probe = func(addr netip.Addr, m Marker, to [6]byte) ([]byte, error) {
		return arpProbe(addr, r.c.cfg.HardwareAddr, m, to).MarshalBinary()
	}
	return r
}

func (r *ARPResponder) handle(ctx context.Context, b []byte) ([]byte, error) {
	m, err := ParseARP(b)
	if err != nil {
		return nil, err
	}
	hw := r.c.cfg.HardwareAddr
	switch {
	case sameMAC(m.EthSrc, hw) || sameMAC(m.SenderHW, hw):
		return nil, ErrFrameFromSelf
	case !isMulticastMAC(m.EthDst) && !sameMAC(m.EthDst, hw):
		return nil, ErrFrameNotForUs
	case !m.IsProbe() && r.c.owns(m.SenderIP):
		// Someone else claims an address we own (RFC 5227 §2.4). Counted,
		// so two owners are visible, and handed to the fence, which
		// settles it with a hostlb node outside the ring and reports a
		// foreign host; never answered.
		r.c.observe(ctx, m.SenderIP, m.SenderHW, m.Marker)
		return nil, ErrARPConflict
	case m.Op != arp.OperationRequest:
		return nil, ErrARPNotRequest
	case m.IsAnnouncement():
		return nil, ErrARPAnnouncement
	case !r.c.owns(m.TargetIP):
		return nil, ErrARPNotOwned
	}
	if m.IsProbe() && m.Marker.IsHostlb() {
		// Another hostlb node probing an address we own: it answers for
		// it too (markerProbe), or has yielded it to us (markerYielded).
		r.c.observe(ctx, m.TargetIP, m.SenderHW, m.Marker)
	}
	if !r.c.answers(m.TargetIP) {
		return nil, ErrARPYielded
	}
	r.c.stats.inc(statRequests)
	if m.IsProbe() {
		r.c.stats.inc(statProbes)
	}
	return arpReply(m, hw, r.c.marker()).MarshalBinary()
}

func (r *ARPResponder) frames(addr netip.Addr) ([][]byte, error) {
	req, rep := gratuitousARP(addr, r.c.cfg.HardwareAddr, r.c.marker())
	rb, err := req.MarshalBinary()
	if err != nil {
		return nil, err
	}
	pb, err := rep.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return [][]byte{rb, pb}, nil
}

// SetOwned implements Responder. IPv6 addresses are ignored.
func (r *ARPResponder) SetOwned(addrs []netip.Addr) error { return r.c.setOwned(addrs) }

// Add implements Responder.
func (r *ARPResponder) Add(addrs ...netip.Addr) error { return r.c.add(addrs) }

// Remove implements Responder. A running burst for a removed address stops.
func (r *ARPResponder) Remove(addrs ...netip.Addr) error { return r.c.remove(addrs) }

// Owns implements Responder.
func (r *ARPResponder) Owns(addr netip.Addr) bool { return r.c.owns(addr) }

// Announce sends count rounds of gratuitous ARP for addr, each round a
// broadcast request and a broadcast reply (see gratuitousARP), interval
// apart; the first round goes out at once. Use an interval above the Linux
// 1 s ARP locktime, or neighbours ignore all but the first.
func (r *ARPResponder) Announce(ctx context.Context, addr netip.Addr, count int, interval time.Duration) error {
	return r.c.announce(ctx, addr, count, interval)
}

// Run implements Responder.
func (r *ARPResponder) Run(ctx context.Context) error { return r.c.run(ctx) }

// Close implements Responder.
func (r *ARPResponder) Close() error { return r.c.close() }

// Stats implements Responder.
func (r *ARPResponder) Stats() map[string]uint64 { return r.c.stats.snapshot() }

// Answers implements Responder.
func (r *ARPResponder) Answers(addr netip.Addr) bool { return r.c.answers(addr) }

// Conflicts implements Responder.
func (r *ARPResponder) Conflicts() []Conflict { return r.c.conflicts() }

// Recheck implements Responder.
func (r *ARPResponder) Recheck() { r.c.recheck() }
