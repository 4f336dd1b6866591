package l2cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/failover"
)

// startL2Only starts d with a config like the key rotation lab's, plus
// `[l2] interfaces = ["eth0"]`: the node announces on eth0 and nowhere
// else, so eth0 renamed leaves its addresses with no eligible interface.
func (d *daemon) startL2Only(t *testing.T, c *failover.Cluster, bin string) {
	t.Helper()
	n := d.node
	var join, addrs []string
	for _, o := range c.Nodes {
		if o != n {
			join = append(join, fmt.Sprintf("%q", netip.AddrPortFrom(o.Addr, 7947).String()))
		}
	}
	for _, a := range c.VIPs() {
		addrs = append(addrs, fmt.Sprintf("%q", a.String()))
	}
	cfg := fmt.Sprintf(`# written by TestCannotAnnounceMovesTheAddress
[node]
name = %q
[log]
level = "debug"
format = "text"
[gossip]
bind = %q
join = [%s]
secret_key_file = "gossip.key"
cluster = "l2cluster-lab"
profile = "fast"
[l2]
interfaces = ["eth0"]
[kubernetes]
enabled = false
[metrics]
listen = ""
[control]
socket = %q
[[vip]]
name = "web"
addresses = [%s]
local = true
`, n.Name, netip.AddrPortFrom(n.Addr, 7947).String(), strings.Join(join, ", "),
		filepath.Join(d.dir, "hostlb.sock"), strings.Join(addrs, ", "))
	path := filepath.Join(d.dir, "hostlb.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--config", path, "--check-config").CombinedOutput(); err != nil {
		t.Fatalf("hostlbd rejects %s: %v\n%s", path, err, out)
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = n.NS.Command(context.Background(), bin, "--config", path)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		_ = logf.Close()
		t.Fatalf("start hostlbd on %s: %v", n.Name, err)
	}
	d.done = make(chan struct{})
	go func() {
		d.err = d.cmd.Wait()
		_ = logf.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Signal(syscall.SIGKILL)
			<-d.done
		}
	})
}

// arpTicker asks the client's raw ARP socket for ip every 10 ms until
// stopped; the prober records every reply with its arrival time.
type arpTicker struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex // guards err
	err  error
}

func startARPTicker(ap *failover.ARPProber, ip netip.Addr) *arpTicker {
	tk := &arpTicker{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tk.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if err := ap.Request(ip); err != nil {
				tk.mu.Lock()
				tk.err = err
				tk.mu.Unlock()
				return
			}
			select {
			case <-tk.stop:
				return
			case <-t.C:
			}
		}
	}()
	return tk
}

func (tk *arpTicker) Stop() error {
	close(tk.stop)
	<-tk.done
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return tk.err
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

// unanswered returns the ARP requests for ip sent in [from, to) that got
// no reply within window (from anyone).
func unanswered(ap *failover.ARPProber, ip netip.Addr, sent []time.Time, window time.Duration) []time.Time {
	var out []time.Time
	for _, s := range sent {
		if len(ap.Replies(ip, s, s.Add(window))) == 0 {
			out = append(out, s)
		}
	}
	return out
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
		tk := startARPTicker(ap, vip)
		// The owner answers before the rename.
		if _, ok := firstReply(t, ap, vip, time.Now(), 2*time.Second, isOwner); !ok {
			t.Fatalf("round %d: %s does not answer %s", round+1, owner.Name, vip)
		}
		t0 := time.Now()
		owner.NS.MustRun("ip", "link", "set", "dev", "eth0", "name", "moved0")
		r, ok := firstReply(t, ap, vip, t0, 5*time.Second, isOther)
		if !ok {
			_ = tk.Stop()
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
			_ = tk.Stop()
			t.Fatalf("round %d: %s did not take %s back within 10 s of its eth0 back", round+1, owner.Name, vip)
		}
		back = append(back, r.At.Sub(t1))
		// Until the other node has stopped answering, and a little more.
		settle := time.Now().Add(time.Second)
		for time.Now().Before(settle) {
			time.Sleep(10 * time.Millisecond) // the observation window after the handback, not synchronisation
		}
		end := time.Now()
		if err := tk.Stop(); err != nil {
			t.Fatal(err)
		}
		sent := sentBetween(ap, t1, end.Add(-200*time.Millisecond))
		if miss := unanswered(ap, vip, sent, 100*time.Millisecond); len(miss) > 0 {
			t.Errorf("round %d: %d of %d ARP requests for %s went unanswered while %s took it back (first at +%v)",
				round+1, len(miss), len(sent), vip, owner.Name, miss[0].Sub(t1).Round(time.Millisecond))
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

// sentBetween returns when the prober's requests in [from, to) were sent.
func sentBetween(ap *failover.ARPProber, from, to time.Time) []time.Time {
	var out []time.Time
	// The prober keeps counts, not times, per window: probe it in 10 ms
	// steps (the ticker's period), one request per step at most.
	for s := from; s.Before(to); s = s.Add(10 * time.Millisecond) {
		if ap.Sent(s, s.Add(10*time.Millisecond)) > 0 {
			out = append(out, s)
		}
	}
	return out
}
