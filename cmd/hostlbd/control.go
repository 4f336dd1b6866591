package main

import (
	"context"
	"log/slog"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/control"
)

// controlSocket creates the control socket ([control] socket; none when it
// is "") and returns the component that serves it; the socket is removed
// when the component stops. d is the daemon the server reads, set before
// the daemon runs its components.
func controlSocket(cfg *config.Config, log *slog.Logger, d **daemon.Daemon) ([]daemon.Component, error) {
	if cfg.Control.Socket == "" {
		log.Info("control socket off ([control] socket = \"\"): hostlbctl cannot reach this daemon")
		return nil, nil
	}
	log = log.With("component", "control")
	ln, err := control.Listen(cfg.Control.Socket, log, control.ListenOptions{})
	if err != nil {
		return nil, err
	}
	srv, err := control.New(control.Options{Source: lazySource{d}, Log: log})
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	return []daemon.Component{daemon.ComponentFunc{N: "control", F: func(ctx context.Context) error {
		return srv.Serve(ctx, ln)
	}}}, nil
}

// lazySource is the daemon once daemon.New has returned; the server only
// reads it while the daemon runs.
type lazySource struct{ d **daemon.Daemon }

func (s lazySource) State() daemon.State                       { return (*s.d).State() }
func (s lazySource) ReloadNow() (daemon.ReloadResult, error)   { return (*s.d).ReloadNow() }
func (s lazySource) CheckReload() (daemon.ReloadResult, error) { return (*s.d).CheckReload() }
