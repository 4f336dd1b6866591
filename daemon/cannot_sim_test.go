package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/gossip/gossiptest"
	"github.com/hostlb/hostlb/netif"
)

// ownerOf waits until a is answered by exactly one node other than not,
// and returns it.
func (s *sim) ownerOf(a netip.Addr, not string, within time.Duration, what string) string {
	s.t.Helper()
	var owner string
	s.waitFor(within, what, func() error {
		ns := s.ledger.owners()[a]
		if len(ns) != 1 || ns[0] == not {
			return fmt.Errorf("%s answered by %v", a, ns)
		}
		owner = ns[0]
		return nil
	})
	return owner
}

// everyoneSees waits until every running node sees node's exclusions
// holding exactly cannot.
func (s *sim) everyoneSees(node string, cannot []netip.Addr, within time.Duration) {
	s.t.Helper()
	s.mu.Lock()
	nodes := slices.Collect(maps.Values(s.running))
	s.mu.Unlock()
	s.waitFor(within, "every node sees what "+node+" cannot announce", func() error {
		for _, nd := range nodes {
			for _, m := range nd.ring.Members() {
				if m.Name == node && !slices.Equal(m.Cannot, cannot) {
					return fmt.Errorf("%s sees %s unable to announce %v, want %v", nd.name, node, m.Cannot, cannot)
				}
			}
		}
		return nil
	})
}

// The owner of an IP loses its interface (renamed, moved away): its L2
// output answers the IP on no interface and says so; the node gossips it,
// the next node answers within the failover bound, the node tries nothing
// while no link is eligible, and takes the IP back without a gap once its
// link is back.
func TestSimCannotAnnounceMovesTheIPAndBack(t *testing.T) {
	s := newSim(t, 3)
	ip := s.vips[0].Addresses[0]
	owner := s.ledger.owners()[ip][0]
	s.mu.Lock()
	nd := s.running[owner]
	s.mu.Unlock()

	start := time.Now()
	nd.ann.setFail(ip, fmt.Errorf("%w: none of the interfaces [\"eth0\"] is up and broadcast", netif.ErrNoInterface))
	nd.d.Trigger("link eth0 renamed") // what the netlink monitor does
	next := s.ownerOf(ip, owner, 3*time.Second, ip.String()+" answered by another node")
	took := time.Since(start)
	t.Logf("%s could not announce %s: %s answers it %s later", owner, ip, next, took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("the next node took %s after %v, want within 1 s", ip, took)
	}
	s.everyoneSees(owner, []netip.Addr{ip}, 2*time.Second)
	// Nothing else moved, and the STATUS line counts it.
	if err := s.check(s.names); err != nil {
		t.Error(err)
	}
	s.waitFor(2*time.Second, "STATUS counts it", func() error {
		nd.d.mu.Lock()
		line := nd.d.lastLine
		nd.d.mu.Unlock()
		if !strings.Contains(line, "1 IPs this node cannot announce") {
			return fmt.Errorf("STATUS %q", line)
		}
		return nil
	})

	// The link comes back: the node takes its IP back, make-before-break.
	s.ledger.track(t, true)
	nd.ann.setFail(ip, nil)
	nd.d.Trigger("link eth0 back")
	s.waitFor(3*time.Second, ip.String()+" back on "+owner, func() error {
		if ns := s.ledger.owners()[ip]; !slices.Equal(ns, []string{owner}) {
			return fmt.Errorf("%s answered by %v", ip, ns)
		}
		return nil
	})
	s.ledger.track(t, false)
	if gaps := s.ledger.gapsSeen(); len(gaps) > 0 {
		t.Errorf("unanswered while %s took its IP back:\n%s", owner, strings.Join(gaps, "\n"))
	}
	if n := nd.ann.triesOf(ip); n != 1 {
		t.Errorf("%s asked its output for %s %d times while it had no interface, want once", owner, ip, n)
	}
	s.everyoneSees(owner, nil, 2*time.Second)
	s.waitConverged(5*time.Second, "consistent after the link came back")
}

// A socket that keeps failing is tried again with backoff; a failed try
// loses nothing (the node that took the IP keeps answering it until the
// trying node's announced set shows it, which it never does), and the
// first try after the socket works takes the IP back, again without a gap.
func TestSimFailedRetriesLoseNothing(t *testing.T) {
	s := newSimTweaked(t, 3, func(_ string, o *Options) { o.CannotRetry = 100 * time.Millisecond })
	ip := s.vips[0].Addresses[1]
	owner := s.ledger.owners()[ip][0]
	s.mu.Lock()
	nd := s.running[owner]
	s.mu.Unlock()
	nd.ann.setFail(ip, fmt.Errorf("%w: listen ARP on \"eth0\": operation not permitted", netif.ErrNoResponder))
	nd.d.Trigger("test")
	s.ownerOf(ip, owner, 3*time.Second, ip.String()+" answered by another node")

	s.ledger.track(t, true)
	s.waitFor(10*time.Second, owner+" tried "+ip.String()+" again three times", func() error {
		if n := nd.ann.triesOf(ip); n < 4 {
			return fmt.Errorf("%d tries", n)
		}
		return nil
	})
	if ns := s.ledger.owners()[ip]; len(ns) != 1 || ns[0] == owner {
		t.Errorf("after failed tries %s is answered by %v", ip, ns)
	}
	nd.ann.setFail(ip, nil)
	s.waitFor(5*time.Second, ip.String()+" back on "+owner, func() error {
		if ns := s.ledger.owners()[ip]; !slices.Equal(ns, []string{owner}) {
			return fmt.Errorf("%s answered by %v", ip, ns)
		}
		return nil
	})
	s.ledger.track(t, false)
	t.Logf("%s tried %s %d times before its socket worked", owner, ip, nd.ann.triesOf(ip))
	if gaps := s.ledger.gapsSeen(); len(gaps) > 0 {
		t.Errorf("unanswered during failed tries:\n%s", strings.Join(gaps, "\n"))
	}
	s.waitConverged(5*time.Second, "consistent after the socket works")
}

// newSimTweaked is newSim with tweak applied to every daemon's Options.
func newSimTweaked(t *testing.T, n int, tweak func(string, *Options)) *sim {
	t.Helper()
	vips := []config.VIP{
		{Name: "web", Mode: config.ModeL2, Addresses: addrs("192.0.2.10", 5)},
		{Name: "api", Mode: config.ModeL2, Addresses: addrs("192.0.2.20", 3)},
	}
	s := startSim(t, n, vips, func(s *sim) { s.tweak = tweak })
	took := s.waitConverged(10*time.Second, "initial convergence")
	t.Logf("%d daemons converged after %s", n, took.Round(time.Millisecond))
	return s
}

// startSim starts n daemons with vips, set up by setup first; it does not
// wait for them.
func startSim(t *testing.T, n int, vips []config.VIP, setup func(*sim)) *sim {
	t.Helper()
	var all []netip.Addr
	for _, v := range vips {
		all = append(all, v.Addresses...)
	}
	s := &sim{t: t, net: gossiptest.NewNetwork(), ledger: newLedger(all), vips: vips, log: simLogger(t), running: map[string]*simNode{}}
	setup(s)
	for i := 1; i <= n; i++ {
		s.names = append(s.names, fmt.Sprintf("n%d", i))
	}
	t.Cleanup(s.close)
	for _, name := range s.names {
		s.start(name)
	}
	return s
}

// The acceptance: 10,000 static VIPs with health checks, half of
// them failing on each of 3 nodes (VIP i fails on node k when bit k of i is
// set, so an eighth fail everywhere and an eighth nowhere). Placement
// honours every check: no node announces a VIP whose check fails there,
// and every VIP whose check passes somewhere is announced by exactly one
// node. The failing VIPs' names (5,000 per node) travel with the announced
// sets, far beyond the 512 bytes of node metadata.
func TestSimTenThousandHealthChecksHonoured(t *testing.T) {
	const n, nodes = 10000, 3
	base := netip.MustParseAddr("2001:db8:10::")
	vips := make([]config.VIP, n)
	a := base
	for i := range vips {
		vips[i] = config.VIP{Name: fmt.Sprintf("v%05d", i), Mode: config.ModeL2, Addresses: []netip.Addr{a},
			// The port names the VIP: the fake dial below reads it.
			Health: &config.Health{TCP: fmt.Sprintf("192.0.2.1:%d", i+1), Interval: time.Hour, Timeout: time.Second}}
		a = a.Next()
	}
	index := func(ip netip.Addr) int {
		b, o := ip.As16(), base.As16()
		return int(b[14]-o[14])<<8 | int(b[15]-o[15])
	}
	node := func(name string) int { k, _ := strconv.Atoi(strings.TrimPrefix(name, "n")); return k - 1 }
	fails := func(k, i int) bool { return i>>k&1 == 1 }
	start := time.Now()
	s := startSim(t, nodes, vips, func(s *sim) {
		if os.Getenv("HOSTLB_TEST_LOG") == "" {
			// Every failing check is a warning: 15,000 lines.
			s.log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
		}
		s.built = func(name string, d *Daemon) {
			k := node(name)
			d.health.dial = func(_ context.Context, addr string) error {
				_, port, _ := strings.Cut(addr, ":")
				i, err := strconv.Atoi(port)
				if err != nil {
					return err
				}
				if fails(k, i-1) {
					return errors.New("connection refused")
				}
				return nil
			}
		}
	})
	took := s.waitFor(2*time.Minute, "placement honours every check", func() error {
		owners := s.ledger.owners()
		var errs []error
		announced := 0
		for i, v := range vips {
			ip := v.Addresses[0]
			ns := owners[ip]
			healthySomewhere := false
			for k := range nodes {
				healthySomewhere = healthySomewhere || !fails(k, i)
			}
			switch {
			case len(ns) > 1:
				errs = append(errs, fmt.Errorf("%s (%s) answered by %v", v.Name, ip, ns))
			case len(ns) == 1 && fails(node(ns[0]), index(ip)):
				errs = append(errs, fmt.Errorf("%s (%s) answered by %s, whose check of it fails", v.Name, ip, ns[0]))
			case healthySomewhere && len(ns) == 0:
				errs = append(errs, fmt.Errorf("%s (%s) healthy somewhere, answered by none", v.Name, ip))
			}
			announced += len(ns)
			if len(errs) > 5 {
				break
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("%d VIPs answered; %w", announced, errors.Join(errs...))
		}
		return nil
	})
	t.Logf("3 daemons, 10,000 health-checked VIPs: placement honoured every check %s after the start (waited %s for it)",
		time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
	// Every node learned every other's 5,000 failing VIPs from the ring.
	s.mu.Lock()
	running := slices.Collect(maps.Values(s.running))
	s.mu.Unlock()
	for _, nd := range running {
		for _, m := range nd.ring.Members() {
			if len(m.Unhealthy) != n/2 {
				t.Errorf("%s sees %s failing %d VIPs, want %d", nd.name, m.Name, len(m.Unhealthy), n/2)
			}
		}
	}
	per := map[string]int{}
	for _, ns := range s.ledger.owners() {
		for _, x := range ns {
			per[x]++
		}
	}
	t.Logf("VIPs answered per node: %v (%d fail everywhere)", per, n/8)
}
