package kube

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// SecretLabel marks the Secrets holding BGP passwords: the only Secrets
// hostlb reads (SPEC §5).
const SecretLabel = "network.deckhouse.io/metallb-bgp-password"

// Kind names what changed, for the subscribers of a Source.
type Kind string

// The kinds a Source reports.
const (
	KindService       Kind = "Service"
	KindEndpointSlice Kind = "EndpointSlice"
	KindNode          Kind = "Node"
	KindClass         Kind = "MetalLoadBalancerClass"
	KindPool          Kind = "MetalLoadBalancerPool"
	KindBGPPeer       Kind = "MetalLoadBalancerBGPPeer"
	KindConfiguration Kind = "MetalLoadBalancerConfiguration"
	KindSecret        Kind = "Secret"
	KindLease         Kind = "Lease"
)

// SourceOptions configure a Source.
type SourceOptions struct {
	Log     *slog.Logger
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// OnChange is called (from informer goroutines; it must not block)
	// after any watched object changed, and once when every cache has
	// synced (kind "").
	OnChange func(kind Kind)
	// Resync is the informers' resync period; 0 (the default) never
	// resyncs: the daemon makes no API requests at rest beyond its
	// watches.
	Resync time.Duration
}

// Source follows the API objects hostlb reads through shared informers:
// watches, never polling. It never blocks its owner on the API server:
// informers retry with backoff while it is unreachable, and Synced closes
// only once every cache holds a full list.
type Source struct {
	opts    SourceOptions
	log     *slog.Logger
	factory informers.SharedInformerFactory
	secrets informers.SharedInformerFactory
	dyn     dynamicinformer.DynamicSharedInformerFactory
	synced  chan struct{}

	services  cache.SharedIndexInformer
	slices    cache.SharedIndexInformer
	nodes     cache.SharedIndexInformer
	secretInf cache.SharedIndexInformer
	custom    map[Kind]cache.SharedIndexInformer

	mu      sync.Mutex           // guards the fields below
	watchEr map[string]time.Time // last time each distinct watch error was logged
	now     func() time.Time     // the clock of watchError's rate limit
	// floor holds Services from a quorum LIST (SetFloor) that the watch
	// has not delivered yet: until it has, Snapshot shows the listed copy.
	floor map[string]*corev1.Service
	// watches are each kind's counters for Watches (watches.go).
	watches map[Kind]*watchStats
}

// NewSource returns an inert Source; Run starts its informers.
func NewSource(opts SourceOptions) *Source {
	if opts.OnChange == nil {
		opts.OnChange = func(Kind) {}
	}
	s := &Source{
		opts:    opts,
		log:     opts.Log,
		factory: informers.NewSharedInformerFactory(opts.Client, opts.Resync),
		secrets: informers.NewSharedInformerFactoryWithOptions(opts.Client, opts.Resync,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = SecretLabel + "=true" })),
		dyn:     dynamicinformer.NewDynamicSharedInformerFactory(opts.Dynamic, opts.Resync),
		synced:  make(chan struct{}),
		custom:  map[Kind]cache.SharedIndexInformer{},
		watchEr: map[string]time.Time{},
		now:     time.Now,
	}
	s.services = s.factory.Core().V1().Services().Informer()
	s.slices = s.factory.Discovery().V1().EndpointSlices().Informer()
	s.nodes = s.factory.Core().V1().Nodes().Informer()
	s.secretInf = s.secrets.Core().V1().Secrets().Informer()
	for k, gvr := range map[Kind]schema.GroupVersionResource{
		KindClass: ClassGVR, KindPool: PoolGVR, KindBGPPeer: BGPPeerGVR, KindConfiguration: ConfigurationGVR,
	} {
		s.custom[k] = s.dyn.ForResource(gvr).Informer()
	}
	for _, inf := range s.informers() {
		_ = inf.SetTransform(slim)
	}
	s.watch(KindService, s.services)
	_, _ = s.services.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.caughtUp,
		UpdateFunc: func(_, obj any) { s.caughtUp(obj) },
		DeleteFunc: s.caughtUp,
	})
	s.watch(KindEndpointSlice, s.slices)
	s.watch(KindNode, s.nodes)
	s.watch(KindSecret, s.secretInf)
	for k, inf := range s.custom {
		s.watch(k, inf)
	}
	return s
}

func (s *Source) watch(kind Kind, inf cache.SharedIndexInformer) {
	notify := func(any) {
		s.noteEvent(kind)
		s.opts.OnChange(kind)
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, obj any) { notify(obj) },
		DeleteFunc: notify,
	})
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		s.watchError(kind, err)
	})
}

// slim drops from a cached object what hostlb never reads and what costs
// the most memory: managedFields (half of a Service's size in the cache;
// an update sent without them keeps the server's), a Service's cluster IPs
// and the port fields IPAM does not compare (a status update takes the
// spec from the server's copy, never from the one sent; the metadata it
// does take, so a Service keeps all of its metadata), a Node's list of
// container images, and all of an EndpointSlice (never written) but its
// name, its Service's label and its endpoints' nodes, conditions and
// first address. With 10,000 Services this is the difference between
// meeting the daemon's memory budget and not.
func slim(obj any) (any, error) {
	if m, ok := obj.(interface {
		SetManagedFields([]metav1.ManagedFieldsEntry)
	}); ok {
		m.SetManagedFields(nil)
	}
	switch o := obj.(type) {
	case *corev1.Service:
		o.Spec.ClusterIP, o.Spec.ClusterIPs, o.Spec.SessionAffinityConfig = "", nil, nil
		for i := range o.Spec.Ports {
			p := &o.Spec.Ports[i]
			p.Name, p.AppProtocol, p.TargetPort, p.NodePort = "", nil, intstr.IntOrString{}, 0
		}
	case *corev1.Node:
		o.Status.Images = nil
	case *discoveryv1.EndpointSlice:
		// Placement reads only which node has an endpoint in which
		// condition: one Service, one slice each, at least.
		svc := o.Labels[discoveryv1.LabelServiceName]
		o.ObjectMeta = metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace,
			ResourceVersion: o.ResourceVersion, DeletionTimestamp: o.DeletionTimestamp}
		if svc != "" {
			o.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
		}
		o.Ports = nil
		for i := range o.Endpoints {
			e := &o.Endpoints[i]
			if len(e.Addresses) > 1 {
				e.Addresses = e.Addresses[:1]
			}
			e.TargetRef, e.Hints, e.Hostname, e.Zone, e.DeprecatedTopology = nil, nil, nil, nil, nil
		}
	}
	return obj, nil
}

// watchError logs why a list or watch failed, naming what to fix, at most
// once a minute per distinct error: a dead API server must not flood the
// journal, and the informer retries with backoff on its own.
func (s *Source) watchError(kind Kind, err error) {
	var msg, hint string
	switch {
	case apierrors.IsForbidden(err):
		msg = "permission denied"
		// Right after an API server starts, its RBAC cache may still be
		// empty: a refusal that does not last is not a missing rule.
		hint = "if this lasts, hostlb's ClusterRole lacks a verb on " + string(kind) +
			": apply /usr/share/hostlb/manifests/rbac.yaml"
	case apierrors.IsNotFound(err) || isNoMatch(err):
		msg = "resource not served"
		hint = "the " + string(kind) + " CRD is missing: apply /usr/share/hostlb/manifests/crds/"
	case apierrors.IsUnauthorized(err):
		msg = "unauthorized"
		hint = "the kubeconfig's token is invalid or expired: run `hostlbctl kubeconfig`"
	case errors.Is(err, context.Canceled):
		return
	default:
		msg = "API server unreachable"
	}
	key := string(kind) + "\x00" + err.Error()
	now := s.now()
	s.mu.Lock()
	s.watchLocked(kind).restarts++
	last, seen := s.watchEr[key]
	if seen && now.Sub(last) < time.Minute {
		s.mu.Unlock()
		return
	}
	if len(s.watchEr) >= 256 {
		clear(s.watchEr) // bounded: errors that embed changing text cannot grow it
	}
	s.watchEr[key] = now
	s.mu.Unlock()
	attrs := []any{"kind", kind, "err", err}
	if hint != "" {
		attrs = append(attrs, "fix", hint)
	}
	s.log.Error("watch failed, retrying: "+msg, attrs...)
}

func isNoMatch(err error) bool {
	return strings.Contains(err.Error(), "could not find the requested resource")
}

// Run starts the informers and follows the API until ctx is done. It
// closes Synced once every cache is complete, and logs every 10 s which
// caches are still waiting.
func (s *Source) Run(ctx context.Context) error {
	s.factory.Start(ctx.Done())
	s.secrets.Start(ctx.Done())
	s.dyn.Start(ctx.Done())
	defer func() {
		s.factory.Shutdown()
		s.secrets.Shutdown()
		s.dyn.Shutdown()
	}()

	start := time.Now()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		waiting := s.unsynced()
		if len(waiting) == 0 {
			break
		}
		// A cache becoming complete has no event of its own: poll the
		// informers' local HasSynced (no API request) until all are.
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.log.Warn("waiting for the Kubernetes API: caches not synced yet",
				"waiting", strings.Join(waiting, ","), "since", time.Since(start).Round(time.Second))
		case <-time.After(50 * time.Millisecond):
		}
	}
	close(s.synced)
	s.log.Info("Kubernetes caches synced", "took", time.Since(start).Round(time.Millisecond))
	s.opts.OnChange("")
	<-ctx.Done()
	return nil
}

func (s *Source) unsynced() []string {
	var out []string
	for k, inf := range s.informers() {
		if !inf.HasSynced() {
			out = append(out, string(k))
		}
	}
	slices.Sort(out)
	return out
}

func (s *Source) informers() map[Kind]cache.SharedIndexInformer {
	m := map[Kind]cache.SharedIndexInformer{
		KindService: s.services, KindEndpointSlice: s.slices, KindNode: s.nodes, KindSecret: s.secretInf,
	}
	for k, inf := range s.custom {
		m[k] = inf
	}
	return m
}

// Synced is closed once every cache holds a full list.
func (s *Source) Synced() <-chan struct{} { return s.synced }

// ServiceInformer is the Services' informer (the IPAM leader waits for it
// to catch up with a fresh list before its first write).
func (s *Source) ServiceInformer() cache.SharedIndexInformer { return s.services }

// SetFloor makes Snapshot show at least the given Services (a quorum LIST)
// until the watch has delivered each of them, or something newer: a new
// IPAM leader must see every status the previous one wrote, even those its
// watch has not delivered yet. Services deleted before the list are not in
// it; those deleted after it leave the floor with their delete event.
func (s *Source) SetFloor(list []corev1.Service) {
	floor := make(map[string]*corev1.Service, len(list))
	for i := range list {
		svc := &list[i]
		key := svc.Namespace + "/" + svc.Name
		if o, ok, _ := s.services.GetStore().GetByKey(key); ok {
			if cur, ok := o.(*corev1.Service); ok && !rvLess(cur.ResourceVersion, svc.ResourceVersion) {
				continue // the cache is already there
			}
		}
		floor[key] = svc
	}
	s.mu.Lock()
	s.floor = floor
	s.mu.Unlock()
}

// Raise puts a Service the IPAM leader just wrote into the floor: the next
// pass must see its own write even if the watch has not delivered it yet,
// or it would take the IPs it just wrote for free and hand them out again.
func (s *Source) Raise(svc *corev1.Service) {
	key := svc.Namespace + "/" + svc.Name
	if o, ok, _ := s.services.GetStore().GetByKey(key); ok {
		if cur, ok := o.(*corev1.Service); ok && !rvLess(cur.ResourceVersion, svc.ResourceVersion) {
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.floor == nil {
		s.floor = map[string]*corev1.Service{}
	}
	if f, ok := s.floor[key]; ok && !rvLess(f.ResourceVersion, svc.ResourceVersion) {
		return
	}
	s.floor[key] = svc
}

// caughtUp drops a Service from the floor once the watch delivered its
// listed version or a newer one (or its deletion).
func (s *Source) caughtUp(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	key := svc.Namespace + "/" + svc.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.floor[key]; ok && !rvLess(svc.ResourceVersion, f.ResourceVersion) {
		delete(s.floor, key)
	}
}

// Behind is how many listed Services the watch has not delivered yet.
func (s *Source) Behind() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.floor)
}

// Nodes returns the cached Nodes (read-only). It makes no API request.
func (s *Source) Nodes() []*corev1.Node {
	var out []*corev1.Node
	for _, o := range s.nodes.GetStore().List() {
		if n, ok := o.(*corev1.Node); ok {
			out = append(out, n)
		}
	}
	return out
}

// Snapshot is the API objects as one pass sees them. The objects belong to
// the informers' caches: read-only.
type Snapshot struct {
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Nodes          []*corev1.Node
	Classes        []*MetalLoadBalancerClass
	Pools          []*MetalLoadBalancerPool
	BGPPeers       []*MetalLoadBalancerBGPPeer
	Configurations []*MetalLoadBalancerConfiguration
	// Secrets are those labelled SecretLabel=true (the informer lists no
	// other).
	Secrets []*corev1.Secret
	// Problems are objects that could not be decoded.
	Problems []error
}

// Snapshot returns the cached objects. It makes no API request.
func (s *Source) Snapshot() Snapshot {
	var snap Snapshot
	s.mu.Lock()
	floor := make(map[string]*corev1.Service, len(s.floor))
	for k, v := range s.floor {
		floor[k] = v
	}
	s.mu.Unlock()
	for _, o := range s.services.GetStore().List() {
		if svc, ok := o.(*corev1.Service); ok {
			key := svc.Namespace + "/" + svc.Name
			if f, ok := floor[key]; ok {
				delete(floor, key)
				if rvLess(svc.ResourceVersion, f.ResourceVersion) {
					svc = f
				}
			}
			snap.Services = append(snap.Services, svc)
		}
	}
	for _, svc := range floor {
		snap.Services = append(snap.Services, svc)
	}
	for _, o := range s.slices.GetStore().List() {
		if es, ok := o.(*discoveryv1.EndpointSlice); ok {
			snap.EndpointSlices = append(snap.EndpointSlices, es)
		}
	}
	snap.Nodes = s.Nodes()
	for _, o := range s.custom[KindClass].GetStore().List() {
		c := new(MetalLoadBalancerClass)
		if err := fromUnstructured(o, c); err != nil {
			snap.Problems = append(snap.Problems, err)
			continue
		}
		snap.Classes = append(snap.Classes, c)
	}
	for _, o := range s.custom[KindPool].GetStore().List() {
		p := new(MetalLoadBalancerPool)
		if err := fromUnstructured(o, p); err != nil {
			snap.Problems = append(snap.Problems, err)
			continue
		}
		snap.Pools = append(snap.Pools, p)
	}
	for _, o := range s.custom[KindBGPPeer].GetStore().List() {
		p := new(MetalLoadBalancerBGPPeer)
		if err := fromUnstructured(o, p); err != nil {
			snap.Problems = append(snap.Problems, err)
			continue
		}
		snap.BGPPeers = append(snap.BGPPeers, p)
	}
	for _, o := range s.custom[KindConfiguration].GetStore().List() {
		c := new(MetalLoadBalancerConfiguration)
		if err := fromUnstructured(o, c); err != nil {
			snap.Problems = append(snap.Problems, err)
			continue
		}
		snap.Configurations = append(snap.Configurations, c)
	}
	for _, o := range s.secretInf.GetStore().List() {
		if sec, ok := o.(*corev1.Secret); ok && sec.Labels[SecretLabel] == "true" {
			snap.Secrets = append(snap.Secrets, sec)
		}
	}
	return snap
}

// Selects reports whether a class's nodeSelector (exact match of every
// pair; empty selects all) matches a node's labels.
func Selects(selector map[string]string, nodeLabels map[string]string) bool {
	return labels.SelectorFromSet(selector).Matches(labels.Set(nodeLabels))
}
