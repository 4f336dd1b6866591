package kubeipam

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/tests/kubeapi"
	"github.com/hostlb/hostlb/tests/netlab"
)

const (
	// bootstrapVIP is the static VIP; it stands for the apiserver's own
	// address, which a node must serve before the API is up.
	bootstrapVIP = "192.0.2.100"
	// kubeSyncWait is daemon.defaultKubeSyncWait, the documented bound of
	// READY=1 while the API does not answer (docs/kubernetes.md).
	kubeSyncWait = 10 * time.Second
	// readySlack covers the start of the process and its first reconcile.
	readySlack = 2 * time.Second
)

// TestBootstrapAPIDown is the acceptance test of a node that boots while
// kube-apiserver is down: hostlbd in Kubernetes mode serves its static VIP
// (a client's ARP request is answered with the node's MAC), tells systemd
// READY=1 within the documented bound with a STATUS line saying the API is
// not reachable, and, once the apiserver starts, the same process (never
// restarted) becomes the IPAM leader and gives a new Service its IP.
//
// The lab: on one bridge, namespace api runs etcd and kube-apiserver on
// 192.0.2.10, node runs hostlbd on eth0 (192.0.2.1), client (192.0.2.2)
// sends the ARP requests.
func TestBootstrapAPIDown(t *testing.T) {
	kubeapi.Require(t)
	requireTools(t, "ip", "arping")
	lab := netlab.New(t)
	br := lab.Bridge("br0")
	apiNS, node, client := lab.Namespace("api"), lab.Namespace("node"), lab.Namespace("client")
	lab.Connect(apiNS, br, "eth0", []string{"192.0.2.10/24"})
	nodeMAC := lab.Connect(node, br, "eth0", []string{"192.0.2.1/24"}).MAC.String()
	lab.Connect(client, br, "eth0", []string{"192.0.2.2/24"})

	// Once with the API up, for the manifests and the ServiceAccount's
	// token; the kubeconfig names https://192.0.2.10:<port>.
	c := startClusterIn(t, apiNS.Name, netip.MustParseAddr("192.0.2.10"))
	e := &env{c: c, admin: c.Admin()}
	dir := t.TempDir()
	kc := kubeconfigFor(t, c, dir)
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	requireAPIDown(t, c)

	notify := listenNotify(t, filepath.Join(dir, "notify.sock"))
	h, started := startNodeHostlbd(t, node, kc, notify.path)
	pid := h.cmd.Process.Pid

	// READY=1 within the bound, the API still down.
	readyAt := notify.wait(t, kubeSyncWait+readySlack+30*time.Second, "READY=1")
	toReady := readyAt.Sub(started)
	t.Logf("READY=1 after %v (bound %v + %v slack)", toReady.Round(time.Millisecond), kubeSyncWait, readySlack)
	if toReady > kubeSyncWait+readySlack {
		t.Errorf("READY=1 after %v, want at most %v (KubeSyncWait) + %v", toReady.Round(time.Millisecond), kubeSyncWait, readySlack)
	}
	// The daemon sends its STATUS line right after READY=1.
	status := notify.statusAfter(t, readyAt, 5*time.Second)
	t.Logf("STATUS at READY: %s", status)
	if !strings.Contains(status, "Kubernetes API not reachable") {
		t.Errorf("STATUS at READY=1 = %q, want it to say the Kubernetes API is not reachable", status)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "Kubernetes API not reachable: ready without it") {
		t.Errorf("hostlbd did not log that it became ready without the API")
	}

	// The static VIP is served while the API is down.
	requireAPIDown(t, c)
	requireARP(t, client, bootstrapVIP, nodeMAC)

	// The apiserver comes back; the same daemon serves Services.
	ctx := t.Context()
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatalf("restart kube-apiserver: %v\n%s", err, c.LogTail("kube-apiserver", 30))
	}
	apiUp := time.Now()
	e.class(t, "bootstrap", []string{"203.0.113.200/29"}, false, nil)
	e.service(t, metav1.NamespaceDefault, "web", withClass("bootstrap"))
	var ip string
	waitFor(t, 60*time.Second, "Service default/web to get its IP", func() error {
		got := ips(e.get(t, metav1.NamespaceDefault, "web"))
		if len(got) != 1 {
			return fmt.Errorf("has %v", got)
		}
		ip = got[0]
		return nil
	})
	t.Logf("Service default/web got %s %v after the apiserver was ready", ip, time.Since(apiUp).Round(time.Millisecond))
	mustPrefix(t, ip, "203.0.113.200/29")

	lease, err := e.admin.CoordinationV1().Leases("kube-system").Get(ctx, kube.LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hid := lease.Spec.HolderIdentity; hid == nil || *hid != "node1" {
		t.Errorf("Lease kube-system/%s held by %v, want node1", kube.LeaseName, lease.Spec.HolderIdentity)
	}
	// The daemon's own account of it, on the STATUS line.
	notify.waitStatus(t, 30*time.Second, "Kubernetes synced", "IPAM leader")

	// Never restarted: the process started above is still the one running.
	select {
	case <-h.done:
		t.Fatalf("hostlbd (pid %d) exited: %v", pid, h.cmd.ProcessState)
	default:
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "hostlbd" {
		t.Errorf("pid %d is %q (%v), want hostlbd", pid, comm, err)
	}
	if n := strings.Count(h.logs.String(), "msg=ready "); n != 1 {
		t.Errorf("hostlbd logged ready %d times, want once (no restart)", n)
	}
	requireARP(t, client, bootstrapVIP, nodeMAC)
}

// requireTools fails t in CI (env CI set), where every tool must be
// installed, and skips it elsewhere, naming the missing tool.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not installed (tests/scripts/install-deps.sh): %v", tool, err)
			}
			t.Skipf("skipped, needs %s (tests/scripts/install-deps.sh): %v", tool, err)
		}
	}
}

// startClusterIn is startCluster with the control plane inside the network
// namespace netns, listening on bind (an address of it).
func startClusterIn(t *testing.T, netns string, bind netip.Addr) *kubeapi.Cluster {
	t.Helper()
	c, err := kubeapi.New(kubeapi.Options{Netns: netns, Bind: bind, ApplyManifests: true, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-apiserver log, last lines:\n%s", c.LogTail("kube-apiserver", 30))
		}
		c.Stop()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start control plane: %v\n%s", err, c.LogTail("kube-apiserver", 30))
	}
	return c
}

// requireAPIDown fails t unless a request to the API fails.
func requireAPIDown(t *testing.T, c *kubeapi.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if _, err := c.Admin().CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{}); err == nil {
		t.Fatal("the API answers; the test needs kube-apiserver down here")
	}
}

// startNodeHostlbd runs hostlbd in Kubernetes mode inside node, with the
// static VIP on eth0 and NOTIFY_SOCKET set, and stops it (SIGTERM by PID,
// then SIGKILL) at cleanup. It returns when the process was started, and
// when.
func startNodeHostlbd(t *testing.T, node *netlab.NS, kubeconfig, notifySocket string) (*hostlbd, time.Time) {
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
enabled = true
kubeconfig = %q
[metrics]
listen = ""
[control]
socket = %q
[l2]
interfaces = ["eth0"]

[[vip]]
name = "apiserver"
addresses = [%q]
local = true
`, kubeconfig, filepath.Join(dir, "hostlb.sock"), bootstrapVIP)
	path := filepath.Join(dir, "hostlb.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := netlab.Hostlbd(t)
	if out, err := exec.Command(bin, "--config", path, "--check-config").CombinedOutput(); err != nil {
		t.Fatalf("config rejected: %v\n%s", err, out)
	}
	h := &hostlbd{name: "node1", logs: &lockedBuffer{}, done: make(chan struct{})}
	// Not CommandContext: it is stopped by PID. `ip netns exec` execs
	// hostlbd, so the PID is hostlbd's.
	h.cmd = node.Command(context.Background(), bin, "--config", path)
	h.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifySocket)
	h.cmd.Stdout, h.cmd.Stderr = h.logs, h.logs
	started := time.Now()
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = h.cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() {
		h.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("hostlbd node1 log:\n%s", h.logs.String())
		}
	})
	return h, started
}

// notifyListener is the service manager's end of NOTIFY_SOCKET: it keeps
// every sd_notify assignment with the time its datagram arrived.
type notifyListener struct {
	path string
	conn *net.UnixConn

	mu   sync.Mutex // guards msgs
	msgs []notifyMsg
}

type notifyMsg struct {
	at   time.Time
	line string // one assignment, e.g. "READY=1" or "STATUS=running: ..."
}

// listenNotify binds a unixgram socket at path; cleanup closes it and
// waits for its reader.
func listenNotify(t *testing.T, path string) *notifyListener {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifyListener{path: path, conn: conn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return // closed
			}
			at := time.Now()
			n.mu.Lock()
			for line := range strings.SplitSeq(strings.TrimSpace(string(buf[:k])), "\n") {
				n.msgs = append(n.msgs, notifyMsg{at: at, line: line})
			}
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
		if t.Failed() {
			n.mu.Lock()
			defer n.mu.Unlock()
			for _, m := range n.msgs {
				t.Logf("sd_notify %s %s", m.at.Format("15:04:05.000"), m.line)
			}
		}
	})
	return n
}

// find returns the first message matching ok.
func (n *notifyListener) find(ok func(notifyMsg) bool) (notifyMsg, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.msgs {
		if ok(m) {
			return m, true
		}
	}
	return notifyMsg{}, false
}

// wait waits for the assignment line and returns when it arrived.
func (n *notifyListener) wait(t *testing.T, timeout time.Duration, line string) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, timeout, "sd_notify "+line, func() error {
		m, ok := n.find(func(m notifyMsg) bool { return m.line == line })
		if !ok {
			return errors.New("not sent")
		}
		at = m.at
		return nil
	})
	return at
}

// statusAfter waits for the first STATUS= line sent at or after since.
func (n *notifyListener) statusAfter(t *testing.T, since time.Time, timeout time.Duration) string {
	t.Helper()
	var status string
	waitFor(t, timeout, "a STATUS line", func() error {
		m, ok := n.find(func(m notifyMsg) bool { return !m.at.Before(since) && strings.HasPrefix(m.line, "STATUS=") })
		if !ok {
			return errors.New("none")
		}
		status = strings.TrimPrefix(m.line, "STATUS=")
		return nil
	})
	return status
}

// waitStatus waits for a STATUS= line that contains every string of want.
func (n *notifyListener) waitStatus(t *testing.T, timeout time.Duration, want ...string) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("a STATUS line with %q", want), func() error {
		_, ok := n.find(func(m notifyMsg) bool {
			if !strings.HasPrefix(m.line, "STATUS=") {
				return false
			}
			for _, w := range want {
				if !strings.Contains(m.line, w) {
					return false
				}
			}
			return true
		})
		if !ok {
			return errors.New("none")
		}
		return nil
	})
}

var arpingReplyRE = regexp.MustCompile(`bytes from ([0-9a-f:]{17}) \(([0-9.]+)\)`)

// requireARP has the client ask for ip with arping (Debian's arping, by
// Thomas Habets: -i names the interface) until it is answered, within
// 10 s, and fails t unless every answer is from wantMAC.
func requireARP(t *testing.T, client *netlab.NS, ip, wantMAC string) {
	t.Helper()
	var macs []string
	var out string
	waitFor(t, 10*time.Second, "an ARP answer for "+ip, func() error {
		out, _ = client.Run("arping", "-c", "1", "-w", "2", "-i", "eth0", ip)
		macs = macs[:0]
		for _, m := range arpingReplyRE.FindAllStringSubmatch(out, -1) {
			macs = append(macs, m[1])
		}
		if len(macs) == 0 {
			return fmt.Errorf("no reply:\n%s", out)
		}
		return nil
	})
	for _, m := range macs {
		if m != wantMAC {
			t.Errorf("ARP answer for %s from %s, want the node's %s:\n%s", ip, m, wantMAC, out)
		}
	}
}
