package systemd

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/reconcile"
)

// maxWedge is how long after its reconcile loop wedges systemd must have
// killed hostlbd (issue 9): the pings stop StuckAfter into the wedge, and
// systemd kills WatchdogSec after the last ping.
const maxWedge = 15 * time.Second

// fakeClock is a reconcile.Loop clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// steppedLoop runs a default reconcile.Loop on clock whose passes each
// signal on started and then wait for a value on finish.
func steppedLoop(t *testing.T, clock *fakeClock) (l *reconcile.Loop, started chan struct{}, finish chan struct{}) {
	t.Helper()
	started, finish = make(chan struct{}), make(chan struct{})
	l = reconcile.New(slog.New(slog.DiscardHandler), func(ctx context.Context) error {
		select {
		case started <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-finish:
		case <-ctx.Done():
		}
		return nil
	})
	l.Now = clock.Now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return l, started, finish
}

// unitWatchdog is the shipped unit's WatchdogSec and the ping interval
// RunWatchdog derives from it.
func unitWatchdog(t *testing.T) (sec, interval time.Duration) {
	t.Helper()
	v := parseUnit(t, unitFile)["Service.WatchdogSec"]
	if len(v) != 1 {
		t.Fatalf("WatchdogSec = %q, want one value", v)
	}
	sec, err := time.ParseDuration(v[0])
	if err != nil {
		t.Fatalf("WatchdogSec=%s: %v (write it as a Go duration, e.g. 10s)", v[0], err)
	}
	n := &Notifier{enabled: true, watchdog: sec}
	return sec, n.WatchdogInterval()
}

// TestWatchdogKillsAWedgedLoopWithin15s plays the watchdog against the
// shipped unit's WatchdogSec and the reconcile loop's default StuckAfter:
// for every phase of the ping ticker against the moment a pass wedges,
// the last ping goes out early enough that systemd's kill comes within
// maxWedge.
func TestWatchdogKillsAWedgedLoopWithin15s(t *testing.T) {
	sec, interval := unitWatchdog(t)
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	l, started, finish := steppedLoop(t, clock)
	defer close(finish)

	wedge := clock.Now()
	l.Trigger("test")
	<-started // the pass has begun at wedge and never ends

	for phase := time.Duration(0); phase < interval; phase += interval / 20 {
		// The ping before the wedge went out at wedge-phase; RunWatchdog
		// asks Healthy once per interval after it.
		lastPing := wedge.Add(-phase)
		stopped := false
		for at := lastPing.Add(interval); at.Sub(wedge) < time.Minute; at = at.Add(interval) {
			clock.Set(at)
			err := l.Healthy()
			switch {
			case err == nil && stopped:
				t.Fatalf("phase %v: healthy again at +%v of a wedge that never ended", phase, at.Sub(wedge))
			case err == nil:
				lastPing = at
			default:
				stopped = true
			}
		}
		if !stopped {
			t.Fatalf("phase %v: pings never stopped during a 1 min wedge", phase)
		}
		if kill := lastPing.Add(sec).Sub(wedge); kill > maxWedge {
			t.Fatalf("phase %v: last ping at +%v, so systemd kills at +%v of the wedge, want <= %v (StuckAfter %v, WatchdogSec %v)",
				phase, lastPing.Sub(wedge), kill, maxWedge, l.StuckAfter, sec)
		}
	}
}

// TestWatchdogSparesSlowHealthyPasses: passes far slower than a pass at
// 10,000 Services (~50 ms), back to back, paced or not, never withhold a
// ping, because only one pass's own run time counts.
func TestWatchdogSparesSlowHealthyPasses(t *testing.T) {
	const slow = 2 * time.Second // 40× the pass at 10,000 Services
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	l, started, finish := steppedLoop(t, clock)
	if l.StuckAfter < 2*slow {
		t.Fatalf("StuckAfter %v leaves no margin over a %v pass", l.StuckAfter, slow)
	}
	l.MaxPace = time.Millisecond // the pace is real time; keep the test fast
	for i := range 4 {
		if i%2 == 0 {
			l.Trigger("test")
		} else {
			l.TriggerPaced("test")
		}
		<-started
		start := clock.Now()
		for _, at := range []time.Duration{0, slow / 2, slow} {
			clock.Set(start.Add(at))
			if err := l.Healthy(); err != nil {
				t.Fatalf("pass %d, %v in (%v since the first pass began): %v", i, at, clock.Now().Sub(time.Unix(1_000_000, 0)), err)
			}
		}
		finish <- struct{}{}
	}
	if err := l.Healthy(); err != nil {
		t.Errorf("idle loop: %v", err)
	}
}
