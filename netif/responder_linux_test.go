//go:build linux

package netif

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

// kernelLab is a node running responders and two kernel clients:
//
//	client (eth0: 192.0.2.2, 2001:db8::2) ──br0── node eth0 (no IPv4; IPv6 link-local only)
//	other  (eth0: 198.51.100.2, 2001:db8:1::2, 192.0.2.3, 2001:db8::3) ──br1── node eth1 (no address at all)
//
// On eth0 the node owns 192.0.2.100 and 2001:db8::100; on eth1 it owns
// 198.51.100.100 and 2001:db8:1::100. No VIP is configured on any
// interface, so whatever answers is the responders.
type kernelLab struct {
	node, client, other *netlab.NS
	node0, node1        *netlab.Link
	arp0, arp1          *ARPResponder
	ndp0, ndp1          *NDPResponder
}

var (
	labVIP4  = netip.MustParseAddr("192.0.2.100")
	labVIP6  = netip.MustParseAddr("2001:db8::100")
	labVIP4b = netip.MustParseAddr("198.51.100.100")
	labVIP6b = netip.MustParseAddr("2001:db8:1::100")
)

func newKernelLab(t *testing.T) *kernelLab {
	t.Helper()
	for _, tool := range []string{"arping", "ndisc6", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (Debian packages arping, ndisc6, iputils-ping): %v", tool, err)
		}
	}
	lab := netlab.New(t)
	br0, br1 := lab.Bridge("br0"), lab.Bridge("br1")
	k := &kernelLab{node: lab.Namespace("node"), client: lab.Namespace("client"), other: lab.Namespace("other")}
	k.node0 = lab.Connect(k.node, br0, "eth0", nil)
	k.node1 = lab.Connect(k.node, br1, "eth1", nil, netlab.NoIPv6LinkLocal())
	// Short NUD timers on the client, set before any neighbour entry
	// exists: REACHABLE lasts 0.25–0.75 s, DELAY 1 s, then a unicast probe.
	lab.Connect(k.client, br0, "eth0", []string{"192.0.2.2/24", "2001:db8::2/64"})
	k.client.Sysctl("net.ipv6.neigh.eth0.base_reachable_time_ms", "500")
	k.client.Sysctl("net.ipv6.neigh.eth0.delay_first_probe_time", "1")
	lab.Connect(k.other, br1, "eth0", []string{"198.51.100.2/24", "192.0.2.3/24", "2001:db8:1::2/64", "2001:db8::3/64"})

	k.arp0, k.ndp0 = startLabResponders(t, k.node0, labVIP4, labVIP6)
	k.arp1, k.ndp1 = startLabResponders(t, k.node1, labVIP4b, labVIP6b)
	return k
}

// startLabResponders opens the sockets inside the link's namespace and runs
// an ARP and an NDP responder on them until the test ends.
func startLabResponders(t *testing.T, link *netlab.Link, owned ...netip.Addr) (*ARPResponder, *NDPResponder) {
	t.Helper()
	var ac, nc PacketConn
	if err := link.NS.Do(func() error {
		ifi, err := net.InterfaceByName(link.Name)
		if err != nil {
			return err
		}
		if ac, err = ListenARP(ifi); err != nil {
			return err
		}
		nc, err = ListenNDP(ifi)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cfg := ResponderConfig{Ifindex: link.Index, Ifname: link.Name, HardwareAddr: link.MAC}
	a, n := NewARPResponder(ac, cfg), NewNDPResponder(nc, cfg)
	for _, r := range []Responder{a, n} {
		if err := r.SetOwned(owned); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- r.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("Run on %s: %v", link.Name, err)
			}
			if err := r.Close(); err != nil {
				t.Errorf("Close on %s: %v", link.Name, err)
			}
		})
	}
	return a, n
}

var arpingReply = regexp.MustCompile(`bytes from ([0-9a-f:]{17}) \(([0-9.]+)\): index=(\d+)`)

// arping sends count requests for ip from ns and returns the MAC of every
// reply and arping's summary line.
func arping(t *testing.T, ns *netlab.NS, ifname string, ip netip.Addr, count string) (macs []string, summary string) {
	t.Helper()
	// arping exits 1 when nothing answered; the output tells the rest.
	out, _ := ns.Run("arping", "-c", count, "-W", "0.3", "-i", ifname, ip.String())
	for _, line := range strings.Split(out, "\n") {
		if m := arpingReply.FindStringSubmatch(line); m != nil {
			if m[2] != ip.String() {
				t.Errorf("reply for %s, asked for %s", m[2], ip)
			}
			macs = append(macs, m[1])
		}
		if strings.Contains(line, "packets transmitted") {
			summary = strings.TrimSpace(line)
		}
	}
	if summary == "" {
		t.Fatalf("arping printed no summary:\n%s", out)
	}
	return macs, summary
}

var ndiscAnswer = regexp.MustCompile(`Target link-layer address: ([0-9A-Fa-f:]{17})`)

// ndisc6 solicits ip from ns, waits for every answer, and returns their MACs.
func ndisc6(t *testing.T, ns *netlab.NS, ifname string, ip netip.Addr) []string {
	t.Helper()
	out, _ := ns.Run("ndisc6", "-m", "-n", "-r", "2", "-w", "500", ip.String(), ifname)
	var macs []string
	for _, m := range ndiscAnswer.FindAllStringSubmatch(out, -1) {
		macs = append(macs, strings.ToLower(m[1]))
	}
	return macs
}

func TestKernelClients(t *testing.T) {
	netlab.RequireRoot(t)
	leakCheck(t)
	k := newKernelLab(t)
	nodeMAC, nodeMAC1 := k.node0.MAC.String(), k.node1.MAC.String()

	t.Run("arping gets one reply per request from the node's MAC", func(t *testing.T) {
		before := k.arp0.Stats()[statReplies]
		macs, summary := arping(t, k.client, "eth0", labVIP4, "3")
		if len(macs) != 3 || !strings.Contains(summary, "3 packets received") || !strings.Contains(summary, "(0 extra)") {
			t.Errorf("replies %v, summary %q", macs, summary)
		}
		for _, m := range macs {
			if m != nodeMAC {
				t.Errorf("reply from %s, want %s", m, nodeMAC)
			}
		}
		if got := k.arp0.Stats()[statReplies] - before; got != 3 {
			t.Errorf("responder sent %d replies", got)
		}
	})

	t.Run("arping on an interface without any address", func(t *testing.T) {
		macs, _ := arping(t, k.other, "eth0", labVIP4b, "2")
		if len(macs) != 2 || macs[0] != nodeMAC1 {
			t.Errorf("replies %v, want 2 from %s", macs, nodeMAC1)
		}
	})

	t.Run("ndisc6 gets the node's MAC", func(t *testing.T) {
		if macs := ndisc6(t, k.client, "eth0", labVIP6); len(macs) != 1 || macs[0] != nodeMAC {
			t.Errorf("answers %v, want exactly one from %s", macs, nodeMAC)
		}
	})

	t.Run("ndisc6 on an interface without a link-local address", func(t *testing.T) {
		if out := k.node.MustRun("ip", "-6", "addr", "show", "dev", "eth1"); strings.Contains(out, "inet6") {
			t.Fatalf("eth1 has an IPv6 address:\n%s", out)
		}
		if macs := ndisc6(t, k.other, "eth0", labVIP6b); len(macs) != 1 || macs[0] != nodeMAC1 {
			t.Errorf("answers %v, want exactly one from %s", macs, nodeMAC1)
		}
	})

	t.Run("ndisc6 while and after a link-local address appears", func(t *testing.T) {
		// The same responders, no restart: a link-local address arriving
		// (tentative during DAD, then usable) changes nothing for them.
		k.node.MustRun("ip", "-6", "addr", "add", "fe80::1:100/64", "dev", "eth1")
		t.Cleanup(func() { _, _ = k.node.Run("ip", "-6", "addr", "del", "fe80::1:100/64", "dev", "eth1") })
		if macs := ndisc6(t, k.other, "eth0", labVIP6b); len(macs) != 1 || macs[0] != nodeMAC1 {
			t.Errorf("during DAD: answers %v, want exactly one from %s", macs, nodeMAC1)
		}
		waitFor(t, "eth1 link-local usable", func() bool {
			out := k.node.MustRun("ip", "-6", "addr", "show", "dev", "eth1")
			return strings.Contains(out, "fe80::1:100") && !strings.Contains(out, "tentative")
		})
		if macs := ndisc6(t, k.other, "eth0", labVIP6b); len(macs) != 1 || macs[0] != nodeMAC1 {
			t.Errorf("after DAD: answers %v, want exactly one from %s", macs, nodeMAC1)
		}
	})

	t.Run("no reply on a non-chosen interface", func(t *testing.T) {
		// other shares br1 with node eth1, whose responders do not own the
		// eth0 VIPs.
		if macs, summary := arping(t, k.other, "eth0", labVIP4, "2"); len(macs) != 0 {
			t.Errorf("ARP for %s answered on eth1: %v (%s)", labVIP4, macs, summary)
		}
		if macs := ndisc6(t, k.other, "eth0", labVIP6); len(macs) != 0 {
			t.Errorf("NS for %s answered on eth1: %v", labVIP6, macs)
		}
		if got := k.arp1.Stats()[string(ErrARPNotOwned)]; got == 0 {
			t.Error("eth1's ARP responder never saw the request")
		}
	})

	t.Run("neighbour entry survives NUD re-probes", func(t *testing.T) {
		testNUD(t, k)
	})

	t.Run("gratuitous ARP and unsolicited NA update the client's cache", func(t *testing.T) {
		const bogus = "02:00:5e:00:53:99"
		k.client.MustRun("ip", "neigh", "replace", labVIP4.String(), "lladdr", bogus, "dev", "eth0", "nud", "stale")
		k.client.MustRun("ip", "-6", "neigh", "replace", labVIP6.String(), "lladdr", bogus, "dev", "eth0", "nud", "stale")
		ctx := context.Background()
		if err := k.arp0.Announce(ctx, labVIP4, 2, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := k.ndp0.Announce(ctx, labVIP6, 2, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		for _, ip := range []netip.Addr{labVIP4, labVIP6} {
			waitFor(t, "client learns "+ip.String()+" at "+nodeMAC, func() bool {
				return strings.Contains(k.client.MustRun("ip", "neigh", "show", ip.String(), "dev", "eth0"), nodeMAC)
			})
		}
	})

	t.Run("closed responders answer nothing", func(t *testing.T) {
		for _, r := range []Responder{k.arp0, k.ndp0, k.arp1, k.ndp1} {
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
		}
		k.client.MustRun("ip", "neigh", "flush", "dev", "eth0")
		if macs, summary := arping(t, k.client, "eth0", labVIP4, "2"); len(macs) != 0 {
			t.Errorf("answered after Close: %v (%s)", macs, summary)
		}
		if macs := ndisc6(t, k.client, "eth0", labVIP6); len(macs) != 0 {
			t.Errorf("answered after Close: %v", macs)
		}
	})
}

// testNUD pings the VIP 20 times over 4 s while the client's entry for it runs
// through REACHABLE → STALE → DELAY → PROBE several times. Every unicast
// probe must be answered (else the entry goes FAILED and pings are lost).
// The node's kernel has the VIP on lo, so it answers the pings, but it does
// not answer NDP for an address on lo arriving on eth0: the responder does.
func testNUD(t *testing.T, k *kernelLab) {
	k.node.AddAddr("lo", "2001:db8::100/128")
	defer k.node.DelAddr("lo", "2001:db8::100/128")
	k.node.MustRun("ip", "-6", "route", "add", "2001:db8::/64", "dev", "eth0")
	defer k.node.MustRun("ip", "-6", "route", "del", "2001:db8::/64", "dev", "eth0")
	// The node answers pings from its link-local-only eth0 only once that
	// address has finished DAD; before, its own NS for the client would wait.
	waitFor(t, "node eth0 link-local usable", func() bool {
		out := k.node.MustRun("ip", "-6", "addr", "show", "dev", "eth0")
		return strings.Contains(out, "fe80") && !strings.Contains(out, "tentative")
	})
	unicastBefore := k.ndp0.Stats()[statUnicastNS]

	var (
		mu     sync.Mutex // guards states
		states = map[string]int{}
	)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			out, err := k.client.Run("ip", "-6", "neigh", "show", labVIP6.String(), "dev", "eth0")
			if err != nil {
				continue
			}
			if f := strings.Fields(out); len(f) > 0 {
				mu.Lock()
				states[f[len(f)-1]]++
				mu.Unlock()
			}
		}
	}()
	// One ping process per echo: iputils ping sets MSG_CONFIRM once it has
	// seen a reply, which would keep the entry REACHABLE and hide NUD.
	var lost []string
	tick := time.NewTicker(200 * time.Millisecond)
	for range 20 {
		if out, err := k.client.Run("ping", "-6", "-n", "-c", "1", "-W", "2", labVIP6.String()); err != nil {
			lost = append(lost, out)
		}
		<-tick.C
	}
	tick.Stop()
	close(stop)
	<-sampled
	if len(lost) > 0 {
		t.Errorf("%d of 20 pings lost:\n%s", len(lost), strings.Join(lost, "\n"))
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("neighbour states sampled: %v", states)
	if states["FAILED"] > 0 || states["INCOMPLETE"] > 0 {
		t.Errorf("neighbour entry failed: %v", states)
	}
	if states["DELAY"]+states["PROBE"] == 0 {
		t.Errorf("entry never went through DELAY/PROBE; NUD was not exercised: %v", states)
	}
	if got := k.ndp0.Stats()[statUnicastNS] - unicastBefore; got == 0 {
		t.Error("no unicast NUD probe was answered by the responder")
	} else {
		t.Logf("unicast NUD probes answered: %d", got)
	}
}
