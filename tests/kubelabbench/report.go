package kubelabbench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hostlb/hostlb/tests/kubebench"
)

// The goals (issue 8, acceptance).
const (
	// GoalAnswerP99 bounds create → first answer from the owner, p99, of
	// 1,000 Services created at once.
	GoalAnswerP99 = time.Second
	// GoalRSS bounds each node's hostlbd RSS with 10,000 Services.
	GoalRSS = kubebench.GoalRSS
)

// MemRow is the memory and CPU time of every process at one moment.
type MemRow struct {
	Moment   string
	Services int
	Nodes    []kubebench.Mem // hostlbd, in Report.Nodes order
	GC       []kubebench.GC  // hostlbd's last GC trace line; zero if none
	// The control plane, for comparison.
	APIServer, ControllerManager, Etcd kubebench.Mem
}

// Window is hostlbd's API requests, per node, over one stretch of the run.
type Window struct {
	Name string
	Dur  time.Duration
	// Rest marks a quiet window (everything answered, nothing created):
	// the goal is no request beyond watches, and the Lease renewals of
	// the IPAM leader.
	Rest     bool
	Services int
	Nodes    []NodeCounts
}

// Report is one run of the benchmark.
type Report struct {
	Nodes     []string // the hostlbd nodes, in order
	Leader    string   // the IPAM Lease's holder at the end
	Waves     []Wave
	Mem       []MemRow
	Windows   []Window
	Sweep     *Sweep
	IPChanges int
	// LogCounts holds, per node in Nodes order, CountLog's counts of
	// LogMessages over the whole run; EventsWritten, the Events each node
	// created over the run (audit log).
	LogCounts     [][]int
	EventsWritten []int
	Notes         []string // anything else worth a line (prober errors, ...)
}

// Markdown renders the report as the tables of BENCHMARKS.md.
func (r Report) Markdown() string {
	var b strings.Builder
	b.WriteString("| wave | proto | Services (total) | workers | creates took | all have ready endpoints after | answered | all answered after | requests sent | longest wait for a first / next request |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, w := range r.Waves {
		name := w.Name
		if w.Stopped != "" {
			name += " (" + w.Stopped + ")"
		}
		all := dur(w.AllAnswered)
		if w.Unanswered > 0 {
			all = "–"
		}
		fmt.Fprintf(&b, "| %s | %s | %s (%s) | %d | %s | %s | %s of %s | %s | %s | %s / %s |\n", name, w.Proto,
			kubebench.Thousands(w.Services), kubebench.Thousands(w.Total), w.Workers, dur(w.Creates), dur(w.AllReady),
			kubebench.Thousands(w.Answered), kubebench.Thousands(w.Services), all,
			kubebench.Thousands(w.Probe.Sent), dur(w.Probe.MaxFirst), dur(w.Probe.MaxInterval))
	}
	b.WriteString("\n")
	for _, w := range r.Waves {
		when := ""
		if len(w.MultiOwnerAt) > 0 {
			when = " (the second MAC first heard at " + strings.Join(w.MultiOwnerAt, ", ") + ")"
		}
		fmt.Fprintf(&b, "- %s: IPs heard (answer or announcement) from two or more nodes over the run: %s%s; IPs two nodes answered together: %s.\n",
			w.Name, kubebench.Thousands(w.MultiOwner), when, kubebench.Thousands(w.DualAnswer))
	}

	b.WriteString("\n| wave | per Service, from its create call's return to … | p50 | p99 | max | Services |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|\n")
	for _, w := range r.Waves {
		for _, st := range []struct {
			name string
			l    kubebench.Latencies
		}{
			{"its IP in status (IPAM leader)", w.ToIP},
			{"a ready endpoint in its EndpointSlice (controller)", w.ToReady},
			{"**the first answer from the owner**", w.ToAnswer},
			{"the owner's first announcement (gratuitous)", w.ToAnnounce},
			{"*from IP and endpoint both seen to the first answer (hostlbd)*", w.Share},
		} {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", w.Name, st.name, dur(st.l.P50), dur(st.l.P99), dur(st.l.Max),
				kubebench.Thousands(st.l.N))
		}
	}
	for _, w := range r.Waves {
		if line, ok := answerGoal(w); ok {
			b.WriteString("\n" + line + "\n")
		}
	}

	if len(r.Mem) > 0 {
		nodes := strings.Join(r.Nodes, " / ")
		fmt.Fprintf(&b, "\n| moment | Services | hostlbd VmRSS %s | hostlbd VmHWM %s | hostlbd Go heap live (GC goal) %s | kube-apiserver VmRSS | kube-controller-manager VmRSS | etcd VmRSS |\n", nodes, nodes, nodes)
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, m := range r.Mem {
			var rss, hwm, heap []string
			for i, n := range m.Nodes {
				rss = append(rss, mib(n.RSS))
				hwm = append(hwm, mib(n.HWM))
				if i < len(m.GC) && m.GC[i] != (kubebench.GC{}) {
					heap = append(heap, fmt.Sprintf("%d (%d)", m.GC[i].Live>>20, m.GC[i].Goal>>20))
				} else {
					heap = append(heap, "–")
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s MiB | %s | %s | %s |\n", m.Moment, kubebench.Thousands(m.Services),
				strings.Join(rss, " / "), strings.Join(hwm, " / "), strings.Join(heap, " / "),
				kubebench.MiB(m.APIServer.RSS), kubebench.MiB(m.ControllerManager.RSS), kubebench.MiB(m.Etcd.RSS))
		}
		fmt.Fprintf(&b, "\n| moment | Services | hostlbd CPU so far %s | kube-apiserver | kube-controller-manager | etcd |\n", nodes)
		b.WriteString("|---|---:|---:|---:|---:|---:|\n")
		for _, m := range r.Mem {
			var c []string
			for _, n := range m.Nodes {
				c = append(c, secs(n.CPU))
			}
			fmt.Fprintf(&b, "| %s | %s | %s s | %s s | %s s | %s s |\n", m.Moment, kubebench.Thousands(m.Services),
				strings.Join(c, " / "), secs(m.APIServer.CPU), secs(m.ControllerManager.CPU), secs(m.Etcd.CPU))
		}
		if line, ok := r.rssGoal(); ok {
			b.WriteString("\n" + line + "\n")
		}
	}

	if len(r.Windows) > 0 {
		b.WriteString("\n" + r.requestTable())
		for _, w := range r.Windows {
			if w.Rest {
				b.WriteString(restLine(w, r.Leader) + "\n")
			}
		}
	}
	if len(r.LogCounts) > 0 {
		fmt.Fprintf(&b, "\n| hostlbd log lines over the run | %s |\n|---|---:|\n", strings.Join(r.Nodes, " / "))
		for i, m := range LogMessages {
			var cells []string
			for _, c := range r.LogCounts {
				if i < len(c) {
					cells = append(cells, kubebench.Thousands(c[i]))
				}
			}
			fmt.Fprintf(&b, "| %s | %s |\n", m.Label, strings.Join(cells, " / "))
		}
		b.WriteString("\n")
		if len(r.EventsWritten) == len(r.LogCounts) {
			var parts []string
			for i, c := range r.LogCounts {
				due, wrote := EventsDue(c), r.EventsWritten[i]
				s := fmt.Sprintf("%s wrote %s of %s", r.Nodes[i], kubebench.Thousands(wrote), kubebench.Thousands(due))
				if due > wrote {
					s += fmt.Sprintf(" (%s, %s, missing)", kubebench.Thousands(due-wrote), pct(due-wrote, due))
				}
				parts = append(parts, s)
			}
			fmt.Fprintf(&b, "- Events (audit log) against those each node's log accounts for (one per announcing and IPAM line): %s.\n",
				strings.Join(parts, "; "))
		}
	}
	if s := r.Sweep; s != nil {
		var per []string
		for _, n := range r.Nodes {
			per = append(per, fmt.Sprintf("%s %s", n, kubebench.Thousands(s.PerNode[n])))
		}
		for k, v := range s.PerNode {
			if !slices.Contains(r.Nodes, k) {
				per = append(per, fmt.Sprintf("stranger %s %s", k, kubebench.Thousands(v)))
			}
		}
		fmt.Fprintf(&b, "- Sweep at the end, one request per held IP: %s IPs; answered by exactly one node: %s; by nobody: %s; by several: %s.\n",
			kubebench.Thousands(s.IPs), strings.Join(per, ", "), kubebench.Thousands(s.None), kubebench.Thousands(s.Several))
	}
	fmt.Fprintf(&b, "- A Service's IP changed after it was first seen %s times.\n", kubebench.Thousands(r.IPChanges))
	for _, n := range r.Notes {
		b.WriteString("- " + n + "\n")
	}
	return b.String()
}

// answerGoal states the p99 goal against the wave it is about.
func answerGoal(w Wave) (string, bool) {
	if !w.Goal {
		return "", false
	}
	verdict := "**met**"
	switch {
	case w.ToAnswer.N == 0:
		verdict = "**not measured** (no answer)"
	case w.Unanswered > 0:
		verdict = fmt.Sprintf("**missed**: %s Services never answered within the bound", kubebench.Thousands(w.Unanswered))
	case w.ToAnswer.P99 > GoalAnswerP99:
		verdict = fmt.Sprintf("**missed** by %s (×%.1f)", dur(w.ToAnswer.P99-GoalAnswerP99),
			float64(w.ToAnswer.P99)/float64(GoalAnswerP99))
	}
	return fmt.Sprintf("- %s: create → first answer p99 %s, goal ≤ %s: %s. hostlbd's own part (IP and endpoint seen → answer): p99 %s.",
		w.Name, dur(w.ToAnswer.P99), dur(GoalAnswerP99), verdict, dur(w.Share.P99)), true
}

// rssGoal states the RSS goal against the rows with the most Services:
// the highest node RSS among them.
func (r Report) rssGoal() (string, bool) {
	top := -1
	for i, m := range r.Mem {
		if len(m.Nodes) > 0 && (top < 0 || m.Services > r.Mem[top].Services ||
			(m.Services == r.Mem[top].Services && maxRSS(m) > maxRSS(r.Mem[top]))) {
			top = i
		}
	}
	if top < 0 {
		return "", false
	}
	m := r.Mem[top]
	worst, hwm := 0, uint64(0)
	for i, n := range m.Nodes {
		if n.RSS > m.Nodes[worst].RSS {
			worst = i
		}
		hwm = max(hwm, n.HWM)
	}
	verdict := "**met**"
	if rss := m.Nodes[worst].RSS; rss > GoalRSS {
		verdict = fmt.Sprintf("**missed** by %s", kubebench.MiB(rss-GoalRSS))
	}
	peak := "within"
	if hwm > GoalRSS {
		peak = "above"
	}
	name := ""
	if worst < len(r.Nodes) {
		name = " (" + r.Nodes[worst] + ")"
	}
	return fmt.Sprintf("- hostlbd with %s Services (%s): the largest node VmRSS %s%s, goal ≤ %s per node: %s; the largest peak (VmHWM %s) is %s the goal.",
		kubebench.Thousands(m.Services), m.Moment, kubebench.MiB(m.Nodes[worst].RSS), name, kubebench.MiB(GoalRSS), verdict,
		kubebench.MiB(hwm), peak), true
}

func maxRSS(m MemRow) uint64 {
	var x uint64
	for _, n := range m.Nodes {
		x = max(x, n.RSS)
	}
	return x
}

// requestTable has a row per request kind and a column per window; a
// cell gives each node's count, in node order.
func (r Report) requestTable() string {
	var kinds []string
	for _, w := range r.Windows {
		for _, nc := range w.Nodes {
			for _, c := range nc.Counts {
				if !slices.Contains(kinds, c.Kind) {
					kinds = append(kinds, c.Kind)
				}
			}
		}
	}
	slices.Sort(kinds)
	var b strings.Builder
	fmt.Fprintf(&b, "| hostlbd's requests (audit log), %s |", strings.Join(nodeNames(r.Windows), " / "))
	for _, w := range r.Windows {
		b.WriteString(" " + w.Name + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(r.Windows)) + "\n")
	cell := func(w Window, match func(kubebench.Count) bool) string {
		var parts []string
		for _, nc := range w.Nodes {
			n, failed := 0, 0
			for _, c := range nc.Counts {
				if match(c) {
					n += c.N
					failed += c.Failed
				}
			}
			s := kubebench.Thousands(n)
			if failed > 0 {
				s += fmt.Sprintf(" (%s failed)", kubebench.Thousands(failed))
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, " / ")
	}
	for _, k := range kinds {
		b.WriteString("| " + k + " |")
		for _, w := range r.Windows {
			b.WriteString(" " + cell(w, func(c kubebench.Count) bool { return c.Kind == k }) + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("| **total** |")
	for _, w := range r.Windows {
		b.WriteString(" **" + cell(w, func(kubebench.Count) bool { return true }) + "** |")
	}
	b.WriteString("\n\n")
	return b.String()
}

// nodeNames are the column order of the request cells: the first
// window's nodes.
func nodeNames(ws []Window) []string {
	if len(ws) == 0 {
		return nil
	}
	var out []string
	for _, nc := range ws[0].Nodes {
		out = append(out, nc.Node)
	}
	return out
}

// restLine states the at-rest goal for one quiet window: per node and
// per minute, watches, Lease renewals and anything else.
func restLine(w Window, leader string) string {
	perMin := func(n int) string {
		if w.Dur <= 0 {
			return "–"
		}
		return strconv.FormatFloat(float64(n)/w.Dur.Minutes(), 'f', 1, 64)
	}
	var parts, others []string
	met := true
	for _, nc := range w.Nodes {
		rs := SplitRest(nc.Counts)
		role := ""
		if nc.Node == leader {
			role = " (leader)"
		}
		parts = append(parts, fmt.Sprintf("%s%s %s Lease renewals, %s watches started, %s other", nc.Node, role,
			perMin(rs.Lease), perMin(rs.Watches), perMin(rs.Other)))
		if rs.Other > 0 || (rs.Lease > 0 && nc.Node != leader) {
			met = false
			others = append(others, nc.Node+": "+strings.Join(rs.OtherKinds, ", "))
		}
	}
	verdict := "**met**"
	if !met {
		verdict = "**missed** (" + strings.Join(others, "; ") + ")"
	}
	return fmt.Sprintf("- At rest with %s Services, over %v: requests per minute per node: %s. Goal, nothing beyond watches (and the leader's Lease): %s.",
		kubebench.Thousands(w.Services), w.Dur.Round(time.Second), strings.Join(parts, "; "), verdict)
}

// dur rounds a duration for a table: ms under 10 s, else 0.1 s.
func dur(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func mib(b uint64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) }

func pct(a, b int) string {
	if b == 0 {
		return "–"
	}
	return strconv.FormatFloat(100*float64(a)/float64(b), 'f', 1, 64) + "%"
}
