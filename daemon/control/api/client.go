package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// DefaultTimeout bounds one request of a Client.
const DefaultTimeout = 10 * time.Second

// maxResponse bounds a response body: 10,000 VIPs with three members take
// about 3 MiB.
const maxResponse = 256 << 20

// Client talks to hostlbd's control socket. Its methods block until the
// daemon answered, ctx is done or Timeout passed.
type Client struct {
	socket string
	// Timeout bounds each request; default DefaultTimeout.
	Timeout time.Duration
	hc      *http.Client
}

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client {
	c := &Client{socket: path, Timeout: DefaultTimeout}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, &UnreachableError{Socket: path, Err: err}
			}
			return conn, nil
		},
		DisableKeepAlives: true,
	}}
	return c
}

// Socket is the path the client dials.
func (c *Client) Socket() string { return c.socket }

// Get reads path into v (which may be nil) and returns the body as sent.
func (c *Client) Get(ctx context.Context, path string, v any) ([]byte, error) {
	return c.do(ctx, http.MethodGet, path, v)
}

// Post asks for the action at path (with no body) and decodes the answer
// into v (which may be nil); it returns the body as sent.
func (c *Client) Post(ctx context.Context, path string, v any) ([]byte, error) {
	return c.do(ctx, http.MethodPost, path, v)
}

func (c *Client) do(ctx context.Context, method, path string, v any) ([]byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The host is a placeholder: the transport dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://hostlbd"+path, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *UnreachableError
		switch {
		case errors.As(err, &ue):
			return nil, ue
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
			return nil, &UnreachableError{Socket: c.socket, Err: fmt.Errorf("no answer within %v: %w", timeout, os.ErrDeadlineExceeded)}
		}
		return nil, &UnreachableError{Socket: c.socket, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, &UnreachableError{Socket: c.socket, Err: fmt.Errorf("read the answer to %s %s: %w", method, path, err)}
	}
	var h struct {
		Version *int   `json:"version"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(body, &h); err != nil || h.Version == nil {
		return nil, fmt.Errorf("%s %s: the answer (HTTP %d) is not hostlbd's JSON: %q", method, path, resp.StatusCode, truncate(body))
	}
	if *h.Version != Version {
		return nil, &VersionError{Got: *h.Version}
	}
	if resp.StatusCode/100 != 2 {
		msg := h.Error
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return body, &StatusError{Status: resp.StatusCode, Message: msg}
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return nil, fmt.Errorf("%s %s: decode the answer: %w", method, path, err)
		}
	}
	return body, nil
}

func truncate(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// UnreachableError is a control socket the client could not talk to:
// nothing listens, the caller may not connect, or the daemon does not
// answer. hostlbctl exits with status 3 on it.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach hostlbd at %s: %s", e.Socket, e.Cause())
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Cause says why, and what to do, in an operator's words.
func (e *UnreachableError) Cause() string {
	switch {
	case errors.Is(e.Err, syscall.ENOENT):
		return "no such file: hostlbd is not running on this node, or listens elsewhere " +
			"(its [control] socket; pass that path with -s). Try: systemctl status hostlb"
	case errors.Is(e.Err, syscall.EACCES), errors.Is(e.Err, syscall.EPERM):
		return "permission denied: add yourself to the " + AdminGroup + " group " +
			"(usermod -aG " + AdminGroup + " $USER, then log in again), or run as root"
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		return "connection refused: hostlbd is not running (the socket file was left by a previous run). " +
			"Try: systemctl status hostlb"
	case errors.Is(e.Err, syscall.ENOTSOCK), errors.Is(e.Err, syscall.ENOTDIR):
		return "not a socket: " + e.Err.Error()
	case errors.Is(e.Err, os.ErrDeadlineExceeded):
		return "hostlbd did not answer: " + e.Err.Error() + "; it may be stuck (systemctl status hostlb)"
	}
	return e.Err.Error()
}

// StatusError is an error the daemon answered with.
type StatusError struct {
	Status  int // HTTP status
	Message string
}

func (e *StatusError) Error() string { return e.Message }

// VersionError is a daemon that speaks another schema version.
type VersionError struct{ Got int }

func (e *VersionError) Error() string {
	return fmt.Sprintf("hostlbd answered with control API version %d; this client speaks version %d (install matching hostlb packages)", e.Got, Version)
}
