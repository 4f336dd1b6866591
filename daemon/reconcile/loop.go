package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Func computes the whole desired state from one consistent snapshot of the
// inputs and applies the difference to the outputs. It is called from a
// single goroutine, never concurrently with itself. An error makes the loop
// retry the pass with backoff, even if no input changes.
type Func func(ctx context.Context) error

// Loop runs Func once per burst of input changes. Inputs call Trigger;
// triggers that arrive while a pass runs coalesce into exactly one more pass,
// so the loop is level-triggered: it never misses the latest state and never
// queues stale work.
type Loop struct {
	log *slog.Logger
	fn  Func

	// Backoff after a failed pass: doubles from MinBackoff to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// StuckAfter bounds how long one pass may run before Healthy reports
	// the loop wedged (the watchdog then stops pinging systemd).
	StuckAfter time.Duration
	// Now is the clock; tests may replace it before Run.
	Now func() time.Time

	dirty     chan struct{} // capacity 1: a pending pass
	firstOnce sync.Once
	first     chan struct{} // closed after the first successful pass

	mu        sync.Mutex // guards the fields below
	reasons   []string   // why the pending pass was asked for, for the log
	passStart time.Time  // zero when no pass is running
	passes    uint64
	lastErr   error
}

// New returns an inert loop; nothing runs until Run.
func New(log *slog.Logger, fn Func) *Loop {
	return &Loop{
		log:        log,
		fn:         fn,
		MinBackoff: 100 * time.Millisecond,
		MaxBackoff: 10 * time.Second,
		StuckAfter: 30 * time.Second,
		Now:        time.Now,
		dirty:      make(chan struct{}, 1),
		first:      make(chan struct{}),
	}
}

// Trigger marks the state dirty. It never blocks and is safe from any
// goroutine; reason is logged at debug level with the pass it caused.
func (l *Loop) Trigger(reason string) {
	l.mu.Lock()
	if len(l.reasons) < 16 {
		l.reasons = append(l.reasons, reason)
	}
	l.mu.Unlock()
	select {
	case l.dirty <- struct{}{}:
	default: // a pass is already pending; it will see this change too
	}
}

// FirstPass is closed after the first pass that succeeded.
func (l *Loop) FirstPass() <-chan struct{} { return l.first }

// Stats reports how many passes ran and the error of the last one.
func (l *Loop) Stats() (passes uint64, lastErr error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.passes, l.lastErr
}

// Healthy returns an error when a pass has been running for longer than
// StuckAfter, i.e. the loop is wedged. A failing-but-retrying loop is healthy:
// restarting the daemon would not make an unreachable peer reachable.
func (l *Loop) Healthy() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.passStart.IsZero() {
		if d := l.Now().Sub(l.passStart); d > l.StuckAfter {
			return fmt.Errorf("reconcile pass running for %s", d.Round(time.Millisecond))
		}
	}
	return nil
}

// Run executes passes until ctx is done. It returns nil on cancellation:
// a failing pass is retried, not fatal.
func (l *Loop) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.dirty:
		case <-retry:
		}
		retry = nil

		l.mu.Lock()
		reasons := l.reasons
		l.reasons = nil
		l.passStart = l.Now()
		l.mu.Unlock()

		err := l.fn(ctx)

		l.mu.Lock()
		l.passes++
		l.lastErr = err
		took := l.Now().Sub(l.passStart)
		l.passStart = time.Time{}
		l.mu.Unlock()

		select {
		case <-ctx.Done():
			return nil // stopping: a pass cut short by cancellation is no failure
		default:
		}
		if err != nil {
			backoff = min(max(2*backoff, l.MinBackoff), l.MaxBackoff)
			l.log.Warn("reconcile failed; retrying", "err", err, "retry_in", backoff)
			retry = time.After(backoff)
			continue
		}
		backoff = 0
		l.log.Debug("reconciled", "reasons", reasons, "took", took)
		l.firstOnce.Do(func() { close(l.first) })
	}
}
