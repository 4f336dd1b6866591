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
//
// Changes that may wait call TriggerPaced instead: the pass they ask for
// starts no sooner than PaceFactor times the last pass's duration after it
// ended (at most MaxPace later). A stream of such changes — thousands of
// Services and EndpointSlices written in a burst — then keeps the loop
// busy at most 1/(1+PaceFactor) of the time, and the CPU left over goes to
// what must not wait: the gossip probes that detect a failure. A Trigger
// runs at once, and takes every paced change pending with it.
type Loop struct {
	log *slog.Logger
	fn  Func

	// Backoff after a failed pass: doubles from MinBackoff to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// StuckAfter bounds how long one pass may run before Healthy reports
	// the loop wedged (the watchdog then stops pinging systemd, which kills
	// the daemon WatchdogSec later). Default 4 s: with the unit's
	// WatchdogSec=10s a wedge ends within 14 s, and a healthy pass (~50 ms
	// at 10,000 Services) stays far below it. Only a pass's own run time
	// counts: the pace a paced pass waits for, and the backoff after a
	// failed one, are spent between passes.
	StuckAfter time.Duration
	// PaceFactor and MaxPace bound the wait of a paced pass (see Loop).
	PaceFactor float64
	MaxPace    time.Duration
	// Now is the clock; tests may replace it before Run.
	Now func() time.Time
	// OnPass, if set before Run, is told after every pass how long it ran
	// and its error; a pass cut short by Run's ctx is not reported. It
	// runs on the loop's goroutine and must not block (metrics).
	OnPass func(took time.Duration, err error)

	dirty     chan struct{} // capacity 1: a pending pass
	paced     chan struct{} // capacity 1: a pending pass that may wait
	firstOnce sync.Once
	first     chan struct{} // closed after the first successful pass

	mu        sync.Mutex // guards the fields below
	reasons   []string   // why the pending pass was asked for, for the log
	passStart time.Time  // zero when no pass is running
	passes    uint64
	lastErr   error
}

// DefaultStuckAfter is Loop.StuckAfter's default.
const DefaultStuckAfter = 4 * time.Second

// New returns an inert loop; nothing runs until Run.
func New(log *slog.Logger, fn Func) *Loop {
	return &Loop{
		log:        log,
		fn:         fn,
		MinBackoff: 100 * time.Millisecond,
		MaxBackoff: 10 * time.Second,
		StuckAfter: DefaultStuckAfter,
		PaceFactor: 3,
		MaxPace:    500 * time.Millisecond,
		Now:        time.Now,
		dirty:      make(chan struct{}, 1),
		paced:      make(chan struct{}, 1),
		first:      make(chan struct{}),
	}
}

// Trigger marks the state dirty. It never blocks and is safe from any
// goroutine; reason is logged at debug level with the pass it caused.
func (l *Loop) Trigger(reason string) { l.mark(l.dirty, reason) }

// TriggerPaced marks the state dirty with a change that may wait for the
// pace (see Loop). It never blocks and is safe from any goroutine.
func (l *Loop) TriggerPaced(reason string) { l.mark(l.paced, reason) }

// mark records why a pass is wanted and marks it pending on ch.
func (l *Loop) mark(ch chan struct{}, reason string) {
	l.mu.Lock()
	if len(l.reasons) < 16 {
		l.reasons = append(l.reasons, reason)
	}
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
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
	var (
		retry   <-chan time.Time
		paceT   *time.Timer
		paceC   <-chan time.Time // the paced pass's start, while one waits
		readyAt time.Time        // the earliest start of a paced pass
	)
	defer func() {
		if paceT != nil {
			paceT.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.dirty:
		case <-retry:
		case <-paceC:
		case <-l.paced:
			if wait := readyAt.Sub(l.Now()); wait > 0 {
				if paceC == nil {
					paceT = time.NewTimer(wait)
					paceC = paceT.C
				}
				continue
			}
		}
		retry = nil
		if paceT != nil {
			paceT.Stop()
			paceT, paceC = nil, nil
		}
		select {
		case <-l.paced: // this pass sees the paced change too
		default:
		}

		l.mu.Lock()
		reasons := l.reasons
		l.reasons = nil
		l.passStart = l.Now()
		l.mu.Unlock()

		err := l.fn(ctx)

		l.mu.Lock()
		l.passes++
		l.lastErr = err
		end := l.Now()
		took := end.Sub(l.passStart)
		l.passStart = time.Time{}
		l.mu.Unlock()
		readyAt = end.Add(min(time.Duration(l.PaceFactor*float64(took)), l.MaxPace))

		select {
		case <-ctx.Done():
			return nil // stopping: a pass cut short by cancellation is no failure
		default:
		}
		if l.OnPass != nil {
			l.OnPass(took, err)
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
