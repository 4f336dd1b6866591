package l2lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

const (
	vip4    = "192.0.2.100"
	vip6    = "2001:db8::100"
	checked = "192.0.2.101" // gated by a TCP health check
)

// hostlbd is the binary under test, built once per test process.
func hostlbd(t *testing.T) string { return netlab.Hostlbd(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	netlab.RemoveHostlbd()
	os.Exit(code)
}

// lab is a node namespace running hostlbd and a client namespace, both on
// one bridge.
type lab struct {
	node, client *netlab.NS
	nodeMAC      net.HardwareAddr
	healthPort   int
}

func newLab(t *testing.T) *lab {
	t.Helper()
	netlab.RequireRoot(t)
	netlab.RequireTools(t, "tests/scripts/install-deps.sh", "arping", "ndisc6", "ping", "go")
	l := netlab.New(t)
	br := l.Bridge("br0")
	node, client := l.Namespace("node"), l.Namespace("client")
	for _, ns := range []*netlab.NS{node, client} {
		ns.Sysctl("net.ipv6.conf.all.accept_dad", "0")
		ns.Sysctl("net.ipv6.conf.default.accept_dad", "0")
	}
	nl := l.Connect(node, br, "eth0", []string{"192.0.2.1/24", "2001:db8::1/64"})
	l.Connect(client, br, "eth0", []string{"192.0.2.2/24", "2001:db8::2/64"})
	lb := &lab{node: node, client: client, nodeMAC: nl.MAC}

	// A port on the node's loopback that nobody listens on (yet).
	if err := node.Do(func() error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lb.healthPort = ln.Addr().(*net.TCPAddr).Port
		return ln.Close()
	}); err != nil {
		t.Fatal(err)
	}
	return lb
}

// daemon is one hostlbd run inside the node namespace.
type daemon struct {
	cmd  *exec.Cmd
	logs *lockedBuffer
	done chan struct{}
	err  error // Wait's result, set before done closes
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (lb *lab) start(t *testing.T) *daemon {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
[node]
name = "node1"
[log]
level = "debug"
format = "text"
[gossip]
insecure_plaintext = true
[kubernetes]
enabled = false
[metrics]
listen = ""
[control]
socket = %q
[l2]
interfaces = ["eth0"]
gratuitous_count = 2
gratuitous_interval = "100ms"

[[vip]]
name = "web"
addresses = [%q, %q]
local = true

[[vip]]
name = "checked"
addresses = [%q]
local = false
health = { tcp = "127.0.0.1:%d", interval = "100ms", timeout = "50ms" }
`, filepath.Join(dir, "hostlb.sock"), vip4, vip6, checked, lb.healthPort)
	path := filepath.Join(dir, "hostlb.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := hostlbd(t)
	if out, err := exec.Command(bin, "--config", path, "--check-config").CombinedOutput(); err != nil {
		t.Fatalf("config rejected: %v\n%s", err, out)
	}
	d := &daemon{logs: &lockedBuffer{}, done: make(chan struct{})}
	// Not CommandContext: the test stops hostlbd with SIGTERM by PID.
	// `ip netns exec` execs hostlbd, so the PID is hostlbd's.
	d.cmd = lb.node.Command(context.Background(), bin, "--config", path)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill() // only the process this test started
			<-d.done
		}
		if t.Failed() {
			t.Logf("hostlbd log:\n%s", d.logs.String())
		}
	})
	return d
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatal("hostlbd did not exit within 20s of SIGTERM")
	}
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		t.Fatalf("hostlbd exited with %d after SIGTERM, want 0", ee.ExitCode())
	} else if d.err != nil {
		t.Fatal(d.err)
	}
}

var (
	arpReplyRE = regexp.MustCompile(`bytes from ([0-9a-f:]{17}) \(([0-9.]+)\): index=(\d+)`)
	arpSentRE  = regexp.MustCompile(`(\d+) packets transmitted`)
	ndpMACRE   = regexp.MustCompile(`(?i)Target link-layer address: ([0-9a-f:]{17})`)
)

// arping sends count ARP requests for ip from the client and returns the
// MAC of every reply and how many requests went out.
func (lb *lab) arping(ip string, count int) (macs []string, sent int, out string) {
	out, _ = lb.client.Run("arping", "-c", fmt.Sprint(count), "-W", "0.2",
		"-w", fmt.Sprint(count), "-i", "eth0", ip)
	for _, m := range arpReplyRE.FindAllStringSubmatch(out, -1) {
		macs = append(macs, m[1])
	}
	if m := arpSentRE.FindStringSubmatch(out); m != nil {
		_, _ = fmt.Sscan(m[1], &sent)
	}
	return macs, sent, out
}

// ndisc6 solicits ip from the client and returns the answering MAC, "" if
// none answered.
func (lb *lab) ndisc6(ip string) string {
	out, _ := lb.client.Run("ndisc6", "-r", "2", "-w", "300", ip, "eth0")
	if m := ndpMACRE.FindStringSubmatch(out); m != nil {
		return strings.ToLower(m[1])
	}
	return ""
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

func (lb *lab) hostlb0Addrs() string {
	out, _ := lb.node.Run("ip", "-o", "addr", "show", "dev", "hostlb0")
	return out
}

func TestStaticLocalVIPs(t *testing.T) {
	lb := newLab(t)
	d := lb.start(t)
	mac := lb.nodeMAC.String()

	eventually(t, 15*time.Second, "an ARP answer for "+vip4, func() bool {
		macs, _, _ := lb.arping(vip4, 1)
		return len(macs) > 0
	})

	// Exactly one reply per request, each from the node's MAC.
	macs, sent, out := lb.arping(vip4, 3)
	if sent == 0 || len(macs) != sent {
		t.Errorf("arping: %d requests, %d replies; want one each:\n%s", sent, len(macs), out)
	}
	for _, m := range macs {
		if m != mac {
			t.Errorf("ARP reply from %s, want the node's %s:\n%s", m, mac, out)
		}
	}
	eventually(t, 10*time.Second, "an NDP answer for "+vip6, func() bool { return lb.ndisc6(vip6) != "" })
	if got := lb.ndisc6(vip6); got != mac {
		t.Errorf("NDP answer from %q, want the node's %s", got, mac)
	}

	lb.client.MustRun("ping", "-c", "1", "-W", "5", vip4)
	lb.client.MustRun("ping", "-6", "-c", "1", "-W", "5", vip6)
	// The VIPs are accepted through their local routes at once; the
	// addresses on hostlb0 follow in the background.
	eventually(t, 10*time.Second, "the VIPs on hostlb0", func() bool {
		a := lb.hostlb0Addrs()
		return strings.Contains(a, vip4+"/32") && strings.Contains(a, vip6+"/128")
	})
	if !strings.Contains(d.logs.String(), "msg=announcing") {
		t.Errorf("no announcing log line")
	}

	// The health-gated VIP: nobody listens on its port, so nobody answers.
	if macs, _, out := lb.arping(checked, 2); len(macs) != 0 {
		t.Errorf("%s answered while its health check fails:\n%s", checked, out)
	}

	d.stop(t)
	if macs, _, out := lb.arping(vip4, 2); len(macs) != 0 {
		t.Errorf("ARP answered after SIGTERM:\n%s", out)
	}
	if got := lb.ndisc6(vip6); got != "" {
		t.Errorf("NDP answered after SIGTERM by %s", got)
	}
	if a := lb.hostlb0Addrs(); strings.Contains(a, vip4) || strings.Contains(a, vip6) {
		t.Errorf("hostlb0 still holds VIPs after SIGTERM:\n%s", a)
	}
	logs := d.logs.String()
	for _, want := range []string{"msg=\"stopped announcing\"", "msg=\"hostlbd stopped\""} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

func TestHealthCheckGatesAnnouncement(t *testing.T) {
	lb := newLab(t)
	d := lb.start(t)
	// Wait until the daemon answers at all, so "not answered" below means
	// the health gate, not a daemon still starting.
	eventually(t, 15*time.Second, "an ARP answer for "+vip4, func() bool {
		macs, _, _ := lb.arping(vip4, 1)
		return len(macs) > 0
	})
	if macs, _, out := lb.arping(checked, 2); len(macs) != 0 {
		t.Fatalf("%s answered with no listener behind its health check:\n%s", checked, out)
	}

	// Start the service inside the node namespace: the VIP comes up.
	var ln net.Listener
	if err := lb.node.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", lb.healthPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-accepted })
	eventually(t, 10*time.Second, checked+" answered once healthy", func() bool {
		macs, _, _ := lb.arping(checked, 1)
		return len(macs) == 1 && macs[0] == lb.nodeMAC.String()
	})

	// Stop the service: the VIP goes quiet again.
	_ = ln.Close()
	<-accepted
	eventually(t, 10*time.Second, checked+" silent once unhealthy", func() bool {
		macs, _, _ := lb.arping(checked, 1)
		return len(macs) == 0
	})
	d.stop(t)
}
