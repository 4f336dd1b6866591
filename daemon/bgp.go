package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/hostlb/hostlb/daemon/bgp"
	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
)

// BGPSpeaker is the BGP output (*bgp.Speaker).
type BGPSpeaker interface {
	// Sync makes the speaker peer with exactly cfg.Peers and advertise
	// exactly want (level-triggered; only the difference is applied). It
	// blocks on GoBGP's management loop only; an error leaves everything
	// else applied, and the next call retries.
	Sync(ctx context.Context, cfg bgp.Config, want []bgp.Advertisement) error
	// Status returns the sessions and the prefixes advertised; it never
	// blocks, and the caller owns the result.
	Status() bgp.Status
	// Drain withdraws everything and blocks until every established peer
	// was sent the withdrawal, or ctx is done.
	Drain(ctx context.Context) error
	// Close ends every session; idempotent, it waits.
	Close() error
}

var _ BGPSpeaker = (*bgp.Speaker)(nil)

// BGPNodeAddrs are the node's own addresses the BGP output uses: IPv4 is
// the router ID when [bgp] router_id is unset (SPEC §4: the node's first
// global IPv4), and each is the next hop of paths of its family sent on a
// session of the other family. Invalid: none.
type BGPNodeAddrs struct {
	IPv4, IPv6 netip.Addr
}

// HostBGPAddrs finds BGPNodeAddrs on this host, by the rule the gossip
// advertise address follows (advertise.go): the default route's
// interface first, never a virtual one, only global unicast addresses.
func HostBGPAddrs(log *slog.Logger) BGPNodeAddrs {
	var defaults []string
	if f, err := os.Open("/proc/net/route"); err == nil {
		defaults = defaultRouteIfaces(f)
		_ = f.Close()
	}
	ifs := hostIfaces()
	var out BGPNodeAddrs
	out.IPv4, _, _ = chooseNodeAddr(ifs, defaults, false)
	out.IPv6, _, _ = chooseNodeAddr(ifs, defaults, true)
	log.Info("BGP: the node's own addresses", "ipv4", out.IPv4, "ipv6", out.IPv6)
	return out
}

// bgpDrainTimeout bounds how long a stopping node waits for its peers to
// be sent the withdrawal of its routes, inside Options.DrainTimeout.
const bgpDrainTimeout = 3 * time.Second

// bgpConfig translates [bgp] for the BGP output.
func bgpConfig(c config.BGP, node BGPNodeAddrs) bgp.Config {
	out := bgp.Config{Global: bgp.Global{
		ASN: c.ASN, RouterID: c.RouterID, ListenPort: c.ListenPort,
		NextHop4: node.IPv4, NextHop6: node.IPv6,
	}}
	if !out.Global.RouterID.IsValid() {
		out.Global.RouterID = node.IPv4
	}
	for _, p := range c.Peers {
		out.Peers = append(out.Peers, bgp.Peer{
			Address: p.Address, ASN: p.ASN, Port: p.Port, SourceAddress: p.SourceAddress,
			HoldTime: p.HoldTime, KeepaliveTime: p.KeepaliveTime, EBGPMultihop: p.EBGPMultihop,
			Password: p.Password, GracefulRestart: p.GracefulRestart,
			BFD: bgp.BFD{Enabled: p.BFD.Enabled, MinRx: p.BFD.MinRx, MinTx: p.BFD.MinTx, Multiplier: p.BFD.Multiplier},
		})
	}
	return out
}

// bgpWanted picks the BGP announcements of a desired state, each address
// as a host route. Static VIPs carry no communities or local-pref.
func bgpWanted(d reconcile.Desired) []bgp.Advertisement {
	var out []bgp.Advertisement
	for _, a := range d.Sorted() {
		if a.Mode != config.ModeBGP || a.Handover {
			continue
		}
		out = append(out, bgp.Advertisement{Prefix: netip.PrefixFrom(a.Addr, a.Addr.BitLen()), VIP: a.VIP})
	}
	return out
}

// syncBGP hands the BGP part of next to the BGP output and logs a failure
// once per distinct error (the loop retries it with backoff).
func (d *Daemon) syncBGP(ctx context.Context, cfg *config.Config, next reconcile.Desired) error {
	err := d.opts.BGP.Sync(ctx, bgpConfig(cfg.BGP, d.opts.BGPNodeAddrs), bgpWanted(next))
	if ctx.Err() != nil {
		return err
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	d.mu.Lock()
	same := msg == d.bgpErr
	d.bgpErr = msg
	d.mu.Unlock()
	if err != nil && !same {
		d.log.Error("BGP output incomplete; retrying", "err", err)
	}
	return err
}

// runBGP is the BGP output's component: on stop it withdraws every route
// and waits (bgpDrainTimeout) until the peers were sent the withdrawal,
// before the ring is left, then ends the sessions.
func (d *Daemon) runBGP(ctx context.Context) error {
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bgpDrainTimeout)
	defer cancel()
	if err := d.opts.BGP.Drain(dctx); err != nil {
		d.log.Warn("BGP withdrawal not confirmed; stopping anyway", "err", err)
	}
	return d.opts.BGP.Close()
}

// bgpSummary is the BGP part of the STATUS line.
func bgpSummary(st bgp.Status) string {
	return fmt.Sprintf("; bgp: %d of %d peers up, %d prefixes advertised", st.Up(), len(st.Peers), st.Advertised)
}
