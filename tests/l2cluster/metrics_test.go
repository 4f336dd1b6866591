package l2cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/failover"
	"github.com/hostlb/hostlb/tests/netlab"
	"github.com/hostlb/hostlb/tests/systemdtest"
)

// metricsPort is [metrics] listen's port in the lab, on each node's own
// lab address.
const metricsPort = 9476

// startMetrics starts d with [metrics] listen on its node's address.
func (d *daemon) startMetrics(t *testing.T, c *failover.Cluster, bin string) {
	t.Helper()
	d.metrics = netip.AddrPortFrom(d.node.Addr, metricsPort).String()
	d.start(t, c, bin)
}

// get asks d's metrics endpoint for path, over a connection opened in
// d's node namespace (the test process is not on the lab's bridge).
func (d *daemon) get(path string) (int, string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := d.node.NS.Do(func() error {
				var err error
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
	resp, err := client.Get("http://" + d.metrics + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// scrape returns d's /metrics; the test fails if it cannot.
func (d *daemon) scrape(t *testing.T) string {
	t.Helper()
	code, body, err := d.get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s: GET /metrics: %d %v\n%s", d.node.Name, code, err, body)
	}
	return body
}

// promtool is the pinned promtool `make tools` builds (PROMTOOL overrides
// it); missing, the test skips, and fails under CI.
func promtool(t *testing.T) string {
	t.Helper()
	p := os.Getenv("PROMTOOL")
	if p == "" {
		root, err := systemdtest.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		p = filepath.Join(root, "bin", "tools", "promtool")
	}
	if _, err := os.Stat(p); err != nil {
		netlab.Missing(t, "needs promtool at %s (make tools)", p)
	}
	return p
}

// checkMetrics runs `promtool check metrics` on a scrape.
func checkMetrics(t *testing.T, who, scrape string) {
	t.Helper()
	cmd := exec.Command(promtool(t), "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: promtool check metrics: %v\n%s", who, err, out)
	}
}

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$`)
var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// metricSample is one line of a scrape.
type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

// metricSamples parses the text format's sample lines named name.
func metricSamples(t *testing.T, scrape, name string) []metricSample {
	t.Helper()
	var out []metricSample
	for _, line := range strings.Split(scrape, "\n") {
		m := sampleRE.FindStringSubmatch(line)
		if m == nil || m[1] != name {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("bad sample %q: %v", line, err)
		}
		s := metricSample{name: name, labels: map[string]string{}, value: v}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			s.labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	return out
}

// metricValue is the sample of name whose labels include want, and whether
// there is one.
func metricValue(t *testing.T, scrape, name string, want ...string) (float64, bool) {
	t.Helper()
	for _, s := range metricSamples(t, scrape, name) {
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			ok = ok && s.labels[want[i]] == want[i+1]
		}
		if ok {
			return s.value, true
		}
	}
	return 0, false
}

// metricSum adds every sample of name.
func metricSum(t *testing.T, scrape, name string) float64 {
	t.Helper()
	var v float64
	for _, s := range metricSamples(t, scrape, name) {
		v += s.value
	}
	return v
}

// ownedIPs are the IPs of hostlb_ip_owner in d's scrape, checking that
// each names d's node.
func ownedIPs(t *testing.T, d *daemon, scrape string) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	for _, s := range metricSamples(t, scrape, "hostlb_ip_owner") {
		if s.labels["node"] != d.node.Name || s.labels["mode"] != "l2" || s.labels["vip"] != "web" || s.value != 1 {
			t.Errorf("%s exports %+v", d.node.Name, s)
		}
		out = append(out, netip.MustParseAddr(s.labels["ip"]))
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// pollScrapes scrapes every daemon of ds until cond accepts the scrapes
// (nil error); after within it fails with cond's last error.
func pollScrapes(t *testing.T, ds []*daemon, within time.Duration, what string, cond func(scrapes map[*daemon]string) error) map[*daemon]string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		scrapes := map[*daemon]string{}
		for _, d := range ds {
			scrapes[d] = d.scrape(t)
		}
		err := cond(scrapes)
		if err == nil {
			return scrapes
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond) // polling the endpoints
	}
}

// TestMetricsInTheLab scrapes /metrics on the three nodes of the lab and
// checks them against what the client sees on the wire:
//   - every scrape passes `promtool check metrics`;
//   - each node exports hostlb_ip_owner for exactly the addresses it
//     answers ARP for, named after itself, and is ready;
//   - a forced conflict (node1 cut off from the ring's gossip by nftables,
//     while the segment still joins them) shows in the wire-conflict
//     counters of node1 and of the nodes it met, and as two owner series
//     for one address (what HostlbIPTwoOwners alerts on);
//   - after kill -9 of an address's owner, the node that answers it next
//     exports its owner series and counts a takeover (reason dead, with a
//     duration), and no survivor exports it besides.
func TestMetricsInTheLab(t *testing.T) {
	requireLab(t)
	promtool(t)
	if _, err := os.Stat("/usr/sbin/nft"); err != nil {
		netlab.Missing(t, "the metrics lab forces a conflict with nft (Debian nftables; make deps installs it)")
	}
	c, ds, ap, owners := keyedRing(t, (*daemon).startMetrics)
	byName := map[string]*daemon{}
	for _, d := range ds {
		byName[d.node.Name] = d
	}

	// 1. Steady: owner series = who answers ARP.
	pollScrapes(t, ds, 10*time.Second, "owner series agree with the wire", func(s map[*daemon]string) error {
		for _, d := range ds {
			var want []netip.Addr
			for ip, n := range owners {
				if n == d.node.Name {
					want = append(want, ip)
				}
			}
			slices.SortFunc(want, netip.Addr.Compare)
			if got := ownedIPs(t, d, s[d]); !slices.Equal(got, want) {
				return fmt.Errorf("%s exports owner series for %v, answers ARP for %v", d.node.Name, got, want)
			}
			if v, _ := metricValue(t, s[d], "hostlb_ready"); v != 1 {
				return fmt.Errorf("%s: hostlb_ready %v", d.node.Name, v)
			}
		}
		return nil
	})
	for _, d := range ds {
		scrape := d.scrape(t)
		checkMetrics(t, d.node.Name, scrape)
		if v, ok := metricValue(t, scrape, "hostlb_gossip_members", "state", "alive"); !ok || v != 3 {
			t.Errorf("%s: %v alive members, want 3", d.node.Name, v)
		}
		code, body, err := d.get("/readyz")
		if err != nil || code != http.StatusOK {
			t.Errorf("%s: /readyz: %d %v %q", d.node.Name, code, err, body)
		}
	}

	// 2. A forced conflict: node1 alone against node2 and node3.
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	conflictsBefore := map[*daemon]float64{}
	for _, d := range ds {
		conflictsBefore[d] = metricSum(t, d.scrape(t), "hostlb_wire_conflicts_total")
	}
	cut(t, n1, n2.Addr, n3.Addr)
	pollScrapes(t, ds, 15*time.Second, "the conflict in the metrics", func(s map[*daemon]string) error {
		met := 0
		for _, d := range ds {
			if metricSum(t, s[d], "hostlb_wire_conflicts_total") > conflictsBefore[d] {
				met++
			} else if d.node == n1 {
				return fmt.Errorf("node1's wire-conflict counters did not move:\n%s", grepLines(s[d], "hostlb_wire_conflicts"))
			}
		}
		if met < 2 {
			return fmt.Errorf("only %d nodes counted the conflict", met)
		}
		// Each side's placement owns every address: two owner series.
		per := map[string]int{}
		for _, d := range ds {
			for _, a := range ownedIPs(t, d, s[d]) {
				per[a.String()]++
			}
		}
		for _, vip := range c.VIPs() {
			if per[vip.String()] != 2 {
				return fmt.Errorf("owner series per address during the partition: %v, want 2 each", per)
			}
		}
		return nil
	})
	s1 := byName[n1.Name].scrape(t)
	t.Logf("node1 during the partition:\n%s", grepLines(s1, "hostlb_wire_conflicts", "hostlb_gossip_members{"))
	checkMetrics(t, "node1 in conflict", s1)
	heal(t, n1)
	// The ring whole again before the crash: a node that still counts a
	// peer dead from the partition would take its IPs for a moment.
	pollScrapes(t, ds, 20*time.Second, "the ring healed", func(s map[*daemon]string) error {
		for _, d := range ds {
			if v, _ := metricValue(t, s[d], "hostlb_gossip_members", "state", "alive"); v != 3 {
				return fmt.Errorf("%s sees %v members alive", d.node.Name, v)
			}
			if v := metricSum(t, s[d], "hostlb_ip_disagreements"); v != 0 {
				return fmt.Errorf("%s sees %v disagreements", d.node.Name, v)
			}
		}
		return nil
	})
	owners = spreadOwners(t, c, ap)

	// 3. kill -9 of the owner of the first address.
	vip := c.VIPs()[0]
	victim := byName[owners[vip]]
	var survivors []*daemon
	for _, d := range ds {
		if d != victim {
			survivors = append(survivors, d)
		}
	}
	takeoversBefore := map[*daemon]float64{}
	for _, d := range survivors {
		takeoversBefore[d], _ = metricValue(t, d.scrape(t), "hostlb_takeovers_total", "reason", "heartbeat")
	}
	crashed := time.Now()
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	// The heir is who answers on the wire, read again with each round of
	// scrapes until the two agree.
	var heir string
	scrapes := pollScrapes(t, survivors, 10*time.Second, "the takeover in the metrics", func(s map[*daemon]string) error {
		o, err := c.Owners(ap, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if ns := o[vip]; len(ns) != 1 || ns[0] == victim.node.Name {
			return fmt.Errorf("%s is answered by %v after the crash of %s", vip, ns, victim.node.Name)
		}
		heir = o[vip][0]
		for _, d := range survivors {
			owns := slices.Contains(ownedIPs(t, d, s[d]), vip)
			if owns != (d.node.Name == heir) {
				return fmt.Errorf("%s exports an owner series for %s: %v (the wire says %s)", d.node.Name, vip, owns, heir)
			}
			// The heir lost the owner's heartbeat before the ring
			// declared it dead (heirs.go).
			n, _ := metricValue(t, s[d], "hostlb_takeovers_total", "reason", "heartbeat")
			if d.node.Name == heir && n <= takeoversBefore[d] {
				return fmt.Errorf("%s: hostlb_takeovers_total{reason=\"heartbeat\"} %v, was %v", d.node.Name, n, takeoversBefore[d])
			}
			if v, _ := metricValue(t, s[d], "hostlb_gossip_members", "state", "dead"); v != 1 {
				return fmt.Errorf("%s sees %v dead members", d.node.Name, v)
			}
		}
		return nil
	})
	t.Logf("%s crashed; %s answers %s, and says so in its metrics, %v later", victim.node.Name, heir, vip, time.Since(crashed).Round(time.Millisecond))
	hs := scrapes[byName[heir]]
	count, _ := metricValue(t, hs, "hostlb_takeover_duration_seconds_count", "reason", "heartbeat")
	total, _ := metricValue(t, hs, "hostlb_takeover_duration_seconds_sum", "reason", "heartbeat")
	if count < 1 || total <= 0 || total/count > 3 {
		t.Errorf("%s: takeover durations: %v in %v takeovers, want each under 3 s", heir, total, count)
	}
	t.Logf("%s after the takeover:\n%s", heir, grepLines(hs, "hostlb_ip_owner", "hostlb_takeover"))
	checkMetrics(t, heir+" after the takeover", hs)
}

// grepLines returns the lines of s that start with one of prefixes.
func grepLines(s string, prefixes ...string) string {
	var b bytes.Buffer
	for _, l := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				b.WriteString(l + "\n")
				break
			}
		}
	}
	return b.String()
}

// TestReadyzBeforeTheFirstReconcile: a node whose seed does not answer
// waits (SettleTimeout, 2 s) before it takes IPs alone. Polled from its
// start, /readyz answers 503 saying the ring is not joined, and 200 once
// the node has joined and run its first pass; hostlb_ready follows.
func TestReadyzBeforeTheFirstReconcile(t *testing.T) {
	requireLab(t)
	promtool(t)
	bin := hostlbd(t)
	c := failover.New(t, failover.Options{Kind: failover.HostLB, Hostlbd: bin, Nodes: 2})
	d := newDaemon(t, t.TempDir(), c.Nodes[0], c.Nodes[0].Name)
	d.writeKeys(t, newKey(t))
	d.join = []string{netip.AddrPortFrom(c.Nodes[1].Addr, 7947).String()} // nothing runs there
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hostlbd log:\n%s", d.log(t))
		}
	})
	d.startMetrics(t, c, bin)
	var (
		answers  []string // each distinct answer, in order
		notReady string
		metrics  string
	)
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body, err := d.get("/readyz")
		if err == nil {
			a := fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
			if len(answers) == 0 || answers[len(answers)-1] != a {
				answers = append(answers, a)
			}
			if code == http.StatusServiceUnavailable && notReady == "" {
				notReady = d.scrape(t)
			}
			if code == http.StatusOK {
				metrics = d.scrape(t)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered 200 within 15 s; answers: %q (last error %v)", answers, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the endpoint
	}
	t.Logf("/readyz answered, in order: %q", answers)
	if len(answers) < 2 || !strings.HasPrefix(answers[0], "503 not ready: not joined the gossip ring yet") {
		t.Errorf("the first answers of /readyz: %q; want 503 (not joined the gossip ring) before the first pass, then 200", answers)
	}
	if !strings.Contains(d.log(t), "joined the gossip ring; taking IPs") {
		t.Errorf("/readyz said ready before the node joined the ring")
	}
	if v, ok := metricValue(t, notReady, "hostlb_ready"); !ok || v != 0 {
		t.Errorf("hostlb_ready while not ready: %v (found %v)", v, ok)
	}
	if v, ok := metricValue(t, metrics, "hostlb_ready"); !ok || v != 1 {
		t.Errorf("hostlb_ready when ready: %v (found %v)", v, ok)
	}
	checkMetrics(t, "not ready", notReady)
	checkMetrics(t, "ready", metrics)
	if code, body, err := d.get("/healthz"); err != nil || code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q %v", code, body, err)
	}
}
