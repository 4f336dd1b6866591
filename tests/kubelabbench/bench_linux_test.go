//go:build linux

package kubelabbench_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/packaging/manifests"
	"github.com/hostlb/hostlb/tests/kubeapi"
	"github.com/hostlb/hostlb/tests/kubebench"
	"github.com/hostlb/hostlb/tests/kubelab"
	"github.com/hostlb/hostlb/tests/kubelabbench"
)

var (
	flagBurst    = flag.Int("kubelabbench.burst", 1000, "IPv6 Services created at once in the first wave")
	flagServices = flag.Int("kubelabbench.services", 10000, "IPv6 Services held after the growth")
	flagV4       = flag.Int("kubelabbench.v4", 200, "IPv4 Services created at once before, answered by ARP, then deleted (0: none; at most 200)")
	flagIdle     = flag.Duration("kubelabbench.idle", time.Minute, "each quiet window")
	flagBudget   = flag.Duration("kubelabbench.budget", 15*time.Minute, "from the start, when the growth must be answered; its creates stop 45 s before")
	flagOut      = flag.String("kubelabbench.out", "", "keep the lab's `directory` (audit log, hostlbd and control-plane logs); must be empty")
	flagKCMQPS   = flag.Int("kubelabbench.kcm-qps", 200, "kube-controller-manager's --kube-api-qps (its burst twice that; 20 is its default)")
	flagHeap     = flag.String("kubelabbench.heapprofile", "", "at the end, run hostlbd's informers (kube.Source) in this process and write a heap profile of them to this `file`")
)

const (
	namespace = "bench"
	app       = "bench"
	classV4   = "bench-v4"
	poolV4    = "192.0.2.32-192.0.2.231" // 200 addresses, none of the lab's own
	classV6   = "bench-v6"
	poolV6    = "2001:db8:1000::/64"

	burstWorkers = 16
	growWorkers  = 32
	// Each pending IP is asked about every probeEvery, all of them
	// within probeRate requests per second.
	probeEvery = 25 * time.Millisecond
	probeRate  = 2000
	// Bounds of the waves (not measured bounds: the benchmark reports
	// what did not make it).
	v4Within    = 90 * time.Second
	burstWithin = 3 * time.Minute
	growTail    = 45 * time.Second
	// sweepWait is how long the last sweep request gets for its answer.
	sweepWait = time.Second
)

// report is the run's result, printed by TestMain for BENCHMARKS.md.
var report struct {
	mu  sync.Mutex // guards rep and ok
	rep kubelabbench.Report
	ok  bool
}

func TestMain(m *testing.M) {
	code := m.Run()
	report.mu.Lock()
	if report.ok {
		fmt.Printf("\n%s", report.rep.Markdown())
	}
	report.mu.Unlock()
	kubelab.RemoveBinaries()
	os.Exit(code)
}

// BenchmarkKubeL2 runs the scenario of the package doc once, whatever
// b.N, reports the key numbers as metrics and leaves the tables for
// TestMain to print.
func BenchmarkKubeL2(b *testing.B) {
	kubelab.Require(b)
	if *flagBurst <= 0 || *flagServices < *flagBurst || *flagV4 < 0 || *flagV4 > 200 {
		b.Fatalf("need 0 < -kubelabbench.burst (%d) ≤ -kubelabbench.services (%d), 0 ≤ -kubelabbench.v4 (%d) ≤ 200",
			*flagBurst, *flagServices, *flagV4)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), *flagBudget+*flagIdle+3*time.Minute)
	defer cancel()

	// The GC trace says how much of hostlbd's RSS is live heap (it has no
	// pprof endpoint). The lab's processes inherit this environment; the
	// control plane gets it too, which only adds lines to its logs.
	restore := setenv(b, "GODEBUG", "gctrace=1")
	lab := kubelab.New(b, kubelab.Options{LogLevel: "info", Dir: *flagOut, ControllerManagerArgs: []string{
		"--kube-api-qps=" + strconv.Itoa(*flagKCMQPS), "--kube-api-burst=" + strconv.Itoa(2**flagKCMQPS)}})
	restore()

	e := &env{b: b, lab: lab, tr: kubelabbench.NewTracker(), nodeIP: map[string]string{}}
	for _, n := range lab.Nodes() {
		e.nodes = append(e.nodes, n.Name)
		e.nodeIP[n.IPv4.String()] = n.Name
		e.nodeIP[n.IPv6.String()] = n.Name
	}
	e.findControlPlane()
	var err error
	e.p, err = kubelabbench.ListenProber(lab.Client, "eth0", kubelab.ClientAddr, kubelab.ClientAddr6, e.tr, probeEvery, probeRate)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.p.Close() })

	// One Pod per node behind one selector: every Service has three ready
	// endpoints, so every node may own any IP.
	if _, err := lab.Pods(namespace, app, e.nodes...); err != nil {
		b.Fatal(err)
	}
	if err := lab.Class(classV6, []string{poolV6}, false, nil); err != nil {
		b.Fatal(err)
	}
	if *flagV4 > 0 {
		if err := lab.Class(classV4, []string{poolV4}, false, nil); err != nil {
			b.Fatal(err)
		}
	}
	e.watchServices(ctx)
	e.watchSlices(ctx)

	rep := kubelabbench.Report{Nodes: e.nodes}
	rep.Mem = append(rep.Mem, e.mem("lab ready, Pods, no Service", 0))
	var windows []kubelabbench.Window
	addWindow := func(name string, from, to time.Time, rest bool, services int) {
		windows = append(windows, kubelabbench.Window{Name: name, Dur: to.Sub(from), Rest: rest, Services: services})
		e.windows = append(e.windows, [2]time.Time{from, to})
	}

	// IPv4, answered by ARP, for comparison; deleted before the IPv6 waves.
	if n := *flagV4; n > 0 {
		t0 := time.Now()
		names := serviceNames("v4-%03d", 0, n)
		w := e.wave(ctx, waveSpec{
			name: kubebench.Thousands(n) + " IPv4 at once", proto: "ARP", names: names, workers: burstWorkers,
			answerBy: time.Now().Add(v4Within),
			opts:     []kubelab.ServiceOption{kubelab.IPsCount(1), kubelab.LoadBalancerClass(classV4)},
		})
		w.Total = n
		rep.Waves = append(rep.Waves, w)
		e.deleteServices(ctx, names)
		addWindow(w.Name+", until answered, then deleted", t0, time.Now(), false, n)
	}

	// IPv6: the burst, a quiet window, the growth, a quiet window.
	v6 := []kubelab.ServiceOption{kubelab.IPsCount(1), kubelab.IPv6Only(), kubelab.LoadBalancerClass(classV6)}
	burst, total := *flagBurst, *flagServices
	t0 := time.Now()
	w := e.wave(ctx, waveSpec{
		name: kubebench.Thousands(burst) + " IPv6 at once", proto: "NDP", names: serviceNames("svc-%05d", 0, burst),
		workers: burstWorkers, answerBy: time.Now().Add(burstWithin), opts: v6,
	})
	w.Total, w.Goal = burst, true
	rep.Waves = append(rep.Waves, w)
	t1 := time.Now()
	held := w.Services
	addWindow(w.Name+", until answered", t0, t1, false, held)
	rep.Mem = append(rep.Mem, e.mem(fmt.Sprintf("the %s answered", kubebench.Thousands(held)), held))
	e.hold(ctx, *flagIdle)
	t2 := time.Now()
	addWindow(fmt.Sprintf("the next %v, at rest", *flagIdle), t1, t2, w.Unanswered == 0, held)
	rep.Mem = append(rep.Mem, e.mem(fmt.Sprintf("then %v at rest", *flagIdle), held))

	if total > burst {
		name := kubebench.Thousands(burst) + " → " + kubebench.Thousands(total) + " IPv6"
		w := e.wave(ctx, waveSpec{
			name: name, proto: "NDP", names: serviceNames("svc-%05d", burst, total), workers: growWorkers,
			createBy: start.Add(*flagBudget - growTail), answerBy: start.Add(*flagBudget), opts: v6,
		})
		held += w.Services
		w.Total = held
		rep.Waves = append(rep.Waves, w)
		t3 := time.Now()
		addWindow(name+", until answered", t2, t3, false, held)
		rep.Mem = append(rep.Mem, e.mem(fmt.Sprintf("the %s answered", kubebench.Thousands(held)), held))
		e.hold(ctx, *flagIdle)
		t4 := time.Now()
		addWindow(fmt.Sprintf("the next %v, at rest", *flagIdle), t3, t4, w.Unanswered == 0, held)
		rep.Mem = append(rep.Mem, e.mem(fmt.Sprintf("then %v at rest", *flagIdle), held))
	}

	// Who answers every held IP now, once each.
	ips := e.tr.IPs(serviceNames("svc-%05d", 0, total))
	sweepStart := time.Now()
	if err := e.p.Sweep(ctx, ips); err != nil {
		b.Fatal(err)
	}
	e.hold(ctx, sweepWait)
	sw := e.tr.Sweep(ips, sweepStart, lab.NodeByMAC)
	rep.Sweep = &sw
	rep.IPChanges = e.tr.IPChanges()
	if pr := e.p.Problems(); pr != (kubelabbench.Problems{}) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("prober: %d failed sends, %d malformed answers; first error: %v",
			pr.WriteErrs, pr.BadFrames, pr.First))
	}

	// Requests, per node, from the apiserver's audit log.
	reqs := e.audit()
	for i := range windows {
		w := kubebench.Window{From: e.windows[i][0], To: e.windows[i][1]}
		windows[i].Nodes = kubelabbench.CountByNode(reqs, kubeapi.AuditUser, w, e.nodeIP)
	}
	rep.Windows = windows
	rep.Leader = e.leader(ctx)
	// Every Event written over the run, late ones too.
	for _, nc := range kubelabbench.CountByNode(reqs, kubeapi.AuditUser,
		kubebench.Window{From: e.windows[0][0], To: time.Now()}, e.nodeIP) {
		if !slices.Contains(e.nodes, nc.Node) {
			continue
		}
		n := 0
		for _, c := range nc.Counts {
			if c.Kind == "create events" {
				n += c.N
			}
		}
		rep.EventsWritten = append(rep.EventsWritten, n)
	}
	for _, n := range lab.Nodes() {
		f, err := os.Open(n.LogPath())
		if err != nil {
			b.Fatal(err)
		}
		c, err := kubelabbench.CountLog(f, kubelabbench.LogMessages)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		rep.LogCounts = append(rep.LogCounts, c)
	}
	if *flagHeap != "" {
		rep.Notes = append(rep.Notes, e.heapProfile(ctx, *flagHeap))
	}
	b.Logf("benchmark took %v", time.Since(start).Round(time.Second))

	e.metrics(rep)
	report.mu.Lock()
	report.rep, report.ok = rep, true
	report.mu.Unlock()
}

// metrics reports the key numbers of rep to the benchmark.
func (e *env) metrics(rep kubelabbench.Report) {
	b := e.b
	b.ReportMetric(0, "ns/op")
	for _, w := range rep.Waves {
		key := "v6-burst"
		switch {
		case w.Proto == "ARP":
			key = "v4-burst"
		case !w.Goal:
			key = "v6-grow"
		}
		b.ReportMetric(ms(w.ToAnswer.P50), key+"-answer-p50-ms")
		b.ReportMetric(ms(w.ToAnswer.P99), key+"-answer-p99-ms")
		b.ReportMetric(ms(w.Share.P99), key+"-hostlbd-p99-ms")
		b.ReportMetric(ms(w.ToReady.P99), key+"-endpoints-p99-ms")
		b.ReportMetric(float64(w.Unanswered), key+"-unanswered")
	}
	last := rep.Mem[len(rep.Mem)-1]
	var rss, hwm uint64
	for _, n := range last.Nodes {
		rss, hwm = max(rss, n.RSS), max(hwm, n.HWM)
	}
	b.ReportMetric(float64(last.Services), "services-held")
	b.ReportMetric(mib(rss), "node-rss-max-MiB")
	b.ReportMetric(mib(hwm), "node-hwm-max-MiB")
	b.ReportMetric(mib(last.APIServer.RSS), "apiserver-rss-MiB")
	for _, w := range rep.Windows {
		if !w.Rest {
			continue
		}
		other, lease := 0, 0
		for _, nc := range w.Nodes {
			r := kubelabbench.SplitRest(nc.Counts)
			other, lease = max(other, r.Other), max(lease, r.Lease)
		}
		// The last quiet window wins: the one with the most Services.
		b.ReportMetric(float64(other)/w.Dur.Minutes(), "rest-other-req-per-min-max")
		b.ReportMetric(float64(lease)/w.Dur.Minutes(), "rest-lease-per-min")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b uint64) float64       { return float64(b) / (1 << 20) }

// setenv sets key to value in this process's environment (so in the
// lab's children) and returns the function that restores it.
func setenv(b *testing.B, key, value string) (restore func()) {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		b.Fatal(err)
	}
	return func() {
		if had {
			_ = os.Setenv(key, old)
		} else {
			_ = os.Unsetenv(key)
		}
	}
}

// serviceNames formats the names of Services [from, to).
func serviceNames(format string, from, to int) []string {
	out := make([]string, 0, max(to-from, 0))
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf(format, i))
	}
	return out
}

// env is the run's lab, prober and watches.
type env struct {
	b       *testing.B
	lab     *kubelab.Lab
	tr      *kubelabbench.Tracker
	p       *kubelabbench.Prober
	nodes   []string
	nodeIP  map[string]string // node address → node name
	windows [][2]time.Time    // of the request windows, in order

	apiserver, kcm, etcd int // PIDs
}

// findControlPlane finds kube-apiserver's, kube-controller-manager's and
// etcd's PIDs by their command names (comm holds 15 characters).
func (e *env) findControlPlane() {
	for _, pid := range e.lab.Cluster.PIDs() {
		switch c := kubebench.Comm(pid); {
		case c == "kube-apiserver":
			e.apiserver = pid
		case strings.HasPrefix(c, "kube-controller"):
			e.kcm = pid
		case c == "etcd":
			e.etcd = pid
		}
	}
	if e.apiserver == 0 || e.kcm == 0 || e.etcd == 0 {
		e.b.Fatalf("kube-apiserver, kube-controller-manager or etcd not found among %v", e.lab.Cluster.PIDs())
	}
}

// mem reads every process's memory and CPU time.
func (e *env) mem(moment string, services int) kubelabbench.MemRow {
	e.b.Helper()
	row := kubelabbench.MemRow{Moment: moment, Services: services}
	var errs []error
	read := func(pid int) kubebench.Mem {
		m, err := kubebench.ReadMem(pid)
		errs = append(errs, err)
		return m
	}
	for _, n := range e.lab.Nodes() {
		row.Nodes = append(row.Nodes, read(n.PID()))
		var gc kubebench.GC
		if f, err := os.Open(n.LogPath()); err == nil {
			gc, _, _ = kubebench.LastGC(f)
			f.Close()
		}
		row.GC = append(row.GC, gc)
	}
	row.APIServer, row.ControllerManager, row.Etcd = read(e.apiserver), read(e.kcm), read(e.etcd)
	if err := errors.Join(errs...); err != nil {
		e.b.Fatal(err)
	}
	var parts []string
	for i, n := range row.Nodes {
		parts = append(parts, fmt.Sprintf("%s %s (peak %s, CPU %v)", e.nodes[i], kubebench.MiB(n.RSS), kubebench.MiB(n.HWM), n.CPU))
	}
	e.b.Logf("memory, %s: hostlbd %s; kube-apiserver %s (CPU %v), kube-controller-manager %s (CPU %v), etcd %s (CPU %v)",
		moment, strings.Join(parts, ", "), kubebench.MiB(row.APIServer.RSS), row.APIServer.CPU,
		kubebench.MiB(row.ControllerManager.RSS), row.ControllerManager.CPU, kubebench.MiB(row.Etcd.RSS), row.Etcd.CPU)
	return row
}

// alive fails the run when a node's hostlbd has exited.
func (e *env) alive() {
	e.b.Helper()
	for _, n := range e.lab.Nodes() {
		if !n.Running() {
			e.b.Fatalf("hostlbd on %s exited; log %s", n.Name, n.LogPath())
		}
	}
}

// hold lets d pass (a measurement window, not a synchronisation), and
// fails if a daemon exits meanwhile.
func (e *env) hold(ctx context.Context, d time.Duration) {
	e.b.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		e.alive()
		select {
		case <-ctx.Done():
			e.b.Fatalf("run deadline: %v", ctx.Err())
		case <-time.After(min(time.Until(end), time.Second)):
		}
	}
}

// watchServices follows the namespace's Services from now on: the first
// IP in each one's status goes to the tracker and to the prober.
func (e *env) watchServices(ctx context.Context) {
	e.b.Helper()
	svcs := e.lab.Admin().CoreV1().Services(namespace)
	e.retryWatch(ctx, "Services",
		func(ctx context.Context) (string, error) {
			l, err := svcs.List(ctx, metav1.ListOptions{})
			if err != nil {
				return "", err
			}
			return l.ResourceVersion, nil
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return svcs.Watch(ctx, o) },
		func(obj any, at time.Time) {
			s, ok := obj.(*corev1.Service)
			if !ok {
				return
			}
			ips := kubelab.IngressIPs(s)
			if len(ips) == 0 {
				return
			}
			e.tr.SawIP(s.Name, ips[0], at)
			e.probe(s.Name)
		})
}

// probe starts asking who answers Service name's IP once the watches
// have shown both its IP and a ready endpoint (Tracker.ReadyToProbe).
func (e *env) probe(name string) {
	if ip, ok := e.tr.ReadyToProbe(name); ok {
		e.p.Add(ip)
	}
}

// watchSlices follows the namespace's EndpointSlices from now on: when a
// Service first has a ready endpoint.
func (e *env) watchSlices(ctx context.Context) {
	e.b.Helper()
	es := e.lab.Admin().DiscoveryV1().EndpointSlices(namespace)
	e.retryWatch(ctx, "EndpointSlices",
		func(ctx context.Context) (string, error) {
			l, err := es.List(ctx, metav1.ListOptions{})
			if err != nil {
				return "", err
			}
			return l.ResourceVersion, nil
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return es.Watch(ctx, o) },
		func(obj any, at time.Time) {
			s, ok := obj.(*discoveryv1.EndpointSlice)
			if !ok {
				return
			}
			svc := s.Labels[discoveryv1.LabelServiceName]
			for _, ep := range s.Endpoints {
				// As kube-proxy reads it: nil Ready means ready.
				if len(ep.Addresses) > 0 && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
					e.tr.SawReady(svc, at)
					e.probe(svc)
					return
				}
			}
		})
}

// retryWatch runs a watch that resumes where it was when the apiserver
// closes it (client-go's RetryWatcher), from a LIST's resourceVersion,
// handing each added or modified object to seen with its arrival time. It
// stops at cleanup.
func (e *env) retryWatch(ctx context.Context, what string, list func(context.Context) (string, error),
	w func(context.Context, metav1.ListOptions) (watch.Interface, error), seen func(obj any, at time.Time)) {
	e.b.Helper()
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	rv, err := list(lctx)
	cancel()
	if err != nil {
		e.b.Fatalf("list %s: %v", what, err)
	}
	wctx, stop := context.WithCancel(ctx)
	rw, err := watchtools.NewRetryWatcherWithContext(wctx, rv, &cache.ListWatch{WatchFuncWithContext: w})
	if err != nil {
		stop()
		e.b.Fatalf("watch %s: %v", what, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range rw.ResultChan() {
			at := time.Now()
			switch ev.Type {
			case watch.Added, watch.Modified:
				seen(ev.Object, at)
			case watch.Error:
				e.b.Logf("%s watch: %v", what, apierrors.FromObject(ev.Object))
			}
		}
	}()
	e.b.Cleanup(func() {
		stop()
		rw.Stop()
		<-done
	})
}

// waveSpec is one wave of creates.
type waveSpec struct {
	name, proto string
	names       []string
	workers     int
	opts        []kubelab.ServiceOption
	// createBy stops the creates (zero: none); answerBy bounds the wait
	// for the answers.
	createBy, answerBy time.Time
}

// wave creates the Services of s, workers at a time, and waits until each
// one's IP has answered or s.answerBy passes; it measures the Services it
// created.
func (e *env) wave(ctx context.Context, s waveSpec) kubelabbench.Wave {
	e.b.Helper()
	e.p.Stats() // start the counters of this wave
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		mu       sync.Mutex // guards created
		created  []string
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		late     atomic.Bool
	)
	for range s.workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(s.names) || wctx.Err() != nil {
					return
				}
				if !s.createBy.IsZero() && time.Now().After(s.createBy) {
					late.Store(true)
					return
				}
				if err := e.create(wctx, s.names[i], s.opts); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				mu.Lock()
				created = append(created, s.names[i])
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		e.b.Fatal(firstErr)
	}
	slices.Sort(created)
	e.b.Logf("%s: %d Services created", s.name, len(created))

	stopped := ""
	if late.Load() {
		stopped = fmt.Sprintf("creates stopped at the time bound after %s of %s", kubebench.Thousands(len(created)),
			kubebench.Thousands(len(s.names)))
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		left := e.tr.Unanswered(created)
		if left == 0 {
			break
		}
		e.alive()
		if time.Now().After(s.answerBy) {
			stopped = strings.TrimPrefix(stopped+fmt.Sprintf("; %s unanswered at the time bound", kubebench.Thousands(left)), "; ")
			break
		}
		select {
		case <-ctx.Done():
			e.b.Fatalf("run deadline in %s: %v", s.name, ctx.Err())
		case <-tick.C:
		}
	}
	if n := e.p.Drop(); n > 0 {
		e.b.Logf("%s: stopped asking about %d IPs that never answered", s.name, n)
	}
	w := e.tr.Wave(created)
	w.Name, w.Proto, w.Workers, w.Stopped, w.Probe = s.name, s.proto, s.workers, stopped, e.p.Stats()
	e.b.Logf("%s: creates %v, all answered after %v; answer p50 %v p99 %v max %v; endpoints p99 %v; hostlbd p99 %v; %d unanswered",
		w.Name, w.Creates, w.AllAnswered, w.ToAnswer.P50, w.ToAnswer.P99, w.ToAnswer.Max, w.ToReady.P99, w.Share.P99, w.Unanswered)
	return w
}

// create creates Service name, retrying what an overloaded apiserver
// answers (429, timeouts) a few times.
func (e *env) create(ctx context.Context, name string, opts []kubelab.ServiceOption) error {
	for attempt := 0; ; attempt++ {
		sent := time.Now()
		_, err := e.lab.Service(namespace, name, app, opts...)
		if err == nil || (attempt > 0 && apierrors.IsAlreadyExists(err)) {
			e.tr.Created(name, sent, time.Now())
			return nil
		}
		retriable := apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) ||
			apierrors.IsTimeout(err) || apierrors.IsServiceUnavailable(err)
		if !retriable || attempt >= 5 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		}
	}
}

// deleteServices deletes the Services named (and their EndpointSlices).
func (e *env) deleteServices(ctx context.Context, names []string) {
	e.b.Helper()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex // guards errs
		errs []error
	)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(names) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				if err := e.lab.DeleteService(namespace, names[i]); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		e.b.Fatal(err)
	}
}

// audit reads the apiserver's audit log.
func (e *env) audit() []kubelabbench.Request {
	e.b.Helper()
	f, err := os.Open(e.lab.Cluster.AuditLogPath())
	if err != nil {
		e.b.Fatal(err)
	}
	defer f.Close()
	reqs, err := kubelabbench.ParseAudit(f)
	if err != nil {
		e.b.Fatal(err)
	}
	return reqs
}

// leader is the holder of the IPAM Lease.
func (e *env) leader(ctx context.Context) string {
	e.b.Helper()
	l, err := e.lab.Admin().CoordinationV1().Leases(manifests.Namespace).Get(ctx, kube.LeaseName, metav1.GetOptions{})
	if err != nil {
		e.b.Fatal(err)
	}
	if h := l.Spec.HolderIdentity; h != nil {
		return *h
	}
	return ""
}

// heapProfile runs hostlbd's informers in this process, dialling inside
// the lab (kubebench.InformerProfile), and returns a line on how much live
// heap they hold: where a node's memory goes, before its own passes.
func (e *env) heapProfile(ctx context.Context, path string) string {
	e.b.Helper()
	h, err := kubebench.InformerProfile(ctx, e.lab.Kubeconfig, e.lab.Cluster.DialContext, path)
	if err != nil {
		e.b.Fatal(err)
	}
	return fmt.Sprintf("hostlbd's informers run in the benchmark's process hold %s of live heap after GC (%s Services, %s EndpointSlices cached); heap profile %s",
		kubebench.MiB(h.Live), kubebench.Thousands(h.Services), kubebench.Thousands(h.EndpointSlices), path)
}
