package bgplab

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

// importTable is the kernel table the nodes import into, and
// hostlbProto hostlb's routing protocol number (netif.RTProtoHostlb;
// `proto hostlb` once the package's rt_protos.d file is installed).
const (
	importTable = 100
	hostlbProto = "157"
)

// Issue 10 item 4's acceptance, against BIRD 2 and FRR: with [bgp.import]
// on, the router's exported prefix appears in the node's table with
// hostlb's protocol, goes when the router withdraws it, comes back when it
// exports it again, and goes when hostlbd exits on SIGTERM; a static
// route in the same table is never touched.
func TestImport(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(string(kind), func(t *testing.T) { testImport(t, kind) })
	}
}

func testImport(t *testing.T, kind Kind) {
	l := New(t)
	RequireRouter(t, kind)
	bin := netlab.Hostlbd(t)
	n := l.Nodes[0]
	var peers []Peer
	for _, p := range l.RouterPeers(false, "") {
		if n.Addr4 == p.Address || n.Addr6 == p.Address {
			peers = append(peers, p)
		}
	}
	r := l.StartRouter(kind, RouterConfig{Peers: peers, Export: true})
	const static = "198.51.100.0/24 via 192.0.2.1 dev eth0 proto static metric 20"
	n.NS.MustRun("ip", "route", "add", "198.51.100.0/24", "via", RouterNodes4.String(), "table", fmt.Sprint(importTable),
		"metric", "20", "proto", "static")
	key, err := NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	p := n.StartHostlbd(bin, HostlbdConfig{Key: key, VIPs: []netip.Addr{vip4}, ImportTable: importTable, ImportMetric: 20})
	defer func() {
		if t.Failed() {
			t.Logf("%s\n--- hostlbd ---\n%s", r.Logs(), p.Log())
		}
	}()
	if _, err := WaitPeers(r, peers, upBound); err != nil {
		t.Fatal(err)
	}
	imported := fmt.Sprintf("%s via %s dev eth0 proto %s metric 20", ExportPrefix, RouterNodes4, hostlbProto)
	waitTable := func(what string, want ...string) time.Duration {
		t.Helper()
		var got []string
		took, err := Eventually(upBound, 20*time.Millisecond, func() error {
			out, err := n.NS.Run("ip", "route", "show", "table", fmt.Sprint(importTable))
			if err != nil {
				return err
			}
			got = nil
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if line = strings.TrimSpace(line); line != "" {
					got = append(got, line)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				return fmt.Errorf("table %d is\n\t%s\nwant\n\t%s", importTable, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v", what, took.Round(time.Millisecond))
		return took
	}
	waitTable("the router's prefix imported", imported, static)

	export(t, r, false)
	waitTable("withdrawn", static)
	export(t, r, true)
	waitTable("exported again", imported, static)

	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(20 * time.Second); errors.Is(err, errStillRunning) {
		t.Fatal(err)
	}
	out := n.NS.MustRun("ip", "route", "show", "table", fmt.Sprint(importTable))
	if strings.TrimSpace(out) != static {
		t.Errorf("after SIGTERM table %d is\n%s\nwant only\n%s", importTable, out, static)
	}
	if out := n.NS.MustRun("ip", "route", "show", "table", "all", "proto", hostlbProto); strings.TrimSpace(out) != "" {
		t.Errorf("after SIGTERM routes of proto %s are left:\n%s", hostlbProto, out)
	}
}

// export makes r originate ExportPrefix (on) or withdraw it (off).
func export(t *testing.T, r Router, on bool) {
	t.Helper()
	var err error
	switch r := r.(type) {
	case *birdRouter:
		verb := "disable"
		if on {
			verb = "enable"
		}
		_, err = r.birdc(verb, "export4")
	case *frrRouter:
		network := "no network " + ExportPrefix.String()
		if on {
			network = "network " + ExportPrefix.String()
		}
		_, err = r.vtysh("bgpd", "configure terminal", fmt.Sprintf("router bgp %d", RouterASN),
			"address-family ipv4 unicast", network)
	default:
		t.Fatalf("bgplab: cannot change what %s exports", r.Kind())
	}
	if err != nil {
		t.Fatal(err)
	}
}
