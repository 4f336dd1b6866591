package bgplab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

// frrDir is where Debian's frr package puts the daemons.
const frrDir = "/usr/lib/frr"

func frrDaemon(name string) string { return filepath.Join(frrDir, name) }

// frrRouter is FRR in the router namespace: zebra (the kernel's routes),
// bfdd and bgpd, each with its own config, pid file and vty socket in a
// temp dir, talking over a zserv socket in that dir.
//
// The daemons run as Debian's user frr (-u frr -g frr): run as root, FRR
// insists that root be in the vty group frrvty, which it is not on a
// stock system, and only bgpd has a switch (-S) to skip the check. So the
// dir belongs to frr.
type frrRouter struct {
	lab   *Lab
	k     *kernel
	dir   string
	procs []*Proc // zebra, bfdd, bgpd: stopped in reverse
}

func startFRR(l *Lab, k *kernel, cfg RouterConfig) Router {
	t := l.T
	t.Helper()
	RequireRouter(t, FRR)
	u, err := user.Lookup("frr")
	if err != nil {
		netlab.Missing(t, "FRR needs the user frr of Debian's frr package: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	r := &frrRouter{lab: l, k: k, dir: filepath.Join(l.Dir, "frr")}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	confs := map[string]string{
		"zebra": "! written by tests/bgplab\nhostname router\n",
		"bfdd":  frrBFDConfig(cfg),
		"bgpd":  frrBGPConfig(cfg),
	}
	for name, c := range confs {
		path := filepath.Join(r.dir, name+".conf")
		if err := os.WriteFile(path, []byte(c), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(r.dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("bgplab: %v", err)
		}
	})
	zserv := filepath.Join(r.dir, "zserv.api")
	for _, name := range []string{"zebra", "bfdd", "bgpd"} {
		argv := []string{frrDaemon(name), "-u", "frr", "-g", "frr",
			"-f", filepath.Join(r.dir, name+".conf"),
			"-i", filepath.Join(r.dir, name+".pid"),
			"-z", zserv,
			"--vty_socket", r.dir,
			"--log", "stdout", "--log-level", "info"}
		if name == "bfdd" {
			argv = append(argv, "--bfdctl", filepath.Join(r.dir, "bfdd.sock"))
		}
		p := startProc(t, l.Router, name, filepath.Join(r.dir, name+".out"), nil, argv...)
		r.procs = append(r.procs, p)
		// bfdd and bgpd connect to zebra's socket: start them once it
		// listens. Each daemon is ready when vtysh reaches it.
		if _, err := Eventually(10*time.Second, 20*time.Millisecond, func() error {
			if !p.Running() {
				return fmt.Errorf("%s exited: %w", name, errors.Join(p.err, ErrGiveUp))
			}
			_, err := r.vtysh(name, "show version")
			return err
		}); err != nil {
			t.Fatalf("bgplab: FRR's %s did not start: %v\n%s", name, err, r.Logs())
		}
	}
	return r
}

// frrBFDConfig is bfdd's profile "lab" with the lab's timers.
func frrBFDConfig(cfg RouterConfig) string {
	return fmt.Sprintf(`! written by tests/bgplab
bfd
 profile lab
  receive-interval %d
  transmit-interval %d
  detect-multiplier %d
 exit
exit
`, cfg.BFD.MinRx.Milliseconds(), cfg.BFD.MinTx.Milliseconds(), cfg.BFD.Multiplier)
}

// frrBGPConfig is bgpd's config: every peer activated in its own family
// only (in both with Peer.DualStack), up to 8 equal paths into the kernel, and an outbound route map
// that lets through ExportPrefix when cfg.Export and nothing else.
func frrBGPConfig(cfg RouterConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, `! written by tests/bgplab
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 no bgp network import-check
 timers bgp %d %d
`, RouterASN, RouterNodes4, int(cfg.KeepaliveTime/time.Second), int(cfg.HoldTime/time.Second))
	for _, p := range cfg.Peers {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n", p.Address, p.ASN)
		fmt.Fprintf(&b, " neighbor %s timers connect 1\n", p.Address)
		if p.BFD {
			fmt.Fprintf(&b, " neighbor %s bfd profile lab\n", p.Address)
		}
		if p.Password != "" {
			fmt.Fprintf(&b, " neighbor %s password %s\n", p.Address, p.Password)
		}
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n  maximum-paths 8\n", fam)
		if fam == "ipv4" && cfg.Export {
			fmt.Fprintf(&b, "  network %s\n", ExportPrefix)
		}
		for _, p := range cfg.Peers {
			if p.Address.Is4() != (fam == "ipv4") && !p.DualStack {
				continue
			}
			fmt.Fprintf(&b, "  neighbor %s activate\n  neighbor %s route-map export out\n", p.Address, p.Address)
		}
		b.WriteString(" exit-address-family\n")
	}
	b.WriteString("exit\n!\n")
	if cfg.Export {
		fmt.Fprintf(&b, "ip prefix-list export seq 5 permit %s\n", ExportPrefix)
	} else {
		b.WriteString("ip prefix-list export seq 5 deny any\n")
	}
	b.WriteString("route-map export permit 10\n match ip address prefix-list export\nexit\n")
	return b.String()
}

func (r *frrRouter) Kind() Kind { return FRR }

// vtysh runs commands on one daemon (-d) through the instance's sockets.
func (r *frrRouter) vtysh(daemon string, cmds ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	args := []string{"--vty_socket", r.dir, "-d", daemon}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.CommandContext(ctx, "vtysh", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh -d %s %q: %w: %s", daemon, cmds, err, out)
	}
	return string(out), nil
}

func (r *frrRouter) Routes(prefix netip.Prefix) ([]netip.Addr, error) {
	return r.k.nextHops(prefix)
}

// PeerState reads `show bgp neighbors ADDR json` and `show bfd peers json`.
func (r *frrRouter) PeerState(p Peer) (PeerState, error) {
	out, err := r.vtysh("bgpd", fmt.Sprintf("show bgp neighbors %s json", p.Address))
	if err != nil {
		return PeerState{}, err
	}
	var nbrs map[string]struct {
		BGPState string `json:"bgpState"`
	}
	if err := json.Unmarshal([]byte(out), &nbrs); err != nil {
		return PeerState{}, fmt.Errorf("frr: parse neighbors of %s: %w\n%s", p.Address, err, out)
	}
	n, ok := nbrs[p.Address.String()]
	if !ok || n.BGPState == "" {
		return PeerState{}, fmt.Errorf("frr: no neighbor %s in:\n%s", p.Address, out)
	}
	st := PeerState{BGP: n.BGPState}
	if !p.BFD {
		return st, nil
	}
	out, err = r.vtysh("bfdd", "show bfd peers json")
	if err != nil {
		return st, err
	}
	var sessions []struct {
		Peer   string `json:"peer"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &sessions); err != nil {
		return st, fmt.Errorf("frr: parse BFD peers: %w\n%s", err, out)
	}
	for _, s := range sessions {
		if a, err := netip.ParseAddr(s.Peer); err == nil && a == p.Address {
			st.BFD = strings.ToLower(s.Status)
		}
	}
	return st, nil
}

// Stop ends bgpd, bfdd and zebra, in that order, with SIGTERM; zebra
// removes the routes it installed as it exits.
func (r *frrRouter) Stop() error {
	var errs []error
	for i := len(r.procs) - 1; i >= 0; i-- {
		p := r.procs[i]
		if !p.Running() {
			continue
		}
		if err := p.Signal(syscall.SIGTERM); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := p.Wait(10 * time.Second); errors.Is(err, errStillRunning) {
			p.Kill()
			errs = append(errs, fmt.Errorf("stop FRR's %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (r *frrRouter) Logs() string {
	var b strings.Builder
	for _, p := range r.procs {
		fmt.Fprintf(&b, "--- FRR %s (%s) ---\n%s\n", p.Name, p.LogPath, p.Log())
	}
	return b.String()
}
