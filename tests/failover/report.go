package failover

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Summary is the distribution of one metric over a scenario's repetitions.
type Summary struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// Summarize returns nearest-rank percentiles of ds (with 30 samples p99 is
// the maximum).
func Summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Summary{N: len(s), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: s[len(s)-1]}
}

// Scenario groups the repetitions of one kind and fault.
type Scenario struct {
	Kind    Kind
	Fault   Fault
	Results []Result
}

// Times returns the ARP and TCP failover times of the repetitions that
// failed over.
func (s *Scenario) Times() (arp, tcp []time.Duration) {
	for _, r := range s.Results {
		if r.Err == "" {
			arp = append(arp, r.ARP)
			tcp = append(tcp, r.TCP)
		}
	}
	return arp, tcp
}

// Failed counts repetitions without a failover, and failed TCP connects.
func (s *Scenario) Failed() (reps, connects, total int) {
	for _, r := range s.Results {
		if r.Err != "" {
			reps++
		}
		connects += r.FailedConnects
		total += r.Connects
	}
	return reps, connects, total
}

// WriteCSV writes one line per repetition.
func WriteCSV(w io.Writer, scs []*Scenario) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"kind", "fault", "rep", "vip", "old", "new", "arp_ms", "tcp_ms",
		"overlap", "overlap_ms", "connects", "failed_connects", "arp_sent", "arp_replies", "err"})
	for _, sc := range scs {
		for _, r := range sc.Results {
			_ = cw.Write([]string{string(r.Kind), string(r.Fault), strconv.Itoa(r.Rep), r.VIP.String(),
				r.Old, r.New, ms(r.ARP), ms(r.TCP), strconv.FormatBool(r.Overlap), ms(r.OverlapFor),
				strconv.Itoa(r.Connects), strconv.Itoa(r.FailedConnects),
				strconv.Itoa(r.ARPSent), strconv.Itoa(r.ARPReplies), r.Err})
		}
	}
	cw.Flush()
	return cw.Error()
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
}

// fmtD formats a duration for the report table.
func fmtD(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
}

// Plot writes a PNG with gnuplot: for each fault, the CDF of the ARP
// failover time of every kind, on a log time axis. It needs gnuplot
// (Debian gnuplot-nox); dataDir keeps the data and the script.
func Plot(png, dataDir string, scs []*Scenario) error {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		return fmt.Errorf("gnuplot is not installed (make deps installs gnuplot-nox): %w", err)
	}
	var plots [2][]string
	for _, sc := range scs {
		arp, tcp := sc.Times()
		for i, m := range []struct {
			name string
			ds   []time.Duration
		}{{"ARP", arp}, {"TCP", tcp}} {
			if len(m.ds) == 0 {
				continue
			}
			s := slices.Clone(m.ds)
			slices.Sort(s)
			file := filepath.Join(dataDir, fmt.Sprintf("cdf-%s-%s-%s.dat", sc.Kind, sc.Fault, strings.ToLower(m.name)))
			var b strings.Builder
			// The CDF starts at 0 at the fastest repetition.
			fmt.Fprintf(&b, "%.3f 0\n", max(float64(s[0])/float64(time.Millisecond), 0.5))
			for j, d := range s {
				fmt.Fprintf(&b, "%.3f %.4f\n", max(float64(d)/float64(time.Millisecond), 0.5), float64(j+1)/float64(len(s)))
			}
			if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
				return err
			}
			panel := 0
			if sc.Fault == Graceful {
				panel = 1
			}
			color := "#1f77b4" // hostlb blue
			switch sc.Kind {
			case Keepalived:
				color = "#d62728" // red
			case KeepalivedTuned:
				color = "#ff7f0e" // orange
			}
			dash := 1
			if i == 1 {
				dash = 2
			}
			plots[panel] = append(plots[panel], fmt.Sprintf("%q using 1:2 with steps lw 2 dt %d lc rgb %q title \"%s %s (n=%d)\"",
				file, dash, color, sc.Kind, m.name, len(s)))
		}
	}
	script := fmt.Sprintf(`set terminal pngcairo noenhanced size 1400,560 font "DejaVu Sans,11"
set output %q
set multiplot layout 1,2 title "VIP failover seen by a client probing every 10 ms, 3 nodes: hostlb vs keepalived as shipped (VRRPv2, advert_int 1) and tuned (VRRPv3, advert_int 0.1)\nARP: last reply of the old owner to the first of the new; TCP: to the first connect the new owner served"
set logscale x 10
set xrange [1:20000]
set yrange [0:1.02]
set grid
set key bottom right
set xlabel "failover time (ms, log scale)"
set ylabel "fraction of repetitions"
set arrow 1 from 1000, graph 0 to 1000, graph 1 nohead dt 3 lc rgb "black"
set title "crash: link down + kill -9 (target p99 <= 1 s)"
plot %s
set arrow 1 from 50, graph 0 to 50, graph 1 nohead dt 3 lc rgb "black"
set title "graceful: SIGTERM (target p99 <= 50 ms, no failed connect)"
plot %s
unset multiplot
`, png, plotList(plots[0]), plotList(plots[1]))
	sp := filepath.Join(dataDir, "failover.gnuplot")
	if err := os.WriteFile(sp, []byte(script), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("gnuplot", sp).CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot %s: %w\n%s", sp, err, out)
	}
	return nil
}

func plotList(ps []string) string {
	if len(ps) == 0 {
		return `1/0 title "no data"`
	}
	return strings.Join(ps, ", \\\n     ")
}

// Table writes the markdown report table.
func Table(w io.Writer, scs []*Scenario) {
	fmt.Fprintln(w, "| implementation | fault | reps | ARP p50 | p90 | p99 | max | TCP p50 | p90 | p99 | max | no failover | failed connects | both owners answered |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, sc := range scs {
		arp, tcp := sc.Times()
		a, t := Summarize(arp), Summarize(tcp)
		noFail, fc, total := sc.Failed()
		overlaps, longest := 0, time.Duration(0)
		for _, r := range sc.Results {
			if r.Overlap {
				overlaps++
				longest = max(longest, r.OverlapFor)
			}
		}
		both := "never"
		if overlaps > 0 {
			both = fmt.Sprintf("%d reps, up to %s", overlaps, fmtD(longest))
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d of %d | %s |\n",
			sc.Kind, sc.Fault, len(sc.Results), fmtD(a.P50), fmtD(a.P90), fmtD(a.P99), fmtD(a.Max),
			fmtD(t.P50), fmtD(t.P90), fmtD(t.P99), fmtD(t.Max), noFail, fc, total, both)
	}
}

// PlotTimeline writes a PNG with gnuplot: one panel per scenario, x the
// time relative to the fault, y the repetition, a dot for every ARP reply
// of the old owner and of the new one, and a cross for every failed TCP
// connect (at its start).
func PlotTimeline(png, dataDir string, scs []*Scenario) error {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		return fmt.Errorf("gnuplot is not installed (make deps installs gnuplot-nox): %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `set terminal pngcairo noenhanced size 1400,%d font "DejaVu Sans,10"
set output %q
set multiplot layout %d,2 title "What the client saw around each fault (t = 0): ARP replies for the VIP and failed TCP connects, probes every 10 ms"
set grid
set key outside bottom center horizontal
set xlabel "time since the fault (ms)"
set ylabel "repetition"
`, 380*((len(scs)+1)/2)+60, png, (len(scs)+1)/2)
	for _, sc := range scs {
		file := filepath.Join(dataDir, fmt.Sprintf("timeline-%s-%s.dat", sc.Kind, sc.Fault))
		var d strings.Builder
		xmax := 300.0
		for _, r := range sc.Results {
			for class, ts := range [][]time.Duration{r.OldReplies, r.NewReplies, r.FailedAt} {
				for _, t := range ts {
					fmt.Fprintf(&d, "%.2f %d %d\n", float64(t)/float64(time.Millisecond), r.Rep, class)
				}
			}
			if !r.FirstTCP.IsZero() {
				xmax = max(xmax, float64(r.FirstTCP.Sub(r.FaultAt))/float64(time.Millisecond)+150)
			}
		}
		if err := os.WriteFile(file, []byte(d.String()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&b, `set title "%s, %s"
set xrange [-150:%.0f]
set yrange [0:%d]
plot %q using 1:($3==0?$2:1/0) with points pt 7 ps 0.35 lc rgb "#1f77b4" title "ARP reply, old owner", \
     %q using 1:($3==1?$2:1/0) with points pt 7 ps 0.35 lc rgb "#2ca02c" title "ARP reply, new owner", \
     %q using 1:($3==2?$2:1/0) with points pt 2 ps 0.5 lc rgb "#d62728" title "failed TCP connect"
`, sc.Kind, sc.Fault, xmax, len(sc.Results)+1, file, file, file)
	}
	b.WriteString("unset multiplot\n")
	sp := filepath.Join(dataDir, "timeline.gnuplot")
	if err := os.WriteFile(sp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("gnuplot", sp).CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot %s: %w\n%s", sp, err, out)
	}
	return nil
}
