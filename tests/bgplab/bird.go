package bgplab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

// birdRouter is BIRD 2 in a namespace: one bird process with its config,
// control socket and pid file in a temp dir.
type birdRouter struct {
	k    *kernel
	dir  string
	sock string
	proc *Proc
}

func startBIRD(l *Lab, k *kernel, cfg RouterConfig) Router {
	l.T.Helper()
	RequireRouter(l.T, BIRD)
	return startBIRDConf(l.T, l.Router, k, filepath.Join(l.Dir, "bird"), birdConfig(cfg))
}

// StartBIRD starts BIRD 2 in ns, a namespace of another lab than this
// package's (tests/kubelab), with conf, a whole bird.conf that the caller
// wrote for its own topology, and waits until it answers on its control
// socket. Every file of it (config, control socket, pid file, log) is in
// dir. [Router.Routes] reads ns's kernel, [Router.PeerState] takes the
// protocol's name as Peer.Name, and [Birdc] asks anything else. BIRD is
// stopped (by PID) when t ends. It skips t (fails it under CI) when bird or
// birdc is missing, and fails it when BIRD does not start.
func StartBIRD(t testing.TB, ns *netlab.NS, dir, conf string) Router {
	t.Helper()
	RequireRouter(t, BIRD)
	k := &kernel{}
	if err := k.open(ns.Name); err != nil {
		t.Fatalf("bgplab: netlink in %s: %v", ns.Name, err)
	}
	t.Cleanup(k.close)
	return startBIRDConf(t, ns, k, dir, conf)
}

// Birdc runs birdc with args on r's control socket and returns its output;
// r must be a BIRD router.
func Birdc(r Router, args ...string) (string, error) {
	b, ok := r.(*birdRouter)
	if !ok {
		return "", fmt.Errorf("bgplab: birdc needs a BIRD router, not %s", r.Kind())
	}
	return b.birdc(args...)
}

func startBIRDConf(t testing.TB, ns *netlab.NS, k *kernel, dir, conf string) Router {
	t.Helper()
	r := &birdRouter{k: k, dir: dir}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.sock = filepath.Join(r.dir, "bird.ctl")
	path := filepath.Join(r.dir, "bird.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bird", "-p", "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("bgplab: bird rejects %s: %v\n%s\n%s", path, err, out, conf)
	}
	// -f: foreground, so the PID is bird's; -d would also log to stderr
	// but debug everything.
	r.proc = startProc(t, ns, "bird", filepath.Join(r.dir, "bird.out"), nil,
		"bird", "-f", "-c", path, "-s", r.sock, "-P", filepath.Join(r.dir, "bird.pid"))
	if _, err := Eventually(10*time.Second, 20*time.Millisecond, func() error {
		if !r.proc.Running() {
			return fmt.Errorf("bird exited: %w", errors.Join(r.proc.err, ErrGiveUp))
		}
		out, err := r.birdc("show", "status")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "Daemon is up and running") {
			return fmt.Errorf("bird is not ready: %s", out)
		}
		return nil
	}); err != nil {
		t.Fatalf("bgplab: bird did not start: %v\n%s", err, r.Logs())
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("bgplab: %v", err)
		}
	})
	return r
}

// birdConfig generates bird.conf: a kernel protocol per family with
// merged paths (ECMP), BFD on the nodes' interface, and a BGP protocol per
// peer.
func birdConfig(cfg RouterConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# written by tests/bgplab
log stderr all;
router id %s;

protocol device { scan time 10; }

# Every best route into the kernel; equal BGP routes from several nodes
# become one multipath route (ECMP).
protocol kernel kernel4 {
	ipv4 { import none; export all; };
	merge paths on;
}
protocol kernel kernel6 {
	ipv6 { import none; export all; };
	merge paths on;
}

protocol bfd {
	interface "eth0" {
		min rx interval %d ms;
		min tx interval %d ms;
		multiplier %d;
	};
}
`, RouterNodes4, cfg.BFD.MinRx.Milliseconds(), cfg.BFD.MinTx.Milliseconds(), cfg.BFD.Multiplier)
	export4, export6 := "none", "none"
	if cfg.Export {
		fmt.Fprintf(&b, `
protocol static export4 {
	ipv4;
	route %s blackhole;
}
`, ExportPrefix)
		export4 = `where proto = "export4"`
	}
	for _, p := range cfg.Peers {
		local, channel, export := RouterNodes4, "ipv4", export4
		if p.Address.Is6() {
			local, channel, export = RouterNodes6, "ipv6", export6
		}
		fmt.Fprintf(&b, `
protocol bgp %s {
	local %s as %d;
	neighbor %s as %d;
	hold time %d;
	keepalive time %d;
	connect delay time 1;
	connect retry time 1;
	error wait time 1, 2;
`, p.Name, local, RouterASN, p.Address, p.ASN, int(cfg.HoldTime/time.Second), int(cfg.KeepaliveTime/time.Second))
		if p.BFD {
			b.WriteString("\tbfd on;\n")
		}
		if p.Password != "" {
			fmt.Fprintf(&b, "\tpassword %q;\n", p.Password)
		}
		fmt.Fprintf(&b, "\t%s { import all; export %s; };\n", channel, export)
		if p.DualStack && channel == "ipv4" {
			fmt.Fprintf(&b, "\tipv6 { import all; export %s; };\n", export6)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func (r *birdRouter) Kind() Kind { return BIRD }

func (r *birdRouter) birdc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// birdc talks to the socket; it needs no namespace.
	out, err := exec.CommandContext(ctx, "birdc", append([]string{"-s", r.sock}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (r *birdRouter) Routes(prefix netip.Prefix) ([]netip.Addr, error) {
	return r.k.nextHops(prefix)
}

// PeerState reads "BGP state:" of the peer's protocol and the peer's line
// of `show bfd sessions`.
func (r *birdRouter) PeerState(p Peer) (PeerState, error) {
	out, err := r.birdc("show", "protocols", "all", p.Name)
	if err != nil {
		return PeerState{}, err
	}
	var st PeerState
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "BGP state:"); ok {
			st.BGP = strings.TrimSpace(v)
		}
	}
	if st.BGP == "" {
		return st, fmt.Errorf("bird: no BGP state for %s in:\n%s", p.Name, out)
	}
	if !p.BFD {
		return st, nil
	}
	out, err = r.birdc("show", "bfd", "sessions")
	if err != nil {
		return st, err
	}
	st.BFD = birdBFDState(out, p.Address)
	return st, nil
}

// birdBFDState finds addr's session in `show bfd sessions`:
//
//	IP address                Interface  State      Since         Interval  Timeout
//	192.0.2.11                eth0       Up         12:00:00.123    0.100    0.300
func birdBFDState(out string, addr netip.Addr) string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == addr.String() {
			return strings.ToLower(f[2])
		}
	}
	return ""
}

func (r *birdRouter) Stop() error {
	if !r.proc.Running() {
		return nil
	}
	if err := r.proc.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := r.proc.Wait(10 * time.Second); errors.Is(err, errStillRunning) {
		r.proc.Kill()
		return fmt.Errorf("stop bird: %w", err)
	}
	return nil
}

func (r *birdRouter) Logs() string {
	return fmt.Sprintf("--- bird (%s) ---\n%s", r.proc.LogPath, r.proc.Log())
}
