// Command hostlbd is the hostlb node daemon: it gives LoadBalancer IPs to the
// node's network by answering ARP/NDP or speaking BGP. main is thin: flags,
// logger, signals, exit code; everything else is daemon.Run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/bgp"
	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/daemon/version"
	"github.com/hostlb/hostlb/gossip"
	"github.com/hostlb/hostlb/heartbeat"
	"github.com/hostlb/hostlb/netif"
	"github.com/hostlb/hostlb/systemd"
)

// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or invalid config.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

// gcPercent is hostlbd's GOGC unless the environment sets one: the heap
// may grow by half its live size between collections, not Go's default
// of all of it. In Kubernetes mode the live heap is mostly the informers'
// caches (about 4 KiB per Service), so with 10,000 Services this keeps a
// node near 100 MiB instead of 150; the cost is more frequent, cheap
// collections of a heap that changes little.
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hostlbd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		path        = fs.String("config", "/etc/hostlb/hostlb.toml", "configuration `file`")
		checkConfig = fs.Bool("check-config", false, "validate the configuration, print every problem, exit 2 if any")
		showVersion = fs.Bool("version", false, "print version and commit, then exit")
	)
	if err := fs.Parse(args); err != nil {
		return exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hostlbd: unexpected arguments: %q\n", fs.Args())
		return exitConfig
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.String("hostlbd"))
		return exitOK
	}

	cfg, err := config.Load(*path)
	if err == nil {
		if merr := daemon.CheckRingMeta(cfg); merr != nil {
			err = fmt.Errorf("%s: %w", *path, merr)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		if *checkConfig {
			fmt.Fprintf(stderr, "hostlbd: %s: configuration is invalid\n", *path)
		}
		return exitConfig
	}
	if *checkConfig {
		fmt.Fprintf(stdout, "%s: configuration is valid\n", *path)
		return exitOK
	}

	level := new(slog.LevelVar)
	level.Set(cfg.Log.Level)
	h, err := systemd.NewLogHandler(cfg.Log.Format, level, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "hostlbd: %v\n", err)
		return exitConfig
	}
	log := slog.New(h)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending; it will read the newest file
			}
		}
	}()

	// The Monitor's and the ring's events trigger the daemon's reconcile
	// loop. d is set before Run starts them, and OnChange only runs under
	// Run.
	var d *daemon.Daemon
	// [metrics] (metrics.go): nil when listen is ""; a port in use fails
	// the start here.
	met, err := newMetrics(cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFail
	}
	ring, err := gossip.New(met.ringConfig(daemon.RingConfig(cfg, log.With("component", "gossip"),
		func(urgent bool) { d.GossipChanged(urgent) })))
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFail
	}
	// The heirs' direct watch of owners (issue 12), in the fast profile
	// only: beside the gossip port, with the ring's keys and label.
	var hb daemon.Heartbeat
	if ap := daemon.HeartbeatAddr(cfg.Gossip.Bind, cfg.Gossip.Profile); ap.IsValid() {
		h, err := heartbeat.New(heartbeat.Config{
			Node: cfg.Node.Name, Bind: ap, Keys: cfg.Gossip.SecretKeys,
			InsecurePlaintext: cfg.Gossip.InsecurePlaintext, Cluster: cfg.Gossip.Cluster,
			OnLoss:    func(n string) { d.HeartbeatLost(n) },
			OnResume:  func(n string) { d.HeartbeatResumed(n) },
			OnAccused: func(n string) { d.HeartbeatAccused(n) },
			Logger:    log.With("component", "heartbeat"),
		})
		if err != nil {
			log.Error("start failed", "err", err)
			return exitFail
		}
		hb = h
	}
	links := netif.NewMonitor(netif.MonitorOptions{
		Log:      log.With("component", "netlink"),
		OnChange: func(reason string) { d.Trigger("netlink: " + reason) },
	})
	l2 := netif.NewL2(netif.L2Options{
		Log: log.With("component", "l2"),
		Local: netif.NewLocalAddrs(netif.LocalAddrsOptions{
			Log: log.With("component", "local"),
		}),
		Fence: daemon.FenceOptions(cfg.Node.Name, &d),
	})
	var (
		kubeSide daemon.KubeSide
		groups   daemon.GroupSource
	)
	if cfg.Kubernetes.Enabled {
		// client-go logs through klog: into the same journal, as records
		// of their own component.
		klog.SetSlogLogger(log.With("component", "client-go"))
		rc, err := kube.RESTConfig(cfg.Kubernetes.KubeconfigData)
		if err != nil {
			fmt.Fprintf(stderr, "hostlbd: %s: %v\n", cfg.Kubernetes.Kubeconfig, err)
			return exitConfig
		}
		k, err := kube.New(kube.Options{
			Log:            log,
			Config:         rc,
			NodeName:       cfg.Node.Name,
			LeaseNamespace: cfg.Kubernetes.LeaseNamespace,
			BGPClass:       cfg.Kubernetes.LoadBalancerClass,
			OnChange:       func(kind kube.Kind) { d.TriggerPaced("kubernetes: " + string(kind)) },
		})
		if err != nil {
			fmt.Fprintf(stderr, "hostlbd: %s: %v\n", cfg.Kubernetes.Kubeconfig, err)
			return exitConfig
		}
		kubeSide, groups = k, k
	}
	var (
		speaker   daemon.BGPSpeaker
		nodeAddrs daemon.BGPNodeAddrs
	)
	if cfg.BGP.ASN != 0 || len(cfg.BGP.Peers) > 0 || cfg.BGP.ListenPort != 0 {
		// GoBGP starts on the first reconcile pass; peers added by a
		// reload need a speaker, so [bgp] asn alone builds one.
		// The speaker owns the kernel routes of hostlb's protocol:
		// [bgp.import] installs them, and a speaker with import off
		// removes any a crashed run left.
		routes := netif.NewRouteTable(netif.RouteTableOptions{Log: log.With("component", "bgp")})
		speaker = bgp.New(bgp.Options{Log: log.With("component", "bgp"), Routes: routes})
		nodeAddrs = daemon.HostBGPAddrs(log.With("component", "bgp"))
	}
	// Last before the daemon: a socket that cannot be created fails the
	// start at once (control.go).
	ctl, err := controlSocket(cfg, log, &d)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFail
	}
	d, err = daemon.New(daemon.Options{
		Config:    cfg,
		Load:      func() (*config.Config, error) { return config.Load(*path) },
		Reload:    reload,
		Logger:    log,
		LogLevel:  level,
		Notifier:  systemd.NewNotifier(),
		Links:     links,
		L2:        l2,
		Ring:      ring,
		Heartbeat: hb,
		Kube:      kubeSide,
		Groups:    groups,

		BGP:          speaker,
		BGPNodeAddrs: nodeAddrs,

		Components: append(ctl, met.components(&d, l2, ring, kubeSide, hb)...),
		Observer:   met.observer(),
	})
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFail
	}
	if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("hostlbd failed", "err", err)
		return exitFail
	}
	return exitOK
}
