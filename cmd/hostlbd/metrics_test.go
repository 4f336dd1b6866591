package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
	for _, want := range []string{"\nhostlb_ready 1\n", `hostlb_build_info{`, `hostlb_ips{mode="l2"} 1`, "\ngo_goroutines "} {
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
