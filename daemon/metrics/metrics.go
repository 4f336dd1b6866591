package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/heartbeat"
	"github.com/hostlb/hostlb/netif"
)

// Sources are what the scrape-time metrics read (Metrics.Bind). State is
// required; a nil source leaves its metrics out (a node without L2, ring,
// Kubernetes or heartbeat).
type Sources struct {
	// State is the node's picture as of its last pass
	// (daemon.(*Daemon).State).
	State func() daemon.State
	// NotReady says why the node is not ready (daemon.(*Daemon).NotReady),
	// nil when it is. Nil: ready once State says the first pass ran.
	NotReady func() []string
	L2       L2Source
	Ring     RingSource
	Kube     KubeSource
	// Heartbeat is nil where no Heart runs (the lan and wan profiles).
	Heartbeat HeartbeatSource
}

// L2Source is the L2 output's counters (*netif.L2).
type L2Source interface {
	// Stats returns every responder's counters; it never blocks on a Sync.
	Stats() []netif.ResponderStats
}

// RingSource is the gossip ring's counters (*gossip.Ring).
type RingSource interface {
	// InputErrors counts the gossip input dropped, by kind; the caller
	// owns the map.
	InputErrors() map[string]uint64
}

// KubeSource is the Kubernetes side's health (*kube.Kubernetes).
type KubeSource interface {
	// Watches and IPAMStatus read local state, never the API.
	Watches() []kube.WatchStatus
	IPAMStatus() kube.IPAMStatus
}

// HeartbeatSource is the heirs' direct watch of owners (*heartbeat.Heart).
type HeartbeatSource interface {
	// Stats returns the Heart's counters; the caller owns the map.
	Stats() heartbeat.Stats
	// Watched returns the state of every watched node.
	Watched() []heartbeat.WatchStatus
}

// Metrics is hostlbd's Prometheus registry: the event metrics the daemon
// and the ring feed through Pass, Takeover, ProbeRTT and the memberlist
// sink, and a collector that reads the Sources on every scrape. New is
// inert; Bind, then Serve.
type Metrics struct {
	reg *prometheus.Registry
	col *collector

	passDuration     prometheus.Histogram
	passErrors       prometheus.Counter
	takeovers        *prometheus.CounterVec
	takeoverDuration *prometheus.HistogramVec
	probeRTT         prometheus.Histogram
	suspicions       prometheus.Counter
	healthScore      prometheus.Gauge
}

// Options configure Metrics.
type Options struct {
	// Version and Commit label hostlb_build_info.
	Version, Commit string
	// Runtime adds the Go runtime's and the process's own metrics (go_*,
	// process_*: memory, CPU, file descriptors). hostlbd sets it; tests
	// that compare exact output do not.
	Runtime bool
}

// Buckets of the duration histograms, in seconds.
var (
	// A pass takes about a millisecond with a few VIPs and some 50 ms
	// with 10,000 Services; 4 s is the wedge limit (reconcile.Loop).
	passBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	// A takeover after a leave or a move takes a pass (milliseconds); one
	// after a death waits for nothing more than the pass either, but a node
	// that was busy, or could not announce the IP at first, takes longer.
	takeoverBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// Probe round trips on a LAN are well under a millisecond; a probe
	// not acked within the profile's timeout is not measured.
	rttBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
)

// New returns the metrics of one node; Bind gives it the Sources its
// scrapes read.
func New(opts Options) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		passDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hostlb_reconcile_duration_seconds",
			Help:    "How long each reconcile pass ran: compute the desired state from a snapshot of every input and apply the difference to the outputs.",
			Buckets: passBuckets,
		}),
		passErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hostlb_reconcile_errors_total",
			Help: "Reconcile passes that failed (an output could not apply its part); the loop retries them with backoff.",
		}),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hostlb_takeovers_total",
			Help: "L2 IPs this node started answering that another node held, by why it lost them: dead (declared dead by the ring), left (left or draining), moved (alive; placement moved the IP), heartbeat (its heir stopped hearing its heartbeat, before the ring's verdict).",
		}, []string{"reason"}),
		takeoverDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hostlb_takeover_duration_seconds",
			Help:    "Per takeover, from the moment this node saw the previous owner lost (the ring's dead or left event, or the heartbeat's loss; for a live owner, the pass that moved the IP) to the end of the L2 sync after which this node answers the IP. Failure detection before the ring's event or the heartbeat's loss is not included.",
			Buckets: takeoverBuckets,
		}, []string{"reason"}),
		probeRTT: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hostlb_gossip_probe_rtt_seconds",
			Help:    "Round-trip time of the gossip ring's probes of other members that were acked directly.",
			Buckets: rttBuckets,
		}),
		suspicions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hostlb_gossip_suspicions_total",
			Help: "Members this node learned to suspect of failure (memberlist's suspect messages, its own probes' and other members'); a suspect that answers in time stays alive.",
		}),
		healthScore: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hostlb_gossip_health_score",
			Help: "memberlist's awareness score of this node: 0 is healthy; it grows when this node misses probes or is suspected itself (an overloaded node), and stretches its probe timeouts.",
		}),
	}
	for _, r := range []string{daemon.TakeoverDead, daemon.TakeoverLeft, daemon.TakeoverMoved, daemon.TakeoverHeartbeat} {
		m.takeovers.WithLabelValues(r)
		m.takeoverDuration.WithLabelValues(r)
	}
	m.col = newCollector(opts)
	m.reg.MustRegister(m.col, m.passDuration, m.passErrors, m.takeovers, m.takeoverDuration,
		m.probeRTT, m.suspicions, m.healthScore)
	if opts.Runtime {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Bind sets what the scrapes read. Call it once, before Serve (or
// Handler) and before anything gathers the registry: the components the
// sources are exist only after the event metrics' users (the ring's
// OnProbe) were built.
func (m *Metrics) Bind(src Sources) { m.col.src = src }

// Registry is the registry Serve exposes.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Pass implements daemon.Observer.
func (m *Metrics) Pass(took time.Duration, err error) {
	m.passDuration.Observe(took.Seconds())
	if err != nil {
		m.passErrors.Inc()
	}
}

// Takeover implements daemon.Observer.
func (m *Metrics) Takeover(t daemon.Takeover) {
	m.takeovers.WithLabelValues(t.Reason).Inc()
	m.takeoverDuration.WithLabelValues(t.Reason).Observe(t.Took.Seconds())
}

var _ daemon.Observer = (*Metrics)(nil)

// ProbeRTT is gossip.Config.OnProbe: one probe's round trip.
func (m *Metrics) ProbeRTT(_ string, rtt time.Duration) { m.probeRTT.Observe(rtt.Seconds()) }
