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

// fakeClock is a clock that moves only when a pass says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// pacedLoop runs a loop whose every pass "takes" took on the fake clock
// and reports its number on the returned channel (negative when the pass
// started before *mark was set).
func pacedLoop(t *testing.T, took time.Duration, maxPace time.Duration, mark *atomic.Bool) (*Loop, <-chan int32, func()) {
	t.Helper()
	clock := &fakeClock{now: time.Unix(1000, 0)}
	var passes atomic.Int32
	ran := make(chan int32, 16)
	l := New(slog.New(slog.DiscardHandler), func(ctx context.Context) error {
		marked := mark == nil || mark.Load()
		clock.advance(took)
		n := passes.Add(1)
		if !marked {
			n = -n
		}
		ran <- n
		return nil
	})
	l.Now = clock.Now
	l.MaxPace = maxPace
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return l, ran, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestLoopPacedTriggerWaitsAndUrgentTakesIt(t *testing.T) {
	// Passes take 100 ms and the pace is up to an hour: a paced change
	// waits 300 ms of the fake clock, which never passes, so only an
	// urgent trigger can run it — in one pass with the urgent one.
	var urgent atomic.Bool
	l, ran, stop := pacedLoop(t, 100*time.Millisecond, time.Hour, &urgent)
	urgent.Store(true)
	l.Trigger("first")
	if n := <-ran; n != 1 {
		t.Fatalf("pass %d", n)
	}
	urgent.Store(false)
	l.TriggerPaced("a Service changed")
	l.TriggerPaced("another")
	urgent.Store(true)
	l.Trigger("a member died")
	if n := <-ran; n != 2 {
		t.Fatalf("pass %d (negative: it started before the urgent trigger)", n)
	}
	stop()
	select {
	case n := <-ran:
		t.Errorf("pass %d ran: the paced changes were already in pass 2", n)
	default:
	}
}

func TestLoopPacedTriggerRunsAfterThePace(t *testing.T) {
	// Passes take 10 ms: the paced pass starts 30 ms (real time, as the
	// fake clock stands still) after the first one, on its own.
	l, ran, stop := pacedLoop(t, 10*time.Millisecond, time.Hour, nil)
	defer stop()
	l.Trigger("first")
	<-ran
	l.TriggerPaced("a Service changed")
	if n := <-ran; n != 2 {
		t.Fatalf("pass %d", n)
	}
}

func TestLoopPaceIsBoundedByMaxPace(t *testing.T) {
	// Passes "take" an hour, but MaxPace caps the wait at 1 ms.
	l, ran, stop := pacedLoop(t, time.Hour, time.Millisecond, nil)
	defer stop()
	l.Trigger("first")
	<-ran
	l.TriggerPaced("a Service changed")
	if n := <-ran; n != 2 {
		t.Fatalf("pass %d", n)
	}
}
