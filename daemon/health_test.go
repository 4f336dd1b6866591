package daemon

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
)

// listenLocal opens a TCP listener on 127.0.0.1 that accepts and closes
// connections until the test ends or closeIt is called.
func listenLocal(t *testing.T, addr string) (ln net.Listener, closeIt func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	closed := false
	closeIt = func() {
		if !closed {
			closed = true
			_ = ln.Close()
			<-done
		}
	}
	t.Cleanup(closeIt)
	return ln, closeIt
}

// freePort returns a 127.0.0.1 address nobody listens on (it was free a
// moment ago; the kernel does not hand the port out again at once).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func healthVIP(name, tcp string) config.VIP {
	return config.VIP{Name: name, Mode: "l2", Health: &config.Health{
		TCP: tcp, Interval: 10 * time.Millisecond, Timeout: 200 * time.Millisecond,
	}}
}

// waitHealth polls until h reports v's health as want.
func waitHealth(t *testing.T, h *healthChecks, v config.VIP, want bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Healthy(v) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s healthy = %v, want %v", v.Name, !want, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHealthChecksFollowTCP(t *testing.T) {
	triggers := make(chan string, 100)
	h := newHealthChecks(slog.New(slog.DiscardHandler), func(r string) {
		select {
		case triggers <- r:
		default:
		}
	})
	defer h.Close()

	ln, closeLn := listenLocal(t, "127.0.0.1:0")
	up := healthVIP("up", ln.Addr().String())
	down := healthVIP("down", freePort(t))
	plain := config.VIP{Name: "plain", Mode: "l2"}

	// Before any result, a checked VIP is unhealthy; one without a check
	// is always healthy.
	if h.Healthy(up) || !h.Healthy(plain) {
		t.Errorf("before Update: up %v, plain %v", h.Healthy(up), h.Healthy(plain))
	}
	h.Update([]config.VIP{up, down, plain})
	waitHealth(t, h, up, true)
	select {
	case r := <-triggers:
		if r != "health up" && r != "health down" {
			t.Errorf("trigger reason %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no trigger after the first result")
	}
	if h.Healthy(down) {
		t.Error("a VIP whose port is closed is healthy")
	}

	// The service goes away: unhealthy.
	closeLn()
	waitHealth(t, h, up, false)

	// A changed check starts over; a removed one is forgotten.
	ln2, _ := listenLocal(t, "127.0.0.1:0")
	moved := healthVIP("up", ln2.Addr().String())
	if h.Healthy(moved) {
		t.Error("a changed check is healthy before its first result")
	}
	h.Update([]config.VIP{moved})
	waitHealth(t, h, moved, true)
	if h.Healthy(down) {
		t.Error("a removed check is healthy")
	}
}

func TestHealthCloseIsIdempotentAndFinal(t *testing.T) {
	h := newHealthChecks(slog.New(slog.DiscardHandler), func(string) {})
	h.Update([]config.VIP{healthVIP("a", freePort(t))})
	h.Close()
	h.Close()
	h.Update([]config.VIP{healthVIP("b", freePort(t))}) // no checker may start now
	h.mu.Lock()
	n := len(h.checks)
	h.mu.Unlock()
	if n != 0 {
		t.Errorf("%d checks after Close", n)
	}
}
