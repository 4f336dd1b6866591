package kube

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/record"
)

// Event writing: client-go's broadcaster hands its sink one Event at a time
// and waits for each write, so under load (20 ms a request) a node writes
// about 50 Events a second, and the IPAM leader of a burst of 1,000
// Services (two Events each) fell tens of seconds behind; past 1,000
// queued, client-go drops Events without a word. eventSink keeps the
// broadcaster's correlation (aggregation, spam filter, counts) and writes
// with several requests in flight from a bounded queue of its own, and it
// says when it drops one.
const (
	eventWriters   = 4
	eventQueue     = 4096
	eventTries     = 8 // transient failures (an API server away), 1 s apart doubling to 10 s
	eventDropEvery = time.Minute
)

type eventOp struct {
	ev    *corev1.Event
	patch []byte // a repeat of an Event already written: count and time
}

// eventSink is a record.EventSink that queues writes for its writers.
type eventSink struct {
	inner record.EventSink
	log   *slog.Logger
	queue chan eventOp

	dropped  atomic.Uint64 // since the last log line
	mu       sync.Mutex    // guards lastDrop
	lastDrop time.Time
	backoff  time.Duration // first retry wait (tests shorten it)
}

var _ record.EventSink = (*eventSink)(nil)

func newEventSink(inner record.EventSink, log *slog.Logger, queue int) *eventSink {
	return &eventSink{inner: inner, log: log, queue: make(chan eventOp, queue), backoff: time.Second}
}

// run writes queued Events with n writers until ctx is done; what is still
// queued then is not written (hostlbd is stopping).
func (s *eventSink) run(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case op := <-s.queue:
					s.write(ctx, op)
				}
			}
		})
	}
	wg.Wait()
}

// Create queues ev and returns it as written: its name is the recorder's,
// which is all a later Patch needs.
func (s *eventSink) Create(ev *corev1.Event) (*corev1.Event, error) {
	s.enqueue(eventOp{ev: ev})
	return ev, nil
}

// Update is not used by the broadcaster; it writes through.
func (s *eventSink) Update(ev *corev1.Event) (*corev1.Event, error) { return s.inner.Update(ev) }

// Patch queues a repeat of an Event.
func (s *eventSink) Patch(ev *corev1.Event, data []byte) (*corev1.Event, error) {
	s.enqueue(eventOp{ev: ev, patch: data})
	return ev, nil
}

func (s *eventSink) enqueue(op eventOp) {
	select {
	case s.queue <- op:
		return
	default:
	}
	n := s.dropped.Add(1)
	s.mu.Lock()
	now := time.Now()
	logIt := now.Sub(s.lastDrop) >= eventDropEvery
	if logIt {
		s.lastDrop = now
		s.dropped.Store(0)
	}
	s.mu.Unlock()
	if logIt {
		s.log.Warn("Events dropped: the API server takes them slower than they come",
			"dropped", n, "queued", cap(s.queue), "reason", op.ev.Reason, "object", op.ev.InvolvedObject.Namespace+"/"+op.ev.InvolvedObject.Name)
	}
}

// write writes one Event, retrying while the API server cannot be reached;
// an Event the server refuses is logged and given up.
func (s *eventSink) write(ctx context.Context, op eventOp) {
	wait := s.backoff
	for try := 1; ; try++ {
		err := s.writeOnce(op)
		var status apierrors.APIStatus
		switch {
		case err == nil:
			return
		case errors.As(err, &status) || try >= eventTries:
			s.log.Warn("Event not written", "reason", op.ev.Reason,
				"object", op.ev.InvolvedObject.Namespace+"/"+op.ev.InvolvedObject.Name, "tries", try, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

func (s *eventSink) writeOnce(op eventOp) error {
	if op.patch != nil {
		_, err := s.inner.Patch(op.ev, op.patch)
		if !apierrors.IsNotFound(err) {
			return err
		}
		// The Event it repeats is gone (expired): write it anew.
	}
	ev := *op.ev
	ev.ResourceVersion = ""
	_, err := s.inner.Create(&ev)
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
