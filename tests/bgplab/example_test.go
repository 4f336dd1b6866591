package bgplab

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/tests/netlab"
)

// exampleBGP is the shipped example this test runs, from this package's
// directory.
const exampleBGP = "../../configs/examples/bgp.toml"

// exampleEdit is one change the lab makes to the example: old must occur
// exactly once in the file, so that an example that drifts from the lab
// fails here instead of being silently left as it was.
type exampleEdit struct {
	old, new string
	why      string
}

// exampleEdits are every change to configs/examples/bgp.toml for node n:
// the gossip key's path (the lab's, not the host's /etc/hostlb), the
// control socket's (the three daemons share one file system, and the
// host's /run/hostlb), and [node] name on the nodes after the first
// ("only [node] differs", says the file). Everything else — the join
// addresses, the router's address and AS, the timers, BFD, the VIPs, the
// health check — runs as shipped.
func exampleEdits(n *Node, keyFile string) []exampleEdit {
	edits := []exampleEdit{{
		old: `secret_key_file = "/etc/hostlb/gossip.key"`,
		new: fmt.Sprintf("secret_key_file = %q", keyFile),
		why: "the lab's gossip key, not the host's",
	}, {
		old: "[kubernetes]\n",
		new: fmt.Sprintf("[control]\nsocket = %q\n\n[kubernetes]\n", filepath.Join(n.Dir, "hostlb.sock")),
		why: "each node its own control socket, not the host's",
	}}
	if n.Index > 0 {
		edits = append(edits, exampleEdit{
			old: `name = "n1"`,
			new: fmt.Sprintf("name = %q", fmt.Sprintf("n%d", n.Index+1)),
			why: "each node its own name",
		})
	}
	return edits
}

// applyExampleEdits returns example with edits made, or an error naming
// each edit whose text does not occur exactly once.
func applyExampleEdits(example string, edits []exampleEdit) (string, error) {
	var bad []string
	for _, e := range edits {
		if k := strings.Count(example, e.old); k != 1 {
			bad = append(bad, fmt.Sprintf("%q occurs %d times, want once (%s)", e.old, k, e.why))
			continue
		}
		example = strings.Replace(example, e.old, e.new, 1)
	}
	if len(bad) > 0 {
		return "", fmt.Errorf("%s drifted from the lab: %s", exampleBGP, strings.Join(bad, "; "))
	}
	return example, nil
}

// configs/examples/bgp.toml runs as shipped in the lab: three hostlbd
// with the file and exampleEdits only, a BIRD router peering as the
// file's comment describes (192.0.2.1 AS 64500, one session per node
// carrying both families, BFD with the file's timers, ECMP), and a TCP
// listener on the health check's address in every node. Both VIP
// addresses must reach the router's kernel with three next hops.
func TestExampleBGPConfig(t *testing.T) {
	example, err := os.ReadFile(exampleBGP)
	if err != nil {
		t.Fatal(err)
	}
	l := New(t)
	RequireRouter(t, BIRD)
	bin := netlab.Hostlbd(t)
	key, err := NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}

	var (
		paths []string
		cfgs  []*config.Config
	)
	for _, n := range l.Nodes {
		keyFile := filepath.Join(n.Dir, "gossip.key")
		if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		text, err := applyExampleEdits(string(example), exampleEdits(n, keyFile))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(n.Dir, "hostlb.toml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "--config", path, "--check-config").CombinedOutput(); err != nil {
			t.Fatalf("hostlbd rejects %s for %s: %v\n%s", exampleBGP, n.Name, err, out)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		paths, cfgs = append(paths, path), append(cfgs, cfg)
	}

	// What the lab must match in the file, read from it rather than
	// assumed: the router, the seeds, the VIPs and their health check.
	cfg := cfgs[0]
	if len(cfg.BGP.Peers) != 1 {
		t.Fatalf("%s has %d [[bgp.peer]], want the one router", exampleBGP, len(cfg.BGP.Peers))
	}
	peer := cfg.BGP.Peers[0]
	if peer.Address != RouterNodes4 || peer.ASN != RouterASN || cfg.BGP.ASN != NodeASN {
		t.Fatalf("%s peers %s AS %d from AS %d; the lab's router is %s AS %d, its nodes AS %d",
			exampleBGP, peer.Address, peer.ASN, cfg.BGP.ASN, RouterNodes4, RouterASN, NodeASN)
	}
	var seeds []string
	for _, n := range l.Nodes {
		seeds = append(seeds, netip.AddrPortFrom(n.Addr4, GossipPort).String())
	}
	if !slices.Equal(cfg.Gossip.Join, seeds) {
		t.Fatalf("%s joins %v; the lab's nodes are %v", exampleBGP, cfg.Gossip.Join, seeds)
	}
	if len(cfg.VIPs) != 1 || cfg.VIPs[0].Mode != config.ModeBGP || cfg.VIPs[0].Health == nil {
		t.Fatalf("%s: want one BGP VIP with a health check, have %+v", exampleBGP, cfg.VIPs)
	}
	vip := cfg.VIPs[0]
	var has4, has6 bool
	for _, a := range vip.Addresses {
		has4, has6 = has4 || a.Is4(), has6 || a.Is6()
	}
	if !has4 || !has6 {
		t.Fatalf("%s: VIP %q has %v, want an IPv4 and an IPv6 address", exampleBGP, vip.Name, vip.Addresses)
	}

	// The router of the file's comment: a protocol per node ("n1"...)
	// with both channels, BFD at the nodes' timers, the nodes' hold time.
	rc := RouterConfig{
		BFD:           BFDTimers{MinRx: peer.BFD.MinRx, MinTx: peer.BFD.MinTx, Multiplier: peer.BFD.Multiplier},
		HoldTime:      peer.HoldTime,
		KeepaliveTime: peer.KeepaliveTime,
	}
	for _, n := range l.Nodes {
		rc.Peers = append(rc.Peers, Peer{
			Name: fmt.Sprintf("n%d", n.Index+1), Address: n.Addr4, ASN: cfg.BGP.ASN,
			BFD: peer.BFD.Enabled, DualStack: true,
		})
	}
	r := l.StartRouter(BIRD, rc)

	var procs []*Proc
	for i, n := range l.Nodes {
		serveHealth(t, n, vip.Health.TCP)
		procs = append(procs, startProc(t, n.NS, n.Name+" hostlbd", filepath.Join(n.Dir, "hostlbd.log"), nil,
			bin, "--config", paths[i]))
	}
	dumpOnFailure(t, l, r, procs)
	took, err := WaitPeers(r, rc.Peers, upBound)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bird: the sessions with n1, n2, n3 are established (BFD %v) after %v", peer.BFD.Enabled, took.Round(time.Millisecond))
	for _, a := range vip.Addresses {
		took, err := WaitRoutes(r, hostPrefix(a), nextHops(l.Nodes, a), upBound)
		if err != nil {
			t.Fatal(err)
		}
		hops, _ := r.Routes(hostPrefix(a))
		t.Logf("bird: the router's kernel routes %s via %v (%v after the sessions)", hostPrefix(a), hops, took.Round(time.Millisecond))
	}
}

// serveHealth accepts TCP connections on addr ("127.0.0.1:53") inside n
// until the test ends, so that the example's health check passes.
func serveHealth(t *testing.T, n *Node, addr string) {
	t.Helper()
	var ln net.Listener
	if err := n.NS.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, n.Name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
}
