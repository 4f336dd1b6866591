package kubeapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// This file is the harness's side of [Options].Netns: the control plane's
// processes run inside a network namespace the caller made, and every
// socket the harness opens towards them (clients, readiness polls, port
// picks) is created inside it too. The namespace of a socket is fixed when
// the socket is created, so a connection dialled there stays there, on
// whichever thread it is used later.

// netnsCommand returns the argv that runs bin with args: unchanged without
// Netns, else under `ip netns exec`, which execs bin (iproute2 forks only
// in batch mode), so the PID the harness stops is bin's own.
func (c *Cluster) netnsCommand(bin string, args []string) (string, []string) {
	if c.opts.Netns == "" {
		return bin, args
	}
	return "ip", append([]string{"netns", "exec", c.opts.Netns, bin}, args...)
}

// DialContext opens a connection from inside the cluster's network
// namespace ([Options].Netns; without one, from the caller's), for clients
// a test builds itself: rest.Config.Dial or http.Transport.DialContext.
// It blocks until the connection is made or fails; the caller owns the
// connection.
func (c *Cluster) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	// FallbackDelay < 0: no Happy Eyeballs racers, which would dial on
	// goroutines (and threads) outside the namespace; the dial runs on the
	// calling goroutine.
	d := &net.Dialer{FallbackDelay: -1}
	var conn net.Conn
	err := c.inNetns(func() error {
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// dial is what rest.Config.Dial and http.Transport.DialContext get: nil
// without Netns, so that the clients are built exactly as before.
func (c *Cluster) dial() func(ctx context.Context, network, address string) (net.Conn, error) {
	if c.opts.Netns == "" {
		return nil
	}
	return c.DialContext
}

// inNetns runs fn inside the cluster's network namespace and waits for it;
// without Netns it just calls fn. fn runs on a fresh goroutine locked to
// its OS thread, switched there with setns(2) and back after: goroutines
// that fn starts are not in the namespace, the sockets fn creates are.
func (c *Cluster) inNetns(fn func() error) error {
	name := c.opts.Netns
	if name == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		// A fresh goroutine, so no caller's thread lock is disturbed.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("kubeapi: get current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("kubeapi: open netns %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("kubeapi: enter netns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the runtime then ends this thread with the
			// goroutine instead of reusing it in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("kubeapi: return from netns %s: %w", name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// freePorts is the package's freePorts, run inside the namespace, where
// the processes will listen.
func (c *Cluster) freePorts(n int) ([]int, error) {
	var ports []int
	err := c.inNetns(func() error {
		var err error
		ports, err = freePorts(c.opts.Bind, n)
		return err
	})
	return ports, err
}
