package daemon

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/placement"
	"github.com/hostlb/hostlb/gossip"
)

// fakeHeart records what the daemon tells its heartbeat.
type fakeHeart struct {
	mu               sync.Mutex
	targets, watched map[string]netip.AddrPort
	keys             [][]byte
}

func (f *fakeHeart) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (f *fakeHeart) SetTargets(t map[string]netip.AddrPort) {
	f.mu.Lock()
	f.targets = maps.Clone(t)
	f.mu.Unlock()
}
func (f *fakeHeart) SetWatched(w map[string]netip.AddrPort) {
	f.mu.Lock()
	f.watched = maps.Clone(w)
	f.mu.Unlock()
}
func (f *fakeHeart) SetKeys(k [][]byte) error { f.keys = k; return nil }

// heartMembers returns n alive, ready members n1…nn at 198.51.100.i:7947
// with heartbeats at port 7948.
func heartMembers(n int) []gossip.Member {
	var ms []gossip.Member
	for i := 1; i <= n; i++ {
		m := member(fmt.Sprintf("n%02d", i), gossip.StateAlive, gossip.HealthOK, nil)
		m.Addr = simAddr(i)
		m.Meta.HeartbeatPort = 7948
		ms = append(ms, m)
	}
	return ms
}

func heirDaemon(t *testing.T, logs *bytes.Buffer) (*Daemon, *fakeHeart) {
	t.Helper()
	hb := &fakeHeart{}
	d, err := New(Options{Config: testConfig(), Logger: slog.New(slog.NewTextHandler(logs, nil)), Heartbeat: hb})
	if err != nil {
		t.Fatal(err)
	}
	return d, hb
}

// TestHeartbeatDutiesArePerNodePair: with 10 nodes and 1,000 L2 IPs, each
// node sends to exactly the heirs of its IPs and watches exactly the
// owners of the IPs it is heir to, at their gossiped heartbeat ports; the
// datagrams of a round (one per target) are the distinct (owner, heir)
// pairs, at most 10 × 9, not one per IP; and each heir is the node
// placement gives the IP to when its owner is gone.
func TestHeartbeatDutiesArePerNodePair(t *testing.T) {
	const nodes, vips, per = 10, 100, 10
	var cfgVIPs []config.VIP
	for v := range vips {
		cfgVIPs = append(cfgVIPs, config.VIP{Name: fmt.Sprintf("v%03d", v), Mode: config.ModeL2,
			Addresses: addrs(fmt.Sprintf("2001:db8::%x:0", v+1), per)})
	}
	groups := StaticGroups(cfgVIPs)
	members := heartMembers(nodes)

	type pair struct{ owner, heir string }
	var pairs map[pair]bool
	sent := 0
	var firstHeirs map[netip.Addr]string
	var firstPS []placedIP
	for _, self := range members {
		v := newClusterView(self.Name, members)
		heirs := map[netip.Addr]string{}
		ps := placeGroupsHeirs(v, groups, heirs)
		if pairs == nil {
			pairs = map[pair]bool{}
			for _, p := range ps {
				if h := heirs[p.Addr]; h != "" {
					pairs[pair{p.Owners[0], h}] = true
				}
			}
			firstHeirs, firstPS = heirs, ps
		}
		if len(heirs) != vips*per {
			t.Fatalf("%d of %d IPs have an heir", len(heirs), vips*per)
		}
		var logs bytes.Buffer
		d, hb := heirDaemon(t, &logs)
		d.heartbeatDuties(v, ps, heirs)
		var wantT, wantW []string
		for p := range pairs {
			if p.owner == self.Name {
				wantT = append(wantT, p.heir)
			}
			if p.heir == self.Name {
				wantW = append(wantW, p.owner)
			}
		}
		slices.Sort(wantT)
		slices.Sort(wantW)
		if got := slices.Sorted(maps.Keys(hb.targets)); !slices.Equal(got, wantT) {
			t.Errorf("%s sends to %v, want %v", self.Name, got, wantT)
		}
		if got := slices.Sorted(maps.Keys(hb.watched)); !slices.Equal(got, wantW) {
			t.Errorf("%s watches %v, want %v", self.Name, got, wantW)
		}
		for n, ap := range hb.targets {
			var i int
			if _, err := fmt.Sscanf(n, "n%d", &i); err != nil {
				t.Fatal(err)
			}
			if ap != netip.AddrPortFrom(simAddr(i).Addr(), 7948) {
				t.Errorf("%s's heartbeat address %v", n, ap)
			}
		}
		sent += len(hb.targets)
	}
	t.Logf("%d nodes, %d IPs: %d (owner, heir) pairs, %d datagrams a round", nodes, vips*per, len(pairs), sent)
	if sent != len(pairs) || sent > nodes*(nodes-1) {
		t.Errorf("%d datagrams a round for %d pairs, want one per pair, at most %d", sent, len(pairs), nodes*(nodes-1))
	}

	// Each heir is who takes the IP when its owner is gone.
	for _, gone := range members {
		var rest []gossip.Member
		for _, m := range members {
			if m.Name != gone.Name {
				rest = append(rest, m)
			} else {
				dead := m
				dead.State, dead.Alive = gossip.StateDead, false
				rest = append(rest, dead)
			}
		}
		after := ownersOf(placeGroups(newClusterView("n01", rest), groups))
		for _, p := range firstPS {
			if p.Owners[0] != gone.Name {
				continue
			}
			if got := after[p.Addr.String()]; !slices.Equal(got, []string{firstHeirs[p.Addr]}) {
				t.Errorf("%s without %s goes to %v, its heir is %s", p.Addr, gone.Name, got, firstHeirs[p.Addr])
			}
		}
	}
}

// TestOverrideLost: a member the heartbeat lost is out of the up set (and
// so loses its IPs) while the ring holds it alive, for at most the ring's
// detection bound; then, or once the ring declares it dead, or when the
// heartbeat hears it again, the override ends. Nodes held lost stay
// watched, so their resumption is heard.
func TestOverrideLost(t *testing.T) {
	members := heartMembers(3)
	var logs bytes.Buffer
	d, hb := heirDaemon(t, &logs)
	groups := StaticGroups([]config.VIP{{Name: "web", Mode: config.ModeL2, Addresses: addrs("192.0.2.10", 3)}})
	place := func(now time.Time) (clusterView, map[string][]string, time.Time) {
		v := newClusterView("n01", members)
		end := d.overrideLost(&v, gossip.ProfileFast, now)
		heirs := map[netip.Addr]string{}
		ps := placeGroupsHeirs(v, groups, heirs)
		d.heartbeatDuties(v, ps, heirs)
		return v, ownersOf(ps), end
	}
	owned := func(o map[string][]string, n string) int {
		c := 0
		for _, ns := range o {
			if slices.Contains(ns, n) {
				c++
			}
		}
		return c
	}
	_, before, _ := place(time.Now())
	if owned(before, "n02") == 0 {
		t.Fatalf("n02 owns nothing: %v", before)
	}

	d.HeartbeatLost("n02")
	lostAt := d.heirs.lost["n02"]
	v, o, end := place(lostAt.Add(100 * time.Millisecond))
	if v.up["n02"] || v.lost["n02"].IsZero() || owned(o, "n02") != 0 {
		t.Errorf("n02 lost by the heartbeat: up %v, lost %v, owns %d", v.up["n02"], v.lost["n02"], owned(o, "n02"))
	}
	if bound := gossip.DetectionBound(gossip.ProfileFast, 3); !end.Equal(lostAt.Add(bound)) {
		t.Errorf("the override ends at %v, want the loss + %v", end.Sub(lostAt), bound)
	}
	if _, ok := hb.watched["n02"]; !ok {
		t.Errorf("n02 held lost is not watched: %v", hb.watched)
	}
	if why := whyNot(v, placedIP{group: &groups[0]}, members[1], nil); !strings.Contains(why, "heartbeat lost") {
		t.Errorf("why n02 does not announce: %q", why)
	}

	// The ring's bound passes with n02 alive: the ring wins, once.
	v, o, _ = place(end)
	if !v.up["n02"] || owned(o, "n02") == 0 {
		t.Errorf("after the bound: up %v, owns %d", v.up["n02"], owned(o, "n02"))
	}
	if !strings.Contains(logs.String(), "trusting the ring") {
		t.Errorf("the overruled heartbeat is not logged:\n%s", logs.String())
	}
	if _, ok := d.heirs.lost["n02"]; ok {
		t.Error("n02 still overridden after the bound")
	}

	// Heard again ends the override; dead in the ring too.
	d.HeartbeatLost("n03")
	if v, _, _ := place(time.Now()); v.up["n03"] {
		t.Error("n03 lost, still up")
	}
	d.HeartbeatResumed("n03")
	if v, _, _ := place(time.Now()); !v.up["n03"] {
		t.Error("n03 heard again, not up")
	}
	d.HeartbeatLost("n03")
	members[2].State, members[2].Alive = gossip.StateDead, false
	place(time.Now())
	if _, ok := d.heirs.lost["n03"]; ok {
		t.Error("n03 dead in the ring, still overridden")
	}
}

// The daemon's heirs (placeGroupsHeirs, with up sets shared between the
// groups of one class) are placement.Heirs' for every group.
func TestPlaceGroupsHeirsAgreesWithPlacement(t *testing.T) {
	groups := benchGroups(300)
	groups = append(groups, StaticGroups([]config.VIP{{Name: "web", Mode: config.ModeL2, Addresses: addrs("192.0.2.10", 5)}})...)
	v := benchView(groups)
	heirs := map[netip.Addr]string{}
	ps := placeGroupsHeirs(v, groups, heirs)
	want := map[netip.Addr]string{}
	for gi := range groups {
		g := &groups[gi]
		var reqs []placement.Request
		var as []placement.Assignment
		for _, p := range ps {
			if p.group == g && p.Addr == g.Slots[p.Slot][0] {
				as = append(as, p.Assignment)
			}
		}
		for i, slot := range g.Slots {
			r := placement.Request{Service: g.Name, Slot: i, Addr: slot[0], Mode: placement.L2}
			for _, m := range v.members {
				if g.Ranked(m.Name, m.Meta.Labels) {
					r.Eligible = append(r.Eligible, m.Name)
				}
			}
			if ns := v.announcers[slot[0]]; len(ns) == 1 {
				r.Current = ns[0]
			}
			reqs = append(reqs, r)
		}
		for a, h := range placement.Heirs(reqs, v.up, as) {
			for i, slot := range g.Slots {
				if slot[0] == a {
					for _, x := range g.Slots[i] {
						want[x] = h
					}
				}
			}
		}
	}
	if len(want) != 305 {
		t.Fatalf("placement.Heirs gave %d heirs, want 305", len(want))
	}
	if !maps.Equal(heirs, want) {
		t.Errorf("placeGroupsHeirs differs from placement.Heirs: %d vs %d heirs", len(heirs), len(want))
	}
}
