package daemon

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
	"github.com/hostlb/hostlb/gossip"
)

// benchGroups are n Kubernetes-like groups of one IPv6 slot each, every
// one of three nodes eligible: the lab benchmark's Services.
func benchGroups(n int) []reconcile.Group {
	nodes := []string{"n1", "n2", "n3"}
	out := make([]reconcile.Group, 0, n)
	ip := netip.MustParseAddr("2001:db8:1000::")
	for i := range n {
		ip = ip.Next()
		out = append(out, reconcile.Group{
			Name: fmt.Sprintf("ns/svc-%05d", i), Source: "kubernetes", Mode: config.ModeL2,
			Slots: [][]netip.Addr{{ip}}, Nodes: nodes, Ranks: nodes, Interfaces: []string{},
		})
	}
	return out
}

// benchView is n1's view of a settled three-node ring in which every node
// announces what placement gives it.
func benchView(groups []reconcile.Group) clusterView {
	var members []gossip.Member
	for _, n := range []string{"n1", "n2", "n3"} {
		members = append(members, gossip.Member{Name: n, Alive: true, State: gossip.StateAlive,
			Meta: gossip.Meta{Health: gossip.HealthOK}})
	}
	v := newClusterView("n1", members)
	ps := placeGroups(v, groups)
	for i := range members {
		for _, p := range ps {
			if p.owns(members[i].Name) {
				members[i].Announced = append(members[i].Announced, p.Addr)
			}
		}
	}
	return newClusterView("n1", members)
}

func BenchmarkPlacePass10k(b *testing.B) {
	groups := benchGroups(10000)
	v := benchView(groups)
	prev := ownedDesired("n1", placeGroups(v, groups))
	holding := map[netip.Addr]time.Time{}
	b.ReportAllocs()
	for b.Loop() {
		ps := placeGroups(v, groups)
		next := ownedDesired("n1", ps)
		holdLost(v, prev, next, ps, holding, time.Now(), time.Second)
		disagreements(v, ps)
		l2Wanted(next)
		reports(next, nil, nil)
	}
}

func BenchmarkClusterView10k(b *testing.B) {
	groups := benchGroups(10000)
	v := benchView(groups)
	b.ReportAllocs()
	for b.Loop() {
		newClusterView("n1", v.members)
	}
}

// BenchmarkPlaceHeirs10k is BenchmarkPlacePass10k's placement with the
// heirs the heartbeat needs (placeGroupsHeirs), against placeGroups alone.
func BenchmarkPlaceHeirs10k(b *testing.B) {
	groups := benchGroups(10000)
	v := benchView(groups)
	b.Run("place", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			placeGroups(v, groups)
		}
	})
	b.Run("place+heirs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			placeGroupsHeirs(v, groups, map[netip.Addr]string{})
		}
	})
}
