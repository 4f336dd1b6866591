package heartbeat

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of rejected input: the keys of Stats.Rejected. Each kind is logged
// the first time, then at most once per rejectLogInterval with the count
// since the last line.
const (
	RejectOversized = "oversized"  // longer than maxDatagram (512 bytes)
	RejectShort     = "short"      // shorter than the smallest datagram
	RejectFormat    = "format"     // a format byte this build does not know
	RejectDecrypt   = "decrypt"    // no installed key opens it (another key, another cluster label, or forged)
	RejectMalformed = "malformed"  // opened, but the payload does not decode
	RejectReplay    = "replay"     // seq not above the last one of the sender's boot: replayed, duplicated or reordered
	RejectOldBoot   = "old-boot"   // from a boot older than the sender's current one
	RejectStale     = "stale"      // sent longer than StaleAfter before it was read
	RejectSelf      = "self"       // carries this node's own name (a reflection, or two nodes share a name)
	RejectPeersFull = "peers-full" // from a new sender while maxPeers senders are tracked
	RejectRead      = "read-error" // the socket read failed (not counted as a datagram)
)

const rejectLogInterval = 10 * time.Second

// Stats counts what a Heart did since it started. Counters only grow.
type Stats struct {
	// Ticks is the number of send rounds (none while paused).
	Ticks uint64
	// SentBeats is the datagrams sent to targets and to nodes that asked
	// for heartbeats; SentWatch the watch-only ones (to watched nodes that
	// got no heartbeat this round); SendErrors the sends that failed.
	SentBeats, SentWatch, SendErrors uint64
	// Received is the datagrams accepted: each proves its sender alive.
	Received uint64
	// Rejected counts the datagrams dropped, by kind (the Reject* constants).
	Rejected map[string]uint64
	// Losses and Resumes count OnLoss and OnResume calls.
	Losses, Resumes uint64
	// MaxGap is the longest silence between two accepted datagrams of a
	// watched node while it was alive (not lost): how close the node came
	// to being declared lost.
	MaxGap time.Duration
}

// counters are the Heart's Stats while it runs.
type counters struct {
	sendErrors, received, losses, resumes atomic.Uint64
	maxGap                                atomic.Int64

	mu sync.Mutex // guards everything below
	// A round's counts are added at once, so that a snapshot never sees
	// half a round.
	ticks, sentBeats, sentWatch uint64
	rejects                     map[string]uint64
	logged                      map[string]*rejectLog
}

// round adds one send round's counts.
func (c *counters) round(beats, watches uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ticks++
	c.sentBeats += beats
	c.sentWatch += watches
}

// extra adds watch requests sent between rounds (accusations).
func (c *counters) extra(watches uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sentWatch += watches
}

// rejectLog is the aggregation state of one kind.
type rejectLog struct {
	at   time.Time // when a line of this kind was last logged
	held uint64    // rejects of this kind since then
}

func (c *counters) noteGap(d time.Duration) {
	for {
		cur := c.maxGap.Load()
		if int64(d) <= cur || c.maxGap.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// reject counts a rejected datagram of kind and logs it, aggregated by kind.
func (c *counters) reject(l *slog.Logger, level slog.Level, kind, msg string, args ...any) {
	c.mu.Lock()
	if c.rejects == nil {
		c.rejects = map[string]uint64{}
	}
	c.rejects[kind]++
	c.mu.Unlock()
	c.logAggregated(l, level, kind, msg, args...)
}

// logAggregated logs msg the first time for kind, then at most once per
// rejectLogInterval with the number of lines held back.
func (c *counters) logAggregated(l *slog.Logger, level slog.Level, kind, msg string, args ...any) {
	now := time.Now()
	c.mu.Lock()
	if c.logged == nil {
		c.logged = map[string]*rejectLog{}
	}
	r := c.logged[kind]
	if r == nil {
		r = &rejectLog{}
		c.logged[kind] = r
	}
	if !r.at.IsZero() && now.Sub(r.at) < rejectLogInterval {
		r.held++
		c.mu.Unlock()
		return
	}
	held := r.held
	r.at, r.held = now, 0
	c.mu.Unlock()
	if !l.Enabled(context.Background(), level) {
		return
	}
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	l.Log(context.Background(), level, msg, append(args, "kind", kind)...)
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	rejects := maps.Clone(c.rejects)
	ticks, beats, watches := c.ticks, c.sentBeats, c.sentWatch
	c.mu.Unlock()
	if rejects == nil {
		rejects = map[string]uint64{}
	}
	return Stats{
		Ticks:      ticks,
		SentBeats:  beats,
		SentWatch:  watches,
		SendErrors: c.sendErrors.Load(),
		Received:   c.received.Load(),
		Rejected:   rejects,
		Losses:     c.losses.Load(),
		Resumes:    c.resumes.Load(),
		MaxGap:     time.Duration(c.maxGap.Load()),
	}
}
