package kubeipam

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/kubeapi"
	"github.com/hostlb/hostlb/tests/netlab"
)

func TestMain(m *testing.M) {
	code := m.Run()
	netlab.RemoveHostlbd()
	os.Exit(code)
}

// hostlbd is one daemon process under test.
type hostlbd struct {
	name string
	cmd  *exec.Cmd
	logs *lockedBuffer
	done chan struct{}
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

// freeUDPPort returns a loopback port free for both UDP and TCP now.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free loopback port")
	return 0
}

// kubeconfigFor writes a kubeconfig for hostlb's ServiceAccount.
func kubeconfigFor(t *testing.T, c *kubeapi.Cluster, dir string) string {
	t.Helper()
	cfg, err := c.ServiceAccountConfig(t.Context(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := kubeapi.WriteKubeconfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	return path
}

// startHostlbd runs hostlbd in Kubernetes mode in the test's network
// namespace (loopback only: it announces nothing) with extra config
// appended, and stops it (SIGTERM, by PID) at cleanup if still running.
func startHostlbd(t *testing.T, name, kubeconfig, extra string) *hostlbd {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
[node]
name = %q
[log]
level = "debug"
format = "text"
[gossip]
bind = "127.0.0.1:%d"
insecure_plaintext = true
[kubernetes]
enabled = true
kubeconfig = %q
[metrics]
listen = ""
[control]
socket = %q
[l2]
interfaces = ["lo"]
%s
`, name, freeLoopbackPort(t), kubeconfig, filepath.Join(dir, "hostlb.sock"), extra)
	path := filepath.Join(dir, "hostlb.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &hostlbd{name: name, logs: &lockedBuffer{}, done: make(chan struct{})}
	h.cmd = exec.Command(netlab.Hostlbd(t), "--config", path)
	h.cmd.Stdout, h.cmd.Stderr = h.logs, h.logs
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
			t.Logf("hostlbd %s log:\n%s", name, h.logs.String())
		}
	})
	return h
}

// stop sends sig to the daemon (by its PID) and waits for it to exit,
// killing it after 20 s.
func (h *hostlbd) stop(sig syscall.Signal) {
	select {
	case <-h.done:
		return
	default:
	}
	_ = h.cmd.Process.Signal(sig)
	select {
	case <-h.done:
	case <-time.After(20 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}
