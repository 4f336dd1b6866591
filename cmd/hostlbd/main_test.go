package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as hostlbd, so the signal tests run the real main
// in a child process without a separate build step.
func TestMain(m *testing.M) {
	if os.Getenv("HOSTLBD_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// goodConfigTemplate is a valid config; GOSSIP_PORT is filled in by
// goodConfig.
const goodConfigTemplate = `
[node]
name = "n1"
[log]
format = "json"
[gossip]
insecure_plaintext = true
bind = "127.0.0.1:GOSSIP_PORT"
[kubernetes]
enabled = false
[metrics]
listen = ""
# Not the host's /run/hostlb (control_test.go runs one with a socket).
[control]
socket = ""
# The child runs in the test's own network namespace (as root in CI): it
# must not answer ARP on the host's interfaces nor add hostlb0 there.
[l2]
interfaces = ["hlbt-none0"]
[[vip]]
name = "web"
addresses = ["192.0.2.10"]
local = false
`

// goodConfig returns the test config with the ring bound to a loopback port
// that is free for TCP and UDP now (the config rejects port 0), so the
// child never collides with a hostlbd running on the test machine.
func goodConfig(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return strings.ReplaceAll(goodConfigTemplate, "GOSSIP_PORT", strconv.Itoa(port))
	}
	t.Fatal("no free loopback port for TCP and UDP")
	return ""
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "hostlbd ") || !strings.Contains(out.String(), "(commit ") {
		t.Errorf("--version printed %q", out.String())
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	writeFile(t, good, goodConfig(t))
	var out, errb bytes.Buffer
	if code := run([]string{"--config", good, "--check-config"}, &out, &errb); code != 0 {
		t.Fatalf("good config: exit %d: %s", code, errb.String())
	}

	bad := filepath.Join(dir, "bad.toml")
	writeFile(t, bad, `[node]
name = "n1"
colour = "blue"
[gossip]
insecure_plaintext = true
[l2]
gratuitous_interval = "5x"
[[vip]]
name = "web"
addresses = ["192.0.2.300"]
`)
	out.Reset()
	errb.Reset()
	if code := run([]string{"--config", bad, "--check-config"}, &out, &errb); code != 2 {
		t.Fatalf("bad config: exit %d, want 2; stderr: %s", code, errb.String())
	}
	for _, want := range []string{"bad.toml:3:", "node.colour", "bad.toml:7:", "l2.gratuitous_interval", "bad.toml:10:", "vip[0].addresses[0]"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
}

// notifySocket is a real unixgram socket standing in for systemd's.
type notifySocket struct {
	conn *net.UnixConn
	msgs chan string
}

func listenNotify(t *testing.T) (*notifySocket, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &notifySocket{conn: conn, msgs: make(chan string, 256)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(s.msgs)
				return
			}
			// One datagram may carry several newline-separated assignments.
			for _, l := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
				s.msgs <- l
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return s, path
}

func (s *notifySocket) expect(t *testing.T, want string) {
	t.Helper()
	s.expectFunc(t, want, func(m string) bool { return m == want })
}

// expectPrefix is expect for a message that starts with prefix.
func (s *notifySocket) expectPrefix(t *testing.T, prefix string) {
	t.Helper()
	s.expectFunc(t, prefix+"…", func(m string) bool { return strings.HasPrefix(m, prefix) })
}

func (s *notifySocket) expectFunc(t *testing.T, want string, match func(string) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q", want)
			}
			if match(m) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q from the daemon within 10s", want)
		}
	}
}

// lockedLines collects a child's stderr and lets a test wait for a line.
type lockedLines struct {
	mu    sync.Mutex
	lines []string
	cond  *sync.Cond
}

func (l *lockedLines) waitFor(t *testing.T, substr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	timer := time.AfterFunc(10*time.Second, func() { l.cond.Broadcast() })
	defer timer.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		for _, line := range l.lines {
			if strings.Contains(line, substr) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line containing %q; log:\n%s", substr, strings.Join(l.lines, "\n"))
		}
		l.cond.Wait()
	}
}

// childCmd runs this test binary as hostlbd with the config at cfgPath.
func childCmd(t *testing.T, cfgPath string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "--config", cfgPath)
	cmd.Env = append(os.Environ(), "HOSTLBD_TEST_AS_MAIN=1")
	return cmd
}

// startChild starts hostlbd (childCmd) under a notify socket and collects
// its stderr lines; the child is killed at cleanup if it still runs.
func startChild(t *testing.T, cfgPath string) (*exec.Cmd, *notifySocket, *lockedLines) {
	t.Helper()
	notify, sock := listenNotify(t)
	cmd := childCmd(t, cfgPath)
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // only the child this test started
			_ = cmd.Wait()
		}
	})
	logs := &lockedLines{}
	logs.cond = sync.NewCond(&logs.mu)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.mu.Lock()
			logs.lines = append(logs.lines, sc.Text())
			logs.mu.Unlock()
			logs.cond.Broadcast()
		}
	}()
	return cmd, notify, logs
}

// expectStartFailure runs hostlbd with cfgPath and wants exit exitFail
// with every one of want in its output.
func expectStartFailure(t *testing.T, cfgPath string, want ...string) {
	t.Helper()
	out, err := childCmd(t, cfgPath).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFail {
		t.Fatalf("exit %v, want %d:\n%s", err, exitFail, out)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("the error does not say %q:\n%s", w, out)
		}
	}
}

func TestSignals(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "hostlb.toml")
	cfgText := goodConfig(t)
	writeFile(t, cfgPath, cfgText)
	cmd, notify, logs := startChild(t, cfgPath)

	notify.expect(t, "READY=1")
	// The daemon takes SIGHUP as a reload framed by RELOADING=1 only once it
	// has marked itself ready, just after READY=1; its first running STATUS
	// comes after that.
	notify.expectPrefix(t, "STATUS=running")
	logs.waitFor(t, `"msg":"hostlbd started"`)

	// SIGHUP with a broken file: reload brackets, old config kept, error logged.
	writeFile(t, cfgPath, cfgText+"\n[bogus]\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	notify.expect(t, "RELOADING=1")
	notify.expect(t, "READY=1")
	logs.waitFor(t, "reload failed; keeping the running config")
	logs.waitFor(t, "bogus")

	// SIGHUP with a changed, valid file.
	writeFile(t, cfgPath, strings.Replace(cfgText, "192.0.2.10", "192.0.2.11", 1))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	notify.expect(t, "RELOADING=1")
	notify.expect(t, "READY=1")
	logs.waitFor(t, `"msg":"config reloaded"`)

	// SIGTERM: STOPPING=1 and a clean exit.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notify.expect(t, "STOPPING=1")
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("exit status %d after SIGTERM, want 0", ee.ExitCode())
		} else if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("hostlbd did not exit within 15s of SIGTERM")
	}
	logs.waitFor(t, `"msg":"hostlbd stopped"`)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCheckConfigRefusesLabelsTheRingCannotCarry: labels that overflow the
// gossip metadata are a configuration error (exit 2) at --check-config,
// not a daemon that starts and is refused by the ring on every restart.
func TestCheckConfigRefusesLabelsTheRingCannotCarry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "labels.toml")
	var labels []string // ten valid labels of ~80 bytes each: 800 bytes
	for i := range 10 {
		labels = append(labels, fmt.Sprintf("label-%02d-%s = %q", i, strings.Repeat("k", 12), strings.Repeat("v", 60)))
	}
	writeFile(t, path, `[node]
name = "n1"
labels = { `+strings.Join(labels, ", ")+` }
[gossip]
insecure_plaintext = true
[kubernetes]
enabled = false
`)
	var out, errb bytes.Buffer
	if code := run([]string{"--config", path, "--check-config"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2; stdout %s; stderr %s", code, out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "node.labels") || !strings.Contains(errb.String(), "512") {
		t.Errorf("stderr does not name node.labels and the limit:\n%s", errb.String())
	}
}
