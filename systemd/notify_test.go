package systemd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenNotify points NOTIFY_SOCKET at a fresh unixgram socket, as systemd
// does for a Type=notify unit, and returns the socket to read datagrams from.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "")
	t.Setenv("WATCHDOG_PID", "")
	return c
}

// readDatagram returns the next datagram, failing the test if none arrives
// within d.
func readDatagram(t *testing.T, c *net.UnixConn, d time.Duration) string {
	t.Helper()
	s, err := tryRead(c, d)
	if err != nil {
		t.Fatalf("no sd_notify datagram within %v: %v", d, err)
	}
	return s
}

func tryRead(c *net.UnixConn, d time.Duration) (string, error) {
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return "", err
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

func TestNotifierMessages(t *testing.T) {
	c := listenNotify(t)
	n := NewNotifier()

	for _, tc := range []struct {
		name string
		send func() error
		want string
	}{
		{"Ready", n.Ready, "READY=1"},
		{"Stopping", n.Stopping, "STOPPING=1"},
		{"Status", func() error { return n.Status("serving 3 VIPs") }, "STATUS=serving 3 VIPs"},
		{"Status one line", func() error { return n.Status("bad\nconfig\r\nline 3\n") }, "STATUS=bad config line 3"},
	} {
		if err := tc.send(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := readDatagram(t, c, 5*time.Second); got != tc.want {
			t.Errorf("%s sent %q, want %q", tc.name, got, tc.want)
		}
	}

	before := monotonicUsec(t)
	if err := n.Reloading(); err != nil {
		t.Fatal(err)
	}
	after := monotonicUsec(t)
	got := readDatagram(t, c, 5*time.Second)
	rest, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
	if !ok || !strings.HasSuffix(rest, "\n") {
		t.Fatalf("Reloading sent %q, want RELOADING=1\\nMONOTONIC_USEC=<µs>\\n", got)
	}
	usec, err := strconv.ParseInt(strings.TrimSuffix(rest, "\n"), 10, 64)
	if err != nil || usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%q, want a CLOCK_MONOTONIC µs value in [%d, %d]", rest, before, after)
	}
}

func TestNotifierDisabled(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "40000") // ignored without a socket to ping
	n := NewNotifier()
	for name, f := range map[string]func() error{
		"Ready": n.Ready, "Reloading": n.Reloading, "Stopping": n.Stopping,
		"Status": func() error { return n.Status("x") },
	} {
		if err := f(); err != nil {
			t.Errorf("%s without NOTIFY_SOCKET: %v, want nil", name, err)
		}
	}
	if d := n.WatchdogInterval(); d != 0 {
		t.Errorf("WatchdogInterval = %v, want 0", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.RunWatchdog(ctx, nil, nil); close(done) }()
	cancel()
	waitClosed(t, done, "RunWatchdog to return after cancel")
}

func TestNotifierSendError(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	if err := NewNotifier().Ready(); err == nil {
		t.Error("Ready to a missing socket: nil error")
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"", "", 0},
		{"40000", "", 20 * time.Millisecond},
		{"10000000", pid, 5 * time.Second},
		{"10000000", "1", 0}, // meant for another process
		{"garbage", "", 0},
		{"-5", "", 0},
	} {
		listenNotify(t)
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		if got := NewNotifier().WatchdogInterval(); got != tc.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: interval %v, want %v", tc.usec, tc.pid, got, tc.want)
		}
	}
}

func TestRunWatchdog(t *testing.T) {
	c := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "40000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := NewNotifier()
	interval := n.WatchdogInterval()
	if interval != 20*time.Millisecond {
		t.Fatalf("WatchdogInterval = %v, want 20ms", interval)
	}

	var sick atomic.Bool
	var sickCalls atomic.Int32
	sickSeen := make(chan struct{}) // closed at the 3rd consecutive unhealthy check
	healthy := func() error {
		if !sick.Load() {
			return nil
		}
		if sickCalls.Add(1) == 3 {
			close(sickSeen)
		}
		return errors.New("reconcile stuck")
	}
	logs := &recordingHandler{}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.RunWatchdog(ctx, slog.New(logs), healthy); close(done) }()
	defer func() { cancel(); waitClosed(t, done, "RunWatchdog to return after cancel") }()

	// Healthy: pings keep coming.
	for i := 0; i < 3; i++ {
		if got := readDatagram(t, c, 5*time.Second); got != "WATCHDOG=1" {
			t.Fatalf("ping %d = %q, want WATCHDOG=1", i, got)
		}
	}

	// Unhealthy: after three withheld pings, nothing more arrives. Pings sent
	// before the first failed check are already queued; drain them first.
	sick.Store(true)
	waitClosed(t, sickSeen, "three unhealthy checks")
	for {
		if _, err := tryRead(c, time.Millisecond); err != nil {
			break
		}
	}
	if got, err := tryRead(c, 5*interval); err == nil {
		t.Fatalf("got %q while unhealthy, want no ping", got)
	}
	if got := logs.count("unhealthy"); got != 1 {
		t.Errorf("logged %d unhealthy lines over %d checks, want 1", got, sickCalls.Load())
	}

	// Healthy again: pings resume.
	sick.Store(false)
	if got := readDatagram(t, c, 5*time.Second); got != "WATCHDOG=1" {
		t.Fatalf("after recovery got %q, want WATCHDOG=1", got)
	}
	if got := logs.count("healthy again"); got != 1 {
		t.Errorf("logged %d recovery lines, want 1", got)
	}
}

func TestRunWatchdogBadEnvironment(t *testing.T) {
	listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "ten seconds")
	n := NewNotifier()
	var buf syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.RunWatchdog(ctx, slog.New(slog.NewTextHandler(&buf, nil)), nil)
	if !strings.Contains(buf.String(), "WATCHDOG_USEC") {
		t.Errorf("log %q does not say WATCHDOG_USEC is bad", buf.String())
	}
}

func waitClosed(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// recordingHandler keeps the messages of the records it handles.
type recordingHandler struct {
	mu   sync.Mutex // guards msgs
	msgs []string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}

func (h *recordingHandler) count(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a handler.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
