package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/heartbeat"
)

// A [metrics] listen address in use fails the start at once (exit 1), with
// the address in the message: a node must not run without the endpoint its
// monitoring expects.
func TestMetricsPortBusyFailsStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	cfgPath := filepath.Join(t.TempDir(), "hostlb.toml")
	writeFile(t, cfgPath, strings.Replace(goodConfig(t), "[metrics]\nlisten = \"\"", fmt.Sprintf("[metrics]\nlisten = %q", addr), 1))
	expectStartFailure(t, cfgPath, addr, "address already in use")
}

// A running hostlbd serves /healthz, /readyz and /metrics on [metrics]
// listen, and stops serving them when it exits.
func TestMetricsServed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(t.TempDir(), "hostlb.toml")
	writeFile(t, cfgPath, strings.Replace(goodConfig(t), "[metrics]\nlisten = \"\"", fmt.Sprintf("[metrics]\nlisten = %q", addr), 1))
	cmd := childCmd(t, cfgPath)
	logs := &syncBuf{}
	cmd.Stdout, cmd.Stderr = io.Discard, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}) // closed when the child has exited; waitErr then holds why
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill() // only the child this test started
			<-done
		}
	})
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// The node has no seeds: ready once its first pass ran.
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := get("/readyz")
		if code == http.StatusOK && body == "ready\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %d %q after 15 s; log:\n%s", code, body, logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the endpoint
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	code, body := get("/metrics")
	// The fast profile (the default) runs the heartbeat: its series are
	// there, and a lone node watches nobody.
	for _, want := range []string{"\nhostlb_ready 1\n", `hostlb_build_info{`, `hostlb_ips{mode="l2"} 1`, "\ngo_goroutines ",
		`hostlb_heartbeat_watched{state="pending"} 0`} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q", code, want)
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("exit after SIGINT: %v\n%s", waitErr, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("hostlbd did not exit within 15 s of SIGINT")
	}
	if code, _ := get("/healthz"); code != 0 {
		t.Errorf("/healthz still answers %d after the exit", code)
	}
}

// syncBuf is a log the child writes while the test may read it.
type syncBuf struct {
	mu sync.Mutex // guards b
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// stubHeartbeat is a daemon.Heartbeat without counters.
type stubHeartbeat struct{}

func (stubHeartbeat) Run(context.Context) error            { return nil }
func (stubHeartbeat) SetTargets(map[string]netip.AddrPort) {}
func (stubHeartbeat) SetWatched(map[string]netip.AddrPort) {}
func (stubHeartbeat) SetKeys([][]byte) error               { return nil }

// The metrics read the Heart only when there is one: not from a nil
// interface (lan and wan), a nil *heartbeat.Heart in one, or a Heartbeat
// without counters.
func TestHeartbeatSource(t *testing.T) {
	h, err := heartbeat.New(heartbeat.Config{Node: "n1", Bind: netip.MustParseAddrPort("127.0.0.1:7948"), InsecurePlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	var typedNil *heartbeat.Heart
	for _, c := range []struct {
		name string
		hb   daemon.Heartbeat
		want bool
	}{
		{"nil", nil, false},
		{"typed nil", typedNil, false},
		{"no counters", stubHeartbeat{}, false},
		{"heart", h, true},
	} {
		got := heartbeatSource(c.hb)
		if (got != nil) != c.want {
			t.Errorf("%s: source %v, want one: %v", c.name, got, c.want)
		}
	}
	if got := heartbeatSource(h); got != nil && got.Stats().Rejected == nil {
		t.Error("the Heart's stats have no Rejected map")
	}
}
