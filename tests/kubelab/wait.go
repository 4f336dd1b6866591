package kubelab

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PollInterval is how often the lab's waits look again.
const PollInterval = 50 * time.Millisecond

// permanentError ends a poll at once (a process exited).
type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

func permanent(err error) error { return permanentError{err} }

// poll calls check every PollInterval until it returns nil, a permanent
// error, or timeout or ctx ends; the error then quotes check's last answer.
func poll(ctx context.Context, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		if p := (permanentError{}); errors.As(err, &p) {
			return p.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %v: %w", timeout, err)
		case <-tick.C:
		}
	}
}

// Poll is the lab's wait for callers: check every PollInterval until it
// returns nil, or timeout passes (the error then wraps check's last
// answer), or the lab is torn down.
func (l *Lab) Poll(timeout time.Duration, check func() error) error {
	return poll(l.ctx, timeout, check)
}
