package kubelabbench

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hostlb/hostlb/tests/kubebench"
)

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

func TestTrackerMeasuresEachStageFromTheCreate(t *testing.T) {
	tr := NewTracker()
	n2 := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x12}

	// a: IP at +20, endpoint at +100, announced at +105, answered at +110.
	tr.Created("a", ms(0), ms(10))
	if !tr.SawIP("a", addr(0), ms(30)) {
		t.Error("first IP of a: not first")
	}
	tr.SawReady("a", ms(110))
	tr.SawReady("a", ms(500)) // only the first counts
	tr.Heard(Heard{Target: addr(0), MAC: nodeMAC}, ms(115))
	if !tr.Heard(Heard{Target: addr(0), MAC: nodeMAC, Answer: true}, ms(120)) {
		t.Error("first answer for a: not first")
	}
	if tr.Heard(Heard{Target: addr(0), MAC: nodeMAC, Answer: true}, ms(130)) {
		t.Error("second answer for a: first")
	}

	// b: the watch saw it before its create returned; two MACs answer.
	if !tr.SawIP("b", addr(1), ms(15)) {
		t.Error("first IP of b: not first")
	}
	tr.Created("b", ms(5), ms(20))
	tr.SawReady("b", ms(40))
	tr.Heard(Heard{Target: addr(1), MAC: nodeMAC, Answer: true}, ms(70))
	tr.Heard(Heard{Target: addr(1), MAC: n2, Answer: true}, ms(80))

	// c: an IP, never answered; d: never got an IP.
	tr.Created("c", ms(1), ms(12))
	tr.SawIP("c", addr(2), ms(50))
	tr.Created("d", ms(2), ms(13))

	w := tr.Wave([]string{"a", "b", "c", "d"})
	want := Wave{
		Services: 4, Creates: 20 * time.Millisecond,
		ToIP:       kubebench.Summarise([]time.Duration{20 * time.Millisecond, 0, 38 * time.Millisecond}),
		ToReady:    kubebench.Summarise([]time.Duration{100 * time.Millisecond, 20 * time.Millisecond}),
		ToAnswer:   kubebench.Summarise([]time.Duration{110 * time.Millisecond, 50 * time.Millisecond}),
		ToAnnounce: kubebench.Summarise([]time.Duration{105 * time.Millisecond}),
		Share:      kubebench.Summarise([]time.Duration{10 * time.Millisecond, 30 * time.Millisecond}),
		// From a's create sent (0) to a's answer (120) and a's endpoint (110).
		AllAnswered: 120 * time.Millisecond, AllReady: 110 * time.Millisecond,
		Answered: 2, Unanswered: 2,
		// b: n2 first heard at +80.
		MultiOwner: 1, MultiOwnerAt: []string{"10:00:00 ×1"}, DualAnswer: 1,
	}
	if diff := cmp.Diff(want, w); diff != "" {
		t.Errorf("wave (-want +got):\n%s", diff)
	}
	if got := tr.Unanswered([]string{"a", "b", "c", "d", "unknown"}); got != 3 {
		t.Errorf("Unanswered = %d, want 3 (c, d, unknown)", got)
	}

	// An IP that changes is counted; the new one is the Service's.
	if tr.SawIP("c", addr(3), ms(60)) || tr.SawIP("c", addr(3), ms(61)) {
		t.Error("a changed IP reported as first")
	}
	if tr.IPChanges() != 1 {
		t.Errorf("IPChanges = %d, want 1", tr.IPChanges())
	}
	if diff := cmp.Diff([]string{addr(0).String(), addr(1).String(), addr(3).String()}, strs(tr.IPs([]string{"a", "b", "c", "d"}))); diff != "" {
		t.Errorf("IPs (-want +got):\n%s", diff)
	}
}

func TestTrackerSweepCountsAnswersSince(t *testing.T) {
	tr := NewTracker()
	n2 := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x12}
	tr.Heard(Heard{Target: addr(0), MAC: nodeMAC, Answer: true}, ms(10))  // before the sweep only
	tr.Heard(Heard{Target: addr(1), MAC: nodeMAC, Answer: true}, ms(10))  // before,
	tr.Heard(Heard{Target: addr(1), MAC: nodeMAC, Answer: true}, ms(200)) // and during
	tr.Heard(Heard{Target: addr(2), MAC: nodeMAC, Answer: true}, ms(200))
	tr.Heard(Heard{Target: addr(2), MAC: n2, Answer: true}, ms(201))
	tr.Heard(Heard{Target: addr(3), MAC: n2, Answer: true}, ms(202))
	tr.Heard(Heard{Target: addr(4), MAC: otherMAC}, ms(203)) // an announcement is no answer
	names := map[string]string{nodeMAC.String(): "n1"}
	got := tr.Sweep([]netip.Addr{addr(0), addr(1), addr(2), addr(3), addr(4)}, ms(100), func(mac string) string { return names[mac] })
	want := Sweep{IPs: 5, PerNode: map[string]int{"n1": 1, n2.String(): 1}, None: 2, Several: 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func strs(as []netip.Addr) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

func TestTrackerProbesOnceIPAndEndpointAreSeen(t *testing.T) {
	tr := NewTracker()
	if _, ok := tr.ReadyToProbe("a"); ok {
		t.Error("unknown Service: ready to probe")
	}
	tr.SawReady("a", ms(10))
	if _, ok := tr.ReadyToProbe("a"); ok {
		t.Error("endpoint without IP: ready to probe")
	}
	tr.SawIP("a", addr(0), ms(20))
	if ip, ok := tr.ReadyToProbe("a"); !ok || ip != addr(0) {
		t.Errorf("IP and endpoint: %v, %v; want %v, true", ip, ok, addr(0))
	}
	if _, ok := tr.ReadyToProbe("a"); ok {
		t.Error("ready to probe twice")
	}
}

func TestBusiestKeepsTheLargestCounts(t *testing.T) {
	got := busiest(map[string]int{"a": 1, "b": 5, "c": 5, "d": 2, "e": 1000}, 3)
	want := []string{"e ×1,000", "b ×5", "c ×5", "and 2 more"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := busiest(nil, 3); got != nil {
		t.Errorf("none: %v", got)
	}
}
