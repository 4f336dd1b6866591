//go:build linux

package kubebench_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/packaging/manifests"
	"github.com/hostlb/hostlb/tests/kubeapi"
	"github.com/hostlb/hostlb/tests/kubebench"
	"github.com/hostlb/hostlb/tests/netlab"
)

var (
	flagBurst    = flag.Int("kubebench.burst", 1000, "Services created at once in the first wave")
	flagServices = flag.Int("kubebench.services", 10000, "Services in the cluster after the second wave")
	flagIdle     = flag.Duration("kubebench.idle", time.Minute, "the idle window after the first wave")
	flagHeap     = flag.String("kubebench.heapprofile", "", "at the end, run hostlbd's informers (kube.Source) in this process and write a heap profile of them to this `file`")
	flagOut      = flag.String("kubebench.out", "", "keep the cluster's directory (audit log, apiserver log, etcd data) and hostlbd's log in this `directory`")
)

const (
	nodeName  = "bench-node"
	namespace = "bench"
	className = "bench"
	pool      = "2001:db8:1000::/64"

	burstWorkers = 16
	growWorkers  = 32
	// baselineIdle is how long the daemon idles with 0 Services, leader
	// and synced, before its baseline memory is read.
	baselineIdle = 10 * time.Second
	// Bounds: the whole run stays within runTimeout; a wave must have
	// every IP within its own bound.
	runTimeout  = 14 * time.Minute
	burstWithin = 3 * time.Minute
	growWithin  = 10 * time.Minute
)

// report is the run's result, printed by TestMain for BENCHMARKS.md.
var report struct {
	mu  sync.Mutex // guards rep and ok
	rep kubebench.Report
	ok  bool
}

func TestMain(m *testing.M) {
	code := m.Run()
	report.mu.Lock()
	if report.ok {
		fmt.Printf("\n%s", report.rep.Markdown())
	}
	report.mu.Unlock()
	netlab.RemoveHostlbd()
	os.Exit(code)
}

// BenchmarkKubeIPAM runs the scenario of the package doc once, whatever
// b.N, reports the key numbers as metrics and leaves the tables for
// TestMain to print.
func BenchmarkKubeIPAM(b *testing.B) {
	kubeapi.Require(b)
	if *flagBurst <= 0 || *flagServices < *flagBurst {
		b.Fatalf("need 0 < -kubebench.burst (%d) ≤ -kubebench.services (%d)", *flagBurst, *flagServices)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	dir := *flagOut
	if dir == "" {
		dir = b.TempDir()
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}

	c, err := kubeapi.New(kubeapi.Options{
		Dir: filepath.Join(dir, "cluster"), ApplyManifests: true, AuditLog: true, Log: logWriter{b},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Stop)
	if err := c.Start(ctx); err != nil {
		b.Fatalf("start control plane: %v\n%s", err, c.LogTail("kube-apiserver", 30))
	}
	e := &env{b: b, c: c, admin: c.Admin(), tr: newTracker(*flagServices)}
	e.findControlPlane()

	cfg, err := c.ServiceAccountConfig(ctx, "", "")
	if err != nil {
		b.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "hostlbd.kubeconfig")
	if err := kubeapi.WriteKubeconfig(kubeconfig, cfg); err != nil {
		b.Fatal(err)
	}
	daemonStart := time.Now()
	e.d = startHostlbd(b, dir, kubeconfig)
	e.waitLease(ctx)
	b.Logf("hostlbd (pid %d) holds the Lease %s/%s after %v", e.d.pid(), manifests.Namespace, kube.LeaseName,
		time.Since(daemonStart).Round(time.Millisecond))

	var rep kubebench.Report
	e.hold(ctx, baselineIdle)
	rep.Mem = append(rep.Mem, e.mem("idle, leader, caches synced", 0))

	e.setup(ctx)
	e.watch(ctx)

	// The first wave, then an idle window; the second wave up to the
	// total, then another idle window.
	burst, total := *flagBurst, *flagServices
	waves := []waveRun{{name: kubebench.Thousands(burst) + " at once", to: burst, workers: burstWorkers, within: burstWithin}}
	if total > burst {
		waves = append(waves, waveRun{name: kubebench.Thousands(burst) + " → " + kubebench.Thousands(total), from: burst, to: total,
			workers: growWorkers, within: growWithin})
	}
	var memAt []int // index into rep.Mem of each wave's "have IPs" row
	for i := range waves {
		w := &waves[i]
		w.start = time.Now()
		var p kubebench.Phase
		p, w.end = e.wave(ctx, w.name, w.from, w.to, w.workers, w.within)
		rep.Phases = append(rep.Phases, p)
		b.Logf("%s: creates %v, all IPs after %v, p50 %v p99 %v", p.Name, p.Creates, p.AllIPs, p.Latency.P50, p.Latency.P99)
		memAt = append(memAt, len(rep.Mem))
		rep.Mem = append(rep.Mem, e.mem(fmt.Sprintf("the %s have IPs", kubebench.Thousands(w.to)), w.to))
		w.idleEnd = w.end.Add(*flagIdle)
		e.hold(ctx, time.Until(w.idleEnd))
		rep.Mem = append(rep.Mem, e.mem(fmt.Sprintf("then %v idle", *flagIdle), w.to))
	}
	rep.IPConflicts, rep.IPChanges, rep.StabilityExamples = e.tr.stability()
	for _, ex := range rep.StabilityExamples {
		b.Logf("IP stability: %s", ex)
	}

	// Every window's requests are in the log: blocking audit mode writes
	// a line before the response, and each window ended with a response
	// seen (a watch event) or a wait.
	reqs := e.audit()
	count := func(from, to time.Time) []kubebench.Count {
		return kubebench.CountRequests(reqs, kubeapi.AuditUser, kubebench.Window{From: from, To: to})
	}
	rep.Requests = []kubebench.RequestWindow{
		{Name: fmt.Sprintf("start, %v idle, 0 Services", baselineIdle), Counts: count(daemonStart, waves[0].start)},
	}
	for _, w := range waves {
		rep.Requests = append(rep.Requests,
			kubebench.RequestWindow{Name: w.name + ", until all have IPs", Counts: count(w.start, w.end)},
			kubebench.RequestWindow{Name: fmt.Sprintf("the next %v, idle", *flagIdle), Counts: count(w.end, w.idleEnd)})
	}

	if f, err := os.Open(e.d.logPath); err == nil {
		rep.EventsDue, _ = kubebench.EventsLogged(f)
		f.Close()
	}
	for _, r := range reqs {
		if r.User == kubeapi.AuditUser && r.Kind() == "create events" &&
			(kubebench.Window{From: waves[0].start, To: waves[len(waves)-1].idleEnd}).Contains(r.Received) {
			rep.EventsCreated++
		}
	}

	if *flagHeap != "" {
		e.heapProfile(ctx, kubeconfig, *flagHeap)
	}

	b.ReportMetric(0, "ns/op")
	p1 := rep.Phases[0]
	b.ReportMetric(ms(p1.Latency.P50), "burst-p50-ms")
	b.ReportMetric(ms(p1.Latency.P99), "burst-p99-ms")
	b.ReportMetric(p1.AllIPs.Seconds(), "burst-all-s")
	burstN, _ := kubebench.Total(rep.Requests[1].Counts)
	lease, rest := kubebench.WithoutLease(rep.Requests[2].Counts)
	idleOther, _ := kubebench.Total(rest)
	b.ReportMetric(float64(burstN), "burst-requests")
	b.ReportMetric(float64(lease), "idle-lease-updates")
	b.ReportMetric(float64(idleOther), "idle-other-requests")
	b.ReportMetric(float64(rep.IPConflicts), "ip-conflicts")
	b.ReportMetric(float64(rep.IPChanges), "ip-changes")
	b.ReportMetric(mib(rep.Mem[0].Hostlbd.RSS), "rss-0-MiB")
	top := rep.Mem[memAt[len(memAt)-1]]
	b.ReportMetric(mib(top.Hostlbd.RSS), "rss-max-MiB")
	b.ReportMetric(mib(top.Hostlbd.HWM), "hwm-max-MiB")
	b.ReportMetric(mib(top.APIServer.RSS), "apiserver-rss-max-MiB")
	if len(rep.Phases) > 1 {
		b.ReportMetric(rep.Phases[1].AllIPs.Seconds(), "grow-all-s")
	}

	report.mu.Lock()
	report.rep, report.ok = rep, true
	report.mu.Unlock()
}

// waveRun is one wave of creates and the idle window after it.
type waveRun struct {
	name     string
	from, to int // Services [from, to)
	workers  int
	within   time.Duration // bound on the wave, creates included
	// start: first create sent; end: the wave's last IP seen; idleEnd:
	// end of the idle window after it.
	start, end, idleEnd time.Time
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b uint64) float64       { return float64(b) / (1 << 20) }

type logWriter struct{ b *testing.B }

func (l logWriter) Write(p []byte) (int, error) {
	l.b.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// env is the run's cluster, daemon and watch.
type env struct {
	b         *testing.B
	c         *kubeapi.Cluster
	admin     kubernetes.Interface
	d         *hostlbd
	tr        *tracker
	apiserver int // PIDs
	etcd      int
}

// findControlPlane finds kube-apiserver's and etcd's PIDs by their
// command names.
func (e *env) findControlPlane() {
	for _, pid := range e.c.PIDs() {
		switch kubebench.Comm(pid) {
		case "kube-apiserver":
			e.apiserver = pid
		case "etcd":
			e.etcd = pid
		}
	}
	if e.apiserver == 0 || e.etcd == 0 {
		e.b.Fatalf("kube-apiserver or etcd not found among %v", e.c.PIDs())
	}
}

// mem reads the three processes' memory.
func (e *env) mem(moment string, services int) kubebench.MemRow {
	e.b.Helper()
	row := kubebench.MemRow{Moment: moment, Services: services}
	var err1, err2, err3 error
	row.Hostlbd, err1 = kubebench.ReadMem(e.d.pid())
	row.APIServer, err2 = kubebench.ReadMem(e.apiserver)
	row.Etcd, err3 = kubebench.ReadMem(e.etcd)
	if err := errors.Join(err1, err2, err3); err != nil {
		e.b.Fatal(err)
	}
	if f, err := os.Open(e.d.logPath); err == nil {
		row.HostlbdGC, _, _ = kubebench.LastGC(f)
		f.Close()
	}
	e.b.Logf("memory, %s: hostlbd RSS %s (peak %s, CPU %v), kube-apiserver RSS %s (CPU %v), etcd RSS %s (CPU %v)", moment,
		kubebench.MiB(row.Hostlbd.RSS), kubebench.MiB(row.Hostlbd.HWM), row.Hostlbd.CPU, kubebench.MiB(row.APIServer.RSS),
		row.APIServer.CPU, kubebench.MiB(row.Etcd.RSS), row.Etcd.CPU)
	return row
}

// hold lets d pass (a measurement window, not a synchronisation), and
// fails if the daemon exits meanwhile.
func (e *env) hold(ctx context.Context, d time.Duration) {
	e.b.Helper()
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-t.C:
	case <-e.d.done:
		e.b.Fatalf("hostlbd exited: %v\n%s", e.d.err, e.d.tail(30))
	case <-ctx.Done():
		e.b.Fatalf("run deadline: %v", ctx.Err())
	}
}

// poll calls check every 100 ms until it returns nil, or fails the run
// when within passes, ctx ends or the daemon exits.
func (e *env) poll(ctx context.Context, within time.Duration, what string, check func() error) {
	e.b.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.b.Fatalf("timed out after %v waiting for %s: %v\nhostlbd log:\n%s", within, what, err, e.d.tail(30))
		}
		select {
		case <-tick.C:
		case <-e.d.done:
			e.b.Fatalf("hostlbd exited waiting for %s: %v\n%s", what, e.d.err, e.d.tail(30))
		case <-ctx.Done():
			e.b.Fatalf("run deadline waiting for %s: %v (last: %v)", what, ctx.Err(), err)
		}
	}
}

// waitLease waits until hostlbd holds the IPAM Lease.
func (e *env) waitLease(ctx context.Context) {
	e.poll(ctx, 60*time.Second, "hostlbd to hold the IPAM Lease", func() error {
		l, err := e.admin.CoordinationV1().Leases(manifests.Namespace).Get(ctx, kube.LeaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if h := l.Spec.HolderIdentity; h == nil || *h != nodeName {
			return fmt.Errorf("holder %v", l.Spec.HolderIdentity)
		}
		return nil
	})
}

// setup creates the namespace and the class.
func (e *env) setup(ctx context.Context) {
	e.b.Helper()
	if _, err := e.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: namespace},
	}, metav1.CreateOptions{}); err != nil {
		e.b.Fatal(err)
	}
	class := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kube.Group + "/v1alpha1", "kind": "MetalLoadBalancerClass",
		"metadata": map[string]any{"name": className},
		"spec":     map[string]any{"type": "L2", "addressPool": []any{pool}},
	}}
	if _, err := e.c.Dynamic().Resource(kube.ClassGVR).Create(ctx, class, metav1.CreateOptions{}); err != nil {
		e.b.Fatal(err)
	}
}

// watch follows the namespace's Services from now on, noting when each is
// first seen with an ingress IP. It stops at cleanup.
func (e *env) watch(ctx context.Context) {
	e.b.Helper()
	list, err := e.admin.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		e.b.Fatal(err)
	}
	lw := &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		return e.admin.CoreV1().Services(namespace).Watch(ctx, o)
	}}
	wctx, stop := context.WithCancel(ctx)
	rw, err := watchtools.NewRetryWatcherWithContext(wctx, list.ResourceVersion, lw)
	if err != nil {
		stop()
		e.b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range rw.ResultChan() {
			switch ev.Type {
			case watch.Added, watch.Modified:
				if s, ok := ev.Object.(*corev1.Service); ok {
					ip := ""
					if ing := s.Status.LoadBalancer.Ingress; len(ing) > 0 {
						ip = ing[0].IP
					}
					e.tr.assign(s.Name, ip, time.Now())
				}
			case watch.Error:
				e.b.Logf("Service watch: %v", apierrors.FromObject(ev.Object))
			}
		}
	}()
	e.b.Cleanup(func() {
		stop()
		rw.Stop()
		<-done
	})
}

// serviceName is the name of Service i.
func serviceName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// wave creates Services [from, to) with workers concurrent creates and
// waits until each has an IP; end is when the last IP was seen.
func (e *env) wave(ctx context.Context, name string, from, to, workers int, within time.Duration) (p kubebench.Phase, end time.Time) {
	e.b.Helper()
	start := time.Now()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		retries  atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	next.Store(int64(from))
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= to || wctx.Err() != nil {
					return
				}
				n, err := e.create(wctx, i)
				retries.Add(int64(n))
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		e.b.Fatal(firstErr)
	}
	created := time.Now()
	if n := retries.Load(); n > 0 {
		e.b.Logf("%s: %d creates retried", name, n)
	}
	e.poll(ctx, within-time.Since(start), fmt.Sprintf("Services %d-%d to have IPs", from, to-1), func() error {
		if n := e.tr.assignedIn(from, to); n < to-from {
			return fmt.Errorf("%d of %d have IPs", n, to-from)
		}
		return nil
	})
	lat, last := e.tr.latencies(from, to)
	return kubebench.Phase{
		Name: name, Created: to - from, Total: to, Workers: workers,
		Creates: created.Sub(start), AllIPs: last.Sub(start), Latency: kubebench.Summarise(lat),
	}, last
}

// create creates Service i, retrying what an overloaded apiserver answers
// (429, timeouts) a few times; it returns how often it retried.
func (e *env) create(ctx context.Context, i int) (int, error) {
	f := false
	policy := corev1.IPFamilyPolicySingleStack
	class := className
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: serviceName(i), Namespace: namespace},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass:             &class,
			IPFamilies:                    []corev1.IPFamily{corev1.IPv6Protocol},
			IPFamilyPolicy:                &policy,
			AllocateLoadBalancerNodePorts: &f,
			Selector:                      map[string]string{"app": serviceName(i)},
			Ports:                         []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for attempt := 0; ; attempt++ {
		_, err := e.admin.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
		if err == nil || (attempt > 0 && apierrors.IsAlreadyExists(err)) {
			e.tr.created(i, time.Now())
			return attempt, nil
		}
		retriable := apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) ||
			apierrors.IsTimeout(err) || apierrors.IsServiceUnavailable(err)
		if !retriable || attempt >= 5 {
			return attempt, fmt.Errorf("create Service %s/%s: %w", namespace, svc.Name, err)
		}
		select {
		case <-ctx.Done():
			return attempt, ctx.Err()
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		}
	}
}

// audit reads the apiserver's audit log.
func (e *env) audit() []kubebench.Request {
	e.b.Helper()
	f, err := os.Open(e.c.AuditLogPath())
	if err != nil {
		e.b.Fatal(err)
	}
	defer f.Close()
	reqs, err := kubebench.ParseAudit(f)
	if err != nil {
		e.b.Fatal(err)
	}
	return reqs
}

// heapProfile runs hostlbd's informers in this process (kubebench.
// InformerProfile) and logs how much live heap they hold: where a
// follower's memory goes (the leader adds its passes on top).
func (e *env) heapProfile(ctx context.Context, kubeconfig, path string) {
	e.b.Helper()
	h, err := kubebench.InformerProfile(ctx, kubeconfig, nil, path)
	if err != nil {
		e.b.Fatal(err)
	}
	e.b.Logf("hostlbd's informers in-process: live heap +%s after GC (%d Services cached); heap profile %s",
		kubebench.MiB(h.Live), h.Services, path)
}
