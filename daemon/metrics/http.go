package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /metrics, /healthz and /readyz:
//
//   - /metrics: the registry in Prometheus' text format (OpenMetrics when
//     the scraper asks for it).
//   - /healthz: 200 "ok" while the process serves HTTP at all: the
//     liveness probe. A wedged reconcile loop is the systemd watchdog's
//     business, not this.
//   - /readyz: 200 "ready" once the node serves (the Kubernetes caches
//     synced, the gossip ring joined, the first full reconcile pass ran,
//     not draining); else 503 with one reason a line.
func (m *Metrics) Handler(log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slogPrinter{log},
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes are cheap but read the whole State: a handful at once
		// is plenty, more are refused (503) rather than queued.
		MaxRequestsInFlight: 4,
		EnableOpenMetrics:   true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		why := m.notReady()
		if len(why) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintln(w, "not ready: "+strings.Join(why, "\nnot ready: "))
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "hostlbd: /metrics /healthz /readyz")
	})
	return mux
}

// notReady says why the node is not ready, nil when it is.
func (m *Metrics) notReady() []string {
	src := m.col.src
	switch {
	case src.NotReady != nil:
		return src.NotReady()
	case src.State == nil:
		return []string{"starting"}
	case !src.State().FirstPass:
		return []string{"first reconcile pass not done yet"}
	}
	return nil
}

// slogPrinter is promhttp's error log.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.log.Warn("metrics: "+strings.TrimSpace(fmt.Sprintln(v...)), "component", "metrics")
}

// Serve serves Handler on ln until ctx is done, then shuts the server down
// (waiting up to a second for scrapes in flight) and returns nil; it
// closes ln. An error means ln failed.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           m.Handler(log),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", ln.Addr(), err)
	}
	return nil
}
