package gossip

import (
	"context"
	"log"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"
)

// LevelTrace is below slog.LevelDebug; memberlist's rare [TRACE] lines go
// there.
const LevelTrace = slog.LevelDebug - 4

// Kinds of dropped or rejected gossip input: the keys of Ring.InputErrors.
// Each kind is logged at most once per dropLogInterval (see dropLog).
const (
	InputDecrypt       = "decrypt"        // a packet or stream that no installed key decrypts
	InputMalformed     = "malformed"      // a memberlist message that does not decode
	InputUnknownType   = "unknown-type"   // a memberlist message type it does not know
	InputLabel         = "label"          // a packet or stream with the wrong label
	InputQueueFull     = "queue-full"     // memberlist's inbound handler queue overflowed
	InputChunk         = "chunk"          // an announced-set chunk that does not decode
	InputState         = "state"          // push-pull state that does not decode
	InputDigest        = "digest"         // a probe-ack digest that does not decode
	InputMeta          = "meta"           // node metadata oversized or unreadable
	InputGeneration    = "generation"     // a set, digest or own generation beyond its bound
	InputUnknownMember = "unknown-member" // a set of a member memberlist has not reported, over maxUnknownMembers
	InputOther         = "other"          // any other memberlist warning or error
)

// InputErrors returns how many inputs of each kind (the Input* constants)
// this node has dropped or rejected since it started, including those
// whose log lines were aggregated. The caller owns the map.
func (r *Ring) InputErrors() map[string]uint64 { return r.drops.counts() }

// newStdLogger bridges memberlist's *log.Logger to slog. memberlist writes
// one line per call, "[LEVEL] memberlist: message"; the level picks the slog
// level and the prefix becomes the attribute component=memberlist. Warnings
// and errors about bad input are aggregated (see classifyLine). Closing the
// returned writer drops later lines: memberlist's Shutdown does not wait for
// its goroutines, which may still log for a moment after it returns.
func newStdLogger(l *slog.Logger) (*log.Logger, *logWriter) {
	w := &logWriter{l: l.With("component", "memberlist"), drops: &dropLog{}}
	return log.New(w, "", 0), w
}

type logWriter struct {
	l *slog.Logger
	// drops aggregates repeated lines; the Ring replaces it with its own
	// before memberlist starts, so that Ring.InputErrors counts them.
	drops  *dropLog
	mu     sync.RWMutex // guards closed; held for reading while a line is logged
	closed bool
}

// Close waits for lines being logged, logs what drops still holds back, and
// drops every later line.
func (w *logWriter) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.drops.close()
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return len(p), nil
	}
	level, msg := parseLogLine(string(p))
	if kind, key := classifyLine(level, msg); kind != "" {
		w.drops.noteKey(w.l, level, kind, key, msg)
		return len(p), nil
	}
	if w.l.Enabled(context.Background(), level) {
		w.l.Log(context.Background(), level, msg)
	}
	return len(p), nil
}

// failoverLines start memberlist's lines about members failing, being
// suspected, refuting or changing address: never aggregated, whatever
// their level, because they explain a failover.
var failoverLines = []string{
	"Suspect ", "Marking ", "Refuting ", "Conflicting address", "Was able to connect",
	"Updating address", "Leave but", "Failed fallback TCP ping",
}

// inputLines map a memberlist line about bad input to its kind, by a
// substring of the line, first match wins (memberlist v0.7.0, net.go and
// net_transport.go).
var inputLines = []struct{ substr, kind string }{
	{"ecrypt", InputDecrypt},
	{"label", InputLabel},
	{"not supported", InputUnknownType},
	{"invalid msgType", InputUnknownType},
	{"handler queue full", InputQueueFull},
	{"Failed to decode", InputMalformed},
	{"missing message type byte", InputMalformed},
	{"packet too short", InputMalformed},
	{"invalid checksum", InputMalformed},
	{"Failed to decompress", InputMalformed},
	{"truncated messages", InputMalformed},
	{"ailed to receive", InputMalformed},
	{"Failed to read remote state", InputMalformed},
	{"Failed push/pull merge", InputMalformed},
	{"unexpected double", InputMalformed},
	{"Remote node state size", InputMalformed},
	{"ping for unexpected node", InputMalformed},
}

// classifyLine returns the kind of a bridged memberlist line that is
// aggregated and its aggregation key, or "" for a line logged as it is:
// below Warn, or about a failover. Lines about bad input share one key per
// kind, whatever the peer; other warnings and errors are aggregated by
// their text with addresses and numbers taken out (normalizeLine).
func classifyLine(level slog.Level, msg string) (kind, key string) {
	if level < slog.LevelWarn {
		return "", ""
	}
	for _, p := range failoverLines {
		if strings.HasPrefix(msg, p) {
			return "", ""
		}
	}
	for _, l := range inputLines {
		if strings.Contains(msg, l.substr) {
			return l.kind, l.kind
		}
	}
	return InputOther, InputOther + " " + normalizeLine(msg)
}

// normalizeLine replaces every run of hex digits, dots, colons and brackets
// that holds a decimal digit (addresses, ports, counts, checksums) with #,
// so that one error from many peers is one line.
func normalizeLine(s string) string {
	var b strings.Builder
	isRun := func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || strings.IndexByte(".:[]", c) >= 0
	}
	for i := 0; i < len(s); {
		j := i
		digit := false
		for j < len(s) && isRun(s[j]) {
			digit = digit || s[j] >= '0' && s[j] <= '9'
			j++
		}
		switch {
		case j == i:
			b.WriteByte(s[i])
			i++
		case digit:
			b.WriteByte('#')
			i = j
		default:
			b.WriteString(s[i:j])
			i = j
		}
	}
	return b.String()
}

// dropLogInterval is how often a repeated line is logged at most.
const dropLogInterval = 10 * time.Second

// maxDropKeys bounds the aggregation keys dropLog tracks: lines with a new
// key beyond it share their kind's key (forged input can vary the text).
const maxDropKeys = 128

// dropLog aggregates log lines about dropped or rejected input so that a
// flood of garbage (100,000 packets) cannot flood the journal, whose rate
// limit would then drop the lines that explain a failover. The first line
// with a key is logged; later ones within dropLogInterval are only counted,
// and one line per key and interval, from a timer, says how many there
// were. Counts per kind are kept for metrics. Its zero value is ready.
type dropLog struct {
	interval time.Duration    // zero: dropLogInterval (tests shorten it)
	now      func() time.Time // nil: time.Now (tests use a fake clock)

	mu     sync.Mutex // guards everything below
	total  map[string]uint64
	keys   map[string]*dropKey
	timer  *time.Timer // armed while some key holds back lines
	closed bool
}

// dropKey is the state of one aggregation key.
type dropKey struct {
	kind   string
	l      *slog.Logger
	level  slog.Level
	logged time.Time // when a line with this key was last logged
	held   uint64    // lines counted since then
	last   string    // the message of the last line held back
}

// note counts an input of kind and logs msg with args, aggregated by kind.
func (d *dropLog) note(l *slog.Logger, level slog.Level, kind, msg string, args ...any) {
	d.noteKey(l, level, kind, kind, msg, args...)
}

// noteKey counts an input of kind and logs msg with args unless a line
// with key was logged less than an interval ago; then the line is held
// back and counted in the next summary.
func (d *dropLog) noteKey(l *slog.Logger, level slog.Level, kind, key, msg string, args ...any) {
	d.mu.Lock()
	if d.total == nil {
		d.total = make(map[string]uint64)
		d.keys = make(map[string]*dropKey)
	}
	d.total[kind]++
	if d.closed || !l.Enabled(context.Background(), level) {
		d.mu.Unlock()
		return
	}
	k := d.keys[key]
	if k == nil && len(d.keys) >= maxDropKeys {
		key = kind
		k = d.keys[key]
	}
	if k == nil {
		k = &dropKey{kind: kind}
		d.keys[key] = k
	}
	k.l, k.level = l, level
	now := d.clock()
	if !k.logged.IsZero() && now.Sub(k.logged) < d.every() {
		k.held++
		k.last = msg
		if d.timer == nil {
			d.timer = time.AfterFunc(k.logged.Add(d.every()).Sub(now), d.fire)
		}
		d.mu.Unlock()
		return
	}
	var summary func()
	if k.held > 0 {
		summary = k.summary(now)
	}
	k.logged = now
	d.mu.Unlock()
	if summary != nil {
		summary()
	}
	l.Log(context.Background(), level, msg, args...)
}

// summary returns the line that reports what k held back, and resets it.
// d.mu must be held; the line is logged after it is released.
func (k *dropKey) summary(now time.Time) func() {
	l, level, kind, n, last, since := k.l, k.level, k.kind, k.held, k.last, now.Sub(k.logged)
	k.held, k.logged = 0, now
	return func() {
		l.Log(context.Background(), level, "repeated gossip log lines aggregated",
			"kind", kind, "count", n, "in", since.Round(time.Millisecond), "last", last)
	}
}

// flushDueLocked returns the summaries of every key whose interval has
// passed (all: of every key holding lines back), to log once d.mu is
// released, and re-arms the timer for the others.
func (d *dropLog) flushDueLocked(now time.Time, all bool) []func() {
	var out []func()
	var next time.Duration
	for _, k := range d.keys {
		if k.held == 0 {
			continue
		}
		if due := k.logged.Add(d.every()).Sub(now); due > 0 && !all {
			if next == 0 || due < next {
				next = due
			}
			continue
		}
		out = append(out, k.summary(now))
	}
	d.timer = nil
	if next > 0 && !d.closed {
		d.timer = time.AfterFunc(next, d.fire)
	}
	return out
}

// fire is the timer's: it logs the summaries that are due.
func (d *dropLog) fire() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	lines := d.flushDueLocked(d.clock(), false)
	d.mu.Unlock()
	for _, f := range lines {
		f()
	}
}

// close logs every summary still held back, stops the timer and drops
// later lines (they are still counted). It is idempotent.
func (d *dropLog) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	if d.timer != nil {
		d.timer.Stop()
	}
	lines := d.flushDueLocked(d.clock(), true)
	d.mu.Unlock()
	for _, f := range lines {
		f()
	}
}

func (d *dropLog) counts() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.total == nil {
		return map[string]uint64{}
	}
	return maps.Clone(d.total)
}

func (d *dropLog) clock() time.Time {
	if d.now != nil {
		return d.now()
	}
	return time.Now()
}

func (d *dropLog) every() time.Duration {
	if d.interval > 0 {
		return d.interval
	}
	return dropLogInterval
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
