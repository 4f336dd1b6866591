package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLoopCoalescesTriggers(t *testing.T) {
	var (
		passes  atomic.Int32
		entered = make(chan struct{}, 16)
		release = make(chan struct{})
	)
	l := New(slog.New(slog.DiscardHandler), func(ctx context.Context) error {
		passes.Add(1)
		entered <- struct{}{}
		<-release
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()

	l.Trigger("first")
	<-entered // pass 1 is running
	for range 10 {
		l.Trigger("burst") // all of these fold into one more pass
	}
	release <- struct{}{} // finish pass 1
	<-entered             // pass 2 starts
	release <- struct{}{}
	<-l.FirstPass()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := passes.Load(); got != 2 {
		t.Errorf("passes = %d, want 2: a burst of triggers during a pass is one more pass", got)
	}
}

func TestLoopRetriesFailedPass(t *testing.T) {
	var calls atomic.Int32
	l := New(slog.New(slog.DiscardHandler), func(ctx context.Context) error {
		if calls.Add(1) < 3 {
			return errors.New("transient")
		}
		return nil
	})
	l.MinBackoff = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	l.Trigger("once")
	select {
	case <-l.FirstPass():
	case <-time.After(5 * time.Second):
		t.Fatal("no successful pass: a failed pass must be retried without a new trigger")
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if n, err := l.Stats(); n != 3 || err != nil {
		t.Errorf("stats = %d, %v; want 3, nil", n, err)
	}
}

func TestLoopHealthyDetectsWedgedPass(t *testing.T) {
	var (
		mu  sync.Mutex
		now = time.Unix(1000, 0)
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	inPass, release := make(chan struct{}), make(chan struct{})
	l := New(slog.New(slog.DiscardHandler), func(ctx context.Context) error {
		close(inPass)
		<-release
		return nil
	})
	l.Now = clock
	l.StuckAfter = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	l.Trigger("x")
	<-inPass
	if err := l.Healthy(); err != nil {
		t.Errorf("fresh pass reported unhealthy: %v", err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if err := l.Healthy(); err == nil || !strings.Contains(err.Error(), "running for") {
		t.Errorf("wedged pass not detected: %v", err)
	}
	close(release)
	<-l.FirstPass()
	if err := l.Healthy(); err != nil {
		t.Errorf("idle loop unhealthy: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
