package failover

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

// Kind is the failover implementation a cluster runs.
type Kind string

// The implementations.
const (
	HostLB     Kind = "hostlb"
	Keepalived Kind = "keepalived"
	// KeepalivedTuned is keepalived as people who care about failover run
	// it: VRRPv3 with 0.1 s adverts (master down after ~0.35 s).
	KeepalivedTuned Kind = "keepalived-tuned"
)

// IsKeepalived reports whether k is keepalived, as shipped or tuned.
func (k Kind) IsKeepalived() bool { return k == Keepalived || k == KeepalivedTuned }

// Defaults of [Options].
var (
	DefaultVIPs = []netip.Addr{
		netip.MustParseAddr("192.0.2.101"),
		netip.MustParseAddr("192.0.2.102"),
		netip.MustParseAddr("192.0.2.103"),
	}
	// ClientAddr is the client's address on the lab's subnet.
	ClientAddr = netip.MustParseAddr("192.0.2.2")
)

const (
	// DefaultPort is the TCP port every node's listener serves on.
	DefaultPort = 8080
	gossipPort  = 7947
	// keepalived's priorities, node by node: node1 is the master.
	prioBase, prioStep = 150, 50
)

// Options configure a cluster.
type Options struct {
	Kind Kind
	// Hostlbd is the hostlbd binary (HostLB only).
	Hostlbd string
	// Nodes is the number of nodes; default 3.
	Nodes int
	// VIPs are the addresses of the one static VIP (HostLB: all of them,
	// `local = true`); keepalived announces only the first. Default
	// DefaultVIPs.
	VIPs []netip.Addr
	// Port is the TCP port of the nodes' listeners; default DefaultPort.
	Port int
	// LogDir receives one log file per daemon run; default a temp dir.
	LogDir string
	// LogLevel is hostlbd's [log].level; default "info".
	LogLevel string
	// MetricsPort, when set, makes hostlbd serve [metrics] on the node's
	// address at this port (HostLB only; Node.MetricsAddr). 0: off.
	MetricsPort int
}

// Cluster is a lab of a client and nodes on one bridge, with a TCP
// listener in every node namespace and a daemon per node.
type Cluster struct {
	tb     testing.TB
	opts   Options
	Lab    *netlab.Lab
	Client *netlab.NS
	Nodes  []*Node
}

// Node is one node namespace.
type Node struct {
	Index int
	Name  string // "node1"...
	NS    *netlab.NS
	MAC   net.HardwareAddr
	Addr  netip.Addr
	Prio  int // keepalived priority

	c    *Cluster
	dir  string // config, pid files and logs
	runs int

	mu   sync.Mutex // guards proc
	proc *proc
}

// proc is one daemon process started by the cluster. ip netns exec execs
// the daemon, so cmd's PID is the daemon's.
type proc struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// New builds the lab (stale labs of crashed runs are removed first), the
// client, the nodes and their TCP listeners; it starts no daemon.
// Everything is removed when tb's cleanups run.
func New(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	netlab.RequireRoot(tb)
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if len(opts.VIPs) == 0 {
		opts.VIPs = DefaultVIPs
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.LogDir == "" {
		opts.LogDir = tb.TempDir()
	}
	if err := KillStale(); err != nil {
		tb.Logf("failover: cleaning a crashed run: %v", err)
	}
	c := &Cluster{tb: tb, opts: opts, Lab: netlab.New(tb)}
	br := c.Lab.Bridge("br0")
	c.Client = c.Lab.Namespace("client")
	c.Lab.Connect(c.Client, br, "eth0", []string{ClientAddr.String() + "/24"}, netlab.NoIPv6LinkLocal())
	for i := range opts.Nodes {
		n := &Node{
			Index: i,
			Name:  fmt.Sprintf("node%d", i+1),
			Addr:  netip.AddrFrom4([4]byte{192, 0, 2, byte(11 + i)}),
			Prio:  prioBase - i*prioStep,
			c:     c,
		}
		if n.Prio < 1 {
			n.Prio = 1
		}
		n.NS = c.Lab.Namespace(n.Name)
		n.MAC = c.Lab.Connect(n.NS, br, "eth0", []string{n.Addr.String() + "/24"}, netlab.NoIPv6LinkLocal()).MAC
		n.dir = filepath.Join(opts.LogDir, n.Name)
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		c.serveTCP(n)
		c.Nodes = append(c.Nodes, n)
		tb.Cleanup(n.kill)
	}
	return c
}

// Kind is the cluster's implementation.
func (c *Cluster) Kind() Kind { return c.opts.Kind }

// VIPs are the VIP's addresses.
func (c *Cluster) VIPs() []netip.Addr { return c.opts.VIPs }

// Port is the TCP port behind the VIP.
func (c *Cluster) Port() int { return c.opts.Port }

// NodeByMAC returns the node with mac, or nil.
func (c *Cluster) NodeByMAC(mac net.HardwareAddr) *Node {
	for _, n := range c.Nodes {
		if n.MAC.String() == mac.String() {
			return n
		}
	}
	return nil
}

// NodeByName returns the node called name, or nil.
func (c *Cluster) NodeByName(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// serveTCP listens on 0.0.0.0:port inside n: a connection to the VIP
// reaches it only on the node that holds the VIP locally, and gets the
// node's name back.
func (c *Cluster) serveTCP(n *Node) {
	c.tb.Helper()
	var ln net.Listener
	if err := n.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", c.opts.Port))
		return err
	}); err != nil {
		c.tb.Fatalf("failover: listen in %s: %v", n.Name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = conn.Write([]byte(n.Name + "\n"))
			_ = conn.Close()
		}
	}()
	c.tb.Cleanup(func() { _ = ln.Close(); <-done })
}

// StartAll starts the daemon on every node.
func (c *Cluster) StartAll() {
	c.tb.Helper()
	for _, n := range c.Nodes {
		n.Start()
	}
}

// Start starts n's daemon.
func (n *Node) Start() {
	c := n.c
	c.tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		c.tb.Fatalf("failover: %s: daemon already running", n.Name)
	}
	n.runs++
	var argv []string
	switch c.opts.Kind {
	case HostLB:
		argv = n.hostlbdArgs()
	case Keepalived, KeepalivedTuned:
		argv = n.keepalivedArgs()
	default:
		c.tb.Fatalf("failover: unknown kind %q", c.opts.Kind)
	}
	logf, err := os.Create(filepath.Join(n.dir, fmt.Sprintf("%s-%03d.log", c.opts.Kind, n.runs)))
	if err != nil {
		c.tb.Fatal(err)
	}
	p := &proc{log: logf, done: make(chan struct{})}
	// Not CommandContext: daemons are stopped by signals, by PID.
	p.cmd = n.NS.Command(context.Background(), argv...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		_ = logf.Close()
		c.tb.Fatalf("failover: start %s on %s: %v", argv[0], n.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		_ = p.log.Close()
		close(p.done)
	}()
	n.proc = p
}

func (n *Node) hostlbdArgs() []string {
	c := n.c
	var join []string
	for _, o := range c.Nodes {
		if o != n {
			join = append(join, fmt.Sprintf("%q", netip.AddrPortFrom(o.Addr, gossipPort).String()))
		}
	}
	var addrs []string
	for _, a := range c.opts.VIPs {
		addrs = append(addrs, fmt.Sprintf("%q", a.String()))
	}
	cfg := fmt.Sprintf(`# written by tests/failover
[node]
name = %q

[log]
level = %q
format = "text"

[gossip]
bind = %q
join = [%s]
insecure_plaintext = true
profile = "fast"

[kubernetes]
enabled = false

[metrics]
listen = %q

[control]
socket = %q

[[vip]]
name = "web"
addresses = [%s]
local = true
`, n.Name, c.opts.LogLevel, netip.AddrPortFrom(n.Addr, gossipPort).String(), strings.Join(join, ", "),
		n.MetricsAddr(), filepath.Join(n.dir, "hostlb.sock"), strings.Join(addrs, ", "))
	path := filepath.Join(n.dir, "hostlb.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		c.tb.Fatal(err)
	}
	if out, err := exec.Command(c.opts.Hostlbd, "--config", path, "--check-config").CombinedOutput(); err != nil {
		c.tb.Fatalf("failover: hostlbd rejects %s: %v\n%s", path, err, out)
	}
	return []string{c.opts.Hostlbd, "--config", path}
}

// MetricsAddr is where n's hostlbd serves [metrics] (Options.MetricsPort),
// "" when it does not.
func (n *Node) MetricsAddr() string {
	if n.c.opts.MetricsPort == 0 {
		return ""
	}
	return netip.AddrPortFrom(n.Addr, uint16(n.c.opts.MetricsPort)).String()
}

// PID is the process ID of n's running daemon, 0 when none runs.
func (n *Node) PID() int {
	p := n.current()
	if p == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// keepalivedArgs writes a VRRP instance with advert_int 1 and otherwise
// keepalived's defaults (preempt, VRRPv2, 5 GARPs on becoming master) —
// or, tuned, VRRPv3 with advert_int 0.1 (master down after 3 × 0.1 s plus
// the skew time, ~0.35 s for these priorities).
func (n *Node) keepalivedArgs() []string {
	c := n.c
	version, advert := "2", "1"
	if c.opts.Kind == KeepalivedTuned {
		version, advert = "3", "0.1"
	}
	cfg := fmt.Sprintf(`# written by tests/failover
global_defs {
    router_id %s
    vrrp_version %s
}

vrrp_instance web {
    interface eth0
    virtual_router_id 51
    priority %d
    advert_int %s
    virtual_ipaddress {
        %s
    }
}
`, n.Name, version, n.Prio, advert, c.opts.VIPs[0])
	path := filepath.Join(n.dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		c.tb.Fatal(err)
	}
	return []string{"keepalived", "-n", "-l", "-D", "-P", "-f", path,
		"-p", filepath.Join(n.dir, "keepalived.pid"),
		"-r", filepath.Join(n.dir, "vrrp.pid"),
		"-c", filepath.Join(n.dir, "checkers.pid")}
}

func (n *Node) current() *proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// Running reports whether n's daemon runs.
func (n *Node) Running() bool {
	p := n.current()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// LogFile is the path of the current (or last) daemon's log.
func (n *Node) LogFile() string {
	return filepath.Join(n.dir, fmt.Sprintf("%s-%03d.log", n.c.opts.Kind, n.runs))
}

// Crash takes n's link down and then kills its daemon with SIGKILL, so
// nothing it might still say reaches the others; it returns the time just
// before the link went down.
func (n *Node) Crash() time.Time {
	c := n.c
	c.tb.Helper()
	p := n.current()
	if p == nil {
		c.tb.Fatalf("failover: crash %s: no daemon", n.Name)
	}
	children := n.keepalivedChildren()
	t0 := time.Now()
	n.NS.MustRun("ip", "link", "set", "eth0", "down")
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	for _, pid := range children {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	n.wait(p, 10*time.Second)
	for _, pid := range children {
		waitGone(pid, 10*time.Second)
	}
	return t0
}

// Stop sends SIGTERM to n's daemon and returns when it was sent; Wait
// waits for the exit.
func (n *Node) Stop() time.Time {
	n.c.tb.Helper()
	p := n.current()
	if p == nil {
		n.c.tb.Fatalf("failover: stop %s: no daemon", n.Name)
	}
	t0 := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		n.c.tb.Fatalf("failover: SIGTERM %s: %v", n.Name, err)
	}
	return t0
}

// Wait waits up to d for n's daemon to exit and returns its exit error
// (nil for status 0).
func (n *Node) Wait(d time.Duration) error {
	n.c.tb.Helper()
	p := n.current()
	if p == nil {
		return nil
	}
	n.wait(p, d)
	return p.err
}

func (n *Node) wait(p *proc, d time.Duration) {
	n.c.tb.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		n.c.tb.Fatalf("failover: %s's daemon did not exit within %s", n.Name, d)
	}
	for _, pid := range n.keepalivedChildren() {
		waitGone(pid, d)
	}
	n.mu.Lock()
	if n.proc == p {
		n.proc = nil
	}
	n.mu.Unlock()
}

// Restore undoes a crash: the node "reboots" (keepalived's VIP, which a
// killed keepalived leaves on eth0, is removed; hostlbd removes its own
// leftovers on hostlb0 when it starts), its link comes up and its daemon
// starts again. After a graceful stop it just starts the daemon.
func (n *Node) Restore() {
	n.c.tb.Helper()
	if n.c.opts.Kind.IsKeepalived() {
		out, _ := n.NS.Run("ip", "-o", "-4", "addr", "show", "dev", "eth0")
		for _, v := range n.c.opts.VIPs {
			if strings.Contains(out, " "+v.String()+"/") {
				n.NS.MustRun("ip", "addr", "del", v.String()+"/32", "dev", "eth0")
			}
		}
	}
	n.NS.MustRun("ip", "link", "set", "eth0", "up")
	n.Start()
}

// keepalivedChildren returns the PIDs of keepalived's VRRP child, from its
// pid file; nil for hostlbd.
func (n *Node) keepalivedChildren() []int {
	if !n.c.opts.Kind.IsKeepalived() {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(n.dir, "vrrp.pid"))
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return nil
	}
	// A pid file left by a killed run may name a reused PID: only a
	// keepalived is ours.
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "keepalived" {
		return nil
	}
	return []int{pid}
}

// kill ends n's daemon (cleanup): SIGKILL to the PIDs this cluster started.
func (n *Node) kill() {
	p := n.current()
	if p == nil {
		return
	}
	children := n.keepalivedChildren()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	for _, pid := range children {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, 5*time.Second)
	}
	n.mu.Lock()
	n.proc = nil
	n.mu.Unlock()
}

// waitGone polls until pid no longer exists (it is not our child, so it
// cannot be waited for).
func waitGone(pid int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

// KillStale kills the processes left in netlab namespaces of test
// processes that no longer run (a crashed or killed earlier run of a lab),
// by PID, so that netlab.New can delete those namespaces and nothing of
// the old run keeps answering. Namespaces of live processes are left alone.
func KillStale() error {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns list: %w: %s", err, out)
	}
	var errs []error
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], netlab.Prefix) {
			continue
		}
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(f[0], netlab.Prefix), "-")
		owner, err := strconv.Atoi(pidStr)
		if !ok || err != nil || owner <= 0 {
			continue
		}
		if err := syscall.Kill(owner, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // its test process is alive
		}
		pids, err := exec.Command("ip", "netns", "pids", f[0]).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("ip netns pids %s: %w", f[0], err))
			continue
		}
		for _, s := range strings.Fields(string(pids)) {
			if pid, err := strconv.Atoi(s); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				waitGone(pid, 5*time.Second)
			}
		}
	}
	return errors.Join(errs...)
}
