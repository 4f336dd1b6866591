package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/version"
	"github.com/hostlb/hostlb/gossip"
)

// Ring is the daemon's seat in the gossip ring (*gossip.Ring; tests run
// real rings over gossip/gossiptest). The daemon runs it as a component
// started before the L2 output, so on stop the ring is left only after
// every answer has stopped.
type Ring interface {
	// Run joins the ring and keeps re-joining until ctx is done, then
	// leaves gracefully. It blocks; an error means the ring could not start.
	Run(ctx context.Context) error
	// Ready is closed once Run has started the ring (Members then lists
	// this node itself).
	Ready() <-chan struct{}
	// Members returns every member this node knows, itself included,
	// sorted by name. It never blocks on the network; the caller owns the
	// result.
	Members() []gossip.Member
	// SetAnnounced replaces the IPs this node says it announces. It never
	// blocks.
	SetAnnounced(addrs []netip.Addr)
	// SetExclusions replaces what this node says it cannot serve: the
	// addresses it cannot announce and the names of the VIPs whose health
	// check fails here (gossip.Member.Cannot, Unhealthy). They travel with
	// the announced set, so any number fits. It never blocks.
	SetExclusions(cannot []netip.Addr, unhealthy []string)
	// SetHealth and SetLabels change this node's gossiped metadata; they
	// never block and fail only when the metadata would not fit
	// memberlist's 512 bytes.
	SetHealth(h gossip.Health) error
	SetLabels(labels map[string]string) error
	// SetJoin replaces the seeds used by later (re-)joins.
	SetJoin(seeds []string)
	// Refused says why the ring refuses this node ("" when it does not):
	// its seeds answer but cannot read it (another key or cluster), or
	// another member has its name.
	Refused() string
}

var _ Ring = (*gossip.Ring)(nil)

// RingConfig builds the gossip ring's configuration from [node] and
// [gossip]. The ring starts HealthNotReady: peers give this node no IP until
// its first settled pass says it is ready (see cluster.go). When the bind
// address is unspecified and no advertise address is set, it advertises the
// node's first global IPv4 (SPEC §4): the default route's interface's, else
// another non-virtual interface's, never docker0's or hostlb0's
// (advertise.go); or loopback on a node that has none (a lone node in an
// isolated network namespace), with a warning. memberlist alone would
// insist on an RFC 1918 address and refuse to start elsewhere.
//
// onChange is told after every batch of member events whether one of them
// was urgent (gossip.Event.Urgent: someone joined, left, died or changed
// health); a batch of announced-set news alone is not (Daemon.GossipChanged).
func RingConfig(cfg *config.Config, log *slog.Logger, onChange func(urgent bool)) gossip.Config {
	g := cfg.Gossip
	adv := g.Advertise
	if !adv.IsValid() && g.Bind.Addr().IsUnspecified() {
		adv = netip.AddrPortFrom(advertiseIPv4(log), g.Bind.Port())
	}
	var urgent bool
	return gossip.Config{
		NodeName:          cfg.Node.Name,
		Bind:              g.Bind,
		Advertise:         adv,
		Join:              g.Join,
		SecretKeys:        g.SecretKeys,
		InsecurePlaintext: g.InsecurePlaintext,
		Cluster:           g.Cluster,
		Profile:           g.Profile,
		Labels:            cfg.Node.Labels,
		Version:           version.Version,
		Health:            gossip.HealthNotReady,
		HeartbeatPort:     HeartbeatAddr(g.Bind, g.Profile).Port(),
		Logger:            log,
		// OnEvent and OnChange run one after the other on the Ring's
		// notifier goroutine: urgent needs no lock.
		OnEvent: func(ev gossip.Event) { urgent = urgent || ev.Urgent() },
		OnChange: func() {
			u := urgent
			urgent = false
			onChange(u)
		},
	}
}

// CheckRingMeta reports whether the node's gossip metadata fits, at its
// largest generations and counts, with the configured labels and this
// version: a configuration whose labels do not fit is refused by
// --check-config and at start (exit 2), not by the ring on every restart.
// Nothing else is added to the metadata at run time (the names of VIPs
// failing their health check and the addresses the node cannot announce
// travel with the announced set, which has no such limit), so a
// configuration this accepts never overflows it.
func CheckRingMeta(cfg *config.Config) error {
	err := gossip.CheckMeta(gossip.Meta{
		Gen: math.MaxUint64, Version: version.Version, Labels: cfg.Node.Labels, Health: gossip.HealthDraining,
		Leaving: true, AnnounceGen: math.MaxUint64, AnnounceCount: math.MaxInt32, HeartbeatPort: math.MaxUint16,
	})
	if err != nil {
		return fmt.Errorf("node.labels: %w", err)
	}
	return nil
}
