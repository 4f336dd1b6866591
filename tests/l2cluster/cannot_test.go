package l2cluster

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/failover"
)

// startL2Only starts d with the lab's config plus `[l2] interfaces =
// ["eth0"]`: the node announces on eth0 and nowhere else, so eth0 renamed
// leaves its addresses with no eligible interface.
func (d *daemon) startL2Only(t *testing.T, c *failover.Cluster, bin string) {
	t.Helper()
	d.l2 = "[l2]\ninterfaces = [\"eth0\"]\n"
	d.start(t, c, bin)
}

// firstReply polls the prober until a reply for ip that arrived after
// since came from a MAC that match accepts, and returns it.
func firstReply(t *testing.T, ap *failover.ARPProber, ip netip.Addr, since time.Time, within time.Duration, match func(mac string) bool) (failover.Reply, bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, r := range ap.Replies(ip, since, time.Now().Add(time.Hour)) {
			if match(r.MAC) {
				return r, true
			}
		}
		if time.Now().After(deadline) {
			return failover.Reply{}, false
		}
		time.Sleep(5 * time.Millisecond) // polling the prober's record of replies
	}
}

// TestCannotAnnounceMovesTheAddress: three real hostlbd announce a VIP on
// eth0 only ([l2] interfaces). On the owner of one address, eth0 is
// renamed (a live rename: the link stays up, its IP and the gossip ring
// keep working, but the name is no longer one hostlbd may announce on):
// its L2 output has no eligible interface for the address any more, closes
// its packet socket there and says so; the node gossips that it cannot
// announce the address, and another node must answer ARP for it within
// 1 s. Renamed back, the owner takes the address back with no ARP request
// left unanswered (make-before-break). Five rounds, each measured.
func TestCannotAnnounceMovesTheAddress(t *testing.T) {
	requireLab(t)
	c, daemons, ap, owners := keyedRing(t, (*daemon).startL2Only)
	vip := c.VIPs()[0]
	owner := c.NodeByName(owners[vip])
	var od *daemon
	for _, d := range daemons {
		if d.node == owner {
			od = d
		}
	}
	t.Logf("owners: %v; %s's eth0 will be renamed", owners, owner.Name)
	isOwner := func(mac string) bool { return mac == owner.MAC.String() }
	isOther := func(mac string) bool {
		m, err := net.ParseMAC(mac)
		return err == nil && !isOwner(mac) && c.NodeByMAC(m) != nil
	}

	const rounds = 5
	var took, back []time.Duration
	for round := range rounds {
		sp := startStream(t, c, ap)
		// The owner answers before the rename.
		if _, ok := firstReply(t, ap, vip, time.Now(), 2*time.Second, isOwner); !ok {
			t.Fatalf("round %d: %s does not answer %s", round+1, owner.Name, vip)
		}
		t0 := time.Now()
		owner.NS.MustRun("ip", "link", "set", "dev", "eth0", "name", "moved0")
		r, ok := firstReply(t, ap, vip, t0, 5*time.Second, isOther)
		if !ok {
			sp.Stop()
			t.Fatalf("round %d: no other node answered %s within 5 s of %s's eth0 renamed", round+1, vip, owner.Name)
		}
		d := r.At.Sub(t0)
		took = append(took, d)
		t.Logf("round %d: eth0 of %s renamed; %s answered %s after %v", round+1, owner.Name,
			c.NodeByMAC(mustMAC(t, r.MAC)).Name, vip, d.Round(time.Millisecond))
		if d > time.Second {
			t.Errorf("round %d: another node answered %s after %v, want within 1 s", round+1, vip, d)
		}
		// Renamed back: the owner takes its address back, make-before-break.
		t1 := time.Now()
		owner.NS.MustRun("ip", "link", "set", "dev", "moved0", "name", "eth0")
		r, ok = firstReply(t, ap, vip, t1, 10*time.Second, isOwner)
		if !ok {
			sp.Stop()
			t.Fatalf("round %d: %s did not take %s back within 10 s of its eth0 back", round+1, owner.Name, vip)
		}
		back = append(back, r.At.Sub(t1))
		// Until the other node has stopped answering, and a little more.
		settle := time.Now().Add(time.Second)
		for time.Now().Before(settle) {
			time.Sleep(10 * time.Millisecond) // the observation window after the handback, not synchronisation
		}
		end := time.Now()
		sp.Stop()
		var sent int
		var miss []time.Time
		for _, a := range sp.answers(t1, end.Add(-200*time.Millisecond)) {
			if a.vip != vip {
				continue
			}
			sent++
			if !a.answered && !a.unjudged {
				miss = append(miss, a.at)
			}
		}
		if len(miss) > 0 {
			t.Errorf("round %d: %d of %d ARP requests for %s went unanswered while %s took it back (first at +%v)",
				round+1, len(miss), sent, vip, owner.Name, miss[0].Sub(t1).Round(time.Millisecond))
		}
		if others := slices.DeleteFunc(ap.Replies(vip, end.Add(-200*time.Millisecond), end), func(r failover.Reply) bool { return isOwner(r.MAC) }); len(others) > 0 {
			t.Errorf("round %d: %s still answered by %s a second after %s took it back", round+1, vip, others[0].MAC, owner.Name)
		}
		ap.Forget(end)
	}
	slices.Sort(took)
	t.Logf("%d rounds: another node answered within %v (median %v, max %v); the owner took the address back within %v",
		rounds, took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond),
		slices.Max(back).Round(time.Millisecond))

	log := od.log(t)
	for _, want := range []string{`msg="cannot announce this IP"`, "no eligible interface", "addr=" + vip.String(),
		`msg="announcing an IP again that this node could not announce"`} {
		if !strings.Contains(log, want) {
			t.Errorf("%s's log has no %q", owner.Name, want)
		}
	}
	// Every other address stayed where it was.
	o, err := c.Owners(ap, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for a, n := range owners {
		if !slices.Equal(o[a], []string{n}) {
			t.Errorf("%s answered by %v at the end, want %s", a, o[a], n)
		}
	}
}
