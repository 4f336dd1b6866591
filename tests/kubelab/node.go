package kubelab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

// Node is one node namespace and the hostlbd runs in it.
type Node struct {
	Name  string // "n1"...: [node] name, and the Node object's name
	NS    *netlab.NS
	MAC   net.HardwareAddr // of eth0
	IPv4  netip.Addr
	IPv6  netip.Addr
	Spare bool // beyond Options.Nodes: no Node object or daemon at first

	lab *Lab
	dir string // config, notify socket, one log file per run

	mu     sync.Mutex // guards the fields below
	proc   *proc      // the current (or last) run; nil before the first
	runs   int
	notify *notifyListener
}

// proc is one hostlbd process. `ip netns exec` execs hostlbd, so cmd's PID
// is hostlbd's own.
type proc struct {
	cmd     *exec.Cmd
	run     int
	logPath string
	started time.Time
	done    chan struct{}
	err     error // Wait's result, set before done closes
}

// exitErr says how the process ended; call it once exited.
func (p *proc) exitErr() error {
	if p.err == nil {
		return errors.New("exited with status 0")
	}
	return fmt.Errorf("exited: %w", p.err)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// StartNode starts hostlbd on the node called name (which must not run
// one) and waits for its READY=1. It neither creates the Node object nor
// waits for the ring: a node whose Node does not exist yet starts too.
func (l *Lab) StartNode(name string) error {
	n := l.Node(name)
	if n == nil {
		return fmt.Errorf("kubelab: no node %q", name)
	}
	return l.startNodes(n)
}

// startNodes starts hostlbd on every node given, then waits for each one's
// READY=1, so the nodes boot together.
func (l *Lab) startNodes(nodes ...*Node) error {
	for _, n := range nodes {
		if err := n.start(); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		if err := n.waitReady(readyTimeout); err != nil {
			return err
		}
	}
	return nil
}

// config writes the node's hostlb.toml and returns its path.
func (n *Node) config() (string, error) {
	var class, bgp string
	if c := n.lab.opts.LoadBalancerClass; c != "" {
		class = fmt.Sprintf("load_balancer_class = %q\n", c)
	}
	if asn := n.lab.opts.BGPASN; asn != 0 {
		bgp = fmt.Sprintf("\n# The peers come from MetalLoadBalancerBGPPeers.\n[bgp]\nasn = %d\n", asn)
	}
	cfg := fmt.Sprintf(`# written by tests/kubelab
[node]
name = %q

[log]
level = %q
format = "text"

# No join list: in Kubernetes mode the other Nodes' InternalIPs are the seeds.
[gossip]
bind = %q
insecure_plaintext = true

[kubernetes]
enabled = true
kubeconfig = %q
%s
[l2]
interfaces = ["eth0"]
gratuitous_count = 2
gratuitous_interval = "200ms"

[metrics]
listen = ""

[control]
socket = %q
%s`, n.Name, n.lab.opts.LogLevel, netip.AddrPortFrom(n.IPv4, GossipPort).String(),
		n.lab.Kubeconfig, class, filepath.Join(n.dir, "hostlb.sock"), bgp)
	path := filepath.Join(n.dir, "hostlb.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("kubelab: %w", err)
	}
	if out, err := exec.Command(n.lab.hostlbd, "--config", path, "--check-config").CombinedOutput(); err != nil {
		return "", fmt.Errorf("kubelab: hostlbd rejects %s: %w\n%s", path, err, out)
	}
	return path, nil
}

// start runs hostlbd in the node's namespace with NOTIFY_SOCKET set, its
// output in a new log file.
func (n *Node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		return fmt.Errorf("kubelab: %s: hostlbd already runs (pid %d)", n.Name, n.proc.cmd.Process.Pid)
	}
	path, err := n.config()
	if err != nil {
		return err
	}
	if n.notify == nil {
		if n.notify, err = listenNotify(filepath.Join(n.dir, "notify.sock")); err != nil {
			return err
		}
	}
	n.runs++
	p := &proc{run: n.runs, logPath: filepath.Join(n.dir, fmt.Sprintf("hostlbd-%02d.log", n.runs)), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		return fmt.Errorf("kubelab: %w", err)
	}
	// Not CommandContext: hostlbd is stopped by signals sent to its PID.
	p.cmd = n.NS.Command(context.Background(), n.lab.hostlbd, "--config", path)
	p.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+n.notify.path)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// The kernel kills hostlbd if the test binary dies without cleaning up.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("kubelab: start hostlbd on %s: %w", n.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	n.proc = p
	n.lab.logf("started hostlbd on %s (pid %d), log %s", n.Name, p.cmd.Process.Pid, p.logPath)
	return nil
}

func (n *Node) current() *proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// waitReady waits for READY=1 from the current run.
func (n *Node) waitReady(timeout time.Duration) error {
	p := n.current()
	if p == nil {
		return fmt.Errorf("kubelab: %s: hostlbd not started", n.Name)
	}
	err := poll(n.lab.ctx, timeout, func() error {
		if p.exited() {
			return permanent(fmt.Errorf("%w\n%s", p.exitErr(), tail(p.logPath, 30)))
		}
		if _, ok := n.listener().find(p.started, func(line string) bool { return line == "READY=1" }); !ok {
			return errors.New("no READY=1 yet")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kubelab: hostlbd on %s (pid %d) not ready: %w", n.Name, p.cmd.Process.Pid, err)
	}
	n.lab.logf("hostlbd on %s ready after %v", n.Name, time.Since(p.started).Round(time.Millisecond))
	return nil
}

var aliveRE = regexp.MustCompile(`msg="joined the gossip ring; taking IPs".* alive=(\d+)`)

// waitJoined waits until the current run says it settled in a ring of
// more than itself: the ring formed from the Nodes' InternalIPs.
func (n *Node) waitJoined(timeout time.Duration) error {
	p := n.current()
	err := poll(n.lab.ctx, timeout, func() error {
		if p.exited() {
			return permanent(p.exitErr())
		}
		logs := n.Logs()
		if strings.Contains(logs, `msg="gossip joined the ring"`) {
			return nil
		}
		if m := aliveRE.FindStringSubmatch(logs); m != nil {
			if k, _ := strconv.Atoi(m[1]); k > 1 {
				return nil
			}
		}
		return errors.New("not in a ring with another node yet")
	})
	if err != nil {
		return fmt.Errorf("kubelab: hostlbd on %s did not join the others (no [gossip] join: the seeds are the Nodes' InternalIPs): %w", n.Name, err)
	}
	return nil
}

// WaitLog waits until the current run's log contains s.
func (n *Node) WaitLog(s string, timeout time.Duration) error {
	err := poll(n.lab.ctx, timeout, func() error {
		if !strings.Contains(n.Logs(), s) {
			return errors.New("not logged")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kubelab: %s: log line %q: %w", n.Name, s, err)
	}
	return nil
}

// Logs returns the current (or last) run's log so far.
func (n *Node) Logs() string {
	p := n.current()
	if p == nil {
		return ""
	}
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	return string(b)
}

// LogPath is the current (or last) run's log file, "" before the first.
func (n *Node) LogPath() string {
	if p := n.current(); p != nil {
		return p.logPath
	}
	return ""
}

// PID is the current run's process ID, 0 before the first.
func (n *Node) PID() int {
	if p := n.current(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// listener is the node's notify socket; a closed one (after cleanup) is
// empty.
func (n *Node) listener() *notifyListener {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.notify == nil {
		return &notifyListener{}
	}
	return n.notify
}

// Running reports whether the node's hostlbd runs.
func (n *Node) Running() bool {
	p := n.current()
	return p != nil && !p.exited()
}

// Statuses returns the STATUS= lines (without "STATUS=") the current run
// sent on NOTIFY_SOCKET, oldest first.
func (n *Node) Statuses() []string {
	p := n.current()
	if p == nil {
		return nil
	}
	var out []string
	for _, m := range n.listener().since(p.started) {
		if s, ok := strings.CutPrefix(m.line, "STATUS="); ok {
			out = append(out, s)
		}
	}
	return out
}

// WaitStatus waits until the current run sent a STATUS line containing
// every string of want, and returns it.
func (n *Node) WaitStatus(timeout time.Duration, want ...string) (string, error) {
	var got string
	err := poll(n.lab.ctx, timeout, func() error {
		st := n.Statuses()
		for _, s := range st {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(s, w)
			}
			if ok {
				got = s
				return nil
			}
		}
		return fmt.Errorf("STATUS lines %q", st)
	})
	if err != nil {
		return "", fmt.Errorf("kubelab: %s: a STATUS line with %q: %w", n.Name, want, err)
	}
	return got, nil
}

// KillNode crashes the node called name: its link goes down, then hostlbd
// gets SIGKILL (by PID), so nothing it might still send reaches the
// others, as when a machine dies. It returns the time just before the link
// went down, once the process is gone.
func (l *Lab) KillNode(name string) (time.Time, error) {
	n := l.Node(name)
	if n == nil {
		return time.Time{}, fmt.Errorf("kubelab: no node %q", name)
	}
	p := n.current()
	if p == nil || p.exited() {
		return time.Time{}, fmt.Errorf("kubelab: kill %s: hostlbd does not run", name)
	}
	t0 := time.Now()
	if _, err := n.NS.Run("ip", "link", "set", "eth0", "down"); err != nil {
		return t0, fmt.Errorf("kubelab: kill %s: %w", name, err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return t0, fmt.Errorf("kubelab: kill %s (pid %d): %w", name, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		return t0, fmt.Errorf("kubelab: %s (pid %d) still runs %v after SIGKILL", name, p.cmd.Process.Pid, stopTimeout)
	}
	l.logf("killed hostlbd on %s (pid %d), link down", name, p.cmd.Process.Pid)
	return t0, nil
}

// RestoreNode undoes KillNode: the link comes up and hostlbd starts again
// (same name and configuration); it returns after READY=1. On a node
// whose hostlbd was merely stopped it just starts it.
func (l *Lab) RestoreNode(name string) error {
	n := l.Node(name)
	if n == nil {
		return fmt.Errorf("kubelab: no node %q", name)
	}
	if _, err := n.NS.Run("ip", "link", "set", "eth0", "up"); err != nil {
		return fmt.Errorf("kubelab: restore %s: %w", name, err)
	}
	return l.startNodes(n)
}

// StopNode stops the node's hostlbd gracefully (SIGTERM by PID; SIGKILL
// after a bound) and returns its exit error (nil for status 0).
func (l *Lab) StopNode(name string) error {
	n := l.Node(name)
	if n == nil {
		return fmt.Errorf("kubelab: no node %q", name)
	}
	p := n.current()
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("kubelab: hostlbd on %s (pid %d) ignored SIGTERM for %v; killed", name, p.cmd.Process.Pid, stopTimeout)
	}
	l.logf("stopped hostlbd on %s (pid %d): %v", name, p.cmd.Process.Pid, p.err)
	if p.err != nil {
		return fmt.Errorf("kubelab: hostlbd on %s exited after SIGTERM: %w", name, p.err)
	}
	return nil
}

// kill ends the node's hostlbd at cleanup (SIGKILL by PID) and closes the
// notify socket.
func (n *Node) kill() {
	if p := n.current(); p != nil && !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	n.mu.Lock()
	nl := n.notify
	n.notify = nil
	n.mu.Unlock()
	if nl != nil {
		nl.close()
	}
}

// notifyListener is the service manager's end of NOTIFY_SOCKET: it keeps
// every sd_notify assignment with its arrival time.
type notifyListener struct {
	path string
	conn *net.UnixConn
	done chan struct{}

	mu   sync.Mutex // guards msgs
	msgs []notifyMsg
}

type notifyMsg struct {
	at   time.Time
	line string // one assignment, "READY=1" or "STATUS=..."
}

func listenNotify(path string) (*notifyListener, error) {
	_ = os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("kubelab: notify socket: %w", err)
	}
	nl := &notifyListener{path: path, conn: conn, done: make(chan struct{})}
	go func() {
		defer close(nl.done)
		buf := make([]byte, 64<<10)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return // closed
			}
			at := time.Now()
			nl.mu.Lock()
			for line := range strings.SplitSeq(strings.TrimSpace(string(buf[:k])), "\n") {
				nl.msgs = append(nl.msgs, notifyMsg{at: at, line: line})
			}
			nl.mu.Unlock()
		}
	}()
	return nl, nil
}

func (nl *notifyListener) since(t time.Time) []notifyMsg {
	nl.mu.Lock()
	defer nl.mu.Unlock()
	var out []notifyMsg
	for _, m := range nl.msgs {
		if !m.at.Before(t) {
			out = append(out, m)
		}
	}
	return out
}

func (nl *notifyListener) find(since time.Time, ok func(string) bool) (notifyMsg, bool) {
	for _, m := range nl.since(since) {
		if ok(m.line) {
			return m, true
		}
	}
	return notifyMsg{}, false
}

func (nl *notifyListener) close() {
	nl.conn.Close()
	<-nl.done
	_ = os.Remove(nl.path)
}
