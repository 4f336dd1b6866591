package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/control/api"
)

// Source is what the server reads and asks of the daemon (*daemon.Daemon;
// a fake in tests).
type Source interface {
	// State returns the node's picture as of its last pass; it never
	// blocks on the network, and the caller owns the result.
	State() daemon.State
	// ReloadNow re-reads the configuration file, like SIGHUP, and returns
	// what changed or why the file was refused. It blocks while the
	// file (and the files it names) are read, and behind a reload in
	// progress.
	ReloadNow() (daemon.ReloadResult, error)
	// CheckReload reads the configuration file as a reload would and
	// applies nothing; it blocks while the files are read.
	CheckReload() (daemon.ReloadResult, error)
}

var _ Source = (*daemon.Daemon)(nil)

// Options configure a Server. Source and Log are required.
type Options struct {
	Source Source
	Log    *slog.Logger
	// Now is the clock responses carry; default time.Now (fixed in
	// golden tests).
	Now func() time.Time
	// Build is the daemon's build; default the version package's.
	Build *api.Build
}

// Server serves the control API (package api) on a listener. Its zero
// value is not usable; New is inert, Serve runs it.
type Server struct {
	opts  Options
	log   *slog.Logger
	sem   chan struct{} // bounds the requests served at once
	build api.Build

	nodeOnce sync.Once
	nodeName string // set once by nodeOnce
}

// maxConcurrent bounds the requests served at once: each holds a copy of
// the State and its JSON, which with 10,000 VIPs is a few MiB.
const maxConcurrent = 4

// New returns an inert server.
func New(opts Options) (*Server, error) {
	if opts.Source == nil || opts.Log == nil {
		return nil, errors.New("control: Source and Log are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := build()
	if opts.Build != nil {
		b = *opts.Build
	}
	return &Server{opts: opts, log: opts.Log, sem: make(chan struct{}, maxConcurrent), build: b}, nil
}

// Serve answers requests on ln until ctx is done, then stops within a
// second and closes ln (which removes a unix socket's file). It returns
// nil after ctx is done, or why serving failed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A reload reads the config and the files it names; a slow
		// reader of a big answer must not hold a goroutine forever.
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    30 * time.Second,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext:    withPeer,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve the control socket: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve the control socket: %w", err)
	}
	return nil
}

// peerKey is the context key of the connection's peer credentials.
type peerKey struct{}

// withPeer records the peer's credentials (SO_PEERCRED) of a unix
// connection, for the log of the requests that change something.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, *cred)
}

// peerArgs are the log attributes of the request's peer.
func peerArgs(r *http.Request) []any {
	if c, ok := r.Context().Value(peerKey{}).(unix.Ucred); ok {
		return []any{"uid", c.Uid, "pid", c.Pid}
	}
	return nil
}

// route is one endpoint.
type route struct {
	method string
	serve  func(w http.ResponseWriter, r *http.Request, st *daemon.State, now time.Time)
}

// Handler returns the API's handler; every answer, errors included, is
// JSON with the schema version.
func (s *Server) Handler() http.Handler {
	routes := map[string]route{
		api.PathStatus: {http.MethodGet, func(w http.ResponseWriter, _ *http.Request, st *daemon.State, now time.Time) {
			s.reply(w, http.StatusOK, toStatus(st, now, s.build))
		}},
		api.PathMembers: {http.MethodGet, func(w http.ResponseWriter, _ *http.Request, st *daemon.State, now time.Time) {
			s.reply(w, http.StatusOK, toMembers(st, now))
		}},
		api.PathVIPs: {http.MethodGet, func(w http.ResponseWriter, _ *http.Request, st *daemon.State, now time.Time) {
			s.reply(w, http.StatusOK, toVIPs(st, now))
		}},
		api.PathBGP: {http.MethodGet, func(w http.ResponseWriter, _ *http.Request, st *daemon.State, now time.Time) {
			s.reply(w, http.StatusOK, toBGP(st, now))
		}},
		api.PathConflicts: {http.MethodGet, func(w http.ResponseWriter, _ *http.Request, st *daemon.State, now time.Time) {
			s.reply(w, http.StatusOK, toConflicts(st, now))
		}},
		api.PathReload:      {http.MethodPost, s.reload},
		api.PathConfigCheck: {http.MethodPost, s.configCheck},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		s.serve(sw, r, routes)
		s.log.Debug("control request", append([]any{"method", r.Method, "path", r.URL.Path,
			"status", sw.status, "took", time.Since(start)}, peerArgs(r)...)...)
	})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, routes map[string]route) {
	path := r.URL.Path
	rt, ok := routes[path]
	var ip string
	if !ok {
		if rest, isVIP := strings.CutPrefix(path, api.PathVIPs+"/"); isVIP && rest != "" && !strings.Contains(rest, "/") {
			rt, ip, ok = route{method: http.MethodGet}, rest, true
		}
	}
	switch {
	case !ok && !strings.HasPrefix(path, "/v1/"):
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("no such endpoint %s: this hostlbd speaks control API version %d, under /v1/", path, api.Version))
		return
	case !ok:
		s.fail(w, r, http.StatusNotFound, fmt.Sprintf("no such endpoint %s (see GET %s, %s, %s, %s/{ip}, %s, %s; POST %s, %s)", path,
			api.PathStatus, api.PathMembers, api.PathVIPs, api.PathVIPs, api.PathBGP, api.PathConflicts, api.PathReload, api.PathConfigCheck))
		return
	case r.Method != rt.method:
		w.Header().Set("Allow", rt.method)
		s.fail(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes %s, not %s", path, rt.method, r.Method))
		return
	case r.URL.RawQuery != "":
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("%s takes no query parameters (got %q)", path, r.URL.RawQuery))
		return
	}
	// No endpoint takes a body; one byte is enough to tell.
	if n, _ := io.ReadFull(io.LimitReader(r.Body, 1), make([]byte, 1)); n > 0 {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("%s %s takes no request body", r.Method, path))
		return
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-r.Context().Done():
		return
	}
	st := s.opts.Source.State()
	now := s.opts.Now()
	if ip != "" {
		s.whoOwns(w, r, &st, now, ip)
		return
	}
	rt.serve(w, r, &st, now)
}

func (s *Server) whoOwns(w http.ResponseWriter, r *http.Request, st *daemon.State, now time.Time, text string) {
	a, err := netip.ParseAddr(text)
	if err != nil || a.Zone() != "" {
		s.failState(w, r, st, now, http.StatusBadRequest, fmt.Sprintf("%q is not an IP address", text))
		return
	}
	a = a.Unmap()
	out, ok := toWhoOwns(st, now, a)
	if !ok {
		s.failState(w, r, st, now, http.StatusNotFound, fmt.Sprintf("%s is not an IP hostlb serves: no [[vip]] and no Service has it, as node %s sees the cluster", a, st.Node))
		return
	}
	s.reply(w, http.StatusOK, out)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request, _ *daemon.State, _ time.Time) {
	s.log.Info("reload requested over the control socket", peerArgs(r)...)
	res, err := s.opts.Source.ReloadNow()
	st := s.opts.Source.State()
	now := s.opts.Now()
	if err != nil {
		status := http.StatusUnprocessableEntity
		if errors.Is(err, daemon.ErrNoConfigFile) {
			status = http.StatusConflict
		}
		s.failState(w, r, &st, now, status, "reload failed; hostlbd keeps running the previous configuration:\n"+err.Error())
		return
	}
	s.reply(w, http.StatusOK, api.Reload{Header: header(&st, now), Changed: list(res.Changed), NeedsRestart: list(res.NeedsRestart)})
}

func (s *Server) configCheck(w http.ResponseWriter, r *http.Request, st *daemon.State, now time.Time) {
	res, err := s.opts.Source.CheckReload()
	out := api.ConfigCheck{Header: header(st, now), Valid: err == nil, Errors: []string{},
		Changed: list(res.Changed), NeedsRestart: list(res.NeedsRestart)}
	switch {
	case errors.Is(err, daemon.ErrNoConfigFile):
		s.failState(w, r, st, now, http.StatusConflict, err.Error())
		return
	case err != nil:
		out.Errors = problems(err)
		out.Changed, out.NeedsRestart = []string{}, []string{}
	}
	s.reply(w, http.StatusOK, out)
}

// problems lists the problems of a config error one by one.
func problems(err error) []string {
	var out []string
	var m interface{ Unwrap() []error }
	if errors.As(err, &m) {
		for _, e := range m.Unwrap() {
			out = append(out, e.Error())
		}
	}
	if len(out) == 0 {
		out = strings.Split(err.Error(), "\n")
	}
	return out
}

// reply writes v as JSON with status.
func (s *Server) reply(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only unsupported types fail; the API has none.
		s.log.Error("control: encode an answer", "err", err)
		status, b = http.StatusInternalServerError, []byte(`{"version":1,"error":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// fail answers with an Error; it reads the State only for its node name.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	st := daemon.State{Node: s.node()}
	s.failState(w, r, &st, s.opts.Now(), status, msg)
}

func (s *Server) failState(w http.ResponseWriter, r *http.Request, st *daemon.State, now time.Time, status int, msg string) {
	if status >= 500 || status == http.StatusUnprocessableEntity {
		s.log.Warn("control request failed", append([]any{"method", r.Method, "path", r.URL.Path, "status", status, "err", msg}, peerArgs(r)...)...)
	}
	s.reply(w, status, api.Error{Header: header(st, now), Error: msg})
}

// node is the daemon's node name, for errors that need no other state:
// read once, as [node] name needs a restart to change, so that bad
// requests cost no State.
func (s *Server) node() string {
	s.nodeOnce.Do(func() { s.nodeName = s.opts.Source.State().Node })
	return s.nodeName
}

// statusWriter remembers the status written, for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}
