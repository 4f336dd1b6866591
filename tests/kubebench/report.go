package kubebench

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GoalRSS is the memory goal: hostlbd's RSS with 10,000 Services.
const GoalRSS = 150 << 20

// LeaseKind is the request kind of the IPAM leader's Lease renewals.
const LeaseKind = "update leases.coordination.k8s.io"

// Phase is one wave of Service creates and what it took until every
// Service of the wave had its IP.
type Phase struct {
	Name    string // e.g. "1,000 at once"
	Created int    // Services created in the wave
	Total   int    // Services in the cluster at its end
	Workers int    // concurrent creates
	// Creates runs from the first create sent to the last one answered.
	Creates time.Duration
	// AllIPs runs from the first create sent to the watch event that
	// showed the wave's last Service with an IP.
	AllIPs time.Duration
	// Latency is per Service: from its create call's return to the first
	// watch event showing it with an ingress IP.
	Latency Latencies
}

// MemRow is the memory of the three processes at one moment.
type MemRow struct {
	Moment                   string
	Services                 int
	Hostlbd, APIServer, Etcd Mem
	// HostlbdGC is the daemon's last GC trace line before the moment
	// (zero without one).
	HostlbdGC GC
}

// RequestWindow is hostlbd's API requests in one window of the run.
type RequestWindow struct {
	Name   string
	Counts []Count
}

// Report is one run of the benchmark.
type Report struct {
	Phases   []Phase
	Mem      []MemRow
	Requests []RequestWindow
	// IP stability, from one watch that sees every status write in the
	// order etcd committed them: how often an IP was in two Services'
	// status at once, and how often a Service's IP changed after it was
	// assigned (no Service is changed or deleted here, so never is right).
	IPConflicts, IPChanges int
	StabilityExamples      []string
	// Events hostlbd created (audit log) over the waves and their idle
	// windows, against the IPAllocated and IPReleased Events its log says
	// it recorded.
	EventsCreated, EventsDue int
}

// Markdown renders the report as the tables of BENCHMARKS.md.
func (r Report) Markdown() string {
	var b strings.Builder
	b.WriteString("| phase | Services (total) | workers | creates took | IP after create p50 | p99 | max | all have IPs after |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range r.Phases {
		fmt.Fprintf(&b, "| %s | %s (%s) | %d | %s | %s | %s | %s | %s |\n", p.Name, Thousands(p.Created), Thousands(p.Total),
			p.Workers, dur(p.Creates), dur(p.Latency.P50), dur(p.Latency.P99), dur(p.Latency.Max), dur(p.AllIPs))
	}

	b.WriteString("\n| moment | Services | hostlbd VmRSS | hostlbd VmHWM | hostlbd Go heap live / goal | kube-apiserver VmRSS | etcd VmRSS | hostlbd / kube-apiserver RSS | CPU so far: hostlbd / kube-apiserver / etcd |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, m := range r.Mem {
		heap := "–"
		if m.HostlbdGC != (GC{}) {
			heap = fmt.Sprintf("%d / %d MiB", m.HostlbdGC.Live>>20, m.HostlbdGC.Goal>>20)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s / %s |\n", m.Moment, Thousands(m.Services), MiB(m.Hostlbd.RSS),
			MiB(m.Hostlbd.HWM), heap, MiB(m.APIServer.RSS), MiB(m.Etcd.RSS), pct(m.Hostlbd.RSS, m.APIServer.RSS),
			cpu(m.Hostlbd.CPU), cpu(m.APIServer.CPU), cpu(m.Etcd.CPU))
	}
	if g, ok := r.goal(); ok {
		b.WriteString("\n" + g + "\n")
	}
	verdict := "held"
	if r.IPConflicts > 0 || r.IPChanges > 0 {
		verdict = "**violated**"
	}
	fmt.Fprintf(&b, "- IP stability %s: an IP was in two Services' status at once %s times; a Service's IP changed after it was assigned %s times.\n",
		verdict, Thousands(r.IPConflicts), Thousands(r.IPChanges))
	if r.EventsDue > 0 {
		fmt.Fprintf(&b, "- Events: hostlbd created %s IPAllocated/IPReleased Events of the %s its log says it recorded; %s (%s) were not written by the end of the last idle window.\n",
			Thousands(r.EventsCreated), Thousands(r.EventsDue), Thousands(max(r.EventsDue-r.EventsCreated, 0)),
			pct(uint64(max(r.EventsDue-r.EventsCreated, 0)), uint64(r.EventsDue)))
	}

	if len(r.Requests) > 0 {
		b.WriteString("\n" + requestTable(r.Requests))
	}
	return b.String()
}

// goal states the RSS goal against the rows with the most Services: the
// highest RSS among them.
func (r Report) goal() (string, bool) {
	if len(r.Mem) == 0 {
		return "", false
	}
	top := slices.MaxFunc(r.Mem, func(a, b MemRow) int {
		return cmp.Or(cmp.Compare(a.Services, b.Services), cmp.Compare(a.Hostlbd.RSS, b.Hostlbd.RSS))
	})
	verdict := "**met**"
	if top.Hostlbd.RSS > GoalRSS {
		verdict = fmt.Sprintf("**missed** by %s", MiB(top.Hostlbd.RSS-GoalRSS))
	}
	peak := "within"
	if top.Hostlbd.HWM > GoalRSS {
		peak = "above"
	}
	return fmt.Sprintf("- hostlbd with %s Services: VmRSS %s, goal ≤ %s: %s; its peak (VmHWM %s) is %s the goal.",
		Thousands(top.Services), MiB(top.Hostlbd.RSS), MiB(GoalRSS), verdict, MiB(top.Hostlbd.HWM), peak), true
}

// requestTable has a row per request kind and a column per window.
func requestTable(ws []RequestWindow) string {
	var kinds []string
	for _, w := range ws {
		for _, c := range w.Counts {
			if !slices.Contains(kinds, c.Kind) {
				kinds = append(kinds, c.Kind)
			}
		}
	}
	var b strings.Builder
	b.WriteString("| hostlbd's requests (audit log) |")
	for _, w := range ws {
		b.WriteString(" " + w.Name + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(ws)) + "\n")
	cell := func(n, failed int) string {
		if failed > 0 {
			return fmt.Sprintf("%s (%s failed)", Thousands(n), Thousands(failed))
		}
		return Thousands(n)
	}
	for _, k := range kinds {
		b.WriteString("| " + k + " |")
		for _, w := range ws {
			i := slices.IndexFunc(w.Counts, func(c Count) bool { return c.Kind == k })
			if i < 0 {
				b.WriteString(" 0 |")
				continue
			}
			b.WriteString(" " + cell(w.Counts[i].N, w.Counts[i].Failed) + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("| **total** |")
	for _, w := range ws {
		n, f := Total(w.Counts)
		b.WriteString(" **" + cell(n, f) + "** |")
	}
	b.WriteString("\n")
	return b.String()
}

// WithoutLease splits the Lease renewals off a window's counts.
func WithoutLease(cs []Count) (lease int, rest []Count) {
	for _, c := range cs {
		if c.Kind == LeaseKind {
			lease += c.N
			continue
		}
		rest = append(rest, c)
	}
	return lease, rest
}

// Thousands renders n with commas: 10000 → "10,000".
func Thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// dur rounds a duration for a table: ms under 10 s, else 0.1 s.
func dur(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// cpu renders CPU time in seconds with one decimal.
func cpu(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s" }

func pct(a, b uint64) string {
	if b == 0 {
		return "–"
	}
	return strconv.FormatFloat(100*float64(a)/float64(b), 'f', 0, 64) + "%"
}
