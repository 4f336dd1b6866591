package systemd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// SyslogIdentifier is the SYSLOG_IDENTIFIER of every journal entry, so
// `journalctl -t hostlbd` finds the daemon's lines whatever the unit is called.
const SyslogIdentifier = "hostlbd"

// maxFieldName is journald's limit on field names; longer ones are dropped
// by journald, so we cut them instead.
const maxFieldName = 64

// NewJournalHandler returns a handler that sends each record to journald
// with the native protocol: MESSAGE=, PRIORITY=, SYSLOG_IDENTIFIER=hostlbd,
// CODE_FILE/CODE_LINE/CODE_FUNC when the record has a PC, and one field per
// attribute (see fieldName). A record journald does not take (no socket,
// EPERM, ...) is written as text to os.Stderr instead, never dropped.
func NewJournalHandler(level slog.Leveler) slog.Handler {
	return newJournalHandler(level, os.Stderr, journal.Send)
}

// sendFunc is journal.Send's signature: tests replace it to capture fields.
type sendFunc func(message string, priority journal.Priority, vars map[string]string) error

// journalSink is shared by a journal handler and every handler derived from
// it with WithAttrs/WithGroup.
type journalSink struct {
	level  slog.Leveler
	send   sendFunc
	notice slog.Handler // plain text handler on stderr for our own notice
	failed sync.Once    // guards the one-time "journald refused" notice
}

type journalHandler struct {
	sink   *journalSink
	prefix string            // open groups, sanitised, each followed by '_'
	fields map[string]string // from WithAttrs; never written after creation
	// fallback is a text handler on stderr with the same attrs and groups,
	// used for records journald refuses.
	fallback slog.Handler
}

func newJournalHandler(level slog.Leveler, stderr io.Writer, send sendFunc) *journalHandler {
	if level == nil {
		level = slog.LevelInfo
	}
	text := slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	return &journalHandler{
		sink:     &journalSink{level: level, send: send, notice: text},
		fallback: text,
	}
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.sink.level.Level()
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.sink.send(r.Message, priority(r.Level), recordFields(h.prefix, h.fields, r))
	if err == nil {
		return nil
	}
	h.sink.failed.Do(func() {
		n := slog.NewRecord(time.Now(), slog.LevelWarn, "journald refused a log entry; writing it and failed ones after it to stderr", 0)
		n.AddAttrs(slog.Any("err", err))
		_ = h.sink.notice.Handle(ctx, n)
	})
	if ferr := h.fallback.Handle(ctx, r); ferr != nil {
		return errors.Join(fmt.Errorf("send to journald: %w", err), ferr)
	}
	return nil
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	fields := make(map[string]string, len(h.fields)+len(as))
	for k, v := range h.fields {
		fields[k] = v
	}
	for _, a := range as {
		addAttr(fields, h.prefix, a)
	}
	h2 := *h
	h2.fields = fields
	h2.fallback = h.fallback.WithAttrs(as)
	return &h2
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + sanitize(name) + "_"
	h2.fallback = h.fallback.WithGroup(name)
	return &h2
}

// priority maps slog levels onto syslog(3) priorities, which journalctl
// colours and filters (-p warning).
func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}

// recordFields builds the journal fields of one record, other than MESSAGE
// and PRIORITY, which journal.Send writes itself. prefix and base come from
// WithGroup and WithAttrs; the record's attrs win over base on equal names.
// It is pure, so the naming rules are tested without journald.
func recordFields(prefix string, base map[string]string, r slog.Record) map[string]string {
	vars := make(map[string]string, len(base)+r.NumAttrs()+4)
	vars["SYSLOG_IDENTIFIER"] = SyslogIdentifier
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		if f.File != "" {
			vars["CODE_FILE"] = f.File
			vars["CODE_LINE"] = strconv.Itoa(f.Line)
		}
		if f.Function != "" {
			vars["CODE_FUNC"] = f.Function
		}
	}
	for k, v := range base {
		vars[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(vars, prefix, a)
		return true
	})
	return vars
}

// addAttr adds a to vars under prefix, flattening groups: WithGroup("bgp")
// and then "peer" give BGP_PEER. Empty attrs and empty groups add nothing;
// a group with an empty key is inlined (the slog.Handler contract). Journal
// fields hold one value per name here, so a repeated key keeps the last.
func addAttr(vars map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += sanitize(a.Key) + "_"
		}
		for _, ga := range v.Group() {
			addAttr(vars, p, ga)
		}
		return
	}
	if a.Key == "" {
		// Includes the zero Attr, which handlers must ignore. A value with
		// no key has no field name to go under.
		return
	}
	vars[fieldName(prefix, a.Key)] = fieldValue(v)
}

// reserved are field names that the handler writes itself or that journald
// and journalctl give a meaning an attribute must not fake; an attribute
// with such a name is stored as F_<NAME>.
var reserved = map[string]bool{
	"MESSAGE": true, "MESSAGE_ID": true, "PRIORITY": true,
	"CODE_FILE": true, "CODE_LINE": true, "CODE_FUNC": true, "ERRNO": true,
	"SYSLOG_IDENTIFIER": true, "SYSLOG_FACILITY": true, "SYSLOG_PID": true,
	"SYSLOG_TIMESTAMP": true, "SYSLOG_RAW": true, "DOCUMENTATION": true, "TID": true,
	"INVOCATION_ID": true, "USER_INVOCATION_ID": true, "UNIT": true, "USER_UNIT": true,
	"OBJECT_PID": true, "COREDUMP_UNIT": true, "COREDUMP_USER_UNIT": true,
}

// fieldName turns an attribute key under prefix (already sanitised, from
// groups) into a valid journal field name: upper case, [A-Z0-9_] only, not
// starting with '_' (reserved for trusted fields) or a digit, not one of
// the reserved names, at most 64 characters.
func fieldName(prefix, key string) string {
	name := prefix + sanitize(key)
	if name == "" {
		return "F_"
	}
	if c := name[0]; c == '_' || ('0' <= c && c <= '9') || reserved[name] {
		name = "F_" + name
	}
	if len(name) > maxFieldName {
		name = name[:maxFieldName]
	}
	return name
}

// sanitize upper-cases s and replaces every rune outside [A-Z0-9_] by '_'.
func sanitize(s string) string {
	b := make([]byte, 0, len(s))
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z':
			b = append(b, byte(c-'a'+'A'))
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
			b = append(b, byte(c))
		default:
			b = append(b, '_')
		}
	}
	return string(b)
}

// fieldValue renders a resolved value: errors by Error(), durations as Go
// durations ("1.5s"), times as RFC 3339 (parseable, unlike time.Time's
// String), everything else by slog.Value.String.
func fieldValue(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return errorString(err)
		}
	}
	return v.String()
}

// errorString is err.Error(), surviving the panic of a nil pointer stored
// in an error interface: a log line must not crash the daemon.
func errorString(err error) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = fmt.Sprintf("<%T: Error panicked: %v>", err, p)
		}
	}()
	return err.Error()
}
