package daemon

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
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
	}, Import: bgp.Import{Enabled: c.Import.Enabled, Table: c.Import.Table, Metric: c.Import.Metric}}
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

// bgpWanted picks the BGP announcements of node's desired state. A static
// VIP's address is a host route without attributes; a Service's address
// takes the paths of its advertisements that list node (reconcile.BGPPath):
// their communities and localPref, and the covering prefix of their
// aggregationLength instead of the host route (IPv4 addresses use lengths
// up to 32, as in Deckhouse; IPv6 ones lengths above 32). Paths that come
// to the same prefix (several advertisements, or several Services in one
// aggregate) are one advertisement: their communities joined, the highest
// localPref, their peers joined (each path goes only to the peers of its
// Configuration). Ordered by address.
func bgpWanted(node string, d reconcile.Desired) []bgp.Advertisement {
	var out []bgp.Advertisement
	at := map[netip.Prefix]int{}
	add := func(a bgp.Advertisement) {
		i, ok := at[a.Prefix]
		if !ok {
			at[a.Prefix] = len(out)
			out = append(out, a)
			return
		}
		m := &out[i]
		m.Communities = sortedUnion(m.Communities, a.Communities, cmp.Compare[uint32])
		m.LargeCommunities = sortedUnion(m.LargeCommunities, a.LargeCommunities, func(x, y bgp.LargeCommunity) int {
			return cmp.Or(cmp.Compare(x.Global, y.Global), cmp.Compare(x.Local1, y.Local1), cmp.Compare(x.Local2, y.Local2))
		})
		m.LocalPref = max(m.LocalPref, a.LocalPref)
		if m.Peers == nil || a.Peers == nil {
			m.Peers = nil // one of them goes to every peer
		} else {
			m.Peers = sortedUnion(m.Peers, a.Peers, netip.Addr.Compare)
		}
	}
	for _, a := range d.Sorted() {
		if a.Mode != config.ModeBGP || a.Handover {
			continue
		}
		host := netip.PrefixFrom(a.Addr, a.Addr.BitLen())
		if a.BGP == nil {
			add(bgp.Advertisement{Prefix: host, VIP: a.VIP})
			continue
		}
		for _, p := range a.BGP {
			if !p.Uses(node) || (p.Peers != nil && len(p.Peers) == 0) {
				continue // not this node's, or to no peer at all
			}
			adv := bgp.Advertisement{Prefix: host, VIP: a.VIP, LocalPref: p.LocalPref,
				Communities: slices.Clone(p.Communities), Peers: slices.Clone(p.Peers)}
			for _, c := range p.LargeCommunities {
				adv.LargeCommunities = append(adv.LargeCommunities, bgp.LargeCommunity{Global: c[0], Local1: c[1], Local2: c[2]})
			}
			if l := p.AggregationLength; l > 0 && l < a.Addr.BitLen() && (a.Addr.Is4() || l > 32) {
				adv.Prefix = netip.PrefixFrom(a.Addr, l).Masked()
			}
			add(adv)
		}
	}
	return out
}

// bgpReports are the Kubernetes reports of node's BGP addresses: each
// address this node advertises, with the prefixes it goes out as.
func bgpReports(node string, d reconcile.Desired) []reconcile.Report {
	var out []reconcile.Report
	for _, a := range d.Sorted() {
		if a.Mode != config.ModeBGP || a.Handover {
			continue
		}
		one := reconcile.Desired{a.Addr: a}
		var prefixes []string
		for _, adv := range bgpWanted(node, one) {
			prefixes = append(prefixes, adv.Prefix.String())
		}
		if len(prefixes) == 0 {
			continue // no advertisement lists this node
		}
		out = append(out, reconcile.Report{Group: a.VIP, Addr: a.Addr, Mode: config.ModeBGP, Ifaces: prefixes})
	}
	return out
}

// sortedUnion merges two sorted lists into one sorted list without
// duplicates.
func sortedUnion[T any](a, b []T, compare func(T, T) int) []T {
	out := append(slices.Clone(a), b...)
	slices.SortFunc(out, compare)
	return slices.CompactFunc(out, func(x, y T) bool { return compare(x, y) == 0 })
}

// KubeBGPPeers is the part of the Kubernetes side (kube.Kubernetes) that
// gives this node's BGP sessions from MetalLoadBalancerBGPPeers and
// MetalLoadBalancerConfigurations.
type KubeBGPPeers interface {
	// BGPPeers returns the sessions for a speaker with router ID
	// routerID, each with its own local AS; it never blocks and makes no
	// API request.
	BGPPeers(routerID netip.Addr) []bgp.Peer
}

// mergePeers adds the API's peers to those of [[bgp.peer]]. The file wins
// on a conflict (the same peer address): it is the node's own explicit
// configuration, and it can hold what the API cannot (ebgp_multihop,
// graceful_restart, a password file). conflicts lists the API peers left
// out.
func mergePeers(file, api []bgp.Peer) (out []bgp.Peer, conflicts []netip.Addr) {
	out = slices.Clone(file)
	for _, p := range api {
		if slices.ContainsFunc(file, func(f bgp.Peer) bool { return f.Address == p.Address }) {
			conflicts = append(conflicts, p.Address)
			continue
		}
		out = append(out, p)
	}
	return out, conflicts
}

// bgpSessions is the speaker's configuration: [bgp] and its peers, and
// the peers of the Kubernetes API (mergePeers). A conflict is logged once.
func (d *Daemon) bgpSessions(cfg *config.Config) bgp.Config {
	out := bgpConfig(cfg.BGP, d.opts.BGPNodeAddrs)
	kp, ok := d.opts.Kube.(KubeBGPPeers)
	if !ok {
		return out
	}
	var conflicts []netip.Addr
	out.Peers, conflicts = mergePeers(out.Peers, kp.BGPPeers(out.Global.RouterID))
	msg := fmt.Sprint(conflicts)
	d.mu.Lock()
	same := msg == d.bgpConflicts
	d.bgpConflicts = msg
	d.mu.Unlock()
	if len(conflicts) > 0 && !same {
		d.log.Warn("BGP: peers declared both in [[bgp.peer]] and by a MetalLoadBalancerBGPPeer use the file's settings",
			"peers", msg)
	}
	return out
}

// syncBGP hands the BGP part of next to the BGP output and logs a failure
// once per distinct error (the loop retries it with backoff).
func (d *Daemon) syncBGP(ctx context.Context, cfg *config.Config, next reconcile.Desired) error {
	err := d.opts.BGP.Sync(ctx, d.bgpSessions(cfg), bgpWanted(cfg.Node.Name, next))
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
