// Command failover is the failover benchmark (`make bench`, as root): for
// hostlb and for keepalived as the baseline, in the same run, it builds a
// lab of a client and three nodes, and repeats crash (link down + SIGKILL)
// and graceful stop (SIGTERM) of the VIP's owner while the client probes
// every 10 ms with ARP and TCP. It prints the BENCHMARKS.md table, writes
// one CSV line per repetition, and plots the CDFs to a PNG with gnuplot.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hostlb/hostlb/tests/failover"
)

func main() {
	var (
		hostlbd  = flag.String("hostlbd", "", "hostlbd binary (default: go build it)")
		reps     = flag.Int("reps", 30, "repetitions of each fault")
		kinds    = flag.String("kinds", "hostlb,keepalived,keepalived-tuned", "implementations to measure, comma separated")
		faults   = flag.String("faults", "crash,graceful", "faults to measure, comma separated")
		out      = flag.String("out", filepath.Join(os.TempDir(), "hostlb-failover"), "directory for the CSV, plot data, daemon logs and the built hostlbd")
		png      = flag.String("png", "docs/failover.png", "the CDF plot; the timeline goes beside it as <name>-timeline.png (\"\" for none)")
		deadline = flag.Duration("deadline", 20*time.Second, "longest failover waited for in one repetition")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *hostlbd, *reps, split(*kinds), split(*faults), *out, *png, *deadline)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, hostlbd string, reps int, kinds, faults []string, out, png string, deadline time.Duration) error {
	if os.Geteuid() != 0 {
		// Like the root tests: say so and skip, so `make bench` still runs
		// the rest for a user.
		fmt.Println("failover: skipped, needs root to create network namespaces (run `sudo make bench`)")
		return nil
	}
	for _, tool := range []string{"ip", "keepalived"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (make deps installs it): %w", tool, err)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if hostlbd == "" {
		hostlbd = filepath.Join(out, "hostlbd")
		logf("building %s", hostlbd)
		if b, err := exec.Command("go", "build", "-o", hostlbd, "github.com/hostlb/hostlb/cmd/hostlbd").CombinedOutput(); err != nil {
			return fmt.Errorf("go build hostlbd: %w\n%s", err, b)
		}
	}
	hostlbd, err := filepath.Abs(hostlbd)
	if err != nil {
		return err
	}
	began := time.Now()
	var scs []*failover.Scenario
	for _, k := range kinds {
		kind := failover.Kind(k)
		logDir, err := filepath.Abs(filepath.Join(out, "logs", k))
		if err != nil {
			return err
		}
		_ = os.RemoveAll(logDir)
		var got []*failover.Scenario
		err = failover.RunEnv(logf, func(e *failover.Env) error {
			c := failover.New(e, failover.Options{Kind: kind, Hostlbd: hostlbd, LogDir: logDir})
			c.StartAll()
			vip := c.VIPs()[0]
			p, err := c.NewProbers(vip)
			if err != nil {
				return err
			}
			defer p.Close()
			for _, f := range faults {
				sc := &failover.Scenario{Kind: kind, Fault: failover.Fault(f)}
				got = append(got, sc)
				for i := range reps {
					r, err := c.Measure(ctx, p, vip, sc.Fault, i+1, deadline)
					if err != nil {
						return fmt.Errorf("%s %s repetition %d: %w", kind, f, i+1, err)
					}
					sc.Results = append(sc.Results, r)
					logRep(r, reps)
					c.Restore(r)
				}
			}
			return nil
		})
		scs = append(scs, got...)
		if err != nil {
			report(os.Stdout, scs, time.Since(began))
			return fmt.Errorf("%s: %w (daemon logs in %s)", k, err, logDir)
		}
	}

	f, err := os.Create(filepath.Join(out, "failover.csv"))
	if err != nil {
		return err
	}
	if err := failover.WriteCSV(f, scs); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if png != "" {
		if err := os.MkdirAll(filepath.Dir(png), 0o755); err != nil {
			return err
		}
		if err := failover.Plot(png, out, scs); err != nil {
			logf("plot: %v", err)
		} else {
			logf("plot: %s", png)
		}
		timeline := strings.TrimSuffix(png, ".png") + "-timeline.png"
		if err := failover.PlotTimeline(timeline, out, scs); err != nil {
			logf("plot: %v", err)
		} else {
			logf("plot: %s", timeline)
		}
	}
	report(os.Stdout, scs, time.Since(began))
	logf("per repetition: %s", filepath.Join(out, "failover.csv"))
	return nil
}

func logRep(r failover.Result, reps int) {
	if r.Err != "" {
		logf("%-10s %-8s %2d/%d  %s -> %q: %s (failed connects %d)", r.Kind, r.Fault, r.Rep, reps, r.Old, r.New, r.Err, r.FailedConnects)
		return
	}
	overlap := ""
	if r.Overlap {
		overlap = fmt.Sprintf("  (both answered for %.0f ms)", ms(r.OverlapFor))
	}
	logf("%-10s %-8s %2d/%d  %s -> %s  ARP %7.1f ms  TCP %7.1f ms  failed connects %3d/%d%s",
		r.Kind, r.Fault, r.Rep, reps, r.Old, r.New, ms(r.ARP), ms(r.TCP), r.FailedConnects, r.Connects, overlap)
	if r.Fault == failover.Graceful && r.FailedConnects > 0 && r.FailedConnects <= 3 {
		// A lossless hand-over is the target: say how each one failed.
		for _, e := range r.FailedErrs {
			logf("    failed connect %s", e)
		}
	}
}

// ratio prints keepalived kind kk's times over hostlb's for fault f.
func ratio(w *os.File, f failover.Fault, kk failover.Kind, h, k *failover.Scenario) {
	ha, ht := h.Times()
	ka, kt := k.Times()
	sha, sht, ska, skt := failover.Summarize(ha), failover.Summarize(ht), failover.Summarize(ka), failover.Summarize(kt)
	if sha.N == 0 || ska.N == 0 || sha.P50 <= 0 || sha.P99 <= 0 {
		return
	}
	fmt.Fprintf(w, "- %s: %s/hostlb ratio, ARP p50 %.2f×, p99 %.2f×", f, kk,
		float64(ska.P50)/float64(sha.P50), float64(ska.P99)/float64(sha.P99))
	if sht.P50 > 0 && sht.P99 > 0 && skt.N > 0 {
		fmt.Fprintf(w, "; TCP p50 %.2f×, p99 %.2f×", float64(skt.P50)/float64(sht.P50), float64(skt.P99)/float64(sht.P99))
	}
	fmt.Fprintln(w)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func report(w *os.File, scs []*failover.Scenario, took time.Duration) {
	fmt.Fprintf(w, "\nFailover as the client sees it (%s, %d scenarios, took %s)\n\n", time.Now().Format("2006-01-02"), len(scs), took.Round(time.Second))
	failover.Table(w, scs)
	fmt.Fprintln(w)
	find := func(k failover.Kind, f failover.Fault) *failover.Scenario {
		for _, s := range scs {
			if s.Kind == k && s.Fault == f {
				return s
			}
		}
		return nil
	}
	for _, f := range []failover.Fault{failover.Crash, failover.Graceful} {
		for _, kk := range []failover.Kind{failover.Keepalived, failover.KeepalivedTuned} {
			h, k := find(failover.HostLB, f), find(kk, f)
			if h == nil || k == nil {
				continue
			}
			ratio(w, f, kk, h, k)
		}
	}
	if h := find(failover.HostLB, failover.Crash); h != nil {
		arp, tcp := h.Times()
		noFail, _, _ := h.Failed()
		a, t := failover.Summarize(arp), failover.Summarize(tcp)
		ok := a.N > 0 && noFail == 0 && a.P99 <= 300*time.Millisecond && t.P99 <= 300*time.Millisecond
		than := ""
		if k := find(failover.KeepalivedTuned, failover.Crash); k != nil {
			karp, ktcp := k.Times()
			ka, kt := failover.Summarize(karp), failover.Summarize(ktcp)
			ok = ok && a.P99 < ka.P99 && t.P99 < kt.P99
			than = fmt.Sprintf(" and below keepalived-tuned's (ARP %v, TCP %v)", ka.P99.Round(time.Millisecond), kt.P99.Round(time.Millisecond))
		}
		fmt.Fprintf(w, "- target crash p99 <= 300 ms%s: ARP p99 %v, TCP p99 %v, %d repetitions without failover: %s\n",
			than, a.P99.Round(time.Millisecond), t.P99.Round(time.Millisecond), noFail, verdict(ok))
	}
	if h := find(failover.HostLB, failover.Graceful); h != nil {
		arp, tcp := h.Times()
		noFail, fc, total := h.Failed()
		a, t := failover.Summarize(arp), failover.Summarize(tcp)
		fmt.Fprintf(w, "- target graceful p99 <= 50 ms, no failed connect: ARP p99 %v, TCP p99 %v, failed connects %d of %d%s: %s\n",
			a.P99.Round(time.Millisecond), t.P99.Round(time.Millisecond), fc, total, whyFailed(h),
			verdict(a.N > 0 && noFail == 0 && a.P99 <= 50*time.Millisecond && t.P99 <= 50*time.Millisecond && fc == 0))
	}
}

// whyFailed counts a scenario's failed connects by why they failed: reset
// (the old owner accepted the connection and its next packet reached the
// new owner, which knows nothing of it), timeout, refused, other.
func whyFailed(sc *failover.Scenario) string {
	counts := map[string]int{}
	for _, r := range sc.Results {
		for _, e := range r.FailedErrs {
			switch {
			case strings.Contains(e, "reset by peer"):
				counts["reset"]++
			case strings.Contains(e, "timeout"):
				counts["timeout"]++
			case strings.Contains(e, "refused"):
				counts["refused"]++
			default:
				counts["other"]++
			}
		}
	}
	if len(counts) == 0 {
		return ""
	}
	var parts []string
	for _, k := range []string{"reset", "timeout", "refused", "other"} {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func verdict(ok bool) string {
	if ok {
		return "HOLDS"
	}
	return "MISSED"
}
