package kube

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

// Watches counts every failed list or watch, the logged and the
// rate-limited alike, and dates a kind's last sync by its last event.
func TestWatchesCountEveryFailure(t *testing.T) {
	s := NewSource(SourceOptions{
		Log:     slog.New(slog.DiscardHandler),
		Client:  fake.NewClientset(),
		Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()),
	})
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	refused := errors.New("dial tcp 192.0.2.10:6443: connect: connection refused")
	for range 10 {
		s.watchError(KindService, refused) // logged once
	}
	s.watchError(KindLease, refused)
	s.noteEvent(KindNode)
	byKind := map[Kind]WatchStatus{}
	for _, w := range s.Watches() {
		byKind[w.Kind] = w
	}
	if w := byKind[KindService]; w.Restarts != 10 || w.Synced {
		t.Errorf("Service: %+v, want 10 restarts, not synced", w)
	}
	if w := byKind[KindLease]; w.Restarts != 1 {
		t.Errorf("Lease: %+v, want 1 restart", w)
	}
	if w := byKind[KindNode]; !w.LastSync.Equal(now) || w.Restarts != 0 {
		t.Errorf("Node: %+v, want its event's time and no restart", w)
	}
	if len(byKind) != 9 { // 8 informers and the Lease
		t.Errorf("%d kinds: %v", len(byKind), byKind)
	}
}
