package kube

import (
	"context"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	rl "k8s.io/client-go/tools/leaderelection/resourcelock"
)

func lease(holder, rv string) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: "kube-system", ResourceVersion: rv},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder},
	}
}

// After an outage the watch may still show this node as the holder; a
// renewal then conflicts, and one GET must set the record straight, or
// every retry fails the same way until the watch comes back.
func TestLeaseConflictRefreshesTheRecord(t *testing.T) {
	client := fake.NewClientset(lease("n2", "20"))
	client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewConflict(coordinationv1.Resource("leases"), LeaseName, nil)
	})
	l := newWatchedLease(client, "kube-system", "n1", func(error) {})
	l.see(lease("n1", "10"))
	if err := l.informer.GetStore().Add(lease("n1", "10")); err != nil { // synced enough for Get
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := l.Update(ctx, rl.LeaderElectionRecord{HolderIdentity: "n1"}); !apierrors.IsConflict(err) {
		t.Fatalf("Update = %v, want a conflict", err)
	}
	l.mu.Lock()
	got := *l.last.Spec.HolderIdentity
	l.mu.Unlock()
	if got != "n2" {
		t.Errorf("after the conflict the lease says holder %q, want n2", got)
	}
	if !l.heldUntil(15).IsZero() {
		t.Error("a failed renewal counts as held")
	}
}
