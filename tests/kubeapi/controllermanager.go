package kubeapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultControllers are what StartControllerManager runs when given none:
// EndpointSlices for Services with selectors (and mirrored from Endpoints),
// and tokens for ServiceAccount token Secrets.
var DefaultControllers = []string{"endpointslice", "endpointslicemirroring", "serviceaccount-token"}

// StartControllerManager runs kube-controller-manager against the cluster,
// as the admin, with only the given controllers (names or aliases as its
// --controllers flag takes them; none: DefaultControllers), and waits until
// its /healthz, which covers each controller, answers ok. No leader
// election, no per-controller ServiceAccounts. Stop ends it.
func (c *Cluster) StartControllerManager(ctx context.Context, controllers ...string) error {
	t0 := time.Now()
	if len(controllers) == 0 {
		controllers = DefaultControllers
	}
	ports, err := c.freePorts(1)
	if err != nil {
		return fmt.Errorf("kubeapi: %w", err)
	}
	addr := netip.AddrPortFrom(c.opts.Bind, uint16(ports[0]))
	args := []string{
		"--kubeconfig=" + c.kubeconfig,
		// Its own serving authenticates and authorises through the
		// apiserver, like kubeadm's; /healthz is open to anyone.
		"--authentication-kubeconfig=" + c.kubeconfig,
		"--authorization-kubeconfig=" + c.kubeconfig,
		"--controllers=" + strings.Join(controllers, ","),
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		// A port rather than --secure-port=0 (allowed): /healthz is the
		// only readiness signal kube-controller-manager gives.
		"--bind-address=" + c.opts.Bind.String(),
		"--secure-port=" + strconv.Itoa(int(addr.Port())),
		"--tls-cert-file=" + c.pki.serverCert,
		"--tls-private-key-file=" + c.pki.serverKey,
		"--cert-dir=" + filepath.Join(c.dir, "pki"),
		"--service-account-private-key-file=" + c.pki.saKey,
		"--root-ca-file=" + c.pki.caCert,
		"--profiling=false",
	}
	args = append(args, c.opts.ControllerManagerArgs...)

	c.mu.Lock()
	switch {
	case c.stopped:
		c.mu.Unlock()
		return errors.New("kubeapi: StartControllerManager after Stop")
	case c.apiserver == nil:
		c.mu.Unlock()
		return errors.New("kubeapi: StartControllerManager needs a running kube-apiserver")
	case c.kcm != nil:
		c.mu.Unlock()
		return errors.New("kubeapi: kube-controller-manager is already running")
	}
	p, err := c.startLocked(binControllerManager, args)
	c.kcm = p
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("kubeapi: %w", err)
	}

	// It serves with the apiserver's certificate, whose SANs include Bind.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c.pki.caPEM)
	client := &http.Client{Transport: &http.Transport{
		DialContext:     c.dial(),
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}
	defer client.CloseIdleConnections()
	url := "https://" + addr.String() + "/healthz"
	err = poll(ctx, ReadyTimeout, "wait for kube-controller-manager /healthz", func(ctx context.Context) error {
		if p.exited() {
			return permanentError{p.exitErr()}
		}
		code, body, err := get(ctx, client, url)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET /healthz: %d %s", code, body)
		}
		return nil
	})
	if err != nil {
		if !p.exited() {
			err = fmt.Errorf("%w\nkube-controller-manager log (%s), last lines:\n%s", err, p.logPath, tail(p.logPath, 30))
		}
		return fmt.Errorf("kubeapi: %w", err)
	}
	c.logf("kube-controller-manager healthy on %s (pid %d) after %v, controllers %s",
		addr, p.pid(), time.Since(t0).Round(time.Millisecond), strings.Join(controllers, ","))
	return nil
}
