package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hostlb/hostlb/tests/failover"
)

// runCluster is the cluster demo: three hostlbd nodes, a client, a crash
// and a graceful stop, with what the client saw.
func runCluster(ctx context.Context, hostlbd string, keep bool) error {
	if os.Geteuid() != 0 {
		return errors.New("the cluster demo needs root (network namespaces): run `sudo make demo`")
	}
	for _, tool := range []string{"ip", "arping"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (make deps installs it): %w", tool, err)
		}
	}
	began := time.Now()
	logf := func(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }
	return failover.RunEnv(logf, func(e *failover.Env) error {
		if hostlbd == "" {
			hostlbd = filepath.Join(e.TempDir(), "hostlbd")
			heading("Building hostlbd")
			if out, err := exec.Command("go", "build", "-o", hostlbd, "github.com/hostlb/hostlb/cmd/hostlbd").CombinedOutput(); err != nil {
				return fmt.Errorf("go build hostlbd: %w\n%s", err, out)
			}
		}
		abs, err := filepath.Abs(hostlbd)
		if err != nil {
			return err
		}
		logDir := e.TempDir()

		heading("Building the lab: one bridge, a client and 3 nodes (network namespaces)")
		c := failover.New(e, failover.Options{Kind: failover.HostLB, Hostlbd: abs, LogDir: logDir})
		logf("%-7s %-12s %s", "client", failover.ClientAddr, "(probes from here)")
		for _, n := range c.Nodes {
			logf("%-7s %-12s MAC %s   TCP :%d answers with the node's name", n.Name, n.Addr, n.MAC, c.Port())
		}
		e.Cleanup(func() { heading("Cleaning up: daemons stopped, namespaces deleted") })

		heading("Starting hostlbd on every node: gossip ring (profile fast), one VIP with 3 addresses")
		c.StartAll()
		cfg, err := os.ReadFile(filepath.Join(logDir, "node1", "hostlb.toml"))
		if err != nil {
			return err
		}
		fmt.Print(indent("# node1's /etc/hostlb/hostlb.toml\n" + showConfig(string(cfg))))

		vip := c.VIPs()[0]
		p, err := c.NewProbers(vip)
		if err != nil {
			return err
		}
		defer p.Close()
		start := time.Now()
		if _, err := c.Steady(ctx, p, vip, 30*time.Second); err != nil {
			return fmt.Errorf("the nodes never agreed: %w", err)
		}
		logf("the ring agreed on one node per address after %v", time.Since(start).Round(10*time.Millisecond))

		heading("Who answers each address? (ARP from the client)")
		if err := showOwners(c, p); err != nil {
			return err
		}
		conn := p.TCP.Once()
		logf("TCP connect to %s:%d from the client: served by %s", vip, c.Port(), orNone(conn.Node, conn.Err))

		heading("Crash: the owner of " + vip.String() + " loses its link and gets kill -9")
		logf("the client sends an ARP request and opens a TCP connection to %s every 10 ms", vip)
		r, err := c.Measure(ctx, p, vip, failover.Crash, 1, 15*time.Second)
		if err != nil {
			return err
		}
		showResult(r, "crash of "+r.Old)
		if err := showOwners(c, p); err != nil {
			return err
		}

		heading("Restart: " + r.Old + " comes back and rejoins")
		start = time.Now()
		c.Restore(r)
		if _, err := c.Steady(ctx, p, vip, 30*time.Second); err != nil {
			return fmt.Errorf("after %s came back: %w", r.Old, err)
		}
		logf("one node per address again after %v", time.Since(start).Round(10*time.Millisecond))
		if err := showOwners(c, p); err != nil {
			return err
		}

		heading("Graceful stop: SIGTERM to the owner of " + vip.String())
		r2, err := c.Measure(ctx, p, vip, failover.Graceful, 2, 15*time.Second)
		if err != nil {
			return err
		}
		showResult(r2, "SIGTERM to "+r2.Old)

		heading("Summary")
		if r.Err == "" {
			logf("crash:    the client saw %s take over from %s after %v (target: under 0.3 s — the heir hears the owner's heartbeat stop after 120 ms; keepalived tuned, VRRPv3 advert_int 0.1: about 0.35 s; as shipped: about 3 s)",
				r.New, r.Old, r.ARP.Round(time.Millisecond))
		}
		if r2.Err == "" {
			logf("SIGTERM:  handover to %s after %v, %d of %d TCP connects failed (target: none)",
				r2.New, r2.ARP.Round(time.Millisecond), r2.FailedConnects, r2.Connects)
		}
		logf("daemon logs: %s (removed at the end; -keep keeps the lab)", logDir)
		logf("`make bench` measures 30 of each, with keepalived as shipped and tuned as the baselines in the same run (BENCHMARKS.md)")
		logf("demo took %v", time.Since(began).Round(100*time.Millisecond))
		if keep {
			heading("The lab keeps running; press Ctrl-C to remove it")
			logf("e.g.: ip netns exec %s arping -c 3 -i eth0 %s", c.Client.Name, vip)
			<-ctx.Done()
		}
		return nil
	})
}

func showOwners(c *failover.Cluster, p *failover.Probers) error {
	owners, err := c.Owners(p.ARP, 50*time.Millisecond)
	if err != nil {
		return err
	}
	for _, v := range c.VIPs() {
		names := owners[v]
		var who []string
		for _, name := range names {
			if n := c.NodeByName(name); n != nil {
				who = append(who, fmt.Sprintf("%s (%s)", n.Name, n.MAC))
			} else {
				who = append(who, name)
			}
		}
		line := strings.Join(who, ", ")
		switch len(names) {
		case 0:
			line = "nobody"
		case 1:
		default:
			line += "   <- more than one!"
		}
		fmt.Printf("    %-13s answered by %s\n", v, line)
	}
	return nil
}

func showResult(r failover.Result, what string) {
	if r.Err != "" {
		fmt.Printf("    %s: %s\n", what, r.Err)
		return
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%+.0f ms", float64(d)/float64(time.Millisecond)) }
	fmt.Printf("    fault at t=0; last ARP reply from %s at %s, first from %s at %s\n",
		r.Old, ms(r.LastOld.Sub(r.FaultAt)), r.New, ms(r.FirstNew.Sub(r.FaultAt)))
	if r.ARP <= failover.ProbeInterval+2*time.Millisecond {
		fmt.Printf("    => no gap: %s answered the next ARP probe (the probes are 10 ms apart)\n", r.New)
	} else {
		fmt.Printf("    => the client saw no owner for %v (ARP)\n", r.ARP.Round(time.Millisecond))
	}
	if r.Overlap {
		fmt.Printf("    (%s and %s both answered ARP for %v while handing over)\n", r.Old, r.New, r.OverlapFor.Round(time.Millisecond))
	}
	fmt.Printf("    its first TCP connect served by %s finished %v after %s's last ARP reply\n",
		r.New, r.TCP.Round(time.Millisecond), r.Old)
	fmt.Printf("    TCP connects every 10 ms: %d of %d failed\n", r.FailedConnects, r.Connects)
}

// showConfig keeps the sections worth showing.
func showConfig(cfg string) string {
	var out []string
	keep := false
	for _, line := range strings.Split(cfg, "\n") {
		if strings.HasPrefix(line, "[") {
			keep = line == "[gossip]" || line == "[[vip]]"
		}
		if keep && line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func orNone(s, why string) string {
	if s == "" {
		return "nobody (" + why + ")"
	}
	return s
}
