package bgplab

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hostlb/hostlb/gossip"
)

// GossipPort is hostlbd's gossip port in the lab.
const GossipPort = 7947

// HostlbdConfig is what StartHostlbd writes into a node's hostlb.toml.
type HostlbdConfig struct {
	// Key is the gossip key, the same on every node (NewGossipKey).
	Key []byte
	// BFD enables BFD with DefaultBFD's timers on both peers.
	BFD bool
	// Password is the TCP-MD5 secret, written to a password file; "" = none.
	Password string
	// VIPs are the addresses of one static VIP, mode "bgp", local = true.
	VIPs []netip.Addr
	// LogLevel is [log].level; default "debug".
	LogLevel string
	// NotLocal writes local = false: hostlbd advertises the VIPs without
	// adding them to hostlb0.
	NotLocal bool
	// ImportTable, when not 0, writes [bgp.import] enabled = true with
	// this kernel table and metric ImportMetric.
	ImportTable, ImportMetric int
}

// NewGossipKey returns a random gossip key.
func NewGossipKey() ([]byte, error) {
	k := make([]byte, gossip.KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	return k, nil
}

// StartHostlbd writes n's hostlb.toml (WriteHostlbdConfig) and starts bin
// in n's namespace.
func (n *Node) StartHostlbd(bin string, c HostlbdConfig) *Proc {
	t := n.lab.T
	t.Helper()
	path := n.WriteHostlbdConfig(bin, c)
	return startProc(t, n.NS, n.Name+" hostlbd", filepath.Join(n.Dir, "hostlbd.log"), nil, bin, "--config", path)
}

// WriteHostlbdConfig writes n's hostlb.toml — [bgp] asn = NodeASN, a
// [[bgp.peer]] for each of the router's addresses (hold 3 s, keepalive
// 1 s), the static BGP VIP, gossip with every other node — checks it with
// bin --check-config, and returns its path. Rewriting it under a running
// hostlbd and sending SIGHUP reloads it.
func (n *Node) WriteHostlbdConfig(bin string, c HostlbdConfig) string {
	t := n.lab.T
	t.Helper()
	if c.LogLevel == "" {
		c.LogLevel = "debug"
	}
	keyFile := filepath.Join(n.Dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(c.Key)+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	var join []string
	for _, o := range n.lab.Nodes {
		if o != n {
			join = append(join, fmt.Sprintf("%q", netip.AddrPortFrom(o.Addr4, GossipPort)))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# written by tests/bgplab
[node]
name = %q

[log]
level = %q
format = "text"

[gossip]
bind = %q
join = [%s]
secret_key_file = %q
profile = "fast"

[kubernetes]
enabled = false

[metrics]
listen = ""

[control]
socket = %q

[bgp]
asn = %d
`, n.Name, c.LogLevel, netip.AddrPortFrom(n.Addr4, GossipPort), strings.Join(join, ", "), keyFile,
		filepath.Join(n.Dir, "hostlb.sock"), NodeASN)
	passwordFile := ""
	if c.Password != "" {
		passwordFile = filepath.Join(n.Dir, "bgp.password")
		if err := os.WriteFile(passwordFile, []byte(c.Password+"\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []netip.Addr{RouterNodes4, RouterNodes6} {
		fmt.Fprintf(&b, `
[[bgp.peer]]
address = %q
asn = %d
hold_time = "3s"
keepalive_time = "1s"
`, a, RouterASN)
		if passwordFile != "" {
			fmt.Fprintf(&b, "password_file = %q\n", passwordFile)
		}
		if c.BFD {
			fmt.Fprintf(&b, "bfd = { enabled = true, min_rx = %q, min_tx = %q, multiplier = %d }\n",
				DefaultBFD.MinRx.String(), DefaultBFD.MinTx.String(), DefaultBFD.Multiplier)
		}
	}
	if c.ImportTable != 0 {
		fmt.Fprintf(&b, "\n[bgp.import]\nenabled = true\ntable = %d\nmetric = %d\n", c.ImportTable, c.ImportMetric)
	}
	var addrs []string
	for _, a := range c.VIPs {
		addrs = append(addrs, fmt.Sprintf("%q", a))
	}
	fmt.Fprintf(&b, `
[[vip]]
name = "web"
mode = "bgp"
addresses = [%s]
local = %t
`, strings.Join(addrs, ", "), !c.NotLocal)
	path := filepath.Join(n.Dir, "hostlb.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--config", path, "--check-config").CombinedOutput(); err != nil {
		t.Fatalf("bgplab: hostlbd rejects %s: %v\n%s\n%s", path, err, out, b.String())
	}
	return path
}
