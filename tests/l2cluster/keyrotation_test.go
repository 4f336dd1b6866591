package l2cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/gossip"
	"github.com/hostlb/hostlb/tests/failover"
)

// daemon is one hostlbd this test runs in a node namespace, with its own
// config: tests/failover's daemons run without a gossip key.
type daemon struct {
	node    *failover.Node
	name    string   // [node] name; default the node's
	join    []string // [gossip] join; default every other node of the cluster
	l2      string   // an [l2] section, written as is; default none
	metrics string   // [metrics] listen; default "" (off)
	dir     string
	keyFile string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error // Wait's result, set before done closes
}

// requireLab fails under CI, and skips otherwise, when the lab cannot run.
func requireLab(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"ip", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("the key rotation lab needs %s, and CI is set", strings.Join(missing, ", "))
	}
	t.Skipf("the key rotation lab needs %s (CI runs it as root)", strings.Join(missing, ", "))
}

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, gossip.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// writeKeys writes the key file, one base64 key per line, mode 0640.
func (d *daemon) writeKeys(t *testing.T, keys ...[]byte) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# written by TestRollingKeyRotation\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	tmp := d.keyFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, d.keyFile); err != nil {
		t.Fatal(err)
	}
}

func (d *daemon) start(t *testing.T, c *failover.Cluster, bin string) {
	t.Helper()
	n := d.node
	var join []string
	for _, o := range c.Nodes {
		if o != n && d.join == nil {
			join = append(join, fmt.Sprintf("%q", netip.AddrPortFrom(o.Addr, 7947).String()))
		}
	}
	for _, s := range d.join {
		join = append(join, fmt.Sprintf("%q", s))
	}
	name := n.Name
	if d.name != "" {
		name = d.name
	}
	var addrs []string
	for _, a := range c.VIPs() {
		addrs = append(addrs, fmt.Sprintf("%q", a.String()))
	}
	cfg := fmt.Sprintf(`# written by tests/l2cluster
[node]
name = %q
[log]
level = "info"
format = "text"
[gossip]
bind = %q
join = [%s]
secret_key_file = "gossip.key"
cluster = "l2cluster-lab"
profile = "fast"
%s[kubernetes]
enabled = false
[metrics]
listen = %q
[control]
socket = %q
[[vip]]
name = "web"
addresses = [%s]
local = true
`, name, netip.AddrPortFrom(n.Addr, 7947).String(), strings.Join(join, ", "), d.l2, d.metrics,
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
	// ip netns exec execs hostlbd: the PID is the daemon's, for SIGHUP.
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

func (d *daemon) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// reload sends SIGHUP and waits until the daemon logged the new primary
// key and the reload.
func (d *daemon) reload(t *testing.T, primary []byte, nth int) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP %s: %v", d.node.Name, err)
	}
	want := "primary=" + gossip.KeyID(primary)
	deadline := time.Now().Add(10 * time.Second)
	for {
		log := d.log(t)
		if strings.Count(log, "msg=\"gossip keys changed\"") >= nth && strings.Count(log, "msg=\"config reloaded\"") >= nth {
			if i := strings.LastIndex(log, "msg=\"gossip keys changed\""); !strings.Contains(log[i:], want) {
				t.Fatalf("%s applied another primary key than %s:\n%s", d.node.Name, want, log[i:])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not apply its new key file within 10 s of SIGHUP:\n%s", d.node.Name, log)
		}
		time.Sleep(20 * time.Millisecond) // polling the log file
	}
}

// prober asks the client's raw ARP socket for every address of the VIP in
// turn, and records every probe that nobody answered, that two nodes
// answered, or that another node than before answered.
type prober struct {
	c    *failover.Cluster
	p    *failover.ARPProber
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex // guards the fields below
	probes   int
	problems []string
	owner    map[netip.Addr]string
}

func startProber(c *failover.Cluster, p *failover.ARPProber, owners map[netip.Addr]string) *prober {
	pr := &prober{c: c, p: p, stop: make(chan struct{}), done: make(chan struct{}), owner: owners}
	go func() {
		defer close(pr.done)
		for {
			for _, vip := range c.VIPs() {
				select {
				case <-pr.stop:
					return
				default:
				}
				at := time.Now()
				macs, err := p.Who(vip, 100*time.Millisecond)
				pr.record(at, vip, macs, err)
			}
		}
	}()
	return pr
}

func (pr *prober) record(at time.Time, vip netip.Addr, macs []string, err error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.probes++
	when := at.Format("15:04:05.000")
	switch {
	case err != nil:
		pr.problems = append(pr.problems, fmt.Sprintf("%s %s: %v", when, vip, err))
	case len(macs) == 0:
		pr.problems = append(pr.problems, fmt.Sprintf("%s %s: unanswered", when, vip))
	case len(macs) > 1:
		pr.problems = append(pr.problems, fmt.Sprintf("%s %s: answered by %v", when, vip, macs))
	default:
		name := macs[0]
		if m, err := net.ParseMAC(macs[0]); err == nil && pr.c.NodeByMAC(m) != nil {
			name = pr.c.NodeByMAC(m).Name
		}
		if name != pr.owner[vip] {
			pr.problems = append(pr.problems, fmt.Sprintf("%s %s: moved from %s to %s", when, vip, pr.owner[vip], name))
			pr.owner[vip] = name
		}
	}
}

// failed reports whether a probe went wrong so far.
func (pr *prober) failed() bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return len(pr.problems) > 0
}

func (pr *prober) Stop() (probes int, problems []string) {
	close(pr.stop)
	<-pr.done
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.probes, pr.problems
}

// TestRollingKeyRotation rotates the gossip key of three real hostlbd
// nodes the way `hostlbctl keygen` documents it, with SIGHUP reloads: the
// new key second everywhere, then first everywhere, then the old one
// dropped. A client asks for the VIP's three addresses over and over: no
// probe goes unanswered or is answered by two nodes, no address moves, no
// daemon declares a member dead or fails to decrypt a message. At the end
// every daemon stops cleanly on SIGTERM.
func TestRollingKeyRotation(t *testing.T) {
	requireLab(t)
	bin := hostlbd(t)
	c := failover.New(t, failover.Options{Kind: failover.HostLB, Hostlbd: bin})
	keyDir := t.TempDir()
	var daemons []*daemon
	for _, n := range c.Nodes {
		d := &daemon{node: n, dir: filepath.Join(keyDir, n.Name)}
		if err := os.Mkdir(d.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		d.keyFile = filepath.Join(d.dir, "gossip.key")
		d.logPath = filepath.Join(d.dir, "hostlbd.log")
		daemons = append(daemons, d)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range daemons {
				t.Logf("%s's hostlbd log:\n%s", d.node.Name, d.log(t))
			}
		}
	})
	oldKey, newKey := newKey(t), newKey(t)
	for _, d := range daemons {
		d.writeKeys(t, oldKey)
		d.start(t, c, bin)
	}

	ap, err := c.NewARPProber()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ap.Close() })
	owners := map[netip.Addr]string{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		o, err := c.Owners(ap, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		distinct := map[string]bool{}
		for vip, names := range o {
			if len(names) == 1 {
				owners[vip] = names[0]
				distinct[names[0]] = true
			}
		}
		if len(distinct) == len(c.Nodes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the three nodes never spread the VIP's addresses: %v", o)
		}
	}
	t.Logf("before the rotation: %v", owners)

	pr := startProber(c, ap, owners)
	for step, keys := range [][][]byte{{oldKey, newKey}, {newKey, oldKey}, {newKey}} {
		for _, d := range daemons {
			d.writeKeys(t, keys...)
			d.reload(t, keys[0], step+1)
		}
		// Failure detection takes ≈ 0.5 s with the fast profile: let the
		// client probe for twice that before the next step.
		end := time.Now().Add(time.Second)
		for time.Now().Before(end) && !pr.failed() {
			time.Sleep(50 * time.Millisecond) // poll interval of the prober's observation window, not synchronisation
		}
		t.Logf("step %d done on all nodes", step+1)
	}
	probes, problems := pr.Stop()
	t.Logf("%d ARP probes during the rotation", probes)
	if len(problems) > 0 {
		t.Errorf("%d of %d probes went wrong during the rotation:\n%s", len(problems), probes, strings.Join(problems, "\n"))
	}
	if probes < 20 {
		t.Errorf("only %d probes: the rotation was not observed", probes)
	}
	for _, d := range daemons {
		log := d.log(t)
		for _, bad := range []string{"gossip member dead", "gossip member leave", "could decrypt", "unacceptable label", "reload failed"} {
			if strings.Contains(log, bad) {
				t.Errorf("%s logged %q during the rotation", d.node.Name, bad)
			}
		}
	}

	// A reload onto a key file that is a FIFO fails at once and keeps the
	// running keys; SIGTERM then still stops the daemon cleanly.
	d := daemons[0]
	if err := os.Remove(d.keyFile); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(d.keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(d.log(t), "reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no \"reload failed\" within 10 s of a SIGHUP onto a FIFO key file", d.node.Name)
		}
		time.Sleep(20 * time.Millisecond) // polling the log file
	}
	if log := d.log(t); !strings.Contains(log, "is a FIFO, not a regular file") {
		t.Errorf("%s's reload error does not say the key file is a FIFO", d.node.Name)
	}
	for _, d := range daemons {
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range daemons {
		select {
		case <-d.done:
			if d.err != nil {
				t.Errorf("%s exited with %v after SIGTERM, want status 0", d.node.Name, d.err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s did not exit within 15 s of SIGTERM", d.node.Name)
		}
		if out, _ := d.node.NS.Run("ip", "-o", "addr", "show", "dev", "hostlb0"); strings.Contains(out, "192.0.2.10") {
			t.Errorf("%s still has a VIP on hostlb0 after SIGTERM:\n%s", d.node.Name, out)
		}
	}
}
