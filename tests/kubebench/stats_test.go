package kubebench

import (
	"strings"
	"testing"
	"time"
)

func TestSummariseIsNearestRank(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var ds []time.Duration
	for i := 200; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, ms(i))
	}
	got := Summarise(ds)
	want := Latencies{N: 200, P50: ms(100), P99: ms(198), Max: ms(200)}
	if got != want {
		t.Errorf("Summarise(1..200 ms) = %+v, want %+v", got, want)
	}
	if ds[0] != ms(200) {
		t.Error("Summarise sorted its argument")
	}
	if got := Summarise(ds[100:]); got.P99 != ms(99) || got.P50 != ms(50) {
		t.Errorf("Summarise(1..100 ms) = %+v", got)
	}
	// With fewer than 100 samples, p99 is the maximum.
	if got := Summarise(ds[101:]); got.P99 != ms(99) || got.Max != ms(99) {
		t.Errorf("Summarise(1..99 ms) = %+v", got)
	}
	if got := Summarise([]time.Duration{ms(7)}); got != (Latencies{N: 1, P50: ms(7), P99: ms(7), Max: ms(7)}) {
		t.Errorf("one sample: %+v", got)
	}
	if got := Summarise(nil); got != (Latencies{}) {
		t.Errorf("no sample: %+v", got)
	}
}

func TestParseProcStat(t *testing.T) {
	// A command name with a space and a parenthesis; utime 1234, stime 66.
	stat := "4242 (host lbd) S 1 4242 4242 0 -1 4194560 12345 0 0 0 1234 66 0 0 20 0 9 0 777 1300000000 10240 18446744073709551615\n"
	got, err := ParseProcStat(stat)
	if err != nil || got != 13*time.Second {
		t.Errorf("ParseProcStat = %v, %v; want 13s", got, err)
	}
	if _, err := ParseProcStat("4242 (x) S 1 2"); err == nil {
		t.Error("no error for a short line")
	}
}

func TestParseProcStatus(t *testing.T) {
	status := "Name:\thostlbd\nVmPeak:\t 1300000 kB\nVmHWM:\t   81920 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"
	m, err := ParseProcStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS != 40<<20 || m.HWM != 80<<20 {
		t.Errorf("got %+v, want RSS 40 MiB, HWM 80 MiB", m)
	}
	if MiB(m.RSS) != "40.0 MiB" {
		t.Errorf("MiB = %q", MiB(m.RSS))
	}
	// A kernel thread has neither line.
	if _, err := ParseProcStatus(strings.NewReader("Name:\tkthreadd\nThreads:\t1\n")); err == nil {
		t.Error("no error without VmRSS")
	}
	if _, err := ParseProcStatus(strings.NewReader("VmRSS:\t12 MB\nVmHWM:\t1 kB\n")); err == nil {
		t.Error("no error for a unit other than kB")
	}
}

func TestMarkdown(t *testing.T) {
	rep := Report{
		Phases: []Phase{{Name: "1,000 at once", Created: 1000, Total: 1000, Workers: 16,
			Creates: 2 * time.Second, AllIPs: 3 * time.Second,
			Latency: Latencies{N: 1000, P50: 800 * time.Millisecond, P99: 1500 * time.Millisecond, Max: 1600 * time.Millisecond}}},
		Mem: []MemRow{
			{Moment: "idle", Services: 0, Hostlbd: Mem{RSS: 30 << 20, HWM: 31 << 20}, APIServer: Mem{RSS: 300 << 20}},
			{Moment: "10,000", Services: 10000, Hostlbd: Mem{RSS: 160 << 20, HWM: 200 << 20, CPU: 12500 * time.Millisecond}, APIServer: Mem{RSS: 800 << 20},
				HostlbdGC: GC{Live: 60 << 20, Goal: 120 << 20}},
		},
		Requests: []RequestWindow{
			{Name: "burst", Counts: []Count{{Kind: "update services/status", N: 1000, Failed: 2}, {Kind: LeaseKind, N: 3}}},
			{Name: "idle", Counts: []Count{{Kind: LeaseKind, N: 30}}},
		},
	}
	rep.IPConflicts = 2
	rep.EventsCreated, rep.EventsDue = 900, 1000
	md := rep.Markdown()
	for _, want := range []string{
		"| 1,000 at once | 1,000 (1,000) | 16 | 2s | 800ms | 1.5s | 1.6s | 3s |",
		"| 10,000 | 10,000 | 160.0 MiB | 200.0 MiB | 60 / 120 MiB | 800.0 MiB | 0.0 MiB | 20% | 12.5 s / 0.0 s / 0.0 s |",
		"| idle | 0 | 30.0 MiB | 31.0 MiB | – |",
		"- Events: hostlbd created 900 IPAllocated/IPReleased Events of the 1,000 its log says it recorded; 100 (10%) were not written",
		"**missed** by 10.0 MiB",
		"is above the goal",
		"| update services/status | 1,000 (2 failed) | 0 |",
		"| update leases.coordination.k8s.io | 3 | 30 |",
		"| **total** | **1,003 (2 failed)** | **30** |",
		"- IP stability **violated**: an IP was in two Services' status at once 2 times; a Service's IP changed after it was assigned 0 times.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if Thousands(1234567) != "1,234,567" || Thousands(999) != "999" || Thousands(-1000) != "-1,000" {
		t.Error("Thousands")
	}
}

func TestLastGC(t *testing.T) {
	log := `time=2026-11-30T06:40:01.167Z level=INFO msg="hostlbd started"
gc 1 @0.012s 2%: 0.014+1.1+0.021 ms clock, 0.028+0.12/0.98/0.55+0.042 ms cpu, 3->4->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P
time=2026-11-30T06:40:02.227Z level=INFO msg="Kubernetes caches synced"
gc 2 @1.520s 1%: 0.031+2.4+0.004 ms clock, 0.062+0.41/2.1/1.2+0.008 ms cpu, 61->63->38 MB, 72 MB goal, 0 MB stacks, 1 MB globals, 2 P
time=2026-11-30T06:40:03Z level=INFO msg="gc 3 is not a trace line"
`
	gc, ok, err := LastGC(strings.NewReader(log))
	if err != nil || !ok {
		t.Fatalf("LastGC = %v, %v", ok, err)
	}
	if gc != (GC{Live: 38 << 20, Goal: 72 << 20}) {
		t.Errorf("LastGC = %+v, want live 38 MiB, goal 72 MiB", gc)
	}
	log += `time=2026-11-30T06:34:23.251Z level=INFO msg="IPAM: IP allocated" component=ipam service=bench/svc-00110 ips=2001:db8:1000::6d
time=2026-11-30T06:35:28.853Z level=INFO msg="IPAM: IP released" component=ipam service=bench/svc-01002 ips=2001:db8:1000::3e8 why=""
`
	if n, err := EventsLogged(strings.NewReader(log)); n != 2 || err != nil {
		t.Errorf("EventsLogged = %d, %v; want 2", n, err)
	}
	if _, ok, _ := LastGC(strings.NewReader("no trace\n")); ok {
		t.Error("ok without a trace line")
	}
}
