package kube

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fakeEventSink records writes; each Create waits for release when gate is
// set, so a test can see how many are in flight.
type fakeEventSink struct {
	mu       sync.Mutex
	created  []string
	patched  []string
	inFlight int
	maxIn    int
	gate     chan struct{}
	errs     map[string][]error // by Event name: returned by its next Creates, in order
	patchErr error
}

func (f *fakeEventSink) Create(ev *corev1.Event) (*corev1.Event, error) {
	f.mu.Lock()
	f.inFlight++
	f.maxIn = max(f.maxIn, f.inFlight)
	gate := f.gate
	var err error
	if es := f.errs[ev.Name]; len(es) > 0 {
		err, f.errs[ev.Name] = es[0], es[1:]
	}
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inFlight--
	if err != nil {
		return nil, err
	}
	f.created = append(f.created, ev.Name)
	return ev, nil
}

func (f *fakeEventSink) Update(ev *corev1.Event) (*corev1.Event, error) { return ev, nil }

func (f *fakeEventSink) Patch(ev *corev1.Event, _ []byte) (*corev1.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.patchErr != nil {
		return nil, f.patchErr
	}
	f.patched = append(f.patched, ev.Name)
	return ev, nil
}

func (f *fakeEventSink) snapshot() (created, patched []string, maxIn int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.created...), append([]string(nil), f.patched...), f.maxIn
}

func testEvent(name string) *corev1.Event {
	return &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Reason: "IPAllocated",
		InvolvedObject: corev1.ObjectReference{Kind: "Service", Namespace: "ns", Name: "web"}}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestEventSinkWritesInParallel(t *testing.T) {
	inner := &fakeEventSink{gate: make(chan struct{})}
	s := newEventSink(inner, slog.New(slog.DiscardHandler), 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx, 4) }()
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		if ev, err := s.Create(testEvent(n)); err != nil || ev.Name != n {
			t.Fatalf("Create(%s) = %v, %v: it must queue and return at once", n, ev, err)
		}
	}
	waitUntil(t, "four writes in flight", func() bool { _, _, m := inner.snapshot(); return m == 4 })
	close(inner.gate)
	waitUntil(t, "all six written", func() bool { c, _, _ := inner.snapshot(); return len(c) == 6 })
	cancel()
	<-done
	if _, _, m := inner.snapshot(); m != 4 {
		t.Errorf("%d writes in flight at most, want 4 (the writers)", m)
	}
}

func TestEventSinkRetriesTransientAndGivesUpOnRefusal(t *testing.T) {
	refused := apierrors.NewForbidden(schema.GroupResource{Resource: "events"}, "x", errors.New("no"))
	inner := &fakeEventSink{errs: map[string][]error{
		"retried": {errors.New("connection refused"), errors.New("connection refused")},
		"refused": {refused, nil},
	}}
	s := newEventSink(inner, slog.New(slog.DiscardHandler), 16)
	s.backoff = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.run(ctx, 1)
	_, _ = s.Create(testEvent("retried")) // fails twice, then written
	_, _ = s.Create(testEvent("refused")) // refused by the server: given up, not retried
	_, _ = s.Create(testEvent("next"))
	waitUntil(t, "two Events written", func() bool { c, _, _ := inner.snapshot(); return len(c) == 2 })
	if c, _, _ := inner.snapshot(); c[0] != "retried" || c[1] != "next" {
		t.Errorf("written %v, want [retried next]", c)
	}
}

func TestEventSinkPatchOfAGoneEventCreatesIt(t *testing.T) {
	inner := &fakeEventSink{patchErr: apierrors.NewNotFound(schema.GroupResource{Resource: "events"}, "x")}
	s := newEventSink(inner, slog.New(slog.DiscardHandler), 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.run(ctx, 1)
	_, _ = s.Patch(testEvent("again"), []byte(`{"count":2}`))
	waitUntil(t, "the Event created", func() bool { c, _, _ := inner.snapshot(); return len(c) == 1 })
}

func TestEventSinkCountsWhatItDrops(t *testing.T) {
	s := newEventSink(&fakeEventSink{}, slog.New(slog.DiscardHandler), 2) // no writers: the queue fills
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		_, _ = s.Create(testEvent(n))
	}
	// The first drop is logged (and resets the count); the next two wait
	// for the next log line.
	if got := s.dropped.Load(); got != 2 {
		t.Errorf("dropped since the last log line = %d, want 2", got)
	}
	if len(s.queue) != 2 {
		t.Errorf("queued %d, want 2", len(s.queue))
	}
}
