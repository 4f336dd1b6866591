package kubelabbench

import (
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/kubebench"
)

func TestMarkdownStatesEachGoal(t *testing.T) {
	lat := func(p50, p99, mx time.Duration) kubebench.Latencies {
		return kubebench.Latencies{N: 1000, P50: p50, P99: p99, Max: mx}
	}
	lease := kubebench.Count{Kind: kubebench.LeaseKind, N: 30}
	r := Report{
		Nodes:  []string{"n1", "n2", "n3"},
		Leader: "n3",
		Waves: []Wave{{
			Name: "1,000 IPv6 at once", Proto: "NDP", Services: 1000, Total: 1000, Workers: 16, Goal: true,
			Creates: 13 * time.Second, AllReady: 48 * time.Second, AllAnswered: 49 * time.Second, Answered: 1000,
			ToAnswer: lat(17*time.Second, 2500*time.Millisecond, 35*time.Second), Share: lat(0, 300*time.Millisecond, 0),
			Probe:      ScheduleStats{Sent: 4000, MaxFirst: 5 * time.Millisecond, MaxInterval: 30 * time.Millisecond},
			MultiOwner: 12, MultiOwnerAt: []string{"10:00:01 ×12"}, DualAnswer: 1,
		}},
		LogCounts:     [][]int{{1, 10, 0, 0, 0, 0, 0, 0}, {0, 10, 0, 0, 0, 90, 10, 0}, {2, 10, 0, 0, 0, 0, 0, 6}},
		EventsWritten: []int{10, 100, 4},
		Mem: []MemRow{
			{Moment: "idle", Services: 0, Nodes: []kubebench.Mem{{RSS: 33 << 20}, {RSS: 33 << 20}, {RSS: 34 << 20}}},
			{Moment: "the 10,000 answered", Services: 10000,
				Nodes: []kubebench.Mem{{RSS: 140 << 20, HWM: 170 << 20}, {RSS: 160 << 20, HWM: 165 << 20}, {RSS: 120 << 20}},
				GC:    []kubebench.GC{{Live: 40 << 20, Goal: 90 << 20}, {}, {}}},
		},
		Windows: []Window{
			{Name: "at rest", Dur: time.Minute, Rest: true, Services: 1000, Nodes: []NodeCounts{
				{Node: "n1"}, {Node: "n2"}, {Node: "n3", Counts: []kubebench.Count{lease}},
			}},
			{Name: "at rest again", Dur: 2 * time.Minute, Rest: true, Services: 10000, Nodes: []NodeCounts{
				{Node: "n1", Counts: []kubebench.Count{{Kind: "create events", N: 4}}}, {Node: "n2"}, {Node: "n3", Counts: []kubebench.Count{lease}},
			}},
		},
		Sweep: &Sweep{IPs: 10, PerNode: map[string]int{"n1": 4, "n2": 3, "n3": 3}},
	}
	md := r.Markdown()
	for _, want := range []string{
		"| 1,000 IPv6 at once | NDP | 1,000 (1,000) | 16 | 13s | 48s | 1,000 of 1,000 | 49s | 4,000 | 5ms / 30ms |",
		"- 1,000 IPv6 at once: IPs heard (answer or announcement) from two or more nodes over the run: 12 (the second MAC first heard at 10:00:01 ×12); IPs two nodes answered together: 1.",
		"| a peer declared dead (gossip) | 1 / 0 / 2 |",
		"| Event dropped (client-go queue full) | 0 / 0 / 6 |",
		"- Events (audit log) against those each node's log accounts for (one per announcing and IPAM line): n1 wrote 10 of 10; n2 wrote 100 of 110 (10, 9.1%, missing); n3 wrote 4 of 10 (6, 60.0%, missing).",
		"create → first answer p99 2.5s, goal ≤ 1s: **missed** by 1.5s (×2.5). hostlbd's own part (IP and endpoint seen → answer): p99 300ms.",
		"| the 10,000 answered | 10,000 | 140.0 / 160.0 / 120.0 | 170.0 / 165.0 / 0.0 | 40 (90) / – / – MiB |",
		"the largest node VmRSS 160.0 MiB (n2), goal ≤ 150.0 MiB per node: **missed** by 10.0 MiB; the largest peak (VmHWM 170.0 MiB) is above the goal.",
		"| update leases.coordination.k8s.io | 0 / 0 / 30 | 0 / 0 / 30 |",
		"| create events | 0 / 0 / 0 | 4 / 0 / 0 |",
		"- At rest with 1,000 Services, over 1m0s: requests per minute per node: n1 0.0 Lease renewals, 0.0 watches started, 0.0 other; n2 0.0 Lease renewals, 0.0 watches started, 0.0 other; n3 (leader) 30.0 Lease renewals, 0.0 watches started, 0.0 other. Goal, nothing beyond watches (and the leader's Lease): **met**.",
		"n1 0.0 Lease renewals, 0.0 watches started, 2.0 other;",
		"**missed** (n1: create events ×4).",
		"answered by exactly one node: n1 4, n2 3, n3 3; by nobody: 0; by several: 0.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestAnswerGoalMetAndUnanswered(t *testing.T) {
	w := Wave{Name: "w", Goal: true, ToAnswer: kubebench.Latencies{N: 10, P99: 900 * time.Millisecond}}
	if s, _ := answerGoal(w); !strings.Contains(s, "**met**") {
		t.Errorf("p99 900ms: %s", s)
	}
	w.Unanswered = 3
	if s, _ := answerGoal(w); !strings.Contains(s, "3 Services never answered") {
		t.Errorf("3 unanswered: %s", s)
	}
	if _, ok := answerGoal(Wave{}); ok {
		t.Error("a wave without the goal states it")
	}
}
