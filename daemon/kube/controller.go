package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/record"

	"github.com/hostlb/hostlb/daemon/ipam"
	"github.com/hostlb/hostlb/daemon/reconcile"
)

// The Events hostlb emits on Services (SPEC §5).
const (
	EventIPAllocated      = "IPAllocated"
	EventAllocationFailed = "AllocationFailed"
	EventIPReleased       = "IPReleased"
)

// IPAMOptions configure the IPAM controller.
type IPAMOptions struct {
	Log    *slog.Logger
	Client kubernetes.Interface
	Source *Source
	// Identity is this node's name: the Lease holder and the Events' host.
	Identity       string
	LeaseNamespace string
	// BGPClass is [kubernetes] load_balancer_class (see chooseClass).
	BGPClass string
	// Leader election timing; defaults 15 s, 10 s, 2 s (client-go's).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Writers bounds the concurrent status writes of one pass; default 8.
	Writers int
	// Recorder emits Events; default: to the API server through Client.
	Recorder record.EventRecorder
	// OnLeader is told when this node starts or stops being the leader.
	OnLeader func(bool)
}

// IPAM hands out Service IPs. One daemon at a time does it, elected with
// the Lease hostlb-ipam (client-go leader election over a watched Lease).
// The allocation state is the Services' status: a new leader waits until
// its Service cache holds everything written before it took the Lease,
// then rebuilds the whole allocation from it on every pass (ipam.Allocate)
// and writes only the statuses that differ. So no IP is handed out twice
// across leader changes, and nothing but the Services holds state.
type IPAM struct {
	opts  IPAMOptions
	log   *slog.Logger
	lease *watchedLease
	rec   record.EventRecorder
	bcast record.EventBroadcaster // nil with an injected Recorder

	mu     sync.Mutex      // guards the fields below
	loop   *reconcile.Loop // the leading term's loop; nil while following
	leader bool
	// told remembers, per object and kind of Event, the last message
	// emitted, so a pass repeats no Event: Events say what changed.
	told map[string]string
	// usage, failing and allocFailures are for Status (watches.go): the
	// pools' usage and the Services with failures as of the last pass
	// of this node's term (nil and 0 while following), and the
	// AllocationFailed Events this node emitted.
	usage         []ipam.PoolUsage
	failing       int
	allocFailures uint64
}

// NewIPAM returns an inert controller; Run starts it.
func NewIPAM(opts IPAMOptions) *IPAM {
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = 15 * time.Second
	}
	if opts.RenewDeadline <= 0 {
		opts.RenewDeadline = 10 * time.Second
	}
	if opts.RetryPeriod <= 0 {
		opts.RetryPeriod = 2 * time.Second
	}
	if opts.Writers <= 0 {
		opts.Writers = 8
	}
	if opts.OnLeader == nil {
		opts.OnLeader = func(bool) {}
	}
	c := &IPAM{
		opts: opts,
		log:  opts.Log,
		lease: newWatchedLease(opts.Client, opts.LeaseNamespace, opts.Identity, func(err error) {
			opts.Source.watchError(KindLease, err)
		}),
		rec:  opts.Recorder,
		told: map[string]string{},
	}
	if c.rec == nil {
		c.bcast = record.NewBroadcaster()
		c.rec = c.bcast.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "hostlb", Host: opts.Identity})
	}
	return c
}

// Trigger asks the leader for a pass; followers ignore it. It never blocks.
func (c *IPAM) Trigger(kind Kind) {
	switch kind {
	case KindEndpointSlice, KindNode:
		return // IPAM reads neither (the BGP objects: bgpProblems)
	}
	c.mu.Lock()
	l := c.loop
	c.mu.Unlock()
	if l != nil {
		l.Trigger(string(kind))
	}
}

// Leader reports whether this node is the IPAM leader now.
func (c *IPAM) Leader() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// Run campaigns for the Lease until ctx is done, and runs the IPAM passes
// while it holds it. On stop a leader releases the Lease, so the next
// leader need not wait for it to expire.
func (c *IPAM) Run(ctx context.Context) error {
	if c.bcast != nil {
		sink := newEventSink(&typedcorev1.EventSinkImpl{Interface: c.opts.Client.CoreV1().Events("")}, c.log, eventQueue)
		sctx, stopSink := context.WithCancel(context.WithoutCancel(ctx))
		sinkDone := make(chan struct{})
		go func() {
			defer close(sinkDone)
			sink.run(sctx, eventWriters)
		}()
		defer func() {
			stopSink()
			<-sinkDone
		}()
		c.bcast.StartRecordingToSink(sink)
		defer c.bcast.Shutdown()
	}
	leaseCtx, stopLease := context.WithCancel(context.Background())
	leaseDone := make(chan struct{})
	go func() {
		defer close(leaseDone)
		c.lease.run(leaseCtx)
	}()
	defer func() {
		stopLease()
		<-leaseDone
	}()
	// Campaign only with complete caches: a candidate that cannot see the
	// Services cannot lead, and client-go would log every failed retry.
	select {
	case <-c.opts.Source.Synced():
	case <-ctx.Done():
		return nil
	}
	for !c.lease.synced() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            c.lease,
			Name:            LeaseName,
			LeaseDuration:   c.opts.LeaseDuration,
			RenewDeadline:   c.opts.RenewDeadline,
			RetryPeriod:     c.opts.RetryPeriod,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: c.lead,
				OnStoppedLeading: func() {},
				OnNewLeader: func(id string) {
					c.log.Info("IPAM leader", "leader", id, "self", id == c.opts.Identity)
				},
			},
		})
		if err != nil {
			return fmt.Errorf("IPAM leader election: %w", err)
		}
		le.Run(ctx) // returns when leadership is lost or ctx is done
	}
	return nil
}

// lead runs one term as leader, until ctx is cancelled (leadership lost
// or stop). client-go cancels ctx once a renewal has failed for
// RenewDeadline, before the Lease can expire; every write's deadline is
// also bounded by the Lease's validity (writeCtx), so no write of this
// term can land after another node may have taken over.
func (c *IPAM) lead(ctx context.Context) {
	c.log.Info("IPAM: this node is the leader; rebuilding the allocation from every Service's status")
	c.setLeader(true)
	defer c.setLeader(false)
	select {
	case <-c.opts.Source.Synced():
	case <-ctx.Done():
		return
	}
	if err := c.catchUp(ctx); err != nil {
		if ctx.Err() == nil {
			c.log.Error("IPAM: cannot confirm the Service cache is current; giving up the lease", "err", err)
		}
		return
	}
	loop := reconcile.New(c.log.With("component", "ipam"), c.pass)
	loop.MaxBackoff = 5 * time.Second
	c.mu.Lock()
	c.loop = loop
	clear(c.told)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.loop = nil
		c.mu.Unlock()
	}()
	loop.Trigger("leader")
	_ = loop.Run(ctx)
}

func (c *IPAM) setLeader(v bool) {
	c.mu.Lock()
	c.leader = v
	if !v {
		c.usage, c.failing = nil, 0
	}
	c.mu.Unlock()
	c.opts.OnLeader(v)
	if !v {
		c.log.Info("IPAM: no longer the leader")
	}
}

// catchUp makes this term see every write made before it took the Lease:
// one quorum LIST of the Services (paged) becomes the cache's floor
// (Source.SetFloor), so a Service whose latest status the watch has not
// delivered yet is seen as listed. Without this, a new leader could hand out
// an IP the previous one wrote a moment before its cache saw it. It costs
// one LIST per change of leader, none at rest.
func (c *IPAM) catchUp(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var all []corev1.Service
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := c.opts.Client.CoreV1().Services("").List(lctx, opts)
		if err != nil {
			return fmt.Errorf("list Services: %w", err)
		}
		all = append(all, list.Items...)
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	c.opts.Source.SetFloor(all)
	c.log.Info("IPAM: Services listed", "services", len(all), "watch_behind", c.opts.Source.Behind())
	return nil
}

// writeCtx bounds a write by the Lease: it must be done before another
// node could take the Lease (the last renewal plus the lease duration,
// less a margin for clock rate and the request's own flight).
func (c *IPAM) writeCtx(ctx context.Context) (context.Context, context.CancelFunc, error) {
	until := c.lease.heldUntil(c.opts.LeaseDuration)
	margin := c.opts.LeaseDuration - c.opts.RenewDeadline
	if until.IsZero() || time.Until(until) <= margin {
		return nil, nil, errors.New("the IPAM lease is not held firmly enough to write")
	}
	wctx, cancel := context.WithDeadline(ctx, until.Add(-margin))
	return wctx, cancel, nil
}

// svcWork is one Service's outcome of a pass.
type svcWork struct {
	svc    *corev1.Service
	choice Choice
	res    *ipam.Result
	notes  []note
}

// pass rebuilds the allocation of every Service from the cache and writes
// the statuses that differ.
func (c *IPAM) pass(ctx context.Context) error {
	snap := c.opts.Source.Snapshot()
	for _, err := range snap.Problems {
		c.log.Warn("IPAM: object ignored", "err", err)
	}
	pools := c.pools(snap)
	cs := newClasses(snap.Classes)
	c.reportDefaults(cs)
	c.reportBGP(snap)

	var (
		work []svcWork
		ins  []ipam.Service
	)
	var bgpPools []string
	for _, p := range snap.Pools {
		bgpPools = append(bgpPools, poolName(p.Name))
	}
	slices.Sort(bgpPools)
	for _, svc := range snap.Services {
		ch := chooseClass(svc, cs, c.opts.BGPClass, len(bgpPools) > 0)
		w := svcWork{svc: svc, choice: ch}
		switch {
		case ch.Release:
			work = append(work, w)
			continue
		case ch.Path == PathNone:
			continue
		}
		var names []string
		explicit := false
		if ch.Path == PathL2 {
			names = []string{classPoolName(ch.Class)}
		} else if p := svc.Annotations[AnnotationPool]; p != "" {
			// A pool that does not exist is reported by IPAM itself.
			names, explicit = []string{poolName(p)}, true
		} else {
			names = bgpPools
		}
		in, notes := ipamService(svc, names, explicit)
		w.notes = append(w.notes, notes...)
		work = append(work, w)
		ins = append(ins, in)
	}
	results, usage := ipam.AllocateUsage(pools, ins)
	c.noteUsage(usage, results)
	byKey := make(map[string]*ipam.Result, len(results))
	for i := range results {
		byKey[results[i].Key] = &results[i]
	}
	for i := range work {
		work[i].res = byKey[work[i].svc.Namespace+"/"+work[i].svc.Name]
	}
	return c.write(ctx, work)
}

// pools builds IPAM's pools: one per class (from addressPool) and one per
// MetalLoadBalancerPool. A bad entry is reported on its object and left
// out; the rest of the pool serves.
func (c *IPAM) pools(snap Snapshot) []ipam.Pool {
	var out []ipam.Pool
	type owner struct {
		kind, name string
		uid        types.UID
	}
	owners := map[string]owner{}
	add := func(name string, o owner, addrs []string, auto, avoid bool) {
		var good []string
		for _, a := range addrs {
			if _, err := ipam.ParsePool(name, []string{a}, auto, avoid); err != nil {
				c.event(refOf(o.kind, o.name, o.uid), corev1.EventTypeWarning, "InvalidAddressPool", err.Error())
				continue
			}
			good = append(good, a)
		}
		p, err := ipam.ParsePool(name, good, auto, avoid)
		if err != nil { // cannot happen: every entry parsed alone
			c.log.Error("IPAM: pool", "pool", name, "err", err)
			return
		}
		out = append(out, p)
		owners[name] = o
	}
	for _, cl := range snap.Classes {
		add(classPoolName(cl.Name), owner{"MetalLoadBalancerClass", cl.Name, cl.UID}, cl.Spec.AddressPool, true, false)
	}
	for _, p := range snap.Pools {
		auto := p.Spec.AutoAssign == nil || *p.Spec.AutoAssign
		add(poolName(p.Name), owner{"MetalLoadBalancerPool", p.Name, p.UID}, p.Spec.Addresses, auto, p.Spec.AvoidBuggyIPs)
	}
	slices.SortFunc(out, func(a, b ipam.Pool) int { return strings.Compare(a.Name, b.Name) })
	for _, ov := range ipam.Overlaps(out) {
		msg := fmt.Sprintf("addresses %s are in both %s and %s; each address is still given to one Service only",
			ov.Range, ov.A, ov.B)
		for _, n := range []string{ov.A, ov.B} {
			o := owners[n]
			c.event(refOf(o.kind, o.name, o.uid), corev1.EventTypeWarning, "OverlappingPools", msg)
		}
	}
	return out
}

// reportBGP reports the problems of the BGP objects (bgpProblems) as
// Warning Events on them; the rest of the BGP configuration is used.
// Several problems of one reason on one object are one Event.
func (c *IPAM) reportBGP(snap Snapshot) {
	type key struct {
		kind, name, reason string
		uid                types.UID
	}
	var order []key
	msgs := map[key][]string{}
	for _, p := range bgpProblems(snap) {
		k := key{p.kind, p.name, p.reason, p.uid}
		if _, ok := msgs[k]; !ok {
			order = append(order, k)
		}
		msgs[k] = append(msgs[k], p.msg)
	}
	for _, k := range order {
		c.event(refOf(k.kind, k.name, k.uid), corev1.EventTypeWarning, k.reason, strings.Join(msgs[k], "; "))
	}
}

// reportDefaults reports several default classes on each of them.
func (c *IPAM) reportDefaults(cs classes) {
	if len(cs.defaults) < 2 {
		return
	}
	msg := fmt.Sprintf("%d MetalLoadBalancerClasses have isDefault (%s); %q is used as the default (lowest name)",
		len(cs.defaults), strings.Join(cs.defaults, ", "), cs.def)
	for _, n := range cs.defaults {
		cl := cs.byName[n]
		c.event(refOf("MetalLoadBalancerClass", n, cl.UID), corev1.EventTypeWarning, "MultipleDefaultClasses", msg)
	}
}

func refOf(kind, name string, uid types.UID) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: Group + "/v1alpha1", Kind: kind, Name: name, UID: uid}
}

// event emits an Event unless the same one was the last of its reason on
// that object.
func (c *IPAM) event(ref *corev1.ObjectReference, typ, reason, msg string) {
	key := string(ref.UID) + "/" + ref.Kind + "/" + ref.Namespace + "/" + ref.Name + "/" + reason
	c.mu.Lock()
	same := c.told[key] == msg
	c.told[key] = msg
	if !same && reason == EventAllocationFailed {
		c.allocFailures++
	}
	c.mu.Unlock()
	if same {
		return
	}
	if typ == corev1.EventTypeWarning {
		c.log.Warn("IPAM: "+reason, "object", ref.Kind+"/"+joinNS(ref.Namespace, ref.Name), "msg", msg)
	}
	c.rec.Event(ref, typ, reason, msg)
}

func joinNS(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// write applies every Service's outcome with at most Writers requests in
// flight, and returns the errors joined (the loop retries the pass).
//
// Order matters when an IP changes hands within one pass (a Service lowered
// its count, or stopped being served, and another takes the address): the
// write that gives it up must be stored before the one that takes it, or
// for a moment two Services would hold one IP. So writes go in rounds: a
// write that takes an IP another Service holds now (and gives up in this
// pass) waits for that Service's write, and is dropped if that one failed
// (the next pass decides again).
func (c *IPAM) write(ctx context.Context, work []svcWork) error {
	now := metav1.Now()
	type job struct {
		w    svcWork
		want corev1.ServiceStatus
		deps []string
	}
	keyOf := func(s *corev1.Service) string { return s.Namespace + "/" + s.Name }
	holders := map[netip.Addr][]string{}
	wanted := map[string]map[netip.Addr]bool{}
	var jobs []*job
	for _, w := range work {
		ref := &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: w.svc.Namespace,
			Name: w.svc.Name, UID: w.svc.UID, ResourceVersion: w.svc.ResourceVersion}
		for _, n := range w.notes {
			c.event(ref, corev1.EventTypeWarning, n.Reason, n.Message)
		}
		want := wantStatus(w.svc, w.choice, w.res, now)
		if w.res != nil {
			c.reportFailures(ref, w.res)
		}
		key := keyOf(w.svc)
		set := map[netip.Addr]bool{}
		for _, a := range ingressAddrs(want) {
			set[a] = true
		}
		wanted[key] = set
		for _, a := range ingressAddrs(w.svc.Status) {
			holders[a] = append(holders[a], key)
		}
		if !sameStatus(w.svc.Status, want) {
			jobs = append(jobs, &job{w: w, want: want})
		}
	}
	for _, j := range jobs {
		key := keyOf(j.w.svc)
		held := ingressAddrs(j.w.svc.Status)
		for _, a := range ingressAddrs(j.want) {
			if slices.Contains(held, a) {
				continue
			}
			for _, h := range holders[a] {
				if h != key && !wanted[h][a] && !slices.Contains(j.deps, h) {
					j.deps = append(j.deps, h)
				}
			}
		}
	}

	var (
		mu      sync.Mutex
		errs    []error
		written = map[string]bool{}
		sem     = make(chan struct{}, c.opts.Writers)
	)
	for len(jobs) > 0 {
		var round, later []*job
		for _, j := range jobs {
			ready := true
			for _, d := range j.deps {
				ready = ready && written[d]
			}
			if ready {
				round = append(round, j)
			} else {
				later = append(later, j)
			}
		}
		if len(round) == 0 {
			// What is left waits on writes that failed or were skipped.
			c.Trigger(KindService)
			break
		}
		var wg sync.WaitGroup
		for _, j := range round {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				ok, err := c.update(ctx, j.w, j.want)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					written[keyOf(j.w.svc)] = true
				}
			}()
		}
		wg.Wait()
		jobs = later
	}
	if len(errs) > 3 {
		return fmt.Errorf("%d status writes failed, first: %w", len(errs), errs[0])
	}
	return errors.Join(errs...)
}

func (c *IPAM) reportFailures(ref *corev1.ObjectReference, res *ipam.Result) {
	var msgs []string
	for _, f := range res.Failures {
		m := f.Reason
		if f.Slot >= 0 {
			m = fmt.Sprintf("IP #%d (%s): %s", f.Slot, f.Family, f.Reason)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		c.mu.Lock()
		delete(c.told, string(ref.UID)+"/Service/"+ref.Namespace+"/"+ref.Name+"/"+EventAllocationFailed)
		c.mu.Unlock()
		return
	}
	c.event(ref, corev1.EventTypeWarning, EventAllocationFailed, strings.Join(msgs, "; "))
}

// update writes one Service's status with optimistic concurrency, from the
// version the pass allocated for. A conflict means the Service changed
// since (its change has triggered another pass, which decides again from
// the new version): nothing is written from a stale decision. A successful
// write raises the cache's floor, so the next pass sees it even before the
// watch delivers it.
func (c *IPAM) update(ctx context.Context, w svcWork, want corev1.ServiceStatus) (written bool, _ error) {
	wctx, cancel, err := c.writeCtx(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	next := w.svc.DeepCopy()
	next.Status = want
	got, err := c.opts.Client.CoreV1().Services(w.svc.Namespace).UpdateStatus(wctx, next, metav1.UpdateOptions{})
	switch {
	case apierrors.IsConflict(err):
		c.log.Debug("IPAM: Service changed while its status was written; the next pass decides again",
			"service", w.svc.Namespace+"/"+w.svc.Name)
		c.Trigger(KindService)
		return false, nil
	case apierrors.IsNotFound(err):
		// Deleted meanwhile: it holds nothing any more, so whoever waits
		// for its IPs may take them.
		return true, nil
	case err != nil:
		return false, fmt.Errorf("update status of Service %s/%s: %w", w.svc.Namespace, w.svc.Name, err)
	}
	c.opts.Source.Raise(got)
	c.reportChange(w, want)
	return true, nil
}

// reportChange emits IPAllocated and IPReleased for what a write changed.
func (c *IPAM) reportChange(w svcWork, want corev1.ServiceStatus) {
	ref := &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: w.svc.Namespace,
		Name: w.svc.Name, UID: w.svc.UID}
	old, next := ingressAddrs(w.svc.Status), ingressAddrs(want)
	var added, removed []string
	for _, a := range next {
		if !slices.Contains(old, a) {
			added = append(added, a.String())
		}
	}
	for _, a := range old {
		if !slices.Contains(next, a) {
			removed = append(removed, a.String())
		}
	}
	svc := w.svc.Namespace + "/" + w.svc.Name
	if len(added) > 0 {
		from := "MetalLoadBalancerClass " + w.choice.Class
		if w.choice.Path == PathBGP {
			from = "the BGP pools"
		}
		msg := fmt.Sprintf("Assigned IP %s from %s", strings.Join(added, ", "), from)
		c.log.Info("IPAM: IP allocated", "service", svc, "ips", strings.Join(added, ","))
		c.rec.Event(ref, corev1.EventTypeNormal, EventIPAllocated, msg)
	}
	if len(removed) > 0 {
		msg := "Released IP " + strings.Join(removed, ", ")
		if w.choice.Why != "" {
			msg += ": " + w.choice.Why
		}
		c.log.Info("IPAM: IP released", "service", svc, "ips", strings.Join(removed, ","), "why", w.choice.Why)
		c.rec.Event(ref, corev1.EventTypeNormal, EventIPReleased, msg)
	}
}
