package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
)

// healthChecks runs the TCP health checks of static VIPs (`health = { tcp,
// interval, timeout }`) and gates their announcement.
//
// A VIP with a check starts unhealthy and is announced only after its first
// successful connect: announcing a VIP whose service is not up yet attracts
// traffic that would be refused, and a node that starts up (or reloads a
// changed check) should not steal a VIP from a healthy peer before it knows
// it can serve it. One result decides each state (no rise/fall counts): the
// first check runs at once, then every interval, each connect bounded by
// the timeout. Every change of state (including the first result) calls
// trigger, so the reconcile loop re-computes what to announce.
//
// Checkers are goroutines owned by healthChecks: Update starts and stops
// them to match the configuration, Close stops them all and waits.
type healthChecks struct {
	log     *slog.Logger
	trigger func(reason string)
	dial    func(ctx context.Context, addr string) error

	ctx    context.Context // cancelled by Close; parent of every checker
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // guards checks and closed
	checks map[string]*healthCheck
	closed bool
}

// healthCheck is one VIP's checker.
type healthCheck struct {
	spec   config.Health
	cancel context.CancelFunc

	mu      sync.Mutex // guards state
	state   healthState
	lastErr error
}

type healthState int

const (
	healthUnknown healthState = iota // no result yet: treated as unhealthy
	healthUp
	healthDown
)

func newHealthChecks(log *slog.Logger, trigger func(string)) *healthChecks {
	ctx, cancel := context.WithCancel(context.Background())
	return &healthChecks{
		log: log, trigger: trigger, dial: dialTCP,
		ctx: ctx, cancel: cancel, checks: map[string]*healthCheck{},
	}
}

func dialTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// Update starts a checker for every VIP with a health check that has none
// (or whose check changed: it starts over, unhealthy), and stops those of
// VIPs that are gone or lost their check. It does not block on the network.
func (h *healthChecks) Update(vips []config.VIP) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	want := map[string]config.Health{}
	for _, v := range vips {
		if v.Health != nil {
			want[v.Name] = *v.Health
		}
	}
	for name, c := range h.checks {
		if spec, ok := want[name]; !ok || spec != c.spec {
			c.cancel()
			delete(h.checks, name)
		}
	}
	for name, spec := range want {
		if _, ok := h.checks[name]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(h.ctx)
		c := &healthCheck{spec: spec, cancel: cancel}
		h.checks[name] = c
		h.log.Info("health check started", "vip", name, "tcp", spec.TCP,
			"interval", spec.Interval, "timeout", spec.Timeout)
		h.wg.Add(1)
		go h.run(ctx, name, c)
	}
}

// Healthy reports whether v may be announced: it has no health check, or
// its check's last result was a success. It never blocks on the network.
func (h *healthChecks) Healthy(v config.VIP) bool {
	if v.Health == nil {
		return true
	}
	h.mu.Lock()
	c, ok := h.checks[v.Name]
	h.mu.Unlock()
	if !ok || c.spec != *v.Health {
		return false // not started yet, or about to start over
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == healthUp
}

func (h *healthChecks) run(ctx context.Context, name string, c *healthCheck) {
	defer h.wg.Done()
	t := time.NewTicker(c.spec.Interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, c.spec.Timeout)
		err := h.dial(cctx, c.spec.TCP)
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.record(name, c, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// record stores one result and triggers a reconcile when the state changed.
func (h *healthChecks) record(name string, c *healthCheck, err error) {
	next := healthUp
	if err != nil {
		next = healthDown
	}
	c.mu.Lock()
	prev := c.state
	c.state, c.lastErr = next, err
	c.mu.Unlock()
	if prev == next {
		return
	}
	if next == healthUp {
		h.log.Info("health check passing", "vip", name, "tcp", c.spec.TCP)
	} else {
		h.log.Warn("health check failing; not announcing", "vip", name, "tcp", c.spec.TCP, "err", err)
	}
	h.trigger(fmt.Sprintf("health %s", name))
}

// Run blocks until ctx is done, then stops every checker: the component
// form of Close.
func (h *healthChecks) Run(ctx context.Context) error {
	<-ctx.Done()
	h.Close()
	return nil
}

// Close stops every checker and waits for them. It is idempotent.
func (h *healthChecks) Close() {
	h.mu.Lock()
	h.closed = true
	h.cancel()
	clear(h.checks)
	h.mu.Unlock()
	h.wg.Wait()
}
