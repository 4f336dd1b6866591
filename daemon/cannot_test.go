package daemon

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
	"github.com/hostlb/hostlb/gossip"
	"github.com/hostlb/hostlb/netif"
	"github.com/hostlb/hostlb/netif/netiftest"
)

// A node that cannot announce an address of a slot is left out of that
// slot alone: the next node takes it, the node keeps its other slots, and
// a dual-stack slot moves whole.
func TestPlaceLeavesOutANodeThatCannotAnnounce(t *testing.T) {
	web := config.VIP{Name: "web", Mode: config.ModeL2, Addresses: addrs("192.0.2.10", 6)}
	members := []gossip.Member{
		member("n1", gossip.StateAlive, gossip.HealthOK, nil),
		member("n2", gossip.StateAlive, gossip.HealthOK, nil),
		member("n3", gossip.StateAlive, gossip.HealthOK, nil),
	}
	groups := StaticGroups([]config.VIP{web})
	before := ownersOf(placeGroups(newClusterView("n1", members), groups))
	// Each node holds two of the six.
	var victim, kept string
	for _, a := range web.Addresses {
		if o := before[a.String()]; len(o) == 1 && o[0] == "n1" {
			if victim == "" {
				victim = a.String()
			} else {
				kept = a.String()
			}
		}
	}
	if victim == "" || kept == "" {
		t.Fatalf("n1 does not hold two addresses: %v", before)
	}
	members[0].Cannot = []netip.Addr{netip.MustParseAddr(victim)}
	after := ownersOf(placeGroups(newClusterView("n2", members), groups))
	if o := after[victim]; len(o) != 1 || o[0] == "n1" {
		t.Errorf("%s owned by %v after n1 said it cannot announce it", victim, o)
	}
	for a, o := range before {
		if a != victim && !slices.Equal(after[a], o) {
			t.Errorf("%s moved from %v to %v", a, o, after[a])
		}
	}
	// The next node cannot either: the third takes it.
	next := after[victim][0]
	for i := range members {
		if members[i].Name == next {
			members[i].Cannot = []netip.Addr{netip.MustParseAddr(victim)}
		}
	}
	third := ownersOf(placeGroups(newClusterView("n3", members), groups))
	if o := third[victim]; len(o) != 1 || o[0] == "n1" || o[0] == next {
		t.Errorf("%s owned by %v; n1 and %s cannot announce it", victim, o, next)
	}
	// Nobody can: nobody owns it, and nothing else moves.
	for i := range members {
		members[i].Cannot = []netip.Addr{netip.MustParseAddr(victim)}
	}
	none := ownersOf(placeGroups(newClusterView("n3", members), groups))
	if o := none[victim]; len(o) != 0 {
		t.Errorf("%s owned by %v though no node can announce it", victim, o)
	}

	// A dual-stack slot moves whole when its owner cannot announce one
	// family.
	v4, v6 := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1")
	svc := reconcile.Group{Name: "ns/svc", Source: "kubernetes", Mode: config.ModeL2,
		Slots: [][]netip.Addr{{v4, v6}}, Nodes: []string{"n1", "n2", "n3"}, Ranks: []string{"n1", "n2", "n3"}}
	for i := range members {
		members[i].Cannot = nil
	}
	owner := ownersOf(placeGroups(newClusterView("n1", members), []reconcile.Group{svc}))[v4.String()][0]
	for i := range members {
		if members[i].Name == owner {
			members[i].Cannot = []netip.Addr{v6}
		}
	}
	moved := ownersOf(placeGroups(newClusterView("n1", members), []reconcile.Group{svc}))
	if o4, o6 := moved[v4.String()], moved[v6.String()]; len(o4) != 1 || o4[0] == owner || !slices.Equal(o4, o6) {
		t.Errorf("after %s said it cannot announce %s: %s on %v, %s on %v", owner, v6, v4, o4, v6, o6)
	}
}

// The guarantee, over random rings, exclusions and VIPs: no L2 address
// is placed on a node that cannot announce it or whose health check of its
// VIP fails; every address some up node can serve has exactly one owner;
// every node computes the same answer; and a node's exclusions never move
// an address it did not own (nor, when there are no exclusions, anything
// at all).
func TestPlaceNeverGivesAnIPToANodeThatCannotServeIt(t *testing.T) {
	minRapidChecks(t, 1000)
	rapid.Check(t, func(t *rapid.T) {
		nodes := rapid.IntRange(1, 6).Draw(t, "nodes")
		var vips []config.VIP
		for i := range rapid.IntRange(1, 5).Draw(t, "vips") {
			vips = append(vips, config.VIP{Name: fmt.Sprintf("v%d", i), Mode: config.ModeL2,
				Addresses: addrs(fmt.Sprintf("192.0.2.%d", 10+i*20), rapid.IntRange(1, 5).Draw(t, "addrs"))})
		}
		groups := StaticGroups(vips)
		var members []gossip.Member
		for i := range nodes {
			m := member(fmt.Sprintf("n%d", i+1), gossip.StateAlive, gossip.HealthOK, nil)
			if rapid.IntRange(0, 5).Draw(t, "dead") == 0 {
				m.State, m.Alive = gossip.StateDead, false
			}
			members = append(members, m)
		}
		clean := placeGroups(newClusterView("n1", members), groups)
		// Each member announces what it owns without exclusions (the
		// sticky current owners), then says what it cannot serve.
		for _, p := range clean {
			for i := range members {
				if p.owns(members[i].Name) {
					members[i].Announced = append(members[i].Announced, p.Addr)
				}
			}
		}
		before := placeGroups(newClusterView("n1", members), groups)
		for i := range members {
			for _, v := range vips {
				if rapid.IntRange(0, 4).Draw(t, "unhealthy") == 0 {
					members[i].Unhealthy = append(members[i].Unhealthy, v.Name)
				}
				for _, a := range v.Addresses {
					if rapid.IntRange(0, 3).Draw(t, "cannot") == 0 {
						members[i].Cannot = append(members[i].Cannot, a)
					}
				}
			}
		}
		ps := placeGroups(newClusterView("n1", members), groups)
		for _, self := range []string{"n2", "n3"} {
			if other := placeGroups(newClusterView(self, members), groups); !slices.EqualFunc(ps, other, func(a, b placedIP) bool {
				return a.Addr == b.Addr && slices.Equal(a.Owners, b.Owners)
			}) {
				t.Fatalf("%s places differently from n1", self)
			}
		}
		byName := map[string]gossip.Member{}
		for _, m := range members {
			byName[m.Name] = m
		}
		canServe := func(n, vip string, a netip.Addr) bool {
			m := byName[n]
			return m.Alive && !slices.Contains(m.Unhealthy, vip) && !slices.Contains(m.Cannot, a)
		}
		prev := map[netip.Addr][]string{}
		for _, p := range before {
			prev[p.Addr] = p.Owners
		}
		for _, p := range ps {
			vip := p.group.Name
			if len(p.Owners) > 1 {
				t.Fatalf("%s owned by %v", p.Addr, p.Owners)
			}
			if len(p.Owners) == 1 && !canServe(p.Owners[0], vip, p.Addr) {
				t.Fatalf("%s (%s) placed on %s, which cannot serve it (unhealthy %v, cannot %v)",
					p.Addr, vip, p.Owners[0], byName[p.Owners[0]].Unhealthy, byName[p.Owners[0]].Cannot)
			}
			someone := slices.ContainsFunc(members, func(m gossip.Member) bool { return canServe(m.Name, vip, p.Addr) })
			if someone != (len(p.Owners) == 1) {
				t.Fatalf("%s (%s): owners %v, though a node that can serve it exists: %v", p.Addr, vip, p.Owners, someone)
			}
			// An address whose owner can still serve it and whose VIP
			// lost no owner keeps its owner.
			if o := prev[p.Addr]; len(o) == 1 && canServe(o[0], vip, p.Addr) && !vipLostAnOwner(before, vip, canServe) && !slices.Equal(o, p.Owners) {
				t.Fatalf("%s moved from %v to %v though its owner can serve it", p.Addr, o, p.Owners)
			}
		}
	})
}

// minRapidChecks makes rapid run at least n cases (its default is 100)
// unless -rapid.checks or RAPID_CHECKS says otherwise.
func minRapidChecks(t *testing.T, n int) {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if _, env := os.LookupEnv("RAPID_CHECKS"); set || env {
		return
	}
	f := flag.Lookup("rapid.checks")
	old := f.Value.String()
	if err := f.Value.Set(fmt.Sprint(n)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Value.Set(old) })
}

// vipLostAnOwner reports whether an address of vip was owned, in ps, by a
// node that can no longer serve it (its slot then takes a fallback, which
// may re-pack the VIP's other fallbacks: placement's guarantee 2).
func vipLostAnOwner(ps []placedIP, vip string, canServe func(n, vip string, a netip.Addr) bool) bool {
	for _, p := range ps {
		if p.group.Name == vip && len(p.Owners) == 1 && !canServe(p.Owners[0], vip, p.Addr) {
			return true
		}
	}
	return false
}

// exclusionsRing is a Ring that only records what the daemon gossips.
type exclusionsRing struct {
	mu        sync.Mutex // guards the fields below
	cannot    []netip.Addr
	unhealthy []string
	sets      int // SetExclusions calls that changed something
}

func (r *exclusionsRing) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (r *exclusionsRing) Ready() <-chan struct{}        { return readyCh }
func (r *exclusionsRing) Members() []gossip.Member      { return nil }
func (r *exclusionsRing) SetAnnounced([]netip.Addr)     {}
func (r *exclusionsRing) SetExclusions(cannot []netip.Addr, unhealthy []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(cannot, r.cannot) || !slices.Equal(unhealthy, r.unhealthy) {
		r.sets++
	}
	r.cannot, r.unhealthy = slices.Clone(cannot), slices.Clone(unhealthy)
}
func (r *exclusionsRing) SetHealth(gossip.Health) error     { return nil }
func (r *exclusionsRing) SetLabels(map[string]string) error { return nil }
func (r *exclusionsRing) SetJoin([]string)                  {}
func (r *exclusionsRing) Refused() string                   { return "" }
func (r *exclusionsRing) gossiped() (cannot []netip.Addr, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.cannot), r.sets
}

var readyCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// checkAnnouncer is an L2 output for the retry schedule: Check reports
// noIface as having no interface.
type checkAnnouncer struct {
	fakeAnnouncer
	noIface map[netip.Addr]bool
}

func (c *checkAnnouncer) Check(_ netif.State, _ netif.L2Config, want []netif.L2Announcement) []netif.L2Cannot {
	var out []netif.L2Cannot
	for _, w := range want {
		if c.noIface[w.Addr] {
			out = append(out, netif.L2Cannot{Addr: w.Addr, VIP: w.VIP, Err: netif.ErrNoInterface})
		}
	}
	return out
}

// The retry schedule on a fake clock: an IP that failed for a socket is
// tried again after CannotRetry, then after twice as long each time, up
// to a minute, and on a link change once CannotRetry has passed; one
// with no interface only when Check finds one. Each episode is logged
// once at warn (VIP, address, reason), and its end at info.
func TestCannotRetrySchedule(t *testing.T) {
	var logs syncBuffer
	ring := &exclusionsRing{}
	links := netiftest.NewMonitor(eth0)
	l2 := &checkAnnouncer{fakeAnnouncer: *newFakeAnnouncer(), noIface: map[netip.Addr]bool{}}
	d, err := New(Options{Config: testConfig(), Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Links: links, L2: l2, Ring: ring, CannotRetry: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.stopTimer()
	cfg := d.config()
	sock, gone := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")
	groups := StaticGroups([]config.VIP{{Name: "web", Mode: config.ModeL2, Addresses: []netip.Addr{sock, gone}}})
	want := reconcile.Desired{
		sock: {Addr: sock, VIP: "web", Mode: config.ModeL2},
		gone: {Addr: gone, VIP: "web", Mode: config.ModeL2},
	}
	sockErr := fmt.Errorf("%w: listen ARP on \"eth0\": operation not permitted", netif.ErrNoResponder)
	failed := []netif.L2Cannot{{Addr: sock, VIP: "web", Err: sockErr}, {Addr: gone, VIP: "web", Err: netif.ErrNoInterface}}
	l2.noIface[gone] = true
	t0 := time.Now()
	// pass runs one pass's bookkeeping at now: the exclusions before
	// placement, then what the output could not announce. Placement asks
	// the output for what the node tries again (the rest went to other
	// nodes), and the output fails on those that are not fixed.
	fixed := map[netip.Addr]bool{}
	run := func(now time.Time, asked reconcile.Desired) (retried []netip.Addr, changed bool) {
		t.Helper()
		d.publishExclusions(cfg, groups, nil, now)
		published, _ := ring.gossiped()
		for _, a := range []netip.Addr{sock, gone} {
			if d.cannot[a] != nil && !slices.Contains(published, a) {
				retried = append(retried, a)
				asked[a] = want[a]
			}
		}
		var answered []netif.L2Status
		var cannot []netif.L2Cannot
		for a := range asked {
			if fixed[a] {
				answered = append(answered, netif.L2Status{Iface: "eth0", Addrs: []netip.Addr{a}})
				continue
			}
			i := slices.IndexFunc(failed, func(c netif.L2Cannot) bool { return c.Addr == a })
			cannot = append(cannot, failed[i])
		}
		changed = d.noteCannot(asked, answered, cannot, links.Snapshot(), now)
		if changed {
			d.republishExclusions()
		}
		return retried, changed
	}
	pass := func(now time.Time) ([]netip.Addr, bool) { return run(now, reconcile.Desired{}) }
	// Both fail: two episodes, both gossiped.
	if _, changed := run(t0, maps.Clone(want)); !changed {
		t.Fatal("new failures: nothing to gossip")
	}
	if got, _ := ring.gossiped(); !slices.Equal(got, []netip.Addr{sock, gone}) {
		t.Fatalf("gossiped %v, want both", got)
	}
	// The socket one is tried after 1 s, 2 s, 4 s... up to a minute; each
	// failed try gossips it again at once.
	at := t0
	var gaps []time.Duration
	for wait := time.Second; wait <= 4*time.Minute; wait *= 2 {
		step := min(wait, maxCannotRetry)
		if r, _ := pass(at.Add(step - time.Millisecond)); len(r) != 0 {
			t.Fatalf("tried %v %v after the last try, before its backoff %v", r, step-time.Millisecond, step)
		}
		r, changed := pass(at.Add(step))
		if !slices.Equal(r, []netip.Addr{sock}) {
			t.Fatalf("%v after the last try: tried %v, want only %s", step, r, sock)
		}
		if !changed {
			t.Fatal("a failed try changed nothing to gossip")
		}
		if got, _ := ring.gossiped(); !slices.Contains(got, sock) {
			t.Fatalf("after a failed try %s is not gossiped as unannounceable: %v", sock, got)
		}
		at = at.Add(step)
		gaps = append(gaps, step)
	}
	t.Logf("tries of %s, each after the last: %v", sock, gaps)
	if gaps[len(gaps)-1] != maxCannotRetry || gaps[len(gaps)-2] != maxCannotRetry {
		t.Errorf("backoff %v, want it capped at %v", gaps, maxCannotRetry)
	}

	// A link change makes it due once CannotRetry has passed.
	links.SetLink(netif.Link{Index: 9, Name: "eth9", Type: "device", Up: true, Broadcast: true})
	if r, _ := pass(at.Add(time.Second - time.Millisecond)); len(r) != 0 {
		t.Errorf("link change: tried %v within CannotRetry of the last try", r)
	}
	// This try works: the episode ends.
	fixed[sock] = true
	at = at.Add(time.Second)
	r, changed := pass(at)
	if !slices.Equal(r, []netip.Addr{sock}) {
		t.Errorf("link change: tried %v, want %s", r, sock)
	}
	if changed {
		t.Error("a try that worked changed what is gossiped (the IP was already left out)")
	}
	if got, _ := ring.gossiped(); slices.Contains(got, sock) || d.cannot[sock] != nil {
		t.Errorf("announced again, still gossiped as unannounceable: %v", got)
	}

	// The one with no interface was never tried; now Check finds one.
	if n := d.cannot[gone].tries; n != 1 {
		t.Errorf("%s tried %d times while no link was eligible, want 1", gone, n)
	}
	l2.noIface[gone] = false
	fixed[gone] = true
	if r, _ := pass(at); !slices.Equal(r, []netip.Addr{gone}) {
		t.Errorf("a link is eligible again: tried %v, want %s", r, gone)
	}
	if got, _ := ring.gossiped(); len(got) != 0 || len(d.cannot) != 0 {
		t.Errorf("both announced again: gossiped %v, tracked %d", got, len(d.cannot))
	}

	out := logs.String()
	for _, a := range []netip.Addr{sock, gone} {
		if n := strings.Count(out, `level=WARN msg="cannot announce this IP" vip=web addr=`+a.String()); n != 1 {
			t.Errorf("%s: %d warnings, want one per episode:\n%s", a, n, out)
		}
		if !strings.Contains(out, `msg="announcing an IP again that this node could not announce" vip=web addr=`+a.String()) {
			t.Errorf("%s: the end of the episode is not logged:\n%s", a, out)
		}
	}
	if !strings.Contains(out, "operation not permitted") || !strings.Contains(out, "no eligible interface") {
		t.Errorf("the reasons are not logged:\n%s", out)
	}
}
