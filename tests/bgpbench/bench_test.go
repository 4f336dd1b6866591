package bgpbench_test

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/bgpbench"
	"github.com/hostlb/hostlb/tests/bgplab"
	"github.com/hostlb/hostlb/tests/failover"
	"github.com/hostlb/hostlb/tests/netlab"
)

var (
	flagRuns     = flag.Int("bgpbench.runs", 30, "samples of VIP-to-route per family, and crashes per detection")
	flagPrefixes = flag.Int("bgpbench.prefixes", 10000, "IPv6 /128s of the bulk VIP (at most 65,535)")
	flagBulkRuns = flag.Int("bgpbench.bulk-runs", 3, "announce/withdraw cycles of the bulk VIP per speaker")
	flagPNG      = flag.String("bgpbench.png", "../../docs/bgp-withdrawal.png", "the crash-withdrawal CDF (\"\" for none)")
	flagOut      = flag.String("bgpbench.out", filepath.Join(os.TempDir(), "hostlb-bgpbench"), "`directory` for the CSV and the plot's data")
)

// report collects every benchmark's markdown, printed once at the end.
var report struct {
	mu sync.Mutex // guards b
	b  strings.Builder
}

func reportf(format string, args ...any) {
	report.mu.Lock()
	defer report.mu.Unlock()
	fmt.Fprintf(&report.b, format, args...)
}

func TestMain(m *testing.M) {
	bgplab.RunSpeakerIfChild()
	code := m.Run()
	report.mu.Lock()
	if report.b.Len() > 0 {
		fmt.Printf("\n%s", report.b.String())
	}
	report.mu.Unlock()
	netlab.RemoveHostlbd()
	os.Exit(code)
}

var (
	anchor4 = netip.MustParseAddr("203.0.113.1")
	anchor6 = netip.MustParseAddr("2001:db8:2::1")
	// bulkRange holds the bulk VIP's addresses.
	bulkRange = netip.MustParsePrefix("2001:db8:100::/112")
	vip4      = netip.MustParseAddr("203.0.113.10")
	vip6      = netip.MustParseAddr("2001:db8:2::10")
)

const upBound = 30 * time.Second

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func addrOf(n *bgplab.Node, a netip.Addr) netip.Addr {
	if a.Is4() {
		return n.Addr4
	}
	return n.Addr6
}

// peersOf are the router's peers on nodes.
func peersOf(all []bgplab.Peer, nodes ...*bgplab.Node) []bgplab.Peer {
	return slices.DeleteFunc(slices.Clone(all), func(p bgplab.Peer) bool {
		return !slices.ContainsFunc(nodes, func(n *bgplab.Node) bool { return slices.Contains(n.Addrs(), p.Address) })
	})
}

func mustKey(b *testing.B) []byte {
	k, err := bgplab.NewGossipKey()
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func capture(b *testing.B, l *bgplab.Lab) *bgpbench.Capture {
	c, err := bgpbench.StartCapture(l.Router, "eth0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

// waitHops polls the router's kernel every millisecond until prefix's
// next hops are want, and returns when it saw them.
func waitHops(r bgplab.Router, prefix netip.Prefix, want []netip.Addr, d time.Duration) (time.Time, error) {
	var at time.Time
	_, err := bgplab.Eventually(d, time.Millisecond, func() error {
		got, err := r.Routes(prefix)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s via %v, want %v", prefix, got, want)
		}
		at = time.Now()
		return nil
	})
	return at, err
}

func dumpOnFailure(b *testing.B, r bgplab.Router, procs func() []*bgplab.Proc) {
	b.Cleanup(func() {
		if !b.Failed() {
			return
		}
		b.Logf("router logs:\n%s", r.Logs())
		for _, p := range procs() {
			log := p.Log()
			if len(log) > 20000 {
				log = "..." + log[len(log)-20000:]
			}
			b.Logf("--- %s (%s) ---\n%s", p.Name, p.LogPath, log)
		}
	})
}

// BenchmarkVIPToRoute: a SIGHUP adds one static BGP address to a running
// hostlbd; from the signal to its route in BIRD's kernel.
func BenchmarkVIPToRoute(b *testing.B) {
	l := bgplab.New(b)
	bgplab.RequireRouter(b, bgplab.BIRD)
	bin := netlab.Hostlbd(b)
	n := l.Nodes[0]
	peers := peersOf(l.RouterPeers(false, ""), n)
	r := l.StartRouter(bgplab.BIRD, bgplab.RouterConfig{Peers: peers})
	capt := capture(b, l)
	hc := bgplab.HostlbdConfig{Key: mustKey(b), VIPs: []netip.Addr{anchor4, anchor6}, LogLevel: "info"}
	p := n.StartHostlbd(bin, hc)
	dumpOnFailure(b, r, func() []*bgplab.Proc { return []*bgplab.Proc{p} })
	if _, err := bgplab.WaitPeers(r, peers, upBound); err != nil {
		b.Fatal(err)
	}
	for _, a := range []netip.Addr{anchor4, anchor6} {
		if _, err := waitHops(r, host(a), []netip.Addr{addrOf(n, a)}, upBound); err != nil {
			b.Fatal(err)
		}
	}
	type split struct{ total, hostlbd, router []time.Duration }
	var fams [2]split
	for i := range *flagRuns {
		for f, a := range []netip.Addr{
			netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i%150)}),
			netip.MustParseAddr(fmt.Sprintf("2001:db8:2::%x", 0x100+i)),
		} {
			hc.VIPs = append(hc.VIPs, a)
			n.WriteHostlbdConfig(bin, hc)
			t0 := time.Now()
			if err := p.Signal(syscall.SIGHUP); err != nil {
				b.Fatal(err)
			}
			at, err := waitHops(r, host(a), []netip.Addr{addrOf(n, a)}, 10*time.Second)
			if err != nil {
				b.Fatalf("sample %d: %v", i, err)
			}
			var sp bgpbench.Span
			_, err = bgplab.Eventually(time.Second, time.Millisecond, func() error {
				var err error
				sp, err = capt.From(addrOf(n, a), t0)
				if err == nil && sp.Segments == 0 {
					err = errors.New("no segment yet")
				}
				return err
			})
			if err != nil {
				b.Fatalf("sample %d: no UPDATE from %s captured: %v", i, addrOf(n, a), err)
			}
			fams[f].total = append(fams[f].total, at.Sub(t0))
			fams[f].hostlbd = append(fams[f].hostlbd, sp.First.Sub(t0))
			fams[f].router = append(fams[f].router, at.Sub(sp.First))
		}
	}
	var md strings.Builder
	fmt.Fprintf(&md, "### VIP to route: SIGHUP adding one static BGP address, until BIRD's kernel has it (%d samples per family)\n\n%s\n",
		*flagRuns, bgpbench.RowHeader)
	for f, name := range []string{"IPv4 /32", "IPv6 /128"} {
		fmt.Fprintln(&md, bgpbench.Row(name+": SIGHUP → route in the kernel", fams[f].total))
		fmt.Fprintln(&md, bgpbench.Row(name+": SIGHUP → first UPDATE at the router (hostlbd)", fams[f].hostlbd))
		fmt.Fprintln(&md, bgpbench.Row(name+": first UPDATE → route in the kernel (BIRD + kernel)", fams[f].router))
	}
	all := append(slices.Clone(fams[0].total), fams[1].total...)
	s := failover.Summarize(all)
	b.ReportMetric(float64(s.P50)/1e6, "p50-ms")
	b.ReportMetric(float64(s.P99)/1e6, "p99-ms")
	reportf("%s\n", md.String())
}

// bulk are the bulk VIP's addresses: the first count of bulkRange after
// its network address.
func bulk(count int) []netip.Addr {
	out := make([]netip.Addr, 0, count)
	a := bulkRange.Addr()
	for range count {
		a = a.Next()
		out = append(out, a)
	}
	return out
}

// bulkSample is one announcement or withdrawal of every bulk prefix,
// split at the UPDATE segments the router received.
type bulkSample struct {
	total         time.Duration // trigger → last route in (or out of) the kernel
	before        time.Duration // trigger → first segment
	send          time.Duration // first → last segment
	after         time.Duration // last segment → last route
	bytes, segs   int
	fromFirstSegs time.Duration // first segment → last route
}

func measureBulk(capt *bgpbench.Capture, rc *bgpbench.RouteCount, src netip.Addr, want int, t0 time.Time) (bulkSample, error) {
	at, err := rc.Wait(want, 2*time.Minute)
	if err != nil {
		return bulkSample{}, err
	}
	sp, err := capt.From(src, t0)
	if err != nil {
		return bulkSample{}, err
	}
	if sp.Segments == 0 {
		return bulkSample{}, fmt.Errorf("no UPDATE from %s captured", src)
	}
	return bulkSample{
		total: at.Sub(t0), before: sp.First.Sub(t0), send: sp.Last.Sub(sp.First), after: at.Sub(sp.Last),
		bytes: sp.Bytes, segs: sp.Segments, fromFirstSegs: at.Sub(sp.First),
	}, nil
}

// BenchmarkBulkPrefixes: 10,000 /128s announced and withdrawn by a SIGHUP
// and by a SIGTERM of hostlbd (with and without local addresses), and by
// a plain GoBGP speaker's start and SIGTERM, in the same run.
func BenchmarkBulkPrefixes(b *testing.B) {
	count := *flagPrefixes
	if count < 1 || count > 65535 {
		b.Fatalf("-bgpbench.prefixes %d: want 1..65535", count)
	}
	l := bgplab.New(b)
	bgplab.RequireRouter(b, bgplab.BIRD)
	bin := netlab.Hostlbd(b)
	n1, n2 := l.Nodes[0], l.Nodes[1]
	peers := peersOf(l.RouterPeers(false, ""), n1, n2)
	r := l.StartRouter(bgplab.BIRD, bgplab.RouterConfig{Peers: peers})
	capt := capture(b, l)
	rc, err := bgpbench.WatchRoutes(l.Router.Name, bulkRange)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rc.Close)
	addrs := bulk(count)
	var procs []*bgplab.Proc
	dumpOnFailure(b, r, func() []*bgplab.Proc { return procs })
	key := mustKey(b)

	type series struct {
		name     string
		up, down []bulkSample
	}
	var all []series
	// local = true (the default) first: the node then starts again, with
	// local = false, after a stop that had 10,000 local VIPs to clean up.
	for _, notLocal := range []bool{false, true} {
		name := fmt.Sprintf("hostlbd (local = %t)", !notLocal)
		s := series{name: name + ", SIGHUP"}
		term := series{name: name + ", SIGTERM"}
		hc := bgplab.HostlbdConfig{Key: key, VIPs: []netip.Addr{anchor6}, LogLevel: "info", NotLocal: notLocal}
		p := n1.StartHostlbd(bin, hc)
		procs = append(procs, p)
		if _, err := bgplab.WaitPeers(r, peersOf(peers, n1), upBound); err != nil {
			b.Fatal(err)
		}
		if _, err := waitHops(r, host(anchor6), []netip.Addr{n1.Addr6}, upBound); err != nil {
			b.Fatal(err)
		}
		for run := range *flagBulkRuns + 1 {
			hc.VIPs = append([]netip.Addr{anchor6}, addrs...)
			n1.WriteHostlbdConfig(bin, hc)
			t0 := time.Now()
			if err := p.Signal(syscall.SIGHUP); err != nil {
				b.Fatal(err)
			}
			up, err := measureBulk(capt, rc, n1.Addr6, count, t0)
			if err != nil {
				b.Fatalf("%s, announce %d: %v", name, run, err)
			}
			s.up = append(s.up, up)
			b.Logf("%s: %d prefixes announced after %v", name, count, up.total)
			if run == *flagBulkRuns {
				// The last cycle ends with a stop: withdraw on SIGTERM.
				t0 = time.Now()
				if err := p.Signal(syscall.SIGTERM); err != nil {
					b.Fatal(err)
				}
				down, err := measureBulk(capt, rc, n1.Addr6, 0, t0)
				if err != nil {
					b.Fatalf("%s, SIGTERM: %v", name, err)
				}
				term.down = append(term.down, down)
				if err := p.Wait(30 * time.Second); err != nil {
					b.Fatalf("%s after SIGTERM with %d VIPs: %v", name, count, err)
				}
				if out, _ := n1.NS.Run("ip", "-o", "addr", "show", "dev", "hostlb0"); strings.Contains(out, "inet") {
					b.Fatalf("%s: hostlb0 still there after SIGTERM:\n%.500s", name, out)
				}
				b.Logf("%s: %d prefixes withdrawn after SIGTERM in %v", name, count, down.total)
				break
			}
			hc.VIPs = []netip.Addr{anchor6}
			n1.WriteHostlbdConfig(bin, hc)
			t0 = time.Now()
			if err := p.Signal(syscall.SIGHUP); err != nil {
				b.Fatal(err)
			}
			down, err := measureBulk(capt, rc, n1.Addr6, 0, t0)
			if err != nil {
				b.Fatalf("%s, withdraw %d: %v", name, run, err)
			}
			s.down = append(s.down, down)
			b.Logf("%s: %d prefixes withdrawn after %v", name, count, down.total)
		}
		// The SIGTERM cycle's announcement counts with the SIGHUPs.
		all = append(all, s, term)
		if _, err := waitHops(r, host(anchor6), nil, upBound); err != nil {
			b.Fatal(err)
		}
	}

	// The baseline: GoBGP advertising the same prefixes from its start.
	prefixes := make([]netip.Prefix, len(addrs))
	for i, a := range addrs {
		prefixes[i] = host(a)
	}
	base := series{name: "plain GoBGP speaker: start / SIGTERM"}
	for run := range *flagBulkRuns + 1 {
		t0 := time.Now()
		sp := n2.StartSpeaker(n2.SpeakerFor(nil, "", prefixes...))
		procs = append(procs, sp.Proc)
		up, err := measureBulk(capt, rc, n2.Addr6, count, t0)
		if err != nil {
			b.Fatalf("GoBGP, announce %d: %v", run, err)
		}
		base.up = append(base.up, up)
		t0 = time.Now()
		if err := sp.Signal(syscall.SIGTERM); err != nil {
			b.Fatal(err)
		}
		down, err := measureBulk(capt, rc, n2.Addr6, 0, t0)
		if err != nil {
			b.Fatalf("GoBGP, SIGTERM %d: %v", run, err)
		}
		base.down = append(base.down, down)
		if err := sp.Wait(30 * time.Second); err != nil {
			b.Fatalf("GoBGP after SIGTERM: %v", err)
		}
		b.Logf("GoBGP: %d prefixes in %v after the first UPDATE, out %v after SIGTERM", count, up.fromFirstSegs, down.total)
	}
	all = append(all, base)

	var md strings.Builder
	fmt.Fprintf(&md, "### %d IPv6 /128s announced and withdrawn, at BIRD's kernel (goal ≤ 2 s each way)\n\n", count)
	fmt.Fprintln(&md, "Medians over the runs; \"trigger\" is the SIGHUP or SIGTERM (for the GoBGP speaker's announcement: its start, which includes the session's set-up, so compare from the first UPDATE).")
	fmt.Fprintln(&md)
	fmt.Fprintln(&md, "| speaker | direction | runs | trigger → all in/out of the kernel | trigger → first UPDATE | first → last UPDATE (sending) | last UPDATE → kernel (BIRD + kernel) | first UPDATE → kernel | UPDATE bytes / segments | goal |")
	fmt.Fprintln(&md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
	med := func(ss []bulkSample, f func(bulkSample) time.Duration) time.Duration {
		var ds []time.Duration
		for _, s := range ss {
			ds = append(ds, f(s))
		}
		return failover.Summarize(ds).P50
	}
	for _, s := range all {
		for _, d := range []struct {
			dir string
			ss  []bulkSample
		}{{"announce", s.up}, {"withdraw", s.down}} {
			if len(d.ss) == 0 {
				continue
			}
			total := med(d.ss, func(x bulkSample) time.Duration { return x.total })
			worst := slices.MaxFunc(d.ss, func(x, y bulkSample) int { return int(x.total - y.total) }).total
			if strings.HasPrefix(s.name, "plain") && d.dir == "announce" {
				worst = slices.MaxFunc(d.ss, func(x, y bulkSample) int { return int(x.fromFirstSegs - y.fromFirstSegs) }).fromFirstSegs
			}
			goal := "met"
			if worst > 2*time.Second {
				goal = "**missed**"
			}
			last := d.ss[len(d.ss)-1]
			fmt.Fprintf(&md, "| %s | %s | %d | %s | %s | %s | %s | %s | %d / %d | %s (worst %s) |\n", s.name, d.dir, len(d.ss),
				bgpbench.Ms(total), bgpbench.Ms(med(d.ss, func(x bulkSample) time.Duration { return x.before })),
				bgpbench.Ms(med(d.ss, func(x bulkSample) time.Duration { return x.send })),
				bgpbench.Ms(med(d.ss, func(x bulkSample) time.Duration { return x.after })),
				bgpbench.Ms(med(d.ss, func(x bulkSample) time.Duration { return x.fromFirstSegs })),
				last.bytes, last.segs, goal, bgpbench.Ms(worst))
		}
	}
	reportf("%s\n", md.String())
}

// BenchmarkCrashWithdrawal: a hostlbd node and a plain GoBGP node crash at
// once (link down, kill -9), with BFD and with the hold timer; until each
// one's next hop for the VIP's /32 leaves BIRD's kernel. Writes the CSV
// and the CDF plot.
func BenchmarkCrashWithdrawal(b *testing.B) {
	var ws []bgpbench.Withdrawal
	for _, detect := range []string{"bfd", "hold"} {
		b.Run(detect, func(b *testing.B) { ws = append(ws, crashRuns(b, detect == "bfd")...) })
	}
	if b.Failed() || len(ws) == 0 {
		return
	}
	if err := os.MkdirAll(*flagOut, 0o755); err != nil {
		b.Fatal(err)
	}
	csvPath := filepath.Join(*flagOut, "bgp-withdrawal.csv")
	f, err := os.Create(csvPath)
	if err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(bgpbench.WriteCSV(f, ws), f.Close()); err != nil {
		b.Fatal(err)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "### Crash (link down + kill -9) until the node's next hop leaves BIRD's kernel\n\n%s\n", bgpbench.RowHeader)
	by := map[string][]time.Duration{}
	var order []string
	for _, w := range ws {
		k := w.Detect + ", " + w.Speaker
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], w.Took)
	}
	for _, k := range order {
		fmt.Fprintln(&md, bgpbench.Row(k, by[k]))
	}
	for _, detect := range []string{"bfd", "hold"} {
		h, g := failover.Summarize(by[detect+", hostlbd"]), failover.Summarize(by[detect+", gobgp"])
		if g.P50 > 0 && g.P99 > 0 {
			fmt.Fprintf(&md, "\n%s: hostlbd / GoBGP ratio p50 ×%.2f, p99 ×%.2f", detect,
				float64(h.P50)/float64(g.P50), float64(h.P99)/float64(g.P99))
		}
	}
	fmt.Fprintf(&md, "\n\nPer run: %s", csvPath)
	if *flagPNG != "" {
		png, _ := filepath.Abs(*flagPNG)
		if err := bgpbench.Plot(png, *flagOut, ws); err != nil {
			b.Error(err)
		} else {
			fmt.Fprintf(&md, "; CDF: %s", png)
		}
	}
	reportf("%s\n\n", md.String())
}

// crashRuns runs -bgpbench.runs crashes in one lab: node1 runs hostlbd,
// node2 a plain GoBGP speaker, node3 hostlbd (it stays up); each run
// crashes node1 and node2 together (their order alternates), then brings
// them back and waits for all sessions and next hops.
func crashRuns(b *testing.B, bfd bool) []bgpbench.Withdrawal {
	detect := "hold"
	var timers *bgplab.BFDTimers
	if bfd {
		detect, timers = "bfd", &bgplab.DefaultBFD
	}
	l := bgplab.New(b)
	bgplab.RequireRouter(b, bgplab.BIRD)
	bin := netlab.Hostlbd(b)
	for _, n := range l.Nodes {
		// The node's IPv6 address stays when its link goes down, and is
		// usable at once when it comes back: no duplicate address
		// detection to wait for.
		n.NS.Sysctl("net.ipv6.conf.eth0.keep_addr_on_down", "1")
		n.NS.Sysctl("net.ipv6.conf.eth0.accept_dad", "0")
	}
	peers := l.RouterPeers(bfd, "")
	r := l.StartRouter(bgplab.BIRD, bgplab.RouterConfig{Peers: peers})
	hc := bgplab.HostlbdConfig{Key: mustKey(b), BFD: bfd, VIPs: []netip.Addr{vip4, vip6}, LogLevel: "info"}
	n1, n2, n3 := l.Nodes[0], l.Nodes[1], l.Nodes[2]
	procs := make([]*bgplab.Proc, 3)
	start := func(i int) {
		switch i {
		case 1:
			procs[1] = n2.StartSpeaker(n2.SpeakerFor(timers, "", host(vip4), host(vip6))).Proc
		default:
			procs[i] = l.Nodes[i].StartHostlbd(bin, hc)
		}
	}
	for i := range 3 {
		start(i)
	}
	dumpOnFailure(b, r, func() []*bgplab.Proc { return procs })
	ready := func() {
		b.Helper()
		if _, err := bgplab.WaitPeers(r, peers, upBound); err != nil {
			b.Fatal(err)
		}
		if _, err := waitHops(r, host(vip4), []netip.Addr{n1.Addr4, n2.Addr4, n3.Addr4}, upBound); err != nil {
			b.Fatal(err)
		}
	}
	ready()
	speakers := map[int]string{0: "hostlbd", 1: "gobgp"}
	var out []bgpbench.Withdrawal
	for run := range *flagRuns {
		order := []int{0, 1}
		if run%2 == 1 {
			order = []int{1, 0}
		}
		t0 := map[int]time.Time{}
		for _, i := range order {
			t0[i] = time.Now()
			l.Nodes[i].LinkDown()
		}
		for _, i := range order {
			procs[i].Kill()
		}
		gone := map[int]time.Time{}
		if _, err := bgplab.Eventually(10*time.Second, time.Millisecond, func() error {
			hops, err := r.Routes(host(vip4))
			if err != nil {
				return err
			}
			now := time.Now()
			for _, i := range order {
				if _, ok := gone[i]; !ok && !slices.Contains(hops, l.Nodes[i].Addr4) {
					gone[i] = now
				}
			}
			if len(gone) < 2 {
				return fmt.Errorf("%s still via %v", host(vip4), hops)
			}
			return nil
		}); err != nil {
			b.Fatalf("run %d (%s): %v", run, detect, err)
		}
		for _, i := range []int{0, 1} {
			out = append(out, bgpbench.Withdrawal{Detect: detect, Speaker: speakers[i], Run: run, Took: gone[i].Sub(t0[i])})
		}
		b.Logf("%s run %d: hostlbd %v, gobgp %v", detect, run, gone[0].Sub(t0[0]).Round(time.Millisecond), gone[1].Sub(t0[1]).Round(time.Millisecond))
		for _, i := range order {
			n := l.Nodes[i]
			n.LinkUp()
			// Taking the link down removed the default routes through it;
			// they can come back once the link's own prefixes did.
			for _, argv := range [][]string{
				{"ip", "route", "replace", "default", "via", bgplab.RouterNodes4.String()},
				{"ip", "-6", "route", "replace", "default", "via", bgplab.RouterNodes6.String()},
			} {
				if _, err := bgplab.Eventually(10*time.Second, 5*time.Millisecond, func() error {
					_, err := n.NS.Run(argv...)
					return err
				}); err != nil {
					b.Fatalf("%s: %v", n.Name, err)
				}
			}
			start(i)
		}
		ready()
	}
	return out
}
