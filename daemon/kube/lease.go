package kube

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	rl "k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseName is the IPAM leader's Lease.
const LeaseName = "hostlb-ipam"

// watchedLease is a resourcelock.Interface for client-go's leader election
// that reads the Lease from a watch instead of a GET per retry: client-go's
// LeaseLock makes every follower GET the Lease every RetryPeriod, and at
// rest hostlb makes no API requests beyond its watches and the leader's
// renewals (issue 7). The algorithm is client-go's unchanged: a follower
// notes the local time whenever the record changes (now: whenever the watch
// delivers a new one) and tries to take the Lease once it has not changed
// for LeaseDuration; Create and Update go to the API server with optimistic
// concurrency, so two candidates can never both win.
type watchedLease struct {
	client    kubernetes.Interface
	namespace string
	identity  string
	factory   informers.SharedInformerFactory
	informer  cache.SharedIndexInformer

	mu   sync.Mutex            // guards the fields below
	last *coordinationv1.Lease // the newest Lease seen: from the watch or our own write
	// renewed is when the last successful Create/Update of ours was
	// sent: the lease is ours until renewed + LeaseDuration at the least.
	renewed time.Time
}

func newWatchedLease(client kubernetes.Interface, namespace, identity string, onErr func(error)) *watchedLease {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", LeaseName).String()
		}))
	l := &watchedLease{client: client, namespace: namespace, identity: identity, factory: f}
	l.informer = f.Coordination().V1().Leases().Informer()
	note := func(obj any) {
		if lease, ok := obj.(*coordinationv1.Lease); ok {
			l.see(lease)
		}
	}
	_, _ = l.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    note,
		UpdateFunc: func(_, obj any) { note(obj) },
		DeleteFunc: func(any) {
			l.mu.Lock()
			l.last = nil
			l.mu.Unlock()
		},
	})
	_ = l.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { onErr(err) })
	return l
}

// synced reports whether the watch holds a full list.
func (l *watchedLease) synced() bool { return l.informer.HasSynced() }

// run follows the Lease until ctx is done.
func (l *watchedLease) run(ctx context.Context) {
	l.factory.Start(ctx.Done())
	<-ctx.Done()
	l.factory.Shutdown()
}

// see keeps the newer of lease and what is known. Resource versions are
// opaque to clients in principle; etcd's are increasing integers, and the
// comparison only decides which of two copies is fresher, so a version that
// does not parse simply counts as fresh.
func (l *watchedLease) see(lease *coordinationv1.Lease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last != nil && rvLess(lease.ResourceVersion, l.last.ResourceVersion) {
		return
	}
	l.last = lease
}

func rvLess(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && x < y
}

// Get implements rl.Interface from the watch: no API request.
func (l *watchedLease) Get(context.Context) (*rl.LeaderElectionRecord, []byte, error) {
	if !l.informer.HasSynced() {
		return nil, nil, errors.New("lease watch not synced yet")
	}
	l.mu.Lock()
	lease := l.last
	l.mu.Unlock()
	if lease == nil {
		return nil, nil, apierrors.NewNotFound(coordinationv1.Resource("leases"), LeaseName)
	}
	rec := rl.LeaseSpecToLeaderElectionRecord(&lease.Spec)
	raw, err := json.Marshal(*rec)
	if err != nil {
		return nil, nil, err
	}
	return rec, raw, nil
}

// Create implements rl.Interface.
func (l *watchedLease) Create(ctx context.Context, ler rl.LeaderElectionRecord) error {
	sent := time.Now()
	lease, err := l.client.CoordinationV1().Leases(l.namespace).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: l.namespace},
		Spec:       rl.LeaderElectionRecordToLeaseSpec(&ler),
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	l.wrote(lease, ler, sent)
	return nil
}

// Update implements rl.Interface, on top of the freshest copy known.
func (l *watchedLease) Update(ctx context.Context, ler rl.LeaderElectionRecord) error {
	l.mu.Lock()
	cur := l.last
	l.mu.Unlock()
	if cur == nil {
		return errors.New("lease not known yet")
	}
	next := cur.DeepCopy()
	next.Spec = rl.LeaderElectionRecordToLeaseSpec(&ler)
	sent := time.Now()
	lease, err := l.client.CoordinationV1().Leases(l.namespace).Update(ctx, next, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		// The watch is behind (after an outage it comes back only with
		// the informer's backoff): read the Lease once, so the next try
		// sees who holds it instead of failing the same way every retry.
		if fresh, gerr := l.client.CoordinationV1().Leases(l.namespace).Get(ctx, LeaseName, metav1.GetOptions{}); gerr == nil {
			l.see(fresh)
		}
	}
	if err != nil {
		return err
	}
	l.wrote(lease, ler, sent)
	return nil
}

func (l *watchedLease) wrote(lease *coordinationv1.Lease, ler rl.LeaderElectionRecord, sent time.Time) {
	l.see(lease)
	if ler.HolderIdentity == l.identity {
		l.mu.Lock()
		l.renewed = sent
		l.mu.Unlock()
	}
}

// heldUntil is the earliest moment another candidate may take the Lease,
// as far as this node knows: its last successful renewal (timed from when
// it was sent) plus the lease duration. Zero when it never held it.
func (l *watchedLease) heldUntil(d time.Duration) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.renewed.IsZero() {
		return time.Time{}
	}
	return l.renewed.Add(d)
}

// RecordEvent implements rl.Interface; leadership changes are logged by
// the controller instead.
func (l *watchedLease) RecordEvent(string) {}

// Identity implements rl.Interface.
func (l *watchedLease) Identity() string { return l.identity }

// Describe implements rl.Interface.
func (l *watchedLease) Describe() string { return l.namespace + "/" + LeaseName }
