package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
)

// Component is one long-running part of the daemon (reconcile loop, gossip
// ring, responders, BGP speaker, control socket ...). Constructors are inert;
// Run starts the work.
type Component interface {
	// Name identifies the component in logs.
	Name() string
	// Run blocks until ctx is cancelled, then drains and returns nil; or it
	// fails and returns the error, which stops the whole daemon. Run is
	// called once.
	Run(ctx context.Context) error
}

// ComponentFunc adapts a function to Component.
type ComponentFunc struct {
	N string
	F func(ctx context.Context) error
	// Cleanup marks a component whose drain undoes changes to the host
	// that outlive the process (the L2 output removes the hostlb0
	// addresses it added): runComponents waits for it even after the
	// drain timeout has abandoned the others.
	Cleanup bool
}

// Name implements Component.
func (c ComponentFunc) Name() string { return c.N }

func (c ComponentFunc) cleanup() bool { return c.Cleanup }

// cleanupTimeout bounds the wait for each Cleanup component once the drain
// timeout has passed: DrainTimeout (10 s) plus the handover (3 s) plus this
// stays inside the unit's TimeoutStopSec=30s. A variable for tests.
var cleanupTimeout = 5 * time.Second

// isCleanup reports whether c is a ComponentFunc with Cleanup set.
func isCleanup(c Component) bool {
	cl, ok := c.(interface{ cleanup() bool })
	return ok && cl.cleanup()
}

// Run implements Component.
func (c ComponentFunc) Run(ctx context.Context) error { return c.F(ctx) }

// runComponents runs comps until ctx is cancelled or one of them fails, then
// stops them one at a time in reverse order: the last started is the first
// stopped, so a component can rely on those before it while it drains (the
// gossip ring announces our leave before the responders go quiet, say).
// Each component gets its own context, cancelled only at its turn. The whole
// drain is bounded by drainTimeout; a component that overstays is logged and
// abandoned so that the process still exits in time for systemd. The ones
// after it are still cancelled in order, and those marked Cleanup are still
// waited for, up to cleanupTimeout each, whatever hangs before them: the
// hostlb0 addresses must not outlive the daemon.
// onDrain runs once when draining begins (for STOPPING=1).
func runComponents(ctx context.Context, log *slog.Logger, comps []Component, drainTimeout time.Duration, onDrain func(cause error)) error {
	type running struct {
		c      Component
		cancel context.CancelFunc
		done   chan struct{}
	}
	var (
		g      errgroup.Group
		failed = make(chan error, len(comps))
		runs   = make([]running, 0, len(comps))
	)
	for _, c := range comps {
		// Not derived from ctx: the drain order, not the caller's cancel,
		// decides when each component sees Done.
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r := running{c: c, cancel: cancel, done: make(chan struct{})}
		runs = append(runs, r)
		g.Go(func() error {
			defer close(r.done)
			err := c.Run(cctx)
			switch {
			case cctx.Err() != nil: // its turn to stop came
				if err != nil && !errors.Is(err, context.Canceled) {
					log.Warn("component stopped with error", "component", c.Name(), "err", err)
				}
				return nil
			case err == nil:
				err = errors.New("exited unexpectedly")
			}
			err = fmt.Errorf("%s: %w", c.Name(), err)
			failed <- err
			return err
		})
	}

	var cause error
	select {
	case <-ctx.Done():
	case cause = <-failed:
		log.Error("component failed; stopping", "err", cause)
	}
	if onDrain != nil {
		onDrain(cause)
	}

	deadline := time.NewTimer(drainTimeout)
	defer deadline.Stop()
	abandoned := false
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		r.cancel()
		if abandoned {
			if isCleanup(r.c) {
				waitCleanup(log, r.c, r.done)
			}
			continue
		}
		start := time.Now()
		select {
		case <-r.done:
			log.Debug("component stopped", "component", r.c.Name(), "took", time.Since(start))
		case <-deadline.C:
			log.Error("drain timeout; abandoning remaining components but cleanups",
				"component", r.c.Name(), "timeout", drainTimeout)
			abandoned = true
			if isCleanup(r.c) {
				waitCleanup(log, r.c, r.done)
			}
		}
	}
	if abandoned {
		return errors.Join(cause, fmt.Errorf("drain did not finish within %s", drainTimeout))
	}
	_ = g.Wait() // every Run has returned; their errors were sent to failed
	if cause == nil {
		// A component may have failed while others drained.
		select {
		case cause = <-failed:
		default:
		}
	}
	return cause
}

// waitCleanup waits up to cleanupTimeout for a Cleanup component that the
// drain reached after its timeout.
func waitCleanup(log *slog.Logger, c Component, done <-chan struct{}) {
	t := time.NewTimer(cleanupTimeout)
	defer t.Stop()
	select {
	case <-done:
		log.Info("cleanup finished after the drain timeout", "component", c.Name())
	case <-t.C:
		log.Error("cleanup did not finish; exiting anyway", "component", c.Name(), "timeout", cleanupTimeout)
	}
}
