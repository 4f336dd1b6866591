package heartbeat

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/hostlb/hostlb/internal/cpuload"
)

var (
	flWindow = flag.Duration("hb.window", 10*time.Second, "BenchmarkFalseLossesUnderLoad: length of each measured window")
	flSpin   = flag.Int("hb.spin", 1, "BenchmarkFalseLossesUnderLoad: busy goroutines per GOMAXPROCS in the goroutines case")
	flNodes  = flag.Int("hb.nodes", 3, "BenchmarkFalseLossesUnderLoad: nodes, each sending to and watching every other")
)

// BenchmarkFalseLossesUnderLoad measures spurious losses: hb.nodes Hearts
// on loopback UDP at the default timing (40 ms × 3), each sending to and
// watching every other, none ever stopped, for hb.window in each of: idle;
// 2 and 8 CPU-burning child processes (a node's other workloads, which the
// kernel schedules); GOMAXPROCS × hb.spin busy goroutines in this process
// (load inside the daemon's own Go scheduler). Every loss is a false one,
// i.e. a takeover the owner did not deserve. All nodes share the loaded
// process, which is harsher than one loaded node among idle ones.
//
//	go test -run '^$' -bench FalseLossesUnderLoad -benchtime 1x ./heartbeat/ [-hb.window 60s -hb.spin 4]
func BenchmarkFalseLossesUnderLoad(b *testing.B) {
	spin := *flSpin * runtime.GOMAXPROCS(0)
	for _, load := range []struct {
		name            string
		spinners, procs int
	}{
		{"idle", 0, 0},
		{"procs=2", 0, 2},
		{"procs=8", 0, 8},
		{fmt.Sprintf("goroutines=%d", spin), spin, 0},
	} {
		b.Run(load.name, func(b *testing.B) {
			for b.Loop() {
				r := measureFalseLosses(b, *flNodes, *flWindow, load.spinners, load.procs)
				perHour := float64(r.losses) / r.window.Hours()
				b.ReportMetric(float64(r.losses), "losses")
				b.ReportMetric(perHour, "losses/h")
				b.ReportMetric(float64(r.maxGap.Milliseconds()), "maxgap-ms")
				b.Logf("%s, %d nodes (%d watched pairs), %v, GOMAXPROCS %d: %d false losses (%.0f/h), max gap %v, %d stale, %d datagrams",
					load.name, r.nodes, r.pairs, r.window, runtime.GOMAXPROCS(0), r.losses, perHour, r.maxGap, r.stale, r.received)
			}
		})
	}
}

type lossResult struct {
	nodes, pairs    int
	window          time.Duration
	losses, resumes uint64
	stale, received uint64
	maxGap          time.Duration
}

// measureFalseLosses runs nodes Hearts in a full mesh for window, with
// spinners busy goroutines in this process and procs busy child processes,
// and counts their losses (all false: nobody stops).
func measureFalseLosses(tb testing.TB, nodes int, window time.Duration, spinners, procs int) lossResult {
	ns := make([]*node, nodes)
	for i := range ns {
		ns[i] = startNode(tb, fmt.Sprintf("fp%d", i))
	}
	mesh(ns...)
	for _, n := range ns {
		for _, o := range ns {
			if o != n {
				waitState(tb, n, o.name, Alive, 5*time.Second)
			}
		}
	}
	base := make([]Stats, nodes)
	for i, n := range ns {
		base[i] = n.h.Stats()
	}

	stopLoad := cpuload.Start(tb, procs, spinners)
	ctx, cancel := context.WithTimeout(context.Background(), window)
	<-ctx.Done() // the measured window itself, not synchronisation
	cancel()
	stopLoad()

	r := lossResult{nodes: nodes, pairs: nodes * (nodes - 1), window: window}
	for i, n := range ns {
		s := n.h.Stats()
		r.losses += s.Losses - base[i].Losses
		r.resumes += s.Resumes - base[i].Resumes
		r.stale += s.Rejected[RejectStale] - base[i].Rejected[RejectStale]
		r.received += s.Received - base[i].Received
		r.maxGap = max(r.maxGap, s.MaxGap)
		n.stop()
	}
	return r
}
