package metricsbench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/failover"
	"github.com/hostlb/hostlb/tests/kubebench"
	"github.com/hostlb/hostlb/tests/netlab"
)

var (
	flagVIPs   = flag.Int("metricsbench.vips", 10000, "IPv6 addresses of the lab's VIP")
	flagWindow = flag.Duration("metricsbench.window", 60*time.Second, "length of each idle or scraped window")
)

const metricsPort = 9476

// vips are n IPv6 addresses of 2001:db8:1::/64.
func vips(n int) []netip.Addr {
	out := make([]netip.Addr, 0, n)
	a := netip.MustParseAddr("2001:db8:1::")
	for range n {
		a = a.Next()
		out = append(out, a)
	}
	return out
}

// client scrapes a node's endpoint over connections opened in its
// namespace.
func client(n *failover.Node) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: false, // as Prometheus: one connection, kept alive
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := n.NS.Do(func() error {
				var err error
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
}

// get returns the body of GET path on n's metrics endpoint.
func get(c *http.Client, n *failover.Node, path string) (string, error) {
	resp, err := c.Get("http://" + n.MetricsAddr() + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), err
}

var sampleRE = regexp.MustCompile(`(?m)^(hostlb_ips_announced\{mode="l2"\}|hostlb_ip_disagreements\{kind="[a-z]+"\}) (\S+)$`)

// steady waits until the nodes announce every address between them, each
// once, and no node sees a disagreement.
func steady(b *testing.B, c *failover.Cluster, clients []*http.Client, n int, within time.Duration) time.Duration {
	start := time.Now()
	for {
		announced, disagreements := 0.0, 0.0
		var errs []string
		for i, node := range c.Nodes {
			body, err := get(clients[i], node, "/metrics")
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			for _, m := range sampleRE.FindAllStringSubmatch(body, -1) {
				v, _ := strconv.ParseFloat(m[2], 64)
				if strings.HasPrefix(m[1], "hostlb_ips_announced") {
					announced += v
				} else {
					disagreements += v
				}
			}
		}
		if len(errs) == 0 && int(announced) == n && disagreements == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			b.Fatalf("not steady within %v: %v announced of %d, %v disagreements, errors %q", within, announced, n, disagreements, errs)
		}
		time.Sleep(time.Second) // polling the endpoints
	}
}

// window is one measured window.
type window struct {
	scraped bool
	cpu     []time.Duration // per node
	rss     []uint64        // per node, at the end
	took    time.Duration
	scrapes []time.Duration // node1's scrape latencies
	bytes   int             // node1's last scrape's size
}

func measure(b *testing.B, c *failover.Cluster, scraper *http.Client, d time.Duration, scraped bool) window {
	w := window{scraped: scraped}
	before := make([]kubebench.Mem, len(c.Nodes))
	for i, n := range c.Nodes {
		m, err := kubebench.ReadMem(n.PID())
		if err != nil {
			b.Fatal(err)
		}
		before[i] = m
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Since(start) < d {
		<-tick.C
		if !scraped {
			continue
		}
		t0 := time.Now()
		body, err := get(scraper, c.Nodes[0], "/metrics")
		if err != nil {
			b.Fatalf("scrape: %v", err)
		}
		w.scrapes = append(w.scrapes, time.Since(t0))
		w.bytes = len(body)
	}
	w.took = time.Since(start)
	for i, n := range c.Nodes {
		m, err := kubebench.ReadMem(n.PID())
		if err != nil {
			b.Fatal(err)
		}
		w.cpu = append(w.cpu, m.CPU-before[i].CPU)
		w.rss = append(w.rss, m.RSS)
	}
	return w
}

// quiet waits until the nodes' CPU has stopped falling: two 10 s samples
// in a row in which no node's share of a core moved by more than 2 points.
// (At rest a node still probes its own addresses for fencing, ten probes
// a second per responder, and gossips: a few per cent of a core.)
func quiet(b *testing.B, c *failover.Cluster, within time.Duration) {
	start := time.Now()
	var prev []float64
	for {
		w := measure(b, c, nil, 10*time.Second, false)
		shares := make([]float64, len(w.cpu))
		moved := prev == nil
		for i, cpu := range w.cpu {
			shares[i] = cpu.Seconds() / w.took.Seconds()
			if prev != nil && math.Abs(shares[i]-prev[i]) > 0.02 {
				moved = true
			}
		}
		if !moved {
			b.Logf("the nodes are at rest %v after their addresses were answered: %.1f %%, %.1f %%, %.1f %% of a core over 10 s",
				time.Since(start).Round(time.Second), 100*shares[0], 100*shares[1], 100*shares[2])
			return
		}
		if time.Since(start) > within {
			b.Fatalf("the nodes never came to rest within %v: %v of a core over the last 10 s", within, shares)
		}
		prev = shares
	}
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}

// BenchmarkScrapeCost: hostlbd with 10,000 VIP addresses, scraped every
// second against not scraped (see the package doc).
func BenchmarkScrapeCost(b *testing.B) {
	netlab.RequireRoot(b)
	c := failover.New(b, failover.Options{Kind: failover.HostLB, Hostlbd: netlab.Hostlbd(b), VIPs: vips(*flagVIPs), MetricsPort: metricsPort})
	c.StartAll()
	clients := make([]*http.Client, len(c.Nodes))
	for i, n := range c.Nodes {
		clients[i] = client(n)
	}
	took := steady(b, c, clients, *flagVIPs, 5*time.Minute)
	b.Logf("%d addresses announced by the three nodes, each once, %v after the start", *flagVIPs, took.Round(time.Second))
	// A node keeps working for minutes after its addresses are answered:
	// the local addresses reach hostlb0 and the IPv6 groups are joined in
	// the background. Measure only once every node is quiet.
	quiet(b, c, 10*time.Minute)

	scraper := client(c.Nodes[0])
	var ws []window
	for _, scraped := range []bool{false, true, true, false} {
		ws = append(ws, measure(b, c, scraper, *flagWindow, scraped))
	}

	var cpuIdle, cpuScr, rssIdle, rssScr [3]float64
	var lat []time.Duration
	bytes := 0
	for _, w := range ws {
		for i := range c.Nodes {
			cpu := w.cpu[i].Seconds() / w.took.Seconds()
			if w.scraped {
				cpuScr[i] += cpu / 2
				rssScr[i] += float64(w.rss[i]) / 2
			} else {
				cpuIdle[i] += cpu / 2
				rssIdle[i] += float64(w.rss[i]) / 2
			}
		}
		lat = append(lat, w.scrapes...)
		if w.bytes > 0 {
			bytes = w.bytes
		}
	}
	var t strings.Builder
	fmt.Fprintf(&t, "\n| node | CPU, not scraped | CPU, scraped every 1 s | ratio | VmRSS, not scraped | VmRSS, scraped | ratio |\n|---|---|---|---|---|---|---|\n")
	for i, n := range c.Nodes {
		role := " (control: never scraped)"
		if i == 0 {
			role = " (scraped)"
		}
		fmt.Fprintf(&t, "| %s%s | %.2f %% | %.2f %% | %.2f | %s | %s | %.2f |\n", n.Name, role,
			100*cpuIdle[i], 100*cpuScr[i], cpuScr[i]/cpuIdle[i],
			kubebench.MiB(uint64(rssIdle[i])), kubebench.MiB(uint64(rssScr[i])), rssScr[i]/rssIdle[i])
	}
	perScrape := (cpuScr[0] - cpuIdle[0]) // CPU seconds per second, one scrape a second
	fmt.Fprintf(&t, "\nnode1: %d scrapes of %.1f KiB, latency p50 %v, p99 %v, max %v; CPU per scrape ≈ %.1f ms (scraped minus not scraped); windows of %v: idle, scraped, scraped, idle\n",
		len(lat), float64(bytes)/1024, pct(lat, 50).Round(100*time.Microsecond), pct(lat, 99).Round(100*time.Microsecond),
		pct(lat, 100).Round(100*time.Microsecond), 1000*perScrape, *flagWindow)
	for i, w := range ws {
		fmt.Fprintf(&t, "  window %d (scraped %v): node1 CPU %v over %v, VmRSS %s\n", i+1, w.scraped, w.cpu[0].Round(10*time.Millisecond),
			w.took.Round(time.Millisecond), kubebench.MiB(w.rss[0]))
	}
	b.Log(t.String())
	b.ReportMetric(100*cpuIdle[0], "cpu-idle-%")
	b.ReportMetric(100*cpuScr[0], "cpu-scraped-%")
	b.ReportMetric(float64(bytes), "scrape-bytes")
}
