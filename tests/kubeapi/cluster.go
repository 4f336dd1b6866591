package kubeapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// DefaultServiceCIDRs is dual-stack so that tests can make IPv6 Services;
// both are documentation ranges (RFC 5737, RFC 3849). ClusterIPs are only
// numbers here: nothing routes or answers them.
const DefaultServiceCIDRs = "198.51.100.0/24,2001:db8:5::/108"

// ReadyTimeout bounds how long Start and StartAPIServer wait for the
// apiserver's /readyz (and Start for the manifests to be served).
const ReadyTimeout = 90 * time.Second

// Options configures a [Cluster]. The zero value is a usable default.
type Options struct {
	// Dir holds the PKI, kubeconfig, etcd's data and the process logs.
	// Empty: a new temporary directory, removed by Stop. A given Dir is
	// created if needed and kept.
	Dir string
	// Bind is the address every process listens on; default 127.0.0.1.
	Bind netip.Addr
	// Netns names a network namespace (under /run/netns) that the caller
	// created and that outlives the cluster: the processes run inside it
	// (`ip netns exec`), and every client and poll of the harness dials
	// from inside it (see DialContext). Bind must then be an address of
	// that namespace, assigned before New. Empty: the caller's namespace.
	Netns string
	// Port is kube-apiserver's secure port; 0 picks a free one in New, so
	// URL is known before Start.
	Port int
	// ServiceCIDRs is --service-cluster-ip-range; default
	// DefaultServiceCIDRs.
	ServiceCIDRs string
	// Log receives one line per step of the harness (process started,
	// ready, stopped), not the processes' own output; nil discards.
	Log io.Writer
	// ApplyManifests has Start apply hostlb's manifests
	// (packaging/manifests) and wait until their CRDs are served.
	ApplyManifests bool
	// AuditLog turns on kube-apiserver's audit log of hostlbd's requests
	// (AuditUser's, level Metadata) at AuditLogPath; see audit.go.
	AuditLog bool
	// ControllerManagerArgs are further flags of kube-controller-manager
	// (e.g. --kube-api-qps).
	ControllerManagerArgs []string
}

// Cluster is etcd plus kube-apiserver (plus, on request,
// kube-controller-manager) run as child processes. New prepares, Start
// runs, Stop ends and cleans up. Methods are safe for concurrent use.
type Cluster struct {
	opts           Options
	dir            string
	ownDir         bool // Stop removes dir
	bins           string
	pki            *pki
	serviceCIDRs   []netip.Prefix
	apiAddr        netip.AddrPort
	etcdClientAddr netip.AddrPort
	etcdPeerAddr   netip.AddrPort
	kubeconfig     string
	adminCfg       *rest.Config
	admin          kubernetes.Interface
	dynamic        dynamic.Interface

	mu        sync.Mutex // guards the fields below
	etcd      *process
	apiserver *process
	kcm       *process
	started   []*process // every process ever started, for PIDs
	stopped   bool
}

// New prepares a cluster without starting anything: it locates the
// binaries, picks the ports, writes the PKI and the admin kubeconfig into
// the directory, and builds the admin clients (which connect lazily).
func New(opts Options) (_ *Cluster, err error) {
	if !opts.Bind.IsValid() {
		opts.Bind = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if opts.ServiceCIDRs == "" {
		opts.ServiceCIDRs = DefaultServiceCIDRs
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	c := &Cluster{opts: opts}
	for s := range strings.SplitSeq(opts.ServiceCIDRs, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("kubeapi: service CIDRs %q: %w", opts.ServiceCIDRs, err)
		}
		c.serviceCIDRs = append(c.serviceCIDRs, p.Masked())
	}
	if c.bins, err = Bins(); err != nil {
		return nil, fmt.Errorf("kubeapi: %w", err)
	}

	if opts.Dir == "" {
		if c.dir, err = os.MkdirTemp("", "hostlb-kubeapi-"); err != nil {
			return nil, fmt.Errorf("kubeapi: create directory: %w", err)
		}
		c.ownDir = true
		defer func() {
			if err != nil {
				os.RemoveAll(c.dir)
			}
		}()
	} else {
		c.dir = opts.Dir
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return nil, fmt.Errorf("kubeapi: create directory: %w", err)
		}
	}

	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("kubeapi: port %d out of range", opts.Port)
	}
	ports, err := c.freePorts(3)
	if err != nil {
		return nil, fmt.Errorf("kubeapi: %w", err)
	}
	if opts.Port != 0 {
		ports = slices.DeleteFunc(ports, func(p int) bool { return p == opts.Port })
		ports = append([]int{opts.Port}, ports...)
	}
	c.apiAddr = netip.AddrPortFrom(opts.Bind, uint16(ports[0]))
	c.etcdClientAddr = netip.AddrPortFrom(opts.Bind, uint16(ports[1]))
	c.etcdPeerAddr = netip.AddrPortFrom(opts.Bind, uint16(ports[2]))

	var kubeSvcIPs []netip.Addr
	for _, p := range c.serviceCIDRs {
		// The in-cluster `kubernetes` Service takes the first address.
		kubeSvcIPs = append(kubeSvcIPs, p.Addr().Next())
	}
	if c.pki, err = newPKI(filepath.Join(c.dir, "pki"), opts.Bind, kubeSvcIPs); err != nil {
		return nil, fmt.Errorf("kubeapi: PKI: %w", err)
	}

	c.adminCfg = &rest.Config{
		Host: c.URL(),
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caPEM,
			CertData: c.pki.adminCertPEM,
			KeyData:  c.pki.adminKeyPEM,
		},
		Dial: c.dial(), // nil without Netns
		// Tests create hundreds of objects in a burst; client-side
		// throttling would measure client-go, not hostlb.
		QPS:   1000,
		Burst: 2000,
	}
	c.kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	if err := WriteKubeconfig(c.kubeconfig, c.adminCfg); err != nil {
		return nil, fmt.Errorf("kubeapi: %w", err)
	}
	if c.admin, err = kubernetes.NewForConfig(c.adminCfg); err != nil {
		return nil, fmt.Errorf("kubeapi: admin client: %w", err)
	}
	if c.dynamic, err = dynamic.NewForConfig(c.adminCfg); err != nil {
		return nil, fmt.Errorf("kubeapi: dynamic client: %w", err)
	}
	return c, nil
}

// freePorts returns n distinct ports free on addr now. They are held open
// together so that they differ; another process may take one before it is
// used, which on a test machine's loopback is rare enough.
func freePorts(addr netip.Addr, n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		if err != nil {
			return nil, fmt.Errorf("pick a free port on %s: %w", addr, err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Start runs etcd and kube-apiserver, waits until the apiserver is ready
// and its system namespaces exist, and, with ApplyManifests, applies
// hostlb's manifests and waits until their CRDs are served. Each wait is
// bounded by ReadyTimeout and ctx. On error, what was started keeps running
// until Stop, so the caller can read its logs.
func (c *Cluster) Start(ctx context.Context) error {
	t0 := time.Now()
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return errors.New("kubeapi: Start after Stop")
	}
	if c.etcd != nil {
		c.mu.Unlock()
		return errors.New("kubeapi: already started")
	}
	etcd, err := c.startLocked(binEtcd, c.etcdArgs())
	c.etcd = etcd
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("kubeapi: %w", err)
	}
	if err := c.waitEtcd(ctx, etcd); err != nil {
		return fmt.Errorf("kubeapi: %w", err)
	}
	c.logf("etcd ready on %s (pid %d) after %v", c.etcdClientAddr, etcd.pid(), time.Since(t0).Round(time.Millisecond))

	if err := c.StartAPIServer(ctx); err != nil {
		return err
	}
	if err := c.waitSystemNamespaces(ctx); err != nil {
		return fmt.Errorf("kubeapi: %w", err)
	}
	if c.opts.ApplyManifests {
		t1 := time.Now()
		if err := c.applyManifests(ctx); err != nil {
			return fmt.Errorf("kubeapi: apply manifests: %w", err)
		}
		c.logf("manifests applied and served after %v", time.Since(t1).Round(time.Millisecond))
	}
	c.logf("cluster ready at %s after %v", c.URL(), time.Since(t0).Round(time.Millisecond))
	return nil
}

// startLocked starts one of the binaries, logging into <dir>/<bin>.log.
// c.mu must be held.
func (c *Cluster) startLocked(bin string, args []string) (*process, error) {
	path, args := c.netnsCommand(filepath.Join(c.bins, bin), args)
	p, err := startProcess(bin, path, c.logPath(bin), args)
	if err != nil {
		return nil, err
	}
	c.started = append(c.started, p)
	c.logf("started %s (pid %d), log %s", bin, p.pid(), p.logPath)
	return p, nil
}

func (c *Cluster) logPath(bin string) string { return filepath.Join(c.dir, bin+".log") }

func (c *Cluster) etcdArgs() []string {
	client := "http://" + c.etcdClientAddr.String()
	peer := "http://" + c.etcdPeerAddr.String()
	return []string{
		"--name=hostlb-test",
		"--data-dir=" + filepath.Join(c.dir, "etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=hostlb-test=" + peer,
		// Test data need not survive a power cut; fsync dominates a
		// 1,000-Service burst otherwise.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}
}

// apiserverArgs are kube-apiserver's flags, the same on every start.
func (c *Cluster) apiserverArgs() []string {
	const issuer = "https://kubernetes.default.svc"
	cidrs := make([]string, len(c.serviceCIDRs))
	for i, p := range c.serviceCIDRs {
		cidrs[i] = p.String()
	}
	args := []string{
		"--etcd-servers=http://" + c.etcdClientAddr.String(),
		"--bind-address=" + c.opts.Bind.String(),
		"--advertise-address=" + c.opts.Bind.String(),
		// The reconciler of the `kubernetes` Service's endpoints refuses a
		// loopback advertise address, and nothing here uses them.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(int(c.apiAddr.Port())),
		"--tls-cert-file=" + c.pki.serverCert,
		"--tls-private-key-file=" + c.pki.serverKey,
		"--client-ca-file=" + c.pki.caCert,
		// Its default, /var/run/kubernetes, is outside the test's directory.
		"--cert-dir=" + filepath.Join(c.dir, "pki"),
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=" + issuer,
		"--api-audiences=" + issuer,
		"--service-account-key-file=" + c.pki.saPub,
		"--service-account-signing-key-file=" + c.pki.saKey,
		"--service-cluster-ip-range=" + strings.Join(cidrs, ","),
		"--service-node-port-range=20000-60000",
		"--allow-privileged=true",
		// Both are on by default in 1.37; named so that the choice is
		// visible. Nothing is disabled: no default plugin needs a controller
		// that is not running to admit Services, Leases or Events.
		"--enable-admission-plugins=NamespaceLifecycle,ServiceAccount",
		// With API Priority and Fairness on, these two are the total
		// concurrency it shares out; the defaults (400+200) queue a
		// 1,000-Service burst.
		"--max-requests-inflight=2000",
		"--max-mutating-requests-inflight=1000",
		"--event-ttl=15m",
		"--profiling=false",
	}
	// Options.AuditLog (audit.go).
	args = append(args, c.auditArgs()...)
	return args
}

// StartAPIServer starts kube-apiserver (again) on the same port with the
// same keys and etcd, and waits until /readyz answers ok. With
// StopAPIServer it lets a test start a daemon while the API is down.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	t0 := time.Now()
	c.mu.Lock()
	switch {
	case c.stopped:
		c.mu.Unlock()
		return errors.New("kubeapi: StartAPIServer after Stop")
	case c.etcd == nil:
		c.mu.Unlock()
		return errors.New("kubeapi: StartAPIServer before Start")
	case c.apiserver != nil:
		c.mu.Unlock()
		return errors.New("kubeapi: kube-apiserver is already running")
	}
	p, err := c.startLocked(binAPIServer, c.apiserverArgs())
	c.apiserver = p
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("kubeapi: %w", err)
	}
	if err := c.waitReady(ctx, p); err != nil {
		return fmt.Errorf("kubeapi: %w", err)
	}
	c.logf("kube-apiserver ready at %s (pid %d) after %v", c.URL(), p.pid(), time.Since(t0).Round(time.Millisecond))
	return nil
}

// StopAPIServer stops kube-apiserver only; etcd keeps the data. It returns
// once the process has exited.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	p := c.apiserver
	c.apiserver = nil
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	err := p.stop()
	c.logf("stopped kube-apiserver (pid %d)", p.pid())
	if err != nil {
		return fmt.Errorf("kubeapi: %w", err)
	}
	return nil
}

// Stop ends every process this cluster started (SIGTERM, then SIGKILL after
// a bound, each by its PID and waited for) and removes the directory if New
// created it. It is idempotent; problems go to Options.Log.
func (c *Cluster) Stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	// Dependents first: the controller manager and the apiserver would
	// otherwise log their way through etcd's and the apiserver's absence.
	procs := []*process{c.kcm, c.apiserver, c.etcd}
	c.kcm, c.apiserver, c.etcd = nil, nil, nil
	c.mu.Unlock()
	for _, p := range procs {
		if p == nil {
			continue
		}
		if err := p.stop(); err != nil {
			c.logf("stop: %v", err)
		} else {
			c.logf("stopped %s (pid %d)", p.name, p.pid())
		}
	}
	if c.ownDir {
		if err := os.RemoveAll(c.dir); err != nil {
			c.logf("stop: remove %s: %v", c.dir, err)
		}
	}
}

// PIDs returns the process IDs of every process the cluster has started,
// including those that have since ended.
func (c *Cluster) PIDs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	pids := make([]int, len(c.started))
	for i, p := range c.started {
		pids[i] = p.pid()
	}
	return pids
}

// LogTail returns the last n lines of the log of component
// ("kube-apiserver", "etcd" or "kube-controller-manager"), for a failing
// test to show. The logs are gone after Stop removed a temporary Dir.
func (c *Cluster) LogTail(component string, n int) string {
	if !slices.Contains([]string{binAPIServer, binEtcd, binControllerManager}, component) {
		return fmt.Sprintf("(no component %q)", component)
	}
	return tail(c.logPath(component), n)
}

// Dir is the cluster's directory: PKI, kubeconfig, etcd data, logs.
func (c *Cluster) Dir() string { return c.dir }

// URL is the apiserver's base URL, https://<bind>:<port>.
func (c *Cluster) URL() string { return "https://" + c.apiAddr.String() }

// AdminConfig returns a new copy of the cluster-admin client config (a
// client certificate of group system:masters).
func (c *Cluster) AdminConfig() *rest.Config { return rest.CopyConfig(c.adminCfg) }

// Admin is a typed cluster-admin client.
func (c *Cluster) Admin() kubernetes.Interface { return c.admin }

// Dynamic is a dynamic cluster-admin client, for the CRDs.
func (c *Cluster) Dynamic() dynamic.Interface { return c.dynamic }

// AdminKubeconfig is the path of a kubeconfig for the cluster admin, for
// the processes and for kubectl.
func (c *Cluster) AdminKubeconfig() string { return c.kubeconfig }

func (c *Cluster) logf(format string, args ...any) {
	fmt.Fprintf(c.opts.Log, "kubeapi: "+format+"\n", args...)
}
