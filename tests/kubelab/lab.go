package kubelab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/hostlb/hostlb/tests/kubeapi"
	"github.com/hostlb/hostlb/tests/netlab"
)

// The lab's addresses (documentation ranges only).
var (
	APIAddr     = netip.MustParseAddr("192.0.2.10")
	APIAddr6    = netip.MustParseAddr("2001:db8::10")
	ClientAddr  = netip.MustParseAddr("192.0.2.2")
	ClientAddr6 = netip.MustParseAddr("2001:db8::2")
)

// ServiceCIDRs are the ClusterIP ranges: apart from the pod IPs
// (198.51.100.0/24) and the lab's subnet, so that no number means two
// things.
const ServiceCIDRs = "203.0.113.0/24,2001:db8:5::/108"

// GossipPort is the port every node's gossip binds on its IPv4.
const GossipPort = 7947

// Timeouts of the lab's own steps (not of the behaviour under test).
const (
	apiTimeout   = 30 * time.Second // one API request, or a short series
	readyTimeout = 60 * time.Second // hostlbd start to READY=1
	stopTimeout  = 20 * time.Second // hostlbd SIGTERM to exit
)

// Options configure a [Lab]. The zero value is the lab of issue 8.
type Options struct {
	// Nodes is the number of nodes with a Node object and a running
	// hostlbd, n1..nN; default 3.
	Nodes int
	// Spare is the number of further node namespaces, named after them,
	// with neither Node object nor hostlbd until the caller starts them.
	Spare int
	// LogLevel is hostlbd's [log].level; default "debug".
	LogLevel string
	// Dir holds the control plane's directory (etcd's data too), the
	// kubeconfig and one directory per node (config, logs), and is kept;
	// it must be empty or not exist. Default: a TempDir of the TB.
	Dir string
	// Log receives the harness's progress lines; default the TB's Logf.
	Log io.Writer
	// ControllerManagerArgs are further flags of kube-controller-manager.
	ControllerManagerArgs []string
	// LoadBalancerClass is every node's [kubernetes] load_balancer_class:
	// the spec.loadBalancerClass of the Services hostlbd serves on the BGP
	// path. Default none.
	LoadBalancerClass string
	// BGPASN is every node's [bgp] asn, which makes hostlbd run its BGP
	// speaker (its peers come from MetalLoadBalancerBGPPeers); 0 leaves
	// [bgp] out.
	BGPASN uint32
}

// Lab is a control plane, a client and hostlbd nodes on one bridge. Its
// methods are safe for concurrent use.
type Lab struct {
	tb         testing.TB
	opts       Options
	dir        string
	Net        *netlab.Lab
	Bridge     *netlab.Bridge
	API        *netlab.NS
	Client     *netlab.NS
	Cluster    *kubeapi.Cluster
	Kubeconfig string // the file `hostlbctl kubeconfig` wrote, shared by the nodes
	hostlbd    string
	nodes      []*Node

	ctx    context.Context // cancelled at cleanup
	cancel context.CancelFunc

	mu         sync.Mutex // guards the fields below
	namespaces map[string]bool
	podSeq     int
}

// New builds the lab and starts everything (see the package doc): it
// returns once the control plane is ready and every hostlbd of n1..nN has
// sent READY=1 and joined the gossip ring. It fails tb when something
// cannot be set up, skips it (outside CI) when root, the tools or the
// control plane's binaries are missing, and ends everything at tb's
// cleanup.
func New(tb testing.TB, opts Options) *Lab {
	tb.Helper()
	Require(tb)
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes+opts.Spare > 80 {
		tb.Fatalf("kubelab: %d nodes do not fit 192.0.2.11..", opts.Nodes+opts.Spare)
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	} else if ents, err := os.ReadDir(opts.Dir); err == nil && len(ents) > 0 {
		// An old etcd there would bring back an old cluster.
		tb.Fatalf("kubelab: Options.Dir %s is not empty", opts.Dir)
	}
	if opts.Log == nil {
		opts.Log = tbWriter{tb}
	}
	t0 := time.Now()
	l := &Lab{tb: tb, opts: opts, dir: opts.Dir, namespaces: map[string]bool{}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	tb.Cleanup(l.cancel)

	// The binaries first: with a cold build cache this is the slow part,
	// and a broken tree should fail before any process runs.
	l.hostlbd = netlab.Hostlbd(tb)
	hostlbctl := Hostlbctl(tb)

	l.Net = netlab.New(tb)
	l.Bridge = l.Net.Bridge("br0")
	l.API = l.Net.Namespace("api")
	l.Client = l.Net.Namespace("client")
	l.connect(l.API, APIAddr, APIAddr6)
	l.connect(l.Client, ClientAddr, ClientAddr6)
	for i := range opts.Nodes + opts.Spare {
		n := &Node{
			Name:  fmt.Sprintf("n%d", i+1),
			IPv4:  netip.AddrFrom4([4]byte{192, 0, 2, byte(11 + i)}),
			IPv6:  netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", 11+i)),
			Spare: i >= opts.Nodes,
			lab:   l,
		}
		n.NS = l.Net.Namespace(n.Name)
		n.MAC = l.connect(n.NS, n.IPv4, n.IPv6)
		n.dir = filepath.Join(l.dir, n.Name)
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		l.nodes = append(l.nodes, n)
	}

	c, err := kubeapi.New(kubeapi.Options{
		Dir:            filepath.Join(l.dir, "kube"),
		Netns:          l.API.Name,
		Bind:           APIAddr,
		ServiceCIDRs:   ServiceCIDRs,
		ApplyManifests: true,
		// WaitWatching reads hostlbd's watches from the audit log.
		AuditLog:              true,
		Log:                   opts.Log,
		ControllerManagerArgs: opts.ControllerManagerArgs,
	})
	if err != nil {
		tb.Fatal(err)
	}
	l.Cluster = c
	tb.Cleanup(func() {
		if tb.Failed() {
			for _, comp := range []string{"kube-apiserver", "kube-controller-manager"} {
				tb.Logf("kubelab: %s log, last lines:\n%s", comp, c.LogTail(comp, 20))
			}
		}
		c.Stop()
	})
	ctx, cancel := context.WithTimeout(l.ctx, 3*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		tb.Fatalf("kubelab: start the control plane: %v", err)
	}
	if err := c.StartControllerManager(ctx, "endpointslice"); err != nil {
		tb.Fatalf("kubelab: start kube-controller-manager: %v", err)
	}

	// The nodes' kubeconfig, made as an operator makes it: by
	// hostlbctl, from a lab namespace (the API's address is only there).
	l.Kubeconfig = filepath.Join(l.dir, "kubeconfig")
	out, err := l.Client.Run(hostlbctl, "kubeconfig", "--server", c.URL(),
		"--admin-kubeconfig", c.AdminKubeconfig(), "--out", l.Kubeconfig)
	if err != nil {
		tb.Fatalf("kubelab: hostlbctl kubeconfig: %v", err)
	}
	l.logf("hostlbctl kubeconfig: %s", strings.TrimSpace(out))

	for _, n := range l.nodes {
		tb.Cleanup(n.kill)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			l.DumpLogs(tb, 200)
		}
	})
	for _, n := range l.nodes[:opts.Nodes] {
		if err := l.RegisterNode(n.Name); err != nil {
			tb.Fatal(err)
		}
	}
	if err := l.startNodes(l.nodes[:opts.Nodes]...); err != nil {
		tb.Fatal(err)
	}
	// No join list: the ring forms from the Nodes' InternalIPs.
	for _, n := range l.nodes[:opts.Nodes] {
		if err := n.waitJoined(readyTimeout); err != nil {
			tb.Fatal(err)
		}
	}
	l.logf("lab ready after %v: control plane at %s, %d nodes", time.Since(t0).Round(time.Millisecond), c.URL(), opts.Nodes)
	return l
}

// Require skips or fails tb unless the lab can run: root, the control
// plane's binaries (kubeapi.Require) and the tools (ip, arping, ndisc6, go).
// Outside CI a missing prerequisite skips; in CI (env CI set) it fails.
func Require(tb testing.TB) {
	tb.Helper()
	kubeapi.Require(tb) // root, and the binaries
	for _, tool := range []string{"ip", "arping", "ndisc6", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				tb.Fatalf("kubelab: %s not installed (tests/scripts/install-deps.sh): %v", tool, err)
			}
			tb.Skipf("kubelab: skipped, needs %s (tests/scripts/install-deps.sh): %v", tool, err)
		}
	}
	netlab.RequireRoot(tb) // checked above, so it never skips in CI
}

// connect plugs ns into the bridge as eth0 with a and a6 (/24 and /64)
// and returns its MAC. DAD is off, and IPv6 addresses survive link down
// (KillNode takes the link down and RestoreNode brings it back).
func (l *Lab) connect(ns *netlab.NS, a, a6 netip.Addr) net.HardwareAddr {
	l.tb.Helper()
	for _, kv := range [][2]string{
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
		{"net.ipv6.conf.all.keep_addr_on_down", "1"},
		{"net.ipv6.conf.default.keep_addr_on_down", "1"},
	} {
		ns.Sysctl(kv[0], kv[1])
	}
	link := l.Net.Connect(ns, l.Bridge, "eth0", []string{a.String() + "/24", a6.String() + "/64"})
	return link.MAC
}

// Admin is a cluster-admin client (it dials inside the api namespace).
func (l *Lab) Admin() kubernetes.Interface { return l.Cluster.Admin() }

// Dynamic is a dynamic cluster-admin client, for the CRDs.
func (l *Lab) Dynamic() dynamic.Interface { return l.Cluster.Dynamic() }

// Nodes returns every node, spare ones included, in order.
func (l *Lab) Nodes() []*Node { return l.nodes }

// Node returns the node called name, or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// NodeMAC returns the MAC of name's eth0 ("aa:bb:..."), "" if no such node.
func (l *Lab) NodeMAC(name string) string {
	if n := l.Node(name); n != nil {
		return n.MAC.String()
	}
	return ""
}

// NodeByMAC returns the name of the node whose eth0 has mac, "" if none.
func (l *Lab) NodeByMAC(mac string) string {
	for _, n := range l.nodes {
		if strings.EqualFold(n.MAC.String(), mac) {
			return n.Name
		}
	}
	return ""
}

// StopAPIServer stops kube-apiserver (etcd and the data stay) and returns
// once it exited. Its listener closes at once on SIGTERM, but with watches
// open (every hostlbd has some) it does not exit within the harness's grace
// period, and the harness then kills it and returns an error: that error is
// only logged when the API is down after it, as it then is.
func (l *Lab) StopAPIServer() error {
	err := l.Cluster.StopAPIServer()
	if err != nil && l.apiDown() {
		l.logf("kube-apiserver stopped the hard way: %v", err)
		return nil
	}
	return err
}

// apiDown reports whether a request to the API fails.
func (l *Lab) apiDown() bool {
	ctx, cancel := context.WithTimeout(l.ctx, 3*time.Second)
	defer cancel()
	_, err := l.Admin().CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	return err != nil
}

// StartAPIServer starts kube-apiserver again and waits for /readyz.
func (l *Lab) StartAPIServer() error {
	ctx, cancel := context.WithTimeout(l.ctx, 2*time.Minute)
	defer cancel()
	return l.Cluster.StartAPIServer(ctx)
}

// DumpLogs logs the last lines of every node's current hostlbd log to tb.
func (l *Lab) DumpLogs(tb testing.TB, lines int) {
	for _, n := range l.nodes {
		if p := n.LogPath(); p != "" {
			tb.Logf("kubelab: hostlbd %s log (%s), last %d lines:\n%s", n.Name, p, lines, tail(p, lines))
		}
	}
}

func (l *Lab) logf(format string, args ...any) {
	fmt.Fprintf(l.opts.Log, "kubelab: "+format+"\n", args...)
}

// apiCtx bounds one API step.
func (l *Lab) apiCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(l.ctx, apiTimeout)
}

// tbWriter turns Write into Logf, one call per write.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
