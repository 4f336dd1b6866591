package l2cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/control/api"
	"github.com/hostlb/hostlb/tests/failover"
	"github.com/hostlb/hostlb/tests/netlab"
)

// rackVIP is a second static VIP whose node_selector only node2 matches.
var rackVIP = netip.MustParseAddr("192.0.2.120")

// startRacked starts d with node labels (rack=r1 on node2, r0 on the
// others) and, besides the lab's VIP, the VIP "rack1" on rackVIP for the
// nodes labelled rack=r1. The lab's config writer puts d.l2 as is before
// [kubernetes]: a [node.labels] table and a [[vip]] are as valid there as
// an [l2] section.
func (d *daemon) startRacked(t *testing.T, c *failover.Cluster, bin string) {
	t.Helper()
	rack := "r0"
	if d.node.Name == "node2" {
		rack = "r1"
	}
	d.l2 = fmt.Sprintf("[node.labels]\nrack = %q\n[[vip]]\nname = \"rack1\"\naddresses = [%q]\nnode_selector = { rack = \"r1\" }\nlocal = false\n",
		rack, rackVIP)
	d.start(t, c, bin)
}

func (d *daemon) socket() string { return filepath.Join(d.dir, "hostlb.sock") }

// hostlbctl runs the real hostlbctl against d's control socket and returns
// its output and exit code.
func (d *daemon) hostlbctl(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(netlab.Hostlbctl(t), append([]string{"-s", d.socket()}, args...)...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		t.Fatalf("hostlbctl %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

// hostlbctlJSON runs hostlbctl -o json and decodes its answer into v.
func (d *daemon) hostlbctlJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, code := d.hostlbctl(t, append([]string{"-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("%s: hostlbctl %s: exit %d\n%s", d.node.Name, strings.Join(args, " "), code, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: hostlbctl -o json %s: %v\n%s", d.node.Name, strings.Join(args, " "), err, out)
	}
}

// vipsAgree checks that hostlbctl vips on every daemon of ds gives each of
// ips exactly the one owner that answers ARP for it (wire), and says so on
// the owner itself (here, on eth0).
func vipsAgree(t *testing.T, ds []*daemon, ips []netip.Addr, wire map[netip.Addr][]string) error {
	t.Helper()
	var errs []error
	for _, d := range ds {
		var l api.VIPs
		d.hostlbctlJSON(t, &l, "vips")
		if l.Version != api.Version || l.Node != d.node.Name {
			errs = append(errs, fmt.Errorf("%s: answer of version %d from node %q", d.node.Name, l.Version, l.Node))
		}
		byAddr := map[netip.Addr]api.VIP{}
		for _, v := range l.VIPs {
			byAddr[v.Address] = v
		}
		for _, ip := range ips {
			v, ok := byAddr[ip]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s: hostlbctl vips has no %s", d.node.Name, ip))
			case len(wire[ip]) != 1:
				errs = append(errs, fmt.Errorf("%s is answered on the wire by %v", ip, wire[ip]))
			case !slices.Equal(v.Owners, wire[ip]) || !slices.Equal(v.Announcers, wire[ip]):
				errs = append(errs, fmt.Errorf("%s: hostlbctl vips says %s is owned by %v, announced by %v; ARP is answered by %v",
					d.node.Name, ip, v.Owners, v.Announcers, wire[ip]))
			case v.Here != (wire[ip][0] == d.node.Name):
				errs = append(errs, fmt.Errorf("%s: %s here=%v, but ARP is answered by %v", d.node.Name, ip, v.Here, wire[ip]))
			case v.Here && !slices.Equal(v.Interfaces, []string{"eth0"}):
				errs = append(errs, fmt.Errorf("%s: %s is answered here on %v, want eth0", d.node.Name, ip, v.Interfaces))
			case v.Since == nil:
				errs = append(errs, fmt.Errorf("%s: %s has no since", d.node.Name, ip))
			}
		}
	}
	return errors.Join(errs...)
}

// pollUntil retries check until it returns nil or within passes.
func pollUntil(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond) // polling the daemons and the wire
	}
}

// TestHostlbctlInTheLab runs the real hostlbctl against three real hostlbd
// (issue 11's acceptance in the lab):
//   - `hostlbctl vips` on every node gives every IP one owner, the one
//     that answers ARP, and says since when;
//   - `hostlbctl who-owns` on node1 explains that node1 and node3 are not
//     eligible for a VIP whose node_selector only node2 matches;
//   - a forced conflict (node1's gossip cut from the others with nftables,
//     the segment still shared) shows in `hostlbctl conflicts` on node1
//     (it yields) and on the node it met;
//   - after a crash (link down, kill -9) of an owner, `hostlbctl vips` on
//     the others shows the new owner, the crashed one as previous, and a
//     since after the crash.
func TestHostlbctlInTheLab(t *testing.T) {
	requireLab(t)
	if _, err := exec.LookPath("nft"); err != nil {
		netlab.Missing(t, "the conflict step needs nft (Debian nftables; make deps installs it)")
	}
	netlab.Hostlbctl(t)
	c, ds, ap, _ := keyedRing(t, (*daemon).startRacked)
	ips := append(slices.Clone(c.VIPs()), rackVIP)
	n1, n2, n3 := ds[0], ds[1], ds[2]

	// 1. Every node's hostlbctl vips agrees with the wire.
	var wire map[netip.Addr][]string
	pollUntil(t, 15*time.Second, "hostlbctl vips agrees with ARP on every node", func() error {
		var err error
		if wire, err = wireOwners(c, ap, ips); err != nil {
			return err
		}
		return vipsAgree(t, ds, ips, wire)
	})
	if !slices.Equal(wire[rackVIP], []string{"node2"}) {
		t.Errorf("%s (node_selector rack=r1) is answered by %v, want node2", rackVIP, wire[rackVIP])
	}
	for _, d := range ds {
		out, code := d.hostlbctl(t, "vips")
		t.Logf("%s$ hostlbctl vips (exit %d)\n%s", d.node.Name, code, out)
		if code != 0 || strings.Count(out, "\n") < len(ips)+1 {
			t.Errorf("%s: hostlbctl vips: exit %d", d.node.Name, code)
		}
	}

	// 2. who-owns explains the nodes the selector leaves out.
	out, code := n1.hostlbctl(t, "who-owns", rackVIP.String())
	t.Logf("node1$ hostlbctl who-owns %s (exit %d)\n%s", rackVIP, code, out)
	for _, want := range []string{"owner         node2", "node1  not eligible: labels do not match the node_selector {rack=r1}",
		"node3  not eligible: labels do not match the node_selector {rack=r1}"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("hostlbctl who-owns %s on node1 lacks %q", rackVIP, want)
		}
	}

	// 3. A forced conflict: node1 alone against node2+node3 on one segment.
	cutAt := time.Now()
	cut(t, n1.node, n2.node.Addr, n3.node.Addr)
	var met string // the node node1 yielded to
	pollUntil(t, 15*time.Second, "the conflict in hostlbctl conflicts on node1 and the node it met", func() error {
		var x api.Conflicts
		n1.hostlbctlJSON(t, &x, "conflicts")
		yielded := slices.IndexFunc(x.Events, func(e api.WireEvent) bool { return e.Action == "yielding" && e.Time.After(cutAt) })
		if yielded < 0 {
			return fmt.Errorf("node1 shows no yielding event: %+v", x.Events)
		}
		met = x.Events[yielded].Node
		if !slices.ContainsFunc(x.Wire, func(w api.WireConflict) bool { return w.Yielded && w.Node == met }) {
			return fmt.Errorf("node1 shows no current conflict yielded to %s: %+v", met, x.Wire)
		}
		for _, d := range []*daemon{n2, n3} {
			if d.node.Name != met {
				continue
			}
			var y api.Conflicts
			d.hostlbctlJSON(t, &y, "conflicts")
			if !slices.ContainsFunc(y.Events, func(e api.WireEvent) bool {
				return e.Node == "node1" && e.Time.After(cutAt) && (e.Action == "defending" || e.Action == "peer-yielded")
			}) {
				return fmt.Errorf("%s shows no conflict with node1: %+v", met, y.Events)
			}
			return nil
		}
		return fmt.Errorf("node1 yielded to %q, not a lab node", met)
	})
	out, code = n1.hostlbctl(t, "conflicts")
	t.Logf("node1$ hostlbctl conflicts (gossip cut %v ago; exit %d)\n%s", time.Since(cutAt).Round(time.Millisecond), code, out)
	if code != 0 || !strings.Contains(out, "yes, this node stopped answering") || !strings.Contains(out, "yielding") {
		t.Errorf("hostlbctl conflicts on node1 does not show the yield")
	}
	heal(t, n1.node)
	owners := spreadOwners(t, c, ap)
	pollUntil(t, 15*time.Second, "hostlbctl vips agrees with ARP after the heal", func() error {
		var err error
		if wire, err = wireOwners(c, ap, ips); err != nil {
			return err
		}
		return vipsAgree(t, ds, ips, wire)
	})

	// 4. A crash: node3 (never the only rack=r1 node) goes, link down and
	// kill -9; the others name the new owner of its address, from whom
	// and since when.
	var victim netip.Addr
	for a, n := range owners {
		if n == "node3" {
			victim = a
		}
	}
	if !victim.IsValid() {
		t.Fatalf("node3 owns none of %v", owners)
	}
	crashedAt := n3.crash(t)
	var newOwner string
	pollUntil(t, 15*time.Second, "the others show the new owner of "+victim.String(), func() error {
		w, err := wireOwners(c, ap, []netip.Addr{victim})
		if err != nil {
			return err
		}
		if len(w[victim]) != 1 || w[victim][0] == "node3" {
			return fmt.Errorf("%s answered by %v", victim, w[victim])
		}
		newOwner = w[victim][0]
		for _, d := range []*daemon{n1, n2} {
			var x api.WhoOwns
			d.hostlbctlJSON(t, &x, "who-owns", victim.String())
			v := x.VIP
			switch {
			case !slices.Equal(v.Owners, w[victim]):
				return fmt.Errorf("%s: owners %v, ARP answered by %v", d.node.Name, v.Owners, w[victim])
			case !slices.Equal(v.PreviousOwners, []string{"node3"}):
				return fmt.Errorf("%s: previous owners %v, want node3", d.node.Name, v.PreviousOwners)
			case v.Since == nil || v.Since.Before(crashedAt) || v.Since.After(x.Time):
				return fmt.Errorf("%s: since %v, want after the crash at %v", d.node.Name, v.Since, crashedAt)
			case !slices.ContainsFunc(v.NotHere, func(r api.NodeReason) bool { return r.Node == "node3" && r.Reason == "dead" }):
				return fmt.Errorf("%s: node3's reason: %+v", d.node.Name, v.NotHere)
			}
		}
		return nil
	})
	var x api.WhoOwns
	n1.hostlbctlJSON(t, &x, "who-owns", victim.String())
	first, _ := firstReply(t, ap, victim, crashedAt, time.Second, func(mac string) bool {
		m, err := net.ParseMAC(mac)
		return err == nil && c.NodeByMAC(m) != nil && c.NodeByMAC(m).Name == newOwner
	})
	t.Logf("crash of node3: %s took %s %v after the crash (hostlbctl's since); ARP answered by it %v after",
		newOwner, victim, x.VIP.Since.Sub(crashedAt).Round(time.Millisecond), first.At.Sub(crashedAt).Round(time.Millisecond))
	out, code = n1.hostlbctl(t, "who-owns", victim.String())
	t.Logf("node1$ hostlbctl who-owns %s (exit %d)\n%s", victim, code, out)
	if code != 0 || !strings.Contains(out, "previous      node3") || !strings.Contains(out, "node3  dead") ||
		!strings.Contains(out, "owner         "+newOwner) {
		t.Errorf("hostlbctl who-owns %s after the crash does not name %s, node3 as previous and dead", victim, newOwner)
	}
	// The crashed node's socket is gone with its process? kill -9 leaves
	// it: hostlbctl says the daemon is not running (exit 3).
	out, code = n3.hostlbctl(t, "status")
	if code != 3 || !strings.Contains(out, "hostlbd is not running") {
		t.Errorf("hostlbctl status against the crashed node: exit %d\n%s", code, out)
	}
}

// wireOwners asks for every ip and names the nodes that answered.
func wireOwners(c *failover.Cluster, ap *failover.ARPProber, ips []netip.Addr) (map[netip.Addr][]string, error) {
	out := map[netip.Addr][]string{}
	for _, ip := range ips {
		macs, err := ap.Who(ip, 50*time.Millisecond)
		if err != nil {
			return nil, err
		}
		for _, m := range macs {
			hw, err := net.ParseMAC(m)
			if n := c.NodeByMAC(hw); err == nil && n != nil {
				out[ip] = append(out[ip], n.Name)
			} else {
				out[ip] = append(out[ip], m)
			}
		}
		slices.Sort(out[ip])
	}
	return out, nil
}

// crash takes d's node link down, then kills the daemon with SIGKILL (as
// failover.Node.Crash does), and returns when the link went down.
func (d *daemon) crash(t *testing.T) time.Time {
	t.Helper()
	t0 := time.Now()
	d.node.NS.MustRun("ip", "link", "set", "eth0", "down")
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s: %v", d.node.Name, err)
	}
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s's hostlbd did not die within 10 s of SIGKILL", d.node.Name)
	}
	return t0
}
