package bgp

import (
	"context"
	"log/slog"
	"strings"
)

// gobgpHandler bridges GoBGP's logger into the daemon's: GoBGP's keys
// ("Topic", "Key", "Peer", "Error", "Err") become ours (topic, peer, err),
// and its info lines become debug ones (the speaker logs session and BFD
// changes itself, with their reasons).
type gobgpHandler struct{ next slog.Handler }

func newGoBGPLogger(l *slog.Logger) *slog.Logger {
	return slog.New(gobgpHandler{next: l.Handler()})
}

func (h gobgpHandler) level(l slog.Level) slog.Level {
	if l == slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}

func (h gobgpHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, h.level(l))
}

func (h gobgpHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, h.level(r.Level), r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(renameAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h gobgpHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = renameAttr(a)
	}
	return gobgpHandler{next: h.next.WithAttrs(out)}
}

func (h gobgpHandler) WithGroup(name string) slog.Handler {
	return gobgpHandler{next: h.next.WithGroup(strings.ToLower(name))}
}

func renameAttr(a slog.Attr) slog.Attr {
	switch a.Key {
	case "Key", "Peer":
		a.Key = "peer"
	case "Error", "Err":
		a.Key = "err"
	default:
		a.Key = strings.ToLower(a.Key)
	}
	return a
}
