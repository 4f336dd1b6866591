package gossip

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
)

// LevelTrace is below slog.LevelDebug; memberlist's rare [TRACE] lines go
// there.
const LevelTrace = slog.LevelDebug - 4

// newStdLogger bridges memberlist's *log.Logger to slog. memberlist writes
// one line per call, "[LEVEL] memberlist: message"; the level picks the slog
// level and the prefix becomes the attribute component=memberlist. Closing
// the returned writer drops later lines: memberlist's Shutdown does not wait
// for its goroutines, which may still log for a moment after it returns.
func newStdLogger(l *slog.Logger) (*log.Logger, *logWriter) {
	w := &logWriter{l: l.With("component", "memberlist")}
	return log.New(w, "", 0), w
}

type logWriter struct {
	l      *slog.Logger
	mu     sync.RWMutex // guards closed; held for reading while a line is logged
	closed bool
}

// Close waits for lines being logged and drops every later one.
func (w *logWriter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return len(p), nil
	}
	level, msg := parseLogLine(string(p))
	if w.l.Enabled(context.Background(), level) {
		w.l.Log(context.Background(), level, msg)
	}
	return len(p), nil
}

// parseLogLine splits "[LEVEL] memberlist: message\n" into a slog level and
// the message. Lines without a known level are logged at Info.
func parseLogLine(s string) (slog.Level, string) {
	s = strings.TrimRight(s, "\r\n")
	level := slog.LevelInfo
	if rest, ok := strings.CutPrefix(s, "["); ok {
		if tag, msg, ok := strings.Cut(rest, "] "); ok {
			known := true
			switch tag {
			case "TRACE":
				level = LevelTrace
			case "DEBUG":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			default:
				known = false
			}
			if known {
				s = msg
			}
		}
	}
	for _, p := range []string{"memberlist: ", "memberlist:"} {
		if rest, ok := strings.CutPrefix(s, p); ok {
			s = rest
			break
		}
	}
	return level, s
}
