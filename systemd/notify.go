package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify(3) messages to the service manager.
//
// It is configured from the environment systemd sets for Type=notify units:
// NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, read once by NewNotifier.
// When NOTIFY_SOCKET is unset (not under systemd, or in tests) every method
// is a no-op that returns nil. The environment is left as it is: hostlbd
// starts no children that could misuse it.
//
// All methods are safe for concurrent use; each message is one datagram.
type Notifier struct {
	enabled     bool          // NOTIFY_SOCKET was set
	watchdog    time.Duration // WATCHDOG_USEC, 0 if off or meant for another PID
	watchdogErr error         // malformed WATCHDOG_USEC/PID, reported by RunWatchdog
}

// NewNotifier reads the notification environment. It starts nothing.
func NewNotifier() *Notifier {
	n := &Notifier{enabled: os.Getenv("NOTIFY_SOCKET") != ""}
	if n.enabled {
		n.watchdog, n.watchdogErr = daemon.SdWatchdogEnabled(false)
	}
	return n
}

// Ready tells systemd that start-up (or a reload) is complete.
func (n *Notifier) Ready() error { return n.notify(daemon.SdNotifyReady) }

// Reloading tells systemd a reload has begun; send Ready when it is done.
// MONOTONIC_USEC is what systemd ≥ 253 (Type=notify-reload) requires to
// match the message to the reload it asked for; 252 ignores it.
func (n *Notifier) Reloading() error {
	return n.notify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// Stopping tells systemd that a graceful stop has begun, so it waits
// TimeoutStopSec instead of treating the exit as a crash.
func (n *Notifier) Stopping() error { return n.notify(daemon.SdNotifyStopping) }

// Status sets the one-line status `systemctl status hostlb` shows. Line
// breaks would end the assignment early, so they become spaces.
func (n *Notifier) Status(s string) error {
	s = strings.TrimSpace(strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s))
	return n.notify("STATUS=" + s)
}

// WatchdogInterval is how often to ping: half of WATCHDOG_USEC, as
// sd_watchdog_enabled(3) advises. It is 0 when the watchdog is off, when
// WATCHDOG_PID names another process, or when NOTIFY_SOCKET is unset.
func (n *Notifier) WatchdogInterval() time.Duration { return n.watchdog / 2 }

// RunWatchdog pings WATCHDOG=1 every WatchdogInterval, starting at once,
// while healthy returns nil. While healthy returns an error it withholds the
// pings, so systemd kills and restarts a daemon that is alive but wedged; it
// logs once per unhealthy spell, and once when health returns. healthy is
// called from RunWatchdog's goroutine and must not block for long; nil means
// always healthy. RunWatchdog blocks until ctx is done, also when the
// watchdog is disabled.
func (n *Notifier) RunWatchdog(ctx context.Context, log *slog.Logger, healthy func() error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if n.watchdogErr != nil {
		log.Warn("systemd watchdog disabled: bad environment", "err", n.watchdogErr)
	}
	interval := n.WatchdogInterval()
	if interval <= 0 {
		<-ctx.Done()
		return
	}
	if healthy == nil {
		healthy = func() error { return nil }
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var w watchdogState
	for {
		w.tick(n, log, healthy)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchdogState remembers what RunWatchdog already logged, so a long
// unhealthy spell or a dead notify socket yields one line, not one per tick.
// It is owned by RunWatchdog's goroutine.
type watchdogState struct {
	unhealthy  bool
	sendFailed bool
}

func (w *watchdogState) tick(n *Notifier, log *slog.Logger, healthy func() error) {
	if err := healthy(); err != nil {
		if !w.unhealthy {
			log.Error("unhealthy: withholding systemd watchdog pings, systemd will restart hostlbd if this lasts", "err", err)
			w.unhealthy = true
		}
		return
	}
	if w.unhealthy {
		log.Info("healthy again: resuming systemd watchdog pings")
		w.unhealthy = false
	}
	if err := n.notify(daemon.SdNotifyWatchdog); err != nil {
		if !w.sendFailed {
			log.Warn("systemd watchdog ping failed", "err", err)
			w.sendFailed = true
		}
		return
	}
	w.sendFailed = false
}

// notify sends one datagram through go-systemd, which dials NOTIFY_SOCKET
// (a path or an @abstract name) for every message.
func (n *Notifier) notify(state string) error {
	if !n.enabled {
		return nil
	}
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %q: %w", firstLine(state), err)
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
