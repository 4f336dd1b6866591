package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
)

// Conn is what the load generator needs of its packet socket: a raw
// Ethernet socket bound to one interface (ListenClient opens the real one).
// All methods are safe for concurrent use: one goroutine sends while
// another reads.
type Conn interface {
	// Recv blocks until a frame arrives or the read deadline passes, copies
	// it into b and returns its length and when the client's kernel received
	// it (the moment the answer reached the client, before any wake-up of
	// the reader).
	Recv(b []byte) (n int, at time.Time, err error)
	// WriteTo sends one whole Ethernet frame; it does not keep b.
	WriteTo(b []byte, addr net.Addr) (int, error)
	SetReadDeadline(t time.Time) error
}

// Load describes one measurement: who asks, for what, and how hard.
type Load struct {
	Proto   Proto
	MAC     net.HardwareAddr // the client's, as Ethernet and ARP/NDP sender
	Src     netip.Addr       // the client's IP, as ARP sender or IPv6 source
	Targets []netip.Addr     // requests pick one uniformly at random
	// Duration of sending; answers in flight at the end are still awaited.
	Duration time.Duration
	// Exactly one of Window and Rate is set. Window > 0 is a closed loop
	// with that many requests outstanding; Rate > 0 is an open loop sending
	// that many requests per second on a fixed schedule.
	Window int
	Rate   float64
	// Timeout after which an unanswered request counts as lost.
	Timeout time.Duration
	Seed    uint64
}

// Result is what one measurement saw.
type Result struct {
	Sent       uint64 // requests written
	Answered   uint64 // answers matched to a request
	InWindow   uint64 // of those, received before sending stopped
	Lost       uint64 // requests never answered within Timeout
	Unmatched  uint64 // answers with no outstanding request for their address
	WriteErrs  uint64 // failed sends (not counted in Sent)
	Duration   time.Duration
	Latencies  []time.Duration // one per answered request, sorted
	FirstError error           // the first write error, for the report
}

// Rate is answered requests per second of sending.
func (r Result) Rate() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.InWindow) / r.Duration.Seconds()
}

// LossRatio is the share of sent requests that were never answered.
func (r Result) LossRatio() float64 {
	if r.Sent == 0 {
		return 0
	}
	return float64(r.Lost) / float64(r.Sent)
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of the latencies by
// the nearest-rank method, or 0 when there are none.
func (r Result) Percentile(p float64) time.Duration {
	return percentile(r.Latencies, p)
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// Nearest rank: the smallest value with at least p% of the samples at
	// or below it.
	rank := int(float64(len(sorted))*p/100 + 0.999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Merge combines results of the same load shape measured more than once.
func Merge(rs ...Result) Result {
	var m Result
	for _, r := range rs {
		m.Sent += r.Sent
		m.Answered += r.Answered
		m.InWindow += r.InWindow
		m.Lost += r.Lost
		m.Unmatched += r.Unmatched
		m.WriteErrs += r.WriteErrs
		m.Duration += r.Duration
		m.Latencies = append(m.Latencies, r.Latencies...)
		if m.FirstError == nil {
			m.FirstError = r.FirstError
		}
	}
	slices.Sort(m.Latencies)
	return m
}

// Run sends l's requests on c and matches the answers, until l.Duration has
// passed and every request is answered or timed out. It blocks; c stays
// open and is the caller's. Errors are for a socket that stops working, not
// for lost answers, which the Result counts.
func Run(ctx context.Context, c Conn, l Load) (Result, error) {
	if (l.Window > 0) == (l.Rate > 0) {
		return Result{}, errors.New("load: set exactly one of Window and Rate")
	}
	if len(l.Targets) == 0 || l.Duration <= 0 || l.Timeout <= 0 {
		return Result{}, errors.New("load: needs targets, a duration and a timeout")
	}
	b, err := newRequestBuilder(l.Proto, l.MAC, l.Src)
	if err != nil {
		return Result{}, err
	}
	g := &generator{
		c:       c,
		l:       l,
		b:       b,
		tr:      newTracker(l.Targets),
		start:   time.Now().Round(0), // wall clock only; see now
		end:     int64(l.Duration),
		tokens:  make(chan struct{}, max(l.Window, 1)),
		timeout: int64(l.Timeout),
	}
	for range l.Window {
		g.tokens <- struct{}{}
	}
	recvDone := make(chan error, 1)
	go func() { recvDone <- g.receive() }()
	sendErr := g.send(ctx)
	// Wait for the answers still in flight: the receiver returns by itself
	// when nothing is outstanding, or at the deadline.
	g.sendDone.Store(true)
	if g.tr.outstanding() == 0 {
		_ = c.SetReadDeadline(time.Now())
	} else {
		_ = c.SetReadDeadline(time.Now().Add(l.Timeout))
	}
	recvErr := <-recvDone
	_ = c.SetReadDeadline(time.Time{})

	res := g.res
	res.Lost += uint64(g.tr.outstanding())
	res.Duration = time.Duration(min(g.sentUntil, g.end))
	slices.Sort(res.Latencies)
	return res, errors.Join(sendErr, recvErr)
}

type generator struct {
	c       Conn
	l       Load
	b       *requestBuilder
	tr      *tracker
	start   time.Time
	end     int64 // ns after start when sending stops
	timeout int64
	tokens  chan struct{} // closed loop: one per request that may be sent

	sendDone atomic.Bool
	// sentUntil is when sending stopped; written by send before sendDone.
	sentUntil int64

	// res is written by send (Sent, WriteErrs, Lost by expiry) and receive
	// (the rest) on disjoint fields, under mu, and read after both end.
	mu  sync.Mutex
	res Result
}

// now is the time since the start. Receive times come from the kernel's
// wall clock (SO_TIMESTAMPNS), so send times are taken from it too: start
// keeps its monotonic reading, but Sub between a wall-only time and start
// compares wall clocks.
func (g *generator) now() int64 { return int64(time.Now().Round(0).Sub(g.start)) }

// dstAddr is only needed to satisfy WriteTo: a raw packet socket takes the
// destination from the frame itself.
var dstAddr = &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}

func (g *generator) send(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(g.l.Seed, uint64(len(g.l.Targets))))
	frame := make([]byte, 0, nsFrameLen)
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	defer wait.Stop()
	// In a closed loop, a sender with no token for this long looks for
	// requests that have timed out and frees their tokens.
	stall := max(time.Duration(g.timeout)/4, time.Millisecond)
	var interval float64
	if g.l.Rate > 0 {
		interval = float64(time.Second) / g.l.Rate
	}
	var n uint64
	for {
		t := g.now()
		if t >= g.end || ctx.Err() != nil {
			g.sentUntil = t
			return nil
		}
		if g.l.Window > 0 {
			select {
			case <-g.tokens:
			default:
				wait.Reset(stall)
				select {
				case <-g.tokens:
				case <-wait.C:
					g.expire()
					continue
				case <-ctx.Done():
					continue
				}
			}
		} else if due := int64(float64(n) * interval); due > t {
			// Sleeping rounds up to about a millisecond, so at high rates
			// requests leave in small bursts on the same schedule.
			time.Sleep(time.Duration(due - t))
			continue
		}
		i := rng.IntN(len(g.l.Targets))
		f := g.b.build(frame, g.l.Targets[i])
		// Record before writing: the kernel may answer within the write.
		g.tr.sent(i, g.now())
		if _, err := g.c.WriteTo(f, dstAddr); err != nil {
			g.tr.unsend(i)
			g.mu.Lock()
			g.res.WriteErrs++
			if g.res.FirstError == nil {
				g.res.FirstError = err
			}
			g.mu.Unlock()
			if g.l.Window > 0 {
				g.tokens <- struct{}{}
			}
			if errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("load: send: %w", err)
			}
			continue
		}
		n++
		g.mu.Lock()
		g.res.Sent++
		g.mu.Unlock()
	}
}

// expire counts requests older than the timeout as lost and gives their
// tokens back.
func (g *generator) expire() {
	n := g.tr.expire(g.now() - g.timeout)
	if n == 0 {
		return
	}
	g.mu.Lock()
	g.res.Lost += uint64(n)
	g.mu.Unlock()
	for range n {
		select {
		case g.tokens <- struct{}{}:
		default:
		}
	}
}

func (g *generator) receive() error {
	buf := make([]byte, 256)
	for {
		n, at, err := g.c.Recv(buf)
		t := int64(at.Sub(g.start))
		if err != nil {
			if g.sendDone.Load() {
				return nil // the drain deadline
			}
			return fmt.Errorf("load: receive: %w", err)
		}
		addr, err := parseAnswer(g.l.Proto, buf[:n])
		if err != nil {
			continue
		}
		lat, ok := g.tr.answered(addr, t)
		g.mu.Lock()
		if !ok {
			g.res.Unmatched++
		} else {
			g.res.Answered++
			if t <= g.end {
				g.res.InWindow++
			}
			g.res.Latencies = append(g.res.Latencies, time.Duration(lat))
		}
		g.mu.Unlock()
		if ok && g.l.Window > 0 {
			select {
			case g.tokens <- struct{}{}:
			default:
			}
		}
		if g.sendDone.Load() && g.tr.outstanding() == 0 {
			return nil
		}
	}
}

// tracker holds the send times of outstanding requests per target, oldest
// first, so an answer is matched to the oldest request for its address.
type tracker struct {
	index map[netip.Addr]int // target → position in queues; read-only

	mu     sync.Mutex // guards queues and total
	queues []fifo
	total  int
}

// fifo is a queue of send times (ns after the start).
type fifo struct {
	times []int64
	head  int
}

func newTracker(targets []netip.Addr) *tracker {
	t := &tracker{index: make(map[netip.Addr]int, len(targets)), queues: make([]fifo, len(targets))}
	for i, a := range targets {
		t.index[a] = i
	}
	return t
}

func (t *tracker) sent(i int, at int64) {
	t.mu.Lock()
	q := &t.queues[i]
	if q.head > 0 && q.head == len(q.times) {
		q.times, q.head = q.times[:0], 0
	} else if q.head >= 1024 && q.head*2 >= len(q.times) {
		// A queue that never empties (one target, many outstanding) would
		// otherwise grow for the whole run.
		q.times = append(q.times[:0], q.times[q.head:]...)
		q.head = 0
	}
	q.times = append(q.times, at)
	t.total++
	t.mu.Unlock()
}

// unsend forgets the newest request for target i (its write failed).
func (t *tracker) unsend(i int) {
	t.mu.Lock()
	q := &t.queues[i]
	if len(q.times) > q.head {
		q.times = q.times[:len(q.times)-1]
		t.total--
	}
	t.mu.Unlock()
}

// answered matches an answer for addr received at at to the oldest
// outstanding request for addr and returns its latency.
func (t *tracker) answered(addr netip.Addr, at int64) (int64, bool) {
	i, ok := t.index[addr]
	if !ok {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	q := &t.queues[i]
	if q.head == len(q.times) {
		return 0, false
	}
	sentAt := q.times[q.head]
	q.head++
	t.total--
	return at - sentAt, true
}

// expire drops the requests sent before before and returns how many.
func (t *tracker) expire(before int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i := range t.queues {
		q := &t.queues[i]
		for q.head < len(q.times) && q.times[q.head] < before {
			q.head++
			n++
		}
	}
	t.total -= n
	return n
}

func (t *tracker) outstanding() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}
