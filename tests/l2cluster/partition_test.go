package l2cluster

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/failover"
	"github.com/hostlb/hostlb/tests/netlab"
)

var conflictRuns = flag.Int("l2cluster.conflict-runs", 3,
	"TestPartitionFencing: how many times node1 is cut off from the ring and healed (make bench: 20)")

// conflictBound is the documented bound (docs/fencing.md): from a gossip
// partition to every IP answered by one MAC.
const conflictBound = 2 * time.Second

// streamProber asks for every address of the VIP every 10 ms from the
// client's raw ARP socket and keeps what each request got.
type streamProber struct {
	ap   *failover.ARPProber
	vips []netip.Addr
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	sent  map[netip.Addr][]time.Time
	first time.Time
}

const probeEvery = 10 * time.Millisecond

func startStream(t *testing.T, c *failover.Cluster, ap *failover.ARPProber) *streamProber {
	t.Helper()
	s := &streamProber{ap: ap, vips: c.VIPs(), stop: make(chan struct{}), done: make(chan struct{}),
		sent: map[netip.Addr][]time.Time{}, first: time.Now()}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for {
			for _, vip := range s.vips {
				at := time.Now()
				if err := ap.Request(vip); err == nil {
					s.mu.Lock()
					s.sent[vip] = append(s.sent[vip], at)
					s.mu.Unlock()
				}
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(s.Stop)
	return s
}

// forget drops the requests sent before t (and the prober's replies).
func (s *streamProber) forget(t time.Time) {
	s.mu.Lock()
	for vip, ts := range s.sent {
		s.sent[vip] = slices.DeleteFunc(ts, func(at time.Time) bool { return at.Before(t) })
	}
	s.mu.Unlock()
	s.ap.Forget(t)
}

func (s *streamProber) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// answer is what one request got: the MACs of the replies that arrived
// before the next request for the same address (or 10 ms after it), for
// counting double answers, and whether any reply for the address arrived
// within replyWithin.
type answer struct {
	at       time.Time
	vip      netip.Addr
	macs     []string
	answered bool
	unjudged bool // unanswered while the client was not listening
}

// replyWithin bounds an answer: a request after which no reply for its
// address arrived this long is unanswered. What this test looks for is an
// address nobody owns — fencing's yields and resumes work in probe periods
// of 300 ms — and it must not fail a CI machine whose processes stall for
// tens of milliseconds under load (ARP clients wait a second before they
// ask again). Shorter gaps are the failover benchmark's business: it
// counts every TCP connect.
const replyWithin = 100 * time.Millisecond

// answers returns every request for every address sent in [from, to).
//
// An unanswered probe is judged only when the client was demonstrably
// listening: its sender kept its 10 ms pace around the probe (no gap over
// stallGap before or after it: a descheduled client stamps replies late),
// and some reply, for any address, arrived within replyWithin of it.
// Unjudged probes are neither answered nor unanswered; the checks bound how
// many there may be.
func (s *streamProber) answers(from, to time.Time) []answer {
	s.mu.Lock()
	sent := map[netip.Addr][]time.Time{}
	for vip, ts := range s.sent {
		sent[vip] = slices.Clone(ts)
	}
	s.mu.Unlock()
	var out []answer
	for vip, ts := range sent {
		for i, at := range ts {
			if at.Before(from) || !at.Before(to) {
				continue
			}
			end := at.Add(probeEvery)
			if i+1 < len(ts) {
				end = ts[i+1]
			}
			a := answer{at: at, vip: vip}
			for _, r := range s.ap.Replies(vip, at, at.Add(replyWithin)) {
				a.answered = true
				if r.At.Before(end) && !slices.Contains(a.macs, r.MAC) {
					a.macs = append(a.macs, r.MAC)
				}
			}
			if !a.answered {
				stalled := (i > 0 && at.Sub(ts[i-1]) > stallGap) || (i+1 < len(ts) && ts[i+1].Sub(at) > stallGap)
				deaf := true
				for _, other := range s.vips {
					if len(s.ap.Replies(other, at, at.Add(replyWithin))) > 0 {
						deaf = false
						break
					}
				}
				a.unjudged = stalled || deaf
			}
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b answer) int { return a.at.Compare(b.at) })
	return out
}

// stallGap is a send gap that shows the client was descheduled.
const stallGap = 25 * time.Millisecond

// cut drops every gossip and heartbeat packet (UDP and TCP, ports 7947
// and 7948, both directions) between node n and the given addresses with
// an nftables table in n's namespace; the segment itself still connects
// them.
func cut(t *testing.T, n *failover.Node, peers ...netip.Addr) {
	t.Helper()
	var in, out strings.Builder
	for _, p := range peers {
		for _, port := range []string{"sport", "dport"} {
			fmt.Fprintf(&in, "\t\tip saddr %s meta l4proto { tcp, udp } th %s { 7947, 7948 } drop\n", p, port)
			fmt.Fprintf(&out, "\t\tip daddr %s meta l4proto { tcp, udp } th %s { 7947, 7948 } drop\n", p, port)
		}
	}
	rules := fmt.Sprintf("table inet hlbtest_cut {\n\tchain in {\n\t\ttype filter hook input priority 0; policy accept;\n%s\t}\n"+
		"\tchain out {\n\t\ttype filter hook output priority 0; policy accept;\n%s\t}\n}\n", in.String(), out.String())
	path := filepath.Join(t.TempDir(), "cut.nft")
	if err := os.WriteFile(path, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	n.NS.MustRun("nft", "-f", path)
}

// heal removes cut's table.
func heal(t *testing.T, n *failover.Node) {
	t.Helper()
	n.NS.MustRun("nft", "delete", "table", "inet", "hlbtest_cut")
}

// conflictWindow sums up answers: when the last probe answered by two MACs
// was, how many went unanswered or were answered twice.
type conflictWindow struct {
	probes, unanswered, doubled int
	unjudged                    int            // see streamProber.answers
	byNode                      map[string]int // probes answered by each node
	firstDouble, lastDouble     time.Time
	examples                    []string // doubly answered probes
	missed                      []string // unanswered probes
}

func summarize(c *failover.Cluster, as []answer) conflictWindow {
	w := conflictWindow{byNode: map[string]int{}}
	for _, a := range as {
		w.probes++
		for _, m := range a.macs {
			w.byNode[names(c, []string{m})]++
		}
		switch {
		case a.unjudged:
			w.unjudged++
		case !a.answered:
			w.unanswered++
			if len(w.missed) < 10 {
				w.missed = append(w.missed, fmt.Sprintf("%s %s: unanswered", a.at.Format("15:04:05.000"), a.vip))
			}
		case len(a.macs) > 1:
			w.doubled++
			if w.firstDouble.IsZero() {
				w.firstDouble = a.at
			}
			w.lastDouble = a.at
			if len(w.examples) < 10 {
				w.examples = append(w.examples, fmt.Sprintf("%s %s: answered by %s", a.at.Format("15:04:05.000"), a.vip, names(c, a.macs)))
			}
		}
	}
	return w
}

func names(c *failover.Cluster, macs []string) string {
	var out []string
	for _, m := range macs {
		hw, err := net.ParseMAC(m)
		if n := c.NodeByMAC(hw); err == nil && n != nil {
			out = append(out, n.Name)
			continue
		}
		out = append(out, m)
	}
	return strings.Join(out, "+")
}

// TestPartitionFencing cuts the gossip between nodes with nftables while the
// segment still connects them, and checks with a client that asks for every
// address every 10 ms:
//   - gossip cut between node1 and node2 only: every probe is answered,
//     and from conflictBound on by exactly one MAC; healing loses no probe;
//   - node1 cut off from both others (the ring splits 1 | 2): both sides
//     answer, the wire conflict is settled within conflictBound (every IP
//     answered by one MAC, and the larger side keeps them: node1 answers
//     none), it is in the logs of node1 and of the node it met; healing
//     loses no probe. Repeated -l2cluster.conflict-runs times;
//     the time from the first doubly answered probe to the last is the
//     conflict resolution time BENCHMARKS.md reports.
func TestPartitionFencing(t *testing.T) {
	requireLab(t)
	if _, err := os.Stat("/usr/sbin/nft"); err != nil {
		netlab.Missing(t, "the partition lab needs nft (Debian nftables; make deps installs it)")
	}
	c, ds, ap, owners := keyedRing(t, (*daemon).start)
	t.Logf("owners: %v", owners)
	s := startStream(t, c, ap)
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]

	// settled checks a window after a fault or a heal.
	check := func(what string, from time.Time, observe time.Duration, doubledUntil time.Duration) conflictWindow {
		t.Helper()
		end := from.Add(observe)
		time.Sleep(time.Until(end.Add(50 * time.Millisecond))) // the observation window itself
		w := summarize(c, s.answers(from, end))
		late := summarize(c, s.answers(from.Add(doubledUntil), end))
		t.Logf("%s: %d probes, %d doubly answered (first %v, last %v after), %d unanswered, %d unjudged (client not listening)",
			what, w.probes, w.doubled, sinceOr(w.firstDouble, from), sinceOr(w.lastDouble, from), w.unanswered, w.unjudged)
		if w.unjudged > w.probes/20 {
			t.Errorf("%s: %d of %d probes unjudged: the client was too busy to measure", what, w.unjudged, w.probes)
		}
		if w.unanswered > 0 {
			t.Errorf("%s: %d of %d probes unanswered:\n%s", what, w.unanswered, w.probes, strings.Join(w.missed, "\n"))
		}
		if late.doubled > 0 {
			t.Errorf("%s: %d probes answered by two MACs later than %v after it:\n%s", what, late.doubled, doubledUntil, strings.Join(late.examples, "\n"))
		}
		if w.probes < int(observe/probeEvery) {
			t.Errorf("%s: only %d probes in %v", what, w.probes, observe)
		}
		return w
	}

	// 1. Gossip cut between node1 and node2 only: node3 still reaches both.
	at := time.Now()
	cut(t, n1, n2.Addr)
	check("gossip cut node1-node2", at, 8*time.Second, conflictBound)
	at = time.Now()
	heal(t, n1)
	check("heal node1-node2", at, 6*time.Second, conflictBound)
	s.forget(time.Now().Add(-time.Second))

	// 2. node1 alone against node2+node3, -l2cluster.conflict-runs times.
	var resolve []time.Duration
	for run := range *conflictRuns {
		conflictsBefore := [3]int{}
		for i, d := range ds {
			conflictsBefore[i] = strings.Count(d.log(t), "CONFLICT")
		}
		at = time.Now()
		cut(t, n1, n2.Addr, n3.Addr)
		w := check(fmt.Sprintf("run %d: node1 cut off", run+1), at, 6*time.Second, conflictBound)
		// The larger side keeps serving: node1, alone, yields.
		if late := summarize(c, s.answers(at.Add(conflictBound), at.Add(6*time.Second))); late.byNode[n1.Name] > 0 {
			t.Errorf("run %d: node1, cut off alone, still answered %d probes after %v", run+1, late.byNode[n1.Name], conflictBound)
		}
		if w.doubled == 0 {
			t.Errorf("run %d: node1 cut off: no probe was answered twice, so nothing was fenced (the lab did not split the ring?)", run+1)
		} else {
			resolve = append(resolve, w.lastDouble.Sub(w.firstDouble)+probeEvery)
		}
		var logged []string
		for i, d := range ds {
			if strings.Count(d.log(t), "CONFLICT") > conflictsBefore[i] {
				logged = append(logged, d.node.Name)
			}
		}
		if !slices.Contains(logged, n1.Name) || len(logged) < 2 {
			t.Errorf("run %d: the conflict is logged by %v; want node1 and the node(s) it met", run+1, logged)
		}
		at = time.Now()
		heal(t, n1)
		check(fmt.Sprintf("run %d: heal", run+1), at, 6*time.Second, conflictBound)
		// Back to one owner each before the next run.
		spreadOwners(t, c, ap)
		s.forget(time.Now().Add(-time.Second))
	}
	slices.Sort(resolve)
	if len(resolve) > 0 {
		t.Logf("conflict resolution (first to last doubly answered probe, %d runs): p50 %v, p99 %v, max %v; all: %v",
			len(resolve), pct(resolve, 50), pct(resolve, 99), resolve[len(resolve)-1], resolve)
	}
}

func sinceOr(t, from time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return t.Sub(from).Round(time.Millisecond)
}

// pct is the nearest-rank percentile of sorted ds.
func pct(ds []time.Duration, p int) time.Duration {
	i := (p*len(ds)+99)/100 - 1
	return ds[max(0, min(i, len(ds)-1))].Round(time.Millisecond)
}
