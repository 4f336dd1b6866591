package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
	"github.com/hostlb/hostlb/daemon/version"
)

// Notifier tells the service manager about the daemon's state. The real one
// is systemd.Notifier (sd_notify); without NOTIFY_SOCKET it does nothing.
type Notifier interface {
	Ready() error
	Reloading() error
	Stopping() error
	Status(line string) error
	// RunWatchdog pings the watchdog while healthy returns nil, until ctx
	// is done.
	RunWatchdog(ctx context.Context, log *slog.Logger, healthy func() error)
}

// Options configure a Daemon. Config and Logger are required.
type Options struct {
	// Config is the validated configuration the daemon starts with.
	Config *config.Config
	// Load re-reads the configuration on reload (typically config.Load of
	// the --config path). Nil disables reload.
	Load func() (*config.Config, error)
	// Reload delivers one value per reload request (SIGHUP, owned by main).
	Reload <-chan struct{}
	// Logger is the daemon's logger; LogLevel, when set, is the level
	// behind it, adjusted live when [log].level changes.
	Logger   *slog.Logger
	LogLevel *slog.LevelVar
	// Notifier defaults to a no-op.
	Notifier Notifier
	// Outputs receive the announcement diffs computed by the reconcile loop.
	Outputs []reconcile.Output
	// Components run beside the core ones, started after them (so stopped
	// before them).
	Components []Component
	// DrainTimeout bounds the whole ordered shutdown; default 10 s, inside
	// the unit's TimeoutStopSec.
	DrainTimeout time.Duration
}

// Daemon is hostlbd: it owns the running configuration, the reconcile loop
// and every component's lifetime.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	notify  Notifier
	loop    *reconcile.Loop
	applier *reconcile.Applier

	mu      sync.Mutex // guards cfg and desired
	cfg     *config.Config
	desired reconcile.Desired
	reloadE error // the last reload's error, shown in STATUS until the next success
}

// New returns an inert daemon; Run starts it.
func New(opts Options) (*Daemon, error) {
	if opts.Config == nil || opts.Logger == nil {
		return nil, errors.New("daemon: Config and Logger are required")
	}
	if opts.Notifier == nil {
		opts.Notifier = nopNotifier{}
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	d := &Daemon{
		opts:    opts,
		log:     opts.Logger,
		notify:  opts.Notifier,
		cfg:     opts.Config,
		applier: reconcile.NewApplier(opts.Outputs...),
	}
	d.loop = reconcile.New(opts.Logger.With("component", "reconcile"), d.reconcile)
	return d, nil
}

// Run runs the daemon until ctx is cancelled (SIGTERM/SIGINT in main), then
// drains every component in reverse start order and returns. It returns an
// error only if a component failed or the drain overran.
func (d *Daemon) Run(ctx context.Context) error {
	cfg := d.config()
	d.status("starting")
	d.log.Info("hostlbd started", "node", cfg.Node.Name, "version", version.Version,
		"commit", version.CommitOrUnknown(), "vips", len(cfg.VIPs))
	d.logVIPs(cfg)
	d.loop.Trigger("start")

	comps := []Component{
		ComponentFunc{N: "reconcile", F: d.loop.Run},
		ComponentFunc{N: "readiness", F: d.announceReady},
		ComponentFunc{N: "watchdog", F: func(ctx context.Context) error {
			d.notify.RunWatchdog(ctx, d.log, d.loop.Healthy)
			return nil
		}},
		ComponentFunc{N: "reload", F: d.serveReloads},
	}
	comps = append(comps, d.opts.Components...)

	err := runComponents(ctx, d.log, comps, d.opts.DrainTimeout, func(cause error) {
		if err := d.notify.Stopping(); err != nil {
			d.log.Warn("sd_notify STOPPING", "err", err)
		}
		if cause != nil {
			d.status("stopping after failure: " + cause.Error())
		} else {
			d.status("stopping")
		}
		d.log.Info("stopping", "node", cfg.Node.Name)
	})
	if err != nil {
		return err
	}
	d.log.Info("hostlbd stopped", "node", cfg.Node.Name)
	return nil
}

// announceReady sends READY=1 once the first full reconcile has completed,
// so `systemctl start` returns only when the node's state is in place.
func (d *Daemon) announceReady(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-d.loop.FirstPass():
	}
	if err := d.notify.Ready(); err != nil {
		d.log.Warn("sd_notify READY", "err", err)
	}
	d.status("")
	d.log.Info("ready", "node", d.config().Node.Name)
	<-ctx.Done()
	return nil
}

// reconcile is one pass: snapshot, compute, apply the diff.
func (d *Daemon) reconcile(ctx context.Context) error {
	cfg := d.config()
	next := StaticDesired(cfg.Node.Labels, cfg.VIPs)
	d.mu.Lock()
	d.desired = next
	d.mu.Unlock()
	return d.applier.Apply(ctx, next)
}

func (d *Daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// status sets the STATUS= line shown by `systemctl status`; an empty phase
// means running and describes the node's state.
func (d *Daemon) status(phase string) {
	line := phase
	if line == "" {
		d.mu.Lock()
		cfg, n, rerr := d.cfg, len(d.desired), d.reloadE
		d.mu.Unlock()
		line = fmt.Sprintf("running: node %s, %d static VIPs, %d addresses eligible here",
			cfg.Node.Name, len(cfg.VIPs), n)
		if rerr != nil {
			line += "; last reload FAILED, running the previous config (see journal)"
		}
	}
	if err := d.notify.Status(line); err != nil {
		d.log.Warn("sd_notify STATUS", "err", err)
	}
}

func (d *Daemon) logVIPs(cfg *config.Config) {
	for _, v := range cfg.VIPs {
		d.log.Info("vip configured", "vip", v.Name, "mode", v.Mode,
			"addresses", fmt.Sprint(v.Addresses), "local", v.Local)
	}
}

type nopNotifier struct{}

func (nopNotifier) Ready() error                                                    { return nil }
func (nopNotifier) Reloading() error                                                { return nil }
func (nopNotifier) Stopping() error                                                 { return nil }
func (nopNotifier) Status(string) error                                             { return nil }
func (nopNotifier) RunWatchdog(ctx context.Context, _ *slog.Logger, _ func() error) { <-ctx.Done() }
