//go:build linux

package kubebench_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

// hostlbd is the daemon under test, its output in a log file.
type hostlbd struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // cmd.Wait's result, once done is closed
}

func (h *hostlbd) pid() int { return h.cmd.Process.Pid }

// tail is the last n lines of the daemon's log.
func (h *hostlbd) tail(n int) string {
	data, err := os.ReadFile(h.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// startHostlbd runs hostlbd in Kubernetes mode on loopback, as
// tests/kubeipam does, at log level info (as in production: a debug line
// per Service would be part of the cost measured), and stops it (SIGTERM,
// by PID; SIGKILL after 20 s) at cleanup.
func startHostlbd(b *testing.B, dir, kubeconfig string) *hostlbd {
	b.Helper()
	cfg := fmt.Sprintf(`
[node]
name = %q
[log]
level = "info"
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
`, nodeName, freeLoopbackPort(b), kubeconfig, filepath.Join(dir, "hostlb.sock"))
	path := filepath.Join(dir, "hostlb.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	h := &hostlbd{logPath: filepath.Join(dir, "hostlbd.log"), done: make(chan struct{})}
	logf, err := os.Create(h.logPath)
	if err != nil {
		b.Fatal(err)
	}
	h.cmd = exec.Command(netlab.Hostlbd(b), "--config", path)
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	// The runtime's GC trace (one line per collection, on stderr) says
	// how much of the RSS is live heap: hostlbd has no pprof endpoint.
	h.cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		logf.Close()
		b.Fatal(err)
	}
	go func() {
		h.err = h.cmd.Wait()
		logf.Close()
		close(h.done)
	}()
	b.Cleanup(func() {
		select {
		case <-h.done:
			b.Errorf("hostlbd exited before the end: %v\n%s", h.err, h.tail(30))
			return
		default:
		}
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(20 * time.Second):
			_ = h.cmd.Process.Kill()
			<-h.done
		}
	})
	return h
}

// freeLoopbackPort returns a loopback port free for both TCP and UDP now
// (memberlist binds both).
func freeLoopbackPort(b *testing.B) int {
	b.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	b.Fatal("no free loopback port")
	return 0
}
