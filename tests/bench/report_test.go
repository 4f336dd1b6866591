package bench

import (
	"strings"
	"testing"
	"time"
)

func side(answered uint64, p99 time.Duration) Side {
	lat := make([]time.Duration, 100)
	for i := range lat {
		lat[i] = p99 / 2
	}
	lat[98], lat[99] = p99, 2*p99
	return Side{
		Rate:    Result{Sent: answered, Answered: answered, InWindow: answered, Duration: time.Second},
		Latency: Result{Sent: 100, Answered: 100, InWindow: 100, Duration: time.Second, Latencies: lat},
	}
}

func TestRowsAndMarkdown(t *testing.T) {
	rows := []Row{
		{Proto: NDP, VIPs: 1, Kernel: side(1000, 10*time.Microsecond), Hostlb: side(600, 20*time.Microsecond)},
		{Proto: NDP, VIPs: 10000, Kernel: side(1000, 10*time.Microsecond), Hostlb: side(400, 40*time.Microsecond)},
	}
	if r := rows[0]; r.RateRatio() != 0.6 || r.P99Ratio() != 2 || !r.MeetsTargets() {
		t.Errorf("row 0: rate ratio %v, p99 ratio %v, meets %v", r.RateRatio(), r.P99Ratio(), r.MeetsTargets())
	}
	if rows[1].MeetsTargets() {
		t.Error("row 1 meets the targets at 40% of the rate")
	}
	kept, grown, flat, ok := Flatness(rows, NDP)
	if !ok || flat || kept < 0.66 || kept > 0.67 || grown != 2 {
		t.Errorf("flatness: kept %v grown %v flat %v ok %v", kept, grown, flat, ok)
	}
	if _, _, _, ok := Flatness(rows, ARP); ok {
		t.Error("flatness of a protocol without rows")
	}
	md := Markdown(rows, Params{Window: 32, Rate: 2000, Rounds: 2, RateDuration: 3 * time.Second, LatDuration: 3 * time.Second})
	for _, want := range []string{
		"| NDP | 10,000 | 1,000 | 400 | 0.40 | 5 µs / 10 µs | 20 µs / 40 µs | 4.00 | 0 / 0 | **missed** |",
		"| NDP | 1 | 1,000 | 600 | 0.60 |",
		"hostlb keeps 67% of its rate",
		"**not flat**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", 761: "761"} {
		if got := count(n); got != want {
			t.Errorf("count(%v) = %q, want %q", n, got, want)
		}
	}
}
