package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
	"github.com/hostlb/hostlb/daemon/version"
	"github.com/hostlb/hostlb/netif"
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
	// Groups are the inputs besides the static [[vip]] config (the
	// Kubernetes source's Services, kube.Kubernetes.Groups). Every pass
	// places them together with the static groups. Nil: static VIPs only.
	Groups GroupSource
	// Links follows the node's links and addresses; the real one is
	// *netif.Monitor, whose OnChange the caller wires to Trigger. The
	// daemon runs it first (so stops it last) and makes no reconcile pass
	// before its first dump. Nil: no link state (tests, and nodes
	// without L2).
	Links LinkSource
	// L2 answers ARP/NDP and holds local VIPs; the real one is *netif.L2.
	// Every pass hands it the whole desired L2 set and the current links
	// (level-triggered: a link change alone re-chooses interfaces). The
	// daemon closes it after the reconcile loop has stopped. It requires
	// Links.
	L2 Announcer
	// Ring is this node's seat in the gossip ring (*gossip.Ring built from
	// RingConfig, its OnChange wired to Trigger). With a ring, static VIPs
	// are placed over the cluster (cluster.go, ownership.go); without one
	// (tests, a ring-less node) the node announces every VIP it is
	// eligible for. The daemon runs it before the L2 output, so it is left
	// only after every answer stopped.
	Ring Ring
	// HandoverTimeout bounds how long a node keeps answering an IP it lost
	// (on SIGTERM, or to a returning preferred node) while waiting for the
	// next owner to announce it; default 3 s.
	HandoverTimeout time.Duration
	// Heartbeat, with a Ring, is the heirs' direct watch of owners
	// (heirs.go; *heartbeat.Heart in the fast profile, nil in lan and
	// wan). The daemon runs it between the ring and the L2 output.
	Heartbeat Heartbeat
	// SettleTimeout bounds how long a starting node with seeds waits to
	// see the ring before it takes IPs alone; default 2 s.
	SettleTimeout time.Duration
	// DisagreementGrace is how long two owners or none for an IP are
	// normal (a failover or handover in flight) before they are logged;
	// default 2 s.
	DisagreementGrace time.Duration
	// CannotRetry is how long after its L2 output failed to announce an
	// IP (for another reason than no eligible interface) a node with a
	// ring tries it again; it doubles after each failed try, up to a
	// minute. Default 1 s (ownership.go, retryDue).
	CannotRetry time.Duration
	// BGP is the BGP output ([bgp]; *bgp.Speaker). Every pass hands it
	// [bgp] and the whole desired BGP set (level-triggered). On stop it
	// withdraws every route and waits for the peers to be sent the
	// withdrawal before the ring is left (runBGP). Nil: no BGP.
	BGP BGPSpeaker
	// BGPNodeAddrs are the node's own addresses for the BGP output: the
	// default router ID and the next hops of paths of the other family
	// than their session's (HostBGPAddrs in main; tests set router_id).
	BGPNodeAddrs BGPNodeAddrs
	// Kube is the Kubernetes side ([kubernetes] enabled; nil otherwise).
	// The API never holds static VIPs hostage: READY=1 waits for its
	// caches until KubeSyncWait after the start (and at least until the
	// first full reconcile), then comes anyway with a STATUS line saying
	// the API is unreachable, and Services are served as soon as it
	// answers.
	Kube KubeSide
	// KubeSyncWait bounds that wait, from the start of Run; default 10 s
	// (inside the unit's TimeoutStartSec).
	KubeSyncWait time.Duration
	// Components run beside the core ones, started after them (so stopped
	// before them).
	Components []Component
	// Observer, when set, is told about passes and takeovers (observe.go;
	// daemon/metrics).
	Observer Observer
	// DrainTimeout bounds the ordered shutdown; default 10 s, inside the
	// unit's TimeoutStopSec. When it passes, the L2 output's Close (the
	// hostlb0 addresses) still gets up to 5 s more (runComponents).
	DrainTimeout time.Duration
}

// defaultKubeSyncWait bounds how long READY=1 waits for the Kubernetes
// caches (Options.KubeSyncWait).
const defaultKubeSyncWait = 10 * time.Second

// LinkSource is the daemon's view of the node's links (netif.Monitor,
// netiftest.Monitor).
type LinkSource interface {
	// Snapshot returns the current links and addresses; it never blocks.
	Snapshot() netif.State
	// Ready is closed once Snapshot holds a complete first dump.
	Ready() <-chan struct{}
	// Run follows the links until ctx is done.
	Run(ctx context.Context) error
}

// GroupSource is an input that produces groups (daemon/kube).
type GroupSource interface {
	// Groups returns the groups to place now; it never blocks and makes
	// no API request (it reads caches).
	Groups() []reconcile.Group
}

// KubeSide is what the daemon needs of the Kubernetes side (kube.Kubernetes).
type KubeSide interface {
	// Synced is closed once every informer cache holds a full list.
	Synced() <-chan struct{}
	// Summary describes its state for the STATUS line.
	Summary() string
	// Seeds are the other Nodes' InternalIPs, gossip seeds besides
	// [gossip] join; from the cache, never blocking.
	Seeds() []netip.Addr
	// Announced is told, after every pass, what this node does with each
	// address it owns; it must not block (Events are sent in the
	// background).
	Announced(rs []reconcile.Report)
	// Run follows the API until ctx is done.
	Run(ctx context.Context) error
}

// Announcer is the L2 output (netif.L2).
type Announcer interface {
	// Sync makes the node announce exactly want over the links of st. It
	// may block on sockets and netlink, never on bursts; an error leaves
	// everything else applied, and the next call retries.
	Sync(ctx context.Context, st netif.State, cfg netif.L2Config, want []netif.L2Announcement) error
	// Status returns what each interface announces now.
	Status() []netif.L2Status
	// Cannot returns the addresses the last Sync was asked to announce
	// and answers on no interface, each with why (netif.ErrNoInterface,
	// ErrNoResponder, ErrNotHeld, ErrSysctls); the caller owns the result.
	Cannot() []netif.L2Cannot
	// Check returns which of want no link of st is eligible for
	// (netif.ErrNoInterface), by Sync's rule, changing nothing.
	Check(st netif.State, cfg netif.L2Config, want []netif.L2Announcement) []netif.L2Cannot
	// Close stops every answer and removes every local address added.
	Close() error
}

// Daemon is hostlbd: it owns the running configuration, the reconcile loop
// and every component's lifetime.
type Daemon struct {
	opts   Options
	log    *slog.Logger
	notify Notifier
	loop   *reconcile.Loop
	health *healthChecks

	// firstDone is closed after the first pass that ran to its end, with
	// or without errors: READY=1 must not wait forever on an output that
	// keeps failing (say, sysctls it cannot set); STATUS says it failed.
	firstDone chan struct{}
	firstOnce sync.Once
	started   time.Time // when Run began; set before any component runs
	// drained is closed by the first draining pass that leaves no L2 IP.
	drained   chan struct{}
	drainOnce sync.Once
	fence     fenceState // wire conflicts (fence.go)
	// reloadMu serialises reloads: SIGHUP's and the control socket's
	// (reload.go).
	reloadMu sync.Mutex

	mu        sync.Mutex // guards the fields below
	cfg       *config.Config
	desired   reconcile.Desired
	unhealthy int              // VIPs left out by failing health checks
	announced []netif.L2Status // what L2 answers for, after the last pass
	passErr   string           // the last pass's error, "" when it succeeded
	l2Err     string           // the last L2 error logged, to log each once
	bgpErr    string           // the last BGP error logged, to log each once
	// bgpConflicts: the peers last logged as both in the file and the API.
	bgpConflicts string
	reloadE      error     // the last reload's error, shown in STATUS until the next success
	ready        bool      // READY=1 sent: passes may update STATUS
	lastLine     string    // the STATUS line last sent
	ring         ringState // written only by the reconcile loop (and handover's draining)
	heirs        heirState // the heartbeat's verdicts and duties (heirs.go)
	// cannot are the IPs the L2 output could not announce (ownership.go);
	// written only by the reconcile loop.
	cannot map[netip.Addr]*cannotEntry

	pass passRecord // the last pass, for State (state.go)
	// reloads, reloadFailures, lastReload: SIGHUP reloads, for State.
	reloads, reloadFailures uint64
	lastReload              time.Time

	timer        *time.Timer // wakeAt's pending pass
	timerAt      time.Time
	timerStopped bool
}

// New returns an inert daemon; Run starts it.
func New(opts Options) (*Daemon, error) {
	if opts.Config == nil || opts.Logger == nil {
		return nil, errors.New("daemon: Config and Logger are required")
	}
	if opts.Notifier == nil {
		opts.Notifier = nopNotifier{}
	}
	if opts.L2 != nil && opts.Links == nil {
		return nil, errors.New("daemon: L2 needs Links")
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	if opts.HandoverTimeout <= 0 {
		opts.HandoverTimeout = defaultHandover
	}
	if opts.SettleTimeout <= 0 {
		opts.SettleTimeout = defaultSettle
	}
	if opts.DisagreementGrace <= 0 {
		opts.DisagreementGrace = defaultGrace
	}
	if opts.CannotRetry <= 0 {
		opts.CannotRetry = defaultCannotRetry
	}
	if opts.KubeSyncWait <= 0 {
		opts.KubeSyncWait = defaultKubeSyncWait
	}
	d := &Daemon{
		opts:      opts,
		log:       opts.Logger,
		notify:    opts.Notifier,
		cfg:       opts.Config,
		firstDone: make(chan struct{}),
		drained:   make(chan struct{}),
	}
	d.loop = reconcile.New(opts.Logger.With("component", "reconcile"), d.reconcile)
	if opts.Observer != nil {
		d.loop.OnPass = opts.Observer.Pass
	}
	d.health = newHealthChecks(opts.Logger.With("component", "health"), d.loop.Trigger)
	return d, nil
}

// Trigger asks for a reconcile pass; it never blocks. Inputs built outside
// the daemon (the netlink Monitor's OnChange) call it.
func (d *Daemon) Trigger(reason string) { d.loop.Trigger(reason) }

// TriggerPaced asks for a pass that may wait for the loop's pace
// (reconcile.Loop): Kubernetes objects changing, peers' announced sets.
func (d *Daemon) TriggerPaced(reason string) { d.loop.TriggerPaced(reason) }

// GossipChanged is RingConfig's onChange: a member joining, leaving, dying
// or changing health runs a pass at once (failover must not wait); news
// of announced sets alone waits for the pace.
func (d *Daemon) GossipChanged(urgent bool) {
	if urgent {
		d.refreshPeers()
		d.loop.Trigger("gossip")
		return
	}
	d.loop.TriggerPaced("gossip: announced sets")
}

// Run runs the daemon until ctx is cancelled (SIGTERM/SIGINT in main), then
// drains every component in reverse start order and returns. It returns an
// error only if a component failed or the drain overran.
func (d *Daemon) Run(ctx context.Context) error {
	cfg := d.config()
	d.started = time.Now()
	d.status("starting")
	d.log.Info("hostlbd started", "node", cfg.Node.Name, "version", version.Version,
		"commit", version.CommitOrUnknown(), "vips", len(cfg.VIPs))
	d.logVIPs(cfg)
	d.logUnserved(cfg)
	d.loop.Trigger("start")

	// Order matters: what is started first is stopped last. The links
	// outlive the loop that reads them; the L2 output is closed (every
	// responder stopped, every local address removed) only after the loop
	// has stopped, so no pass re-opens what Close closed; the health
	// checkers trigger the loop and stop after it.
	var comps []Component
	if d.opts.Links != nil {
		comps = append(comps, ComponentFunc{N: "netlink", F: d.opts.Links.Run})
	}
	if d.opts.Ring != nil {
		// Before L2: left only after every answer has stopped.
		comps = append(comps, ComponentFunc{N: "gossip", F: d.opts.Ring.Run})
		if d.opts.Heartbeat != nil {
			// After the ring, before L2: a stopping node's heirs hear it
			// until every answer has stopped.
			comps = append(comps, ComponentFunc{N: "heartbeat", F: d.opts.Heartbeat.Run})
		}
	}
	if d.opts.L2 != nil {
		// Cleanup: Close removes the local addresses on hostlb0 even
		// when a component before it overstays the drain. Left behind,
		// they outlive the process, and the node keeps treating as its
		// own VIPs that other nodes take over.
		comps = append(comps, ComponentFunc{N: "l2", Cleanup: true, F: func(ctx context.Context) error {
			<-ctx.Done()
			return d.opts.L2.Close()
		}})
	}
	if d.opts.BGP != nil {
		// After the ring and the L2 output: stopped before them, so the
		// routes are withdrawn (and the peers sent it) while the ring
		// still counts this node, and L2 still answers.
		comps = append(comps, ComponentFunc{N: "bgp", F: d.runBGP})
	}
	if d.opts.Kube != nil {
		// After the L2 output: stopped before it, so the IPAM Lease is
		// released while the node still answers.
		comps = append(comps, ComponentFunc{N: "kubernetes", F: d.opts.Kube.Run})
	}
	comps = append(comps,
		ComponentFunc{N: "health", F: d.health.Run},
		ComponentFunc{N: "reconcile", F: d.loop.Run},
		ComponentFunc{N: "readiness", F: d.announceReady},
		ComponentFunc{N: "watchdog", F: func(ctx context.Context) error {
			d.notify.RunWatchdog(ctx, d.log, d.loop.Healthy)
			return nil
		}},
		ComponentFunc{N: "reload", F: d.serveReloads},
	)
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
		if cause == nil {
			d.handover()
		}
	})
	d.stopTimer()
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
	case <-d.firstDone:
	}
	if k := d.opts.Kube; k != nil {
		wait := time.NewTimer(time.Until(d.started.Add(d.opts.KubeSyncWait)))
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil
		case <-k.Synced():
		case <-wait.C:
			d.log.Warn("Kubernetes API not reachable: ready without it; static VIPs are served, Services will be once the API answers",
				"waited", d.opts.KubeSyncWait)
		}
		wait.Stop()
	}
	if err := d.notify.Ready(); err != nil {
		d.log.Warn("sd_notify READY", "err", err)
	}
	d.mu.Lock()
	d.ready = true
	d.mu.Unlock()
	d.status("")
	d.log.Info("ready", "node", d.config().Node.Name)
	<-ctx.Done()
	return nil
}

// reconcile is one pass: snapshot, compute, apply.
func (d *Daemon) reconcile(ctx context.Context) error {
	cfg := d.config()
	if d.opts.Links != nil {
		// The first pass must see the real interfaces, or READY=1 would
		// come before anything is answered.
		select {
		case <-d.opts.Links.Ready():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d.health.Update(cfg.VIPs)
	var healthy []config.VIP
	var failing []string
	for _, v := range cfg.VIPs {
		if d.health.Healthy(v) {
			healthy = append(healthy, v)
		} else {
			failing = append(failing, v.Name)
		}
	}
	var dynamic []reconcile.Group
	if d.opts.Groups != nil {
		dynamic = d.opts.Groups.Groups()
	}
	var (
		next = localDesired(cfg.Node.Name, cfg.Node.Labels, append(StaticGroups(healthy), dynamic...))
		ps   []placedIP
	)
	if d.opts.Ring != nil {
		// With a ring every group is placed; a failing health check
		// travels with the node's announced set instead (placeGroups).
		groups := append(StaticGroups(cfg.VIPs), dynamic...)
		var settledPass bool
		var err error
		next, ps, settledPass, err = d.clusterDesired(ctx, cfg, groups, failing)
		if err != nil {
			return err
		}
		if !settledPass {
			// Not in the ring yet: announce nothing, and this is not the
			// first full pass (READY=1 waits for it) — unless the ring
			// refuses this node: then announcing nothing is the state
			// to be in, and `systemctl status` says why.
			d.mu.Lock()
			refused := d.ring.refused != ""
			d.mu.Unlock()
			return d.apply(ctx, cfg, next, len(failing), refused)
		}
	}
	if d.opts.Ring == nil {
		d.recordLocal(cfg.Node.Name, next, time.Now())
	}
	err := d.apply(ctx, cfg, next, len(failing), true)
	if d.opts.Ring != nil && ctx.Err() == nil {
		d.checkDisagreements(cfg, ps)
		d.noteDrained(next)
		d.mu.Lock()
		ready := d.ready
		d.mu.Unlock()
		if ready {
			d.status("")
		}
	}
	return err
}

// apply hands next to the outputs and the L2 output, tells the ring what
// this node now announces, and records the pass. full says whether the pass
// counts as a full reconcile (for READY=1).
func (d *Daemon) apply(ctx context.Context, cfg *config.Config, next reconcile.Desired, unhealthy int, full bool) error {
	var links netif.State
	if d.opts.Links != nil {
		links = d.opts.Links.Snapshot()
	}
	d.mu.Lock()
	d.desired = next
	d.unhealthy = unhealthy
	d.mu.Unlock()

	var err error
	var cannotChanged bool
	var rs []reconcile.Report // for the Kubernetes Events: one call per pass
	if d.opts.L2 != nil {
		err = d.opts.L2.Sync(ctx, links, l2Config(cfg.L2), l2Wanted(next))
		if ctx.Err() == nil {
			d.reportL2(err)
		}
		synced := time.Now()
		st := d.opts.L2.Status()
		d.mu.Lock()
		before := d.announced
		d.announced = st
		d.mu.Unlock()
		if ctx.Err() == nil {
			d.noteTakeovers(before, st, synced) // observe.go
		}
		rs = reports(next, st, err)
		if ctx.Err() == nil {
			cannotChanged = d.noteCannot(next, st, d.opts.L2.Cannot(), links, time.Now())
		}
	}
	if d.opts.BGP != nil {
		err = errors.Join(err, d.syncBGP(ctx, cfg, next))
		rs = append(rs, bgpReports(cfg.Node.Name, next)...)
	}
	if d.opts.Kube != nil && ctx.Err() == nil && (d.opts.L2 != nil || d.opts.BGP != nil) {
		d.opts.Kube.Announced(rs)
	}
	if d.opts.Ring != nil {
		// Only after the output applied it: peers that see this node
		// announce an IP hand it over (holdLost) and stop answering.
		d.opts.Ring.SetAnnounced(d.announcedIPs(next))
		if cannotChanged {
			// The next node takes what this node cannot announce; this
			// node's own placement must leave it too.
			d.republishExclusions()
			d.loop.Trigger("cannot announce")
		}
	}
	if ctx.Err() != nil {
		return err // stopping: not a finished pass
	}
	d.mu.Lock()
	d.passErr = ""
	if err != nil {
		d.passErr = err.Error()
	}
	ready := d.ready
	d.mu.Unlock()
	if !full {
		return err
	}
	d.firstOnce.Do(func() { close(d.firstDone) })
	if ready {
		d.status("")
	}
	return err
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
		announced, unhealthy, perr := d.announced, d.unhealthy, d.passErr
		cannot := len(d.cannot)
		d.mu.Unlock()
		line = fmt.Sprintf("running: node %s, %d static VIPs, ", cfg.Node.Name, len(cfg.VIPs))
		if d.opts.L2 != nil {
			line += announcedSummary(announced)
		} else {
			line += fmt.Sprintf("%d addresses eligible here", n)
		}
		if d.opts.Ring != nil {
			line += d.clusterSummary()
		}
		if d.opts.BGP != nil {
			line += bgpSummary(d.opts.BGP.Status())
		}
		if d.opts.Kube != nil {
			line += "; " + d.opts.Kube.Summary()
		}
		if unhealthy > 0 {
			line += fmt.Sprintf("; %d VIPs failing their health check", unhealthy)
		}
		if cannot > 0 {
			line += fmt.Sprintf("; %d IPs this node cannot announce (see journal)", cannot)
		}
		line += d.wireConflictSummary()
		if perr != "" {
			line += "; last reconcile FAILED, retrying (see journal)"
		}
		if rerr != nil {
			line += "; last reload FAILED, running the previous config (see journal)"
		}
	}
	d.mu.Lock()
	same := line == d.lastLine
	d.lastLine = line
	d.mu.Unlock()
	if same {
		return
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
