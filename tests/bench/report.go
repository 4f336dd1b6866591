package bench

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Targets of issue 3, item 7.
const (
	TargetRateRatio = 0.5 // hostlb answers at least half the kernel's rate
	TargetP99Ratio  = 2.0 // hostlb's p99 at most twice the kernel's
	// Flat from 1 to the most VIPs: hostlb's rate at the most VIPs at least
	// FlatRate of its rate with one, and its p99 at most FlatP99 times.
	FlatRate = 0.8
	FlatP99  = 1.5
)

// Side is one responder's results for one scenario.
type Side struct {
	Rate    Result // closed loop: answered rate, latency under saturation
	Latency Result // open loop at a fixed rate: latency
}

// Row is one scenario: a protocol and a number of VIPs, both sides.
type Row struct {
	Proto  Proto
	VIPs   int
	Kernel Side
	Hostlb Side
}

// RateRatio is hostlb's answered rate over the kernel's.
func (r Row) RateRatio() float64 { return ratio(r.Hostlb.Rate.Rate(), r.Kernel.Rate.Rate()) }

// P99Ratio is hostlb's p99 latency over the kernel's, at the fixed rate.
func (r Row) P99Ratio() float64 {
	return ratio(float64(r.Hostlb.Latency.Percentile(99)), float64(r.Kernel.Latency.Percentile(99)))
}

// P50Ratio is hostlb's median latency over the kernel's, at the fixed rate.
func (r Row) P50Ratio() float64 {
	return ratio(float64(r.Hostlb.Latency.Percentile(50)), float64(r.Kernel.Latency.Percentile(50)))
}

// MeetsTargets reports whether the row meets the rate and p99 targets.
func (r Row) MeetsTargets() bool {
	return r.RateRatio() >= TargetRateRatio && r.P99Ratio() <= TargetP99Ratio
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Flatness compares hostlb's first and last rows of one protocol (fewest
// and most VIPs): the rate kept and the p99 grown, and whether both are
// within FlatRate and FlatP99. ok is false when the protocol has fewer
// than two rows.
func Flatness(rows []Row, proto Proto) (rateKept, p99Grown float64, flat, ok bool) {
	var first, last *Row
	for i := range rows {
		if rows[i].Proto != proto {
			continue
		}
		if first == nil || rows[i].VIPs < first.VIPs {
			first = &rows[i]
		}
		if last == nil || rows[i].VIPs > last.VIPs {
			last = &rows[i]
		}
	}
	if first == nil || first == last {
		return 0, 0, false, false
	}
	rateKept = ratio(last.Hostlb.Rate.Rate(), first.Hostlb.Rate.Rate())
	p99Grown = ratio(float64(last.Hostlb.Latency.Percentile(99)), float64(first.Hostlb.Latency.Percentile(99)))
	return rateKept, p99Grown, rateKept >= FlatRate && p99Grown <= FlatP99, true
}

// Params describe the load shapes, for the report.
type Params struct {
	Window       int
	Rate         float64
	RateDuration time.Duration // per side, summed over rounds
	LatDuration  time.Duration
	Rounds       int
}

// Markdown renders rows as the tables of BENCHMARKS.md.
func Markdown(rows []Row, p Params) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Answered rate: closed loop, %d requests outstanding, %s per side. "+
		"Latency: open loop at %s requests/s, %s per side. Each side measured in %d rounds, alternating kernel and hostlb.\n\n",
		p.Window, p.RateDuration, count(p.Rate), p.LatDuration, p.Rounds)
	sb.WriteString("| proto | VIPs | kernel answers/s | hostlb answers/s | rate ratio | kernel p50 / p99 | hostlb p50 / p99 | p99 ratio | loss kernel / hostlb | targets |\n")
	sb.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		verdict := "met"
		if !r.MeetsTargets() {
			verdict = "**missed**"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %.2f | %s / %s | %s / %s | %.2f | %s / %s | %s |\n",
			strings.ToUpper(string(r.Proto)), count(float64(r.VIPs)),
			count(r.Kernel.Rate.Rate()), count(r.Hostlb.Rate.Rate()), r.RateRatio(),
			micros(r.Kernel.Latency.Percentile(50)), micros(r.Kernel.Latency.Percentile(99)),
			micros(r.Hostlb.Latency.Percentile(50)), micros(r.Hostlb.Latency.Percentile(99)),
			r.P99Ratio(),
			loss(r.Kernel), loss(r.Hostlb), verdict)
	}
	sb.WriteString("\nLatency under saturation (the closed-loop runs above):\n\n")
	sb.WriteString("| proto | VIPs | kernel p50 / p99 | hostlb p50 / p99 |\n|---|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %s | %s / %s | %s / %s |\n",
			strings.ToUpper(string(r.Proto)), count(float64(r.VIPs)),
			micros(r.Kernel.Rate.Percentile(50)), micros(r.Kernel.Rate.Percentile(99)),
			micros(r.Hostlb.Rate.Percentile(50)), micros(r.Hostlb.Rate.Percentile(99)))
	}
	sb.WriteString("\n")
	for _, proto := range []Proto{ARP, NDP} {
		kept, grown, flat, ok := Flatness(rows, proto)
		if !ok {
			continue
		}
		verdict := "flat"
		if !flat {
			verdict = "**not flat**"
		}
		fmt.Fprintf(&sb, "- %s, fewest to most VIPs: hostlb keeps %.0f%% of its rate (target ≥ %.0f%%), its p99 changes ×%.2f (target ≤ ×%.1f): %s.\n",
			strings.ToUpper(string(proto)), 100*kept, 100*FlatRate, grown, FlatP99, verdict)
	}
	return sb.String()
}

func loss(s Side) string {
	r := Merge(s.Rate, s.Latency)
	if r.Lost == 0 {
		return "0"
	}
	return fmt.Sprintf("%.3f%%", 100*r.LossRatio())
}

func micros(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 0, 64) + " µs"
}

// count formats n rounded, with thousands separators: 12,345.
func count(n float64) string {
	s := strconv.FormatInt(int64(n+0.5), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
