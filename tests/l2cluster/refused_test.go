package l2cluster

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/failover"
)

// newDaemon prepares (does not start) a hostlbd for node n with its own
// directory under dir.
func newDaemon(t *testing.T, dir string, n *failover.Node, label string) *daemon {
	t.Helper()
	d := &daemon{node: n, dir: filepath.Join(dir, label)}
	if err := os.Mkdir(d.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	d.keyFile = filepath.Join(d.dir, "gossip.key")
	d.logPath = filepath.Join(d.dir, "hostlbd.log")
	return d
}

// waitLog waits until the daemon's log holds want.
func (d *daemon) waitLog(t *testing.T, within time.Duration, want string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(d.log(t), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q in its log within %v:\n%s", d.node.Name, want, within, d.log(t))
		}
		time.Sleep(20 * time.Millisecond) // polling the log file
	}
}

// keyedRing starts a three-node lab with one hostlbd per node, sharing a
// fresh gossip key, each started by start ((*daemon).start or a variant);
// their logs are printed if the test fails. It returns them with an ARP
// prober in the client namespace and the owner of each address once the
// nodes have spread them.
func keyedRing(t *testing.T, start func(d *daemon, t *testing.T, c *failover.Cluster, bin string)) (*failover.Cluster, []*daemon, *failover.ARPProber, map[netip.Addr]string) {
	t.Helper()
	bin := hostlbd(t)
	c := failover.New(t, failover.Options{Kind: failover.HostLB, Hostlbd: bin})
	dir := t.TempDir()
	key := newKey(t)
	var ds []*daemon
	for _, n := range c.Nodes {
		d := newDaemon(t, dir, n, n.Name)
		d.writeKeys(t, key)
		start(d, t, c, bin)
		ds = append(ds, d)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range ds {
				t.Logf("%s's hostlbd log:\n%s", d.node.Name, d.log(t))
			}
		}
	})
	ap, err := c.NewARPProber()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ap.Close() })
	return c, ds, ap, spreadOwners(t, c, ap)
}

// spreadOwners waits until each of the VIP's addresses is answered by one
// node, three distinct ones, and returns them.
func spreadOwners(t *testing.T, c *failover.Cluster, ap *failover.ARPProber) map[netip.Addr]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		o, err := c.Owners(ap, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		owners, distinct := map[netip.Addr]string{}, map[string]bool{}
		for vip, names := range o {
			if len(names) == 1 {
				owners[vip] = names[0]
				distinct[names[0]] = true
			}
		}
		if len(distinct) == len(c.VIPs()) {
			return owners
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes never spread the VIP's addresses: %v", o)
		}
	}
}

// TestRefusedNodeTakesNothing: three hostlbd share a key; a fourth, started
// with another key, reaches them but is refused: it says so and takes no
// address, also a minute later, while a client probes every address. Then
// a fourth started with the right key and a member's name (a cloned host)
// is refused too and says why.
func TestRefusedNodeTakesNothing(t *testing.T) {
	requireLab(t)
	bin := hostlbd(t)
	c := failover.New(t, failover.Options{Kind: failover.HostLB, Hostlbd: bin, Nodes: 4})
	dir := t.TempDir()
	key, otherKey := newKey(t), newKey(t)
	var members []*daemon
	for _, n := range c.Nodes[:3] {
		d := newDaemon(t, dir, n, n.Name)
		d.writeKeys(t, key)
		d.start(t, c, bin)
		members = append(members, d)
	}
	fourth := c.Nodes[3]
	var all []*daemon
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range all {
				t.Logf("%s's hostlbd log:\n%s", d.dir, d.log(t))
			}
		}
	})
	all = append(all, members...)
	ap, err := c.NewARPProber()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ap.Close() })
	owners := spreadOwners(t, c, ap)
	t.Logf("owners: %v", owners)

	stranger := newDaemon(t, dir, fourth, "stranger")
	all = append(all, stranger)
	stranger.writeKeys(t, otherKey)
	pr := startProber(c, ap, owners)
	stranger.start(t, c, bin)
	stranger.waitLog(t, 15*time.Second, "the gossip ring refuses this node")
	if log := stranger.log(t); !strings.Contains(log, "another gossip key") {
		t.Errorf("the stranger's log does not say why it is refused:\n%s", log)
	}
	// A node without reachable seeds would serve alone after 2 s; this one
	// reaches them, is refused, and must still take nothing a minute on.
	end := time.Now().Add(time.Minute)
	for time.Now().Before(end) && !pr.failed() {
		time.Sleep(100 * time.Millisecond) // poll interval of the observation window, not synchronisation
	}
	probes, problems := pr.Stop()
	t.Logf("%d ARP probes over the minute", probes)
	if len(problems) > 0 {
		t.Errorf("%d of %d probes went wrong with a refused node running:\n%s", len(problems), probes, strings.Join(problems, "\n"))
	}
	if probes < 100 {
		t.Errorf("only %d probes: the minute was not observed", probes)
	}
	if log := stranger.log(t); strings.Contains(log, "joined the gossip ring; taking IPs") || strings.Contains(log, "msg=announcing") {
		t.Errorf("the refused node took IPs:\n%s", log)
	}
	stranger.stop(t)

	// A clone of node2: the right key, node2's name.
	clone := newDaemon(t, dir, fourth, "clone")
	all = append(all, clone)
	clone.name = c.Nodes[1].Name
	clone.writeKeys(t, key)
	pr = startProber(c, ap, owners)
	clone.start(t, c, bin)
	clone.waitLog(t, 15*time.Second, "another gossip member uses this node's name")
	clone.waitLog(t, 15*time.Second, "the gossip ring refuses this node")
	// Past the settle wait, and a few probe rounds more.
	end = time.Now().Add(5 * time.Second)
	for time.Now().Before(end) && !pr.failed() {
		time.Sleep(100 * time.Millisecond) // poll interval of the observation window, not synchronisation
	}
	probes, problems = pr.Stop()
	if len(problems) > 0 {
		t.Errorf("%d of %d probes went wrong with a clone of node2 running:\n%s", len(problems), probes, strings.Join(problems, "\n"))
	}
	if log := clone.log(t); strings.Contains(log, "msg=announcing") {
		t.Errorf("the clone took IPs:\n%s", log)
	}
	clone.stop(t)
	if log := members[1].log(t); !strings.Contains(log, "the gossip ring reports a problem with this node") {
		t.Errorf("node2 does not report the clone of its name:\n%s", log)
	}
}

// stop ends the daemon with SIGTERM and waits for it.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", d.dir, err)
	}
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not exit within 15 s of SIGTERM", d.dir)
	}
}

// TestLoneNodeServesAfterTheWait: the first node of a new cluster, whose
// seeds do not exist yet, serves every address of its VIP after the
// settle wait.
func TestLoneNodeServesAfterTheWait(t *testing.T) {
	requireLab(t)
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
	d.start(t, c, bin)
	d.waitLog(t, 15*time.Second, "joined the gossip ring; taking IPs")
	ap, err := c.NewARPProber()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ap.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		o, err := c.Owners(ap, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		all := true
		for _, vip := range c.VIPs() {
			if names := o[vip]; len(names) != 1 || names[0] != c.Nodes[0].Name {
				all = false
			}
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lone node does not answer every address: %v", o)
		}
	}
	if log := d.log(t); strings.Contains(log, "refuses this node") {
		t.Errorf("unreachable seeds were taken for a refusal:\n%s", log)
	}
}
