package gossip

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostlb/hostlb/internal/cpuload"
)

var (
	fpWindow = flag.Duration("fp.window", 10*time.Second, "BenchmarkFalsePositivesUnderLoad: length of each measured window")
	fpSpin   = flag.Int("fp.spin", 1, "BenchmarkFalsePositivesUnderLoad: busy goroutines per GOMAXPROCS")
)

// fpCounter counts memberlist's failure-detector log lines.
type fpCounter struct {
	suspects, refutes, marked atomic.Int64
}

func (c *fpCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *fpCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *fpCounter) WithGroup(string) slog.Handler            { return c }
func (c *fpCounter) Handle(_ context.Context, r slog.Record) error {
	switch {
	case strings.HasPrefix(r.Message, "Suspect ") && strings.HasSuffix(r.Message, "has failed, no acks received"):
		c.suspects.Add(1)
	case strings.HasPrefix(r.Message, "Refuting a suspect message"):
		c.refutes.Add(1)
	case strings.HasPrefix(r.Message, "Marking ") && strings.Contains(r.Message, "as failed"):
		c.marked.Add(1)
	}
	return nil
}

// BenchmarkFalsePositivesUnderLoad measures the fast profile's false
// positives: 5 nodes on real loopback UDP/TCP, none ever killed, first idle
// and then with GOMAXPROCS×fp.spin goroutines spinning for fp.window. Every
// suspicion, refutation, "marking as failed" and dead event is a false
// positive. All five nodes share the loaded process and its scheduler, which
// is harsher than one loaded node among idle ones.
//
//	go test -run '^$' -bench FalsePositivesUnderLoad -benchtime 1x ./gossip/ [-fp.window 30s -fp.spin 2]
func BenchmarkFalsePositivesUnderLoad(b *testing.B) {
	for b.Loop() {
		spin := *fpSpin * runtime.GOMAXPROCS(0)
		idle := measureFalsePositives(b, *fpWindow, 0, 0)
		procs := measureFalsePositives(b, *fpWindow, 0, spin)
		gor := measureFalsePositives(b, *fpWindow, spin, 0)
		for _, r := range []struct {
			name string
			fpResult
		}{{"idle", idle}, {"procload", procs}, {"goload", gor}} {
			b.ReportMetric(float64(r.suspects), r.name+"-suspects")
			b.ReportMetric(float64(r.dead), r.name+"-dead")
			b.Logf("%s (%d spinning goroutines, %d spinning processes, %v, GOMAXPROCS %d): %d suspicions, %d refutations, %d marked failed, %d dead events",
				r.name, r.spinners, r.procs, r.window, runtime.GOMAXPROCS(0), r.suspects, r.refutes, r.marked, r.dead)
		}
	}
}

type fpResult struct {
	procs                           int
	spinners                        int
	window                          time.Duration
	suspects, refutes, marked, dead int64
}

// measureFalsePositives runs 5 nodes for window with spinners busy
// goroutines in this process and procs busy child processes (the load a
// node's other workloads put on it: the kernel, not Go, schedules them).
func measureFalsePositives(tb testing.TB, window time.Duration, spinners, procs int) fpResult {
	counter := &fpCounter{}
	logger := slog.New(counter)
	var dead atomic.Int64
	var nodes []*node
	for i := range 5 {
		cfg := loopback(testKey, false, nodes...)
		cfg.Logger = logger
		n := startNode(tb, fmt.Sprintf("fp%d", i), cfg)
		nodes = append(nodes, n)
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.name
	}
	eventually(tb, 5*time.Second, "fp ring joins", func() error { return seesAlive(nodes, names) })
	// Count from here on.
	counter.suspects.Store(0)
	counter.refutes.Store(0)
	counter.marked.Store(0)
	for _, n := range nodes {
		n.mu.Lock()
		n.events = nil
		n.mu.Unlock()
	}

	stopLoad := cpuload.Start(tb, procs, spinners)
	timer := time.NewTimer(window)
	<-timer.C // the measured window itself, not synchronisation
	stopLoad()

	for _, n := range nodes {
		for _, other := range names {
			for _, k := range n.eventsFor(other) {
				if k == EventDead {
					dead.Add(1)
				}
			}
		}
	}
	res := fpResult{
		spinners: spinners, procs: procs, window: window,
		suspects: counter.suspects.Load(), refutes: counter.refutes.Load(),
		marked: counter.marked.Load(), dead: dead.Load(),
	}
	for _, n := range nodes {
		n.stop(tb)
	}
	return res
}
