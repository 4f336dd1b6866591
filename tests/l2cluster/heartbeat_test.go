package l2cluster

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/failover"
)

// TestStalledOwnerEndsWithOneOwner: an owner stopped with SIGSTOP (alive,
// but it sends nothing and answers nothing) is taken over by its heir
// once its heartbeat falls silent, well before the ring could declare it
// dead; on SIGCONT it answers again and is told it was taken for lost, the
// heir hears its heartbeat and gives the address back, and the address
// ends with one owner within the documented bound: the owner's next
// heartbeat reaching the heir plus one reconcile pass, and never more than
// the ring's own detection bound (0.9 s in the fast profile).
func TestStalledOwnerEndsWithOneOwner(t *testing.T) {
	c, p := cluster(t)
	vip := c.VIPs()[0]
	who := func() []string {
		t.Helper()
		macs, err := p.ARP.Who(vip, 30*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range macs {
			names = append(names, nodeName(t, c, m))
		}
		slices.Sort(names)
		return names
	}
	var owner string
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ns := who(); len(ns) == 1 {
			owner = ns[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never had one owner", vip)
		}
	}
	victim := c.NodeByName(owner)
	proc, err := os.FindProcess(victim.PID())
	if err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	continued := false
	cont := func() {
		if !continued {
			continued = true
			if err := proc.Signal(syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(cont)

	var heir string
	for deadline := time.Now().Add(5 * time.Second); heir == ""; {
		if ns := who(); len(ns) == 1 && ns[0] != owner {
			heir = ns[0]
		} else if time.Now().After(deadline) {
			t.Fatalf("nobody took %s over from the stopped %s: %v", vip, owner, ns)
		}
	}
	took := time.Since(stopped)
	t.Logf("%s stopped: %s answers %s after %v", owner, heir, vip, took.Round(time.Millisecond))

	resumed := time.Now()
	cont()
	// One owner, the same in three answers in a row (≈ 100 ms).
	var settled time.Duration
	var final string
	for deadline, streak, last := time.Now().Add(5*time.Second), 0, ""; ; {
		ns := who()
		switch {
		case len(ns) == 1 && ns[0] == last:
			streak++
		case len(ns) == 1:
			streak, last, settled = 1, ns[0], time.Since(resumed)
		default:
			streak, last = 0, ""
		}
		if streak == 3 {
			final = last
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no single owner within 5 s of SIGCONT: %v", vip, ns)
		}
	}
	t.Logf("SIGCONT to %s: one owner (%s) for %s after %v", owner, final, vip, settled.Round(time.Millisecond))
	if settled > 900*time.Millisecond {
		t.Errorf("two owners or none for %v after the stall ended, want at most the ring's bound, 0.9 s", settled)
	}
	// The heir logged the heartbeat's loss and the owner the accusation.
	logs := map[string]string{}
	for _, n := range []string{owner, heir} {
		b, err := os.ReadFile(c.NodeByName(n).LogFile())
		if err != nil {
			t.Fatal(err)
		}
		logs[n] = string(b)
	}
	if !strings.Contains(logs[heir], "heartbeat lost; taking its IPs over") {
		t.Errorf("%s's log does not say it lost %s's heartbeat", heir, owner)
	}
	if !strings.Contains(logs[owner], "a peer's heartbeat lost this node; announcing its IPs again") {
		t.Errorf("%s's log does not say it was taken for lost", owner)
	}
}

// nodeName names the node with MAC m, or returns m for a foreign one.
func nodeName(t *testing.T, c *failover.Cluster, m string) string {
	t.Helper()
	if n := c.NodeByMAC(mustMAC(t, m)); n != nil {
		return n.Name
	}
	return m
}
