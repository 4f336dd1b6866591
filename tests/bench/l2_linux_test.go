//go:build linux

package bench_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/bench"
	"github.com/hostlb/hostlb/tests/netlab"
)

var profileDir = flag.String("l2bench.cpuprofile", "", "write a CPU profile of each hostlb responder into this `directory`")

// The load shapes. Rounds alternate the sides (kernel first, then hostlb
// first), so each side gets rounds × the duration of each shape.
const (
	window       = 32   // closed loop: requests outstanding
	fixedRate    = 2000 // open loop: requests per second
	rateDuration = 1500 * time.Millisecond
	latDuration  = 1500 * time.Millisecond
	rounds       = 2
	warmup       = 200 * time.Millisecond
	timeout      = 500 * time.Millisecond // an answer later than this is lost
	readyWithin  = 20 * time.Second
)

// report collects the rows of every scenario for TestMain to print.
var report struct {
	mu     sync.Mutex // guards rows and header
	rows   []bench.Row
	header string
}

func TestMain(m *testing.M) {
	if bench.IsResponderProcess() {
		os.Exit(bench.ResponderMain(os.Stdin, os.Stdout, os.Stderr))
	}
	code := m.Run()
	report.mu.Lock()
	if len(report.rows) > 0 {
		fmt.Printf("\n%s\n%s", report.header, bench.Markdown(report.rows, bench.Params{
			Window: window, Rate: fixedRate, Rounds: rounds,
			RateDuration: rounds * rateDuration, LatDuration: rounds * latDuration,
		}))
	}
	report.mu.Unlock()
	os.Exit(code)
}

// BenchmarkL2 measures ARP and NDP answering by hostlb's responders and by
// the kernel for the same VIPs in the same lab (see the package doc). Each
// sub-benchmark runs once, whatever b.N, and reports ratios as metrics;
// TestMain prints the table for BENCHMARKS.md.
func BenchmarkL2(b *testing.B) {
	lab := netlab.New(b)
	brk, brh := lab.Bridge("brk"), lab.Bridge("brh")
	client := lab.Namespace("client")
	nk, nh := lab.Namespace("kernel"), lab.Namespace("hostlb")
	clientAddrs := []string{bench.ClientIPv4.String() + "/24", bench.ClientIPv6.String() + "/64"}
	ek := lab.Connect(client, brk, "ek", clientAddrs)
	eh := lab.Connect(client, brh, "eh", clientAddrs)
	lab.Connect(nk, brk, "eth0", nil)
	lab.Connect(nh, brh, "eth0", nil)
	setHeader(b, nk)

	for _, sc := range []struct {
		proto bench.Proto
		vips  int
	}{
		{bench.ARP, 1}, {bench.ARP, bench.MaxIPv4VIPs},
		{bench.NDP, 1}, {bench.NDP, 1000}, {bench.NDP, 10000},
	} {
		b.Run(fmt.Sprintf("%s/vips=%d", sc.proto, sc.vips), func(b *testing.B) {
			row := measure(b, client, nk, nh, ek, eh, sc.proto, sc.vips)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(row.Kernel.Rate.Rate(), "kernel-answers/s")
			b.ReportMetric(row.Hostlb.Rate.Rate(), "hostlb-answers/s")
			b.ReportMetric(row.RateRatio(), "rate-ratio")
			b.ReportMetric(row.P99Ratio(), "p99-ratio")
			report.mu.Lock()
			report.rows = append(report.rows, row)
			report.mu.Unlock()
		})
	}
}

// measure runs one scenario: both nodes own the first n VIPs, the client
// asks both.
func measure(b *testing.B, client, nk, nh *netlab.NS, ek, eh *netlab.Link, proto bench.Proto, n int) bench.Row {
	vips, err := bench.VIPs(proto, n)
	if err != nil {
		b.Fatal(err)
	}
	configureKernel(b, nk, proto, n)
	startResponder(b, nh, proto, n)

	src := bench.ClientIPv4
	if proto == bench.NDP {
		src = bench.ClientIPv6
	}
	type side struct {
		name string
		conn *bench.ClientConn
		link *netlab.Link
		res  [2][]bench.Result // rate, latency
	}
	kernel := &side{name: "kernel", conn: listenClient(b, client, ek.Name, proto), link: ek}
	hostlb := &side{name: "hostlb", conn: listenClient(b, client, eh.Name, proto), link: eh}
	load := func(s *side, d time.Duration, win int, rate float64, seed uint64) bench.Result {
		b.Helper()
		res, err := bench.Run(context.Background(), s.conn, bench.Load{
			Proto: proto, MAC: s.link.MAC, Src: src, Targets: vips,
			Duration: d, Window: win, Rate: rate, Timeout: timeout, Seed: seed,
		})
		if err != nil {
			b.Fatalf("%s: %v", s.name, err)
		}
		if res.WriteErrs > 0 {
			b.Logf("%s: %d sends failed, first: %v", s.name, res.WriteErrs, res.FirstError)
		}
		return res
	}
	// Warm up both sides (caches, neighbour entries, the responder's page
	// faults) until a short run is answered in full.
	for _, s := range []*side{kernel, hostlb} {
		deadline := time.Now().Add(readyWithin)
		for {
			res := load(s, warmup, window, 0, 1)
			if res.Answered > 0 && res.Lost == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s does not answer %s for %d VIPs: %+v", s.name, proto, n, res)
			}
		}
	}
	for r := range rounds {
		order := []*side{kernel, hostlb}
		if r%2 == 1 {
			order = []*side{hostlb, kernel}
		}
		for _, s := range order {
			s.res[0] = append(s.res[0], load(s, rateDuration, window, 0, uint64(10+r)))
		}
		for _, s := range order {
			s.res[1] = append(s.res[1], load(s, latDuration, 0, fixedRate, uint64(20+r)))
		}
	}
	row := bench.Row{
		Proto:  proto,
		VIPs:   n,
		Kernel: bench.Side{Rate: bench.Merge(kernel.res[0]...), Latency: bench.Merge(kernel.res[1]...)},
		Hostlb: bench.Side{Rate: bench.Merge(hostlb.res[0]...), Latency: bench.Merge(hostlb.res[1]...)},
	}
	for _, s := range []struct {
		name string
		side bench.Side
	}{{"kernel", row.Kernel}, {"hostlb", row.Hostlb}} {
		b.Logf("%s: rate run sent %d answered %d lost %d unmatched %d; latency run sent %d answered %d lost %d unmatched %d",
			s.name, s.side.Rate.Sent, s.side.Rate.Answered, s.side.Rate.Lost, s.side.Rate.Unmatched,
			s.side.Latency.Sent, s.side.Latency.Answered, s.side.Latency.Lost, s.side.Latency.Unmatched)
	}
	return row
}

// configureKernel gives node-kernel's eth0 the first n VIPs as local
// addresses in one `ip -batch`, and removes them when the scenario ends.
func configureKernel(b *testing.B, nk *netlab.NS, proto bench.Proto, n int) {
	b.Helper()
	vips, err := bench.VIPs(proto, n)
	if err != nil {
		b.Fatal(err)
	}
	var batch bytes.Buffer
	for _, v := range vips {
		if v.Is4() {
			fmt.Fprintf(&batch, "address add %s/32 dev eth0\n", v)
		} else {
			fmt.Fprintf(&batch, "address add %s/128 dev eth0 nodad\n", v)
		}
	}
	path := filepath.Join(b.TempDir(), "addrs.batch")
	if err := os.WriteFile(path, batch.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	ipRun(b, "-n", nk.Name, "-batch", path)
	b.Cleanup(func() {
		if proto == bench.ARP {
			ipRun(b, "-n", nk.Name, "-4", "address", "flush", "dev", "eth0")
		} else {
			ipRun(b, "-n", nk.Name, "-6", "address", "flush", "dev", "eth0", "scope", "global")
		}
	})
}

func ipRun(b *testing.B, args ...string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		b.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// startResponder re-executes this test binary inside nh as the hostlb
// responder for the first n VIPs and waits until it answers. The scenario's
// cleanup stops it by closing its stdin, and kills it (by PID) if it does
// not exit in time.
func startResponder(b *testing.B, nh *netlab.NS, proto bench.Proto, n int) {
	b.Helper()
	vips, err := bench.VIPs(proto, n)
	if err != nil {
		b.Fatal(err)
	}
	var list bytes.Buffer
	for _, v := range vips {
		fmt.Fprintln(&list, v)
	}
	dir := b.TempDir()
	vipFile := filepath.Join(dir, "vips")
	if err := os.WriteFile(vipFile, list.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := nh.Command(context.Background(), exe)
	cmd.Env = append(os.Environ(),
		bench.EnvResponder+"="+string(proto), bench.EnvIface+"=eth0", bench.EnvVIPs+"="+vipFile)
	if *profileDir != "" {
		prof, err := filepath.Abs(filepath.Join(*profileDir, fmt.Sprintf("hostlb-%s-%d.pprof", proto, n)))
		if err != nil {
			b.Fatal(err)
		}
		cmd.Env = append(cmd.Env, bench.EnvProfile+"="+prof)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start responder: %v", err)
	}
	// One goroutine owns stdout and Wait: the first line says ready, the
	// last one holds the counters, and Wait follows EOF.
	ready := make(chan string, 1)
	type exit struct {
		err   error
		stats string
	}
	exited := make(chan exit, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		var last string
		for first := true; sc.Scan(); first = false {
			if first {
				ready <- sc.Text()
			}
			last = sc.Text()
		}
		exited <- exit{err: cmd.Wait(), stats: last}
	}()
	b.Cleanup(func() {
		stdin.Close()
		var e exit
		select {
		case e = <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			e = <-exited
			b.Errorf("responder pid %d did not stop within 10 s; killed", cmd.Process.Pid)
		}
		if e.err != nil {
			b.Errorf("responder: %v: %s", e.err, stderr.String())
			return
		}
		var counters map[string]uint64
		if err := json.Unmarshal([]byte(e.stats), &counters); err != nil {
			b.Errorf("responder counters %q: %v", e.stats, err)
			return
		}
		b.Logf("hostlb responder counters (non-zero): %s", nonZero(counters))
	})
	select {
	case line := <-ready:
		if line != bench.ReadyLine {
			b.Fatalf("responder did not start (%q): %s", line, stderr.String())
		}
	case e := <-exited:
		exited <- e // for the cleanup
		b.Fatalf("responder exited before it was ready: %v: %s", e.err, stderr.String())
	case <-time.After(readyWithin):
		b.Fatalf("responder not ready within %v", readyWithin)
	}
}

func nonZero(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
		}
	}
	return strings.Join(parts, " ")
}

// lockedBuffer collects a child's stderr while the test may read it.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// listenClient opens the generator's socket on ifname inside ns.
func listenClient(b *testing.B, ns *netlab.NS, ifname string, proto bench.Proto) *bench.ClientConn {
	b.Helper()
	var c *bench.ClientConn
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c, err = bench.ListenClient(ifi, proto)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// setHeader describes the machine and the kernel's relevant settings.
func setHeader(b *testing.B, nk *netlab.NS) {
	uname, _ := exec.Command("uname", "-r").Output()
	model := "unknown CPU"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	rl := strings.Fields(nk.MustRun("sysctl", "-n", "net.ipv6.icmp.ratelimit", "net.ipv6.icmp.ratemask"))
	report.mu.Lock()
	defer report.mu.Unlock()
	report.header = fmt.Sprintf("Machine: %d CPUs (%s), Linux %s, %s, GOMAXPROCS %d. "+
		"Kernel node: net.ipv6.icmp.ratelimit=%s ms, ratemask=%s.\n",
		runtime.NumCPU(), model, strings.TrimSpace(string(uname)), runtime.Version(), runtime.GOMAXPROCS(0),
		strings.Join(rl[:min(1, len(rl))], ""), strings.Join(rl[min(1, len(rl)):], " "))
}
