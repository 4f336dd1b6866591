package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/metrics"
	"github.com/hostlb/hostlb/daemon/version"
	"github.com/hostlb/hostlb/gossip"
	"github.com/hostlb/hostlb/heartbeat"
	"github.com/hostlb/hostlb/netif"
)

// nodeMetrics is the [metrics] endpoint; a nil *nodeMetrics ([metrics]
// listen = "") adds nothing anywhere.
type nodeMetrics struct {
	m   *metrics.Metrics
	ln  net.Listener
	log *slog.Logger
}

// newMetrics opens [metrics] listen, so a port in use fails the start at
// once, and makes memberlist report to the metrics; nil when listen is "".
func newMetrics(cfg *config.Config, log *slog.Logger) (*nodeMetrics, error) {
	if cfg.Metrics.Listen == "" {
		log.Info("metrics off ([metrics] listen = \"\")")
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s ([metrics] listen): %w", cfg.Metrics.Listen, err)
	}
	m := metrics.New(metrics.Options{Version: version.Version, Commit: version.CommitOrUnknown(), Runtime: true})
	if err := m.InstallMemberlistSink(); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("metrics: memberlist sink: %w", err)
	}
	return &nodeMetrics{m: m, ln: ln, log: log.With("component", "metrics")}, nil
}

// ringConfig adds the probe round trips to the ring's configuration.
func (nm *nodeMetrics) ringConfig(rc gossip.Config) gossip.Config {
	if nm != nil {
		rc.OnProbe = nm.m.ProbeRTT
	}
	return rc
}

// observer is the daemon's Observer: nil without metrics.
func (nm *nodeMetrics) observer() daemon.Observer {
	if nm == nil {
		return nil
	}
	return nm.m
}

// components binds what the scrapes read (d is set before the daemon runs
// its components; hb is nil without a heartbeat) and returns the
// component that serves the endpoint.
func (nm *nodeMetrics) components(d **daemon.Daemon, l2 *netif.L2, ring *gossip.Ring, k daemon.KubeSide, hb daemon.Heartbeat) []daemon.Component {
	if nm == nil {
		return nil
	}
	src := metrics.Sources{
		State:    func() daemon.State { return (*d).State() },
		NotReady: func() []string { return (*d).NotReady() },
	}
	if l2 != nil {
		src.L2 = l2
	}
	if ring != nil {
		src.Ring = ring
	}
	if ks, ok := k.(metrics.KubeSource); ok {
		src.Kube = ks
	}
	src.Heartbeat = heartbeatSource(hb)
	nm.m.Bind(src)
	nm.log.Info("serving metrics", "listen", nm.ln.Addr().String(), "paths", "/metrics /healthz /readyz")
	return []daemon.Component{daemon.ComponentFunc{N: "metrics", F: func(ctx context.Context) error {
		return nm.m.Serve(ctx, nm.ln, nm.log)
	}}}
}

// heartbeatSource is hb as the metrics read it: nil when hb is (lan and wan
// run no Heart), holds a nil *heartbeat.Heart, or has no counters.
func heartbeatSource(hb daemon.Heartbeat) metrics.HeartbeatSource {
	hs, ok := hb.(metrics.HeartbeatSource)
	if !ok {
		return nil
	}
	if h, isHeart := hs.(*heartbeat.Heart); isHeart && h == nil {
		return nil
	}
	return hs
}
