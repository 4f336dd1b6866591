package kubeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// pollInterval is how often the waits below ask again.
const pollInterval = 100 * time.Millisecond

// permanentError marks an error that ends a poll at once (a process exited).
type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

// poll calls check until it returns nil, a permanent error, or timeout or
// ctx ends; the error then quotes check's last answer.
func poll(ctx context.Context, timeout time.Duration, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		if p := (permanentError{}); errors.As(err, &p) {
			return p.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w; last: %w", what, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// get fetches url with a per-request bound and returns the status and body.
func get(ctx context.Context, client *http.Client, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body), err
}

// waitEtcd waits until etcd's /health says true.
func (c *Cluster) waitEtcd(ctx context.Context, p *process) error {
	client := &http.Client{Transport: &http.Transport{DialContext: c.dial()}}
	defer client.CloseIdleConnections()
	url := "http://" + c.etcdClientAddr.String() + "/health"
	return poll(ctx, ReadyTimeout, "wait for etcd", func(ctx context.Context) error {
		if p.exited() {
			return permanentError{p.exitErr()}
		}
		code, body, err := get(ctx, client, url)
		if err != nil {
			return err
		}
		var h struct {
			Health string `json:"health"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &h) != nil || h.Health != "true" {
			return fmt.Errorf("GET /health: %d %s", code, body)
		}
		return nil
	})
}

// waitReady waits until the apiserver's /readyz answers ok; on timeout
// the error carries the last answer and the end of the apiserver's log.
func (c *Cluster) waitReady(ctx context.Context, p *process) error {
	rt, err := rest.TransportFor(c.adminCfg)
	if err != nil {
		return fmt.Errorf("admin transport: %w", err)
	}
	client := &http.Client{Transport: rt}
	defer client.CloseIdleConnections()
	err = poll(ctx, ReadyTimeout, "wait for kube-apiserver /readyz", func(ctx context.Context) error {
		if p.exited() {
			return permanentError{p.exitErr()}
		}
		code, body, err := get(ctx, client, c.URL()+"/readyz?verbose")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET /readyz: %d\n%s", code, body)
		}
		return nil
	})
	if err != nil && !p.exited() {
		return fmt.Errorf("%w\nkube-apiserver log (%s), last lines:\n%s", err, p.logPath, tail(p.logPath, 30))
	}
	return err
}

// waitSystemNamespaces waits until the apiserver has created the namespaces
// it makes at start; /readyz can pass before, and NamespaceLifecycle
// rejects objects in a namespace that does not exist.
func (c *Cluster) waitSystemNamespaces(ctx context.Context) error {
	return poll(ctx, ReadyTimeout, "wait for the system namespaces", func(ctx context.Context) error {
		for _, ns := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem} {
			if _, err := c.admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
}
