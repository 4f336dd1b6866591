package gossip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// manyAddrs returns n IPv4 and n/10 IPv6 addresses, sorted.
func manyAddrs(n int, salt byte) []netip.Addr {
	var out []netip.Addr
	for i := range n {
		out = append(out, netip.AddrFrom4([4]byte{198, salt, byte(i >> 8), byte(i)}))
	}
	for i := range n / 10 {
		out = append(out, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, salt, 14: byte(i >> 8), 15: byte(i)}))
	}
	return normalizeAddrs(out)
}

// announcedAgree reports whether every observer holds every owner's set.
func announcedAgree(observers []*node, want map[string][]netip.Addr) error {
	var errs []error
	for _, o := range observers {
		for owner, set := range want {
			m, ok := member(o, owner)
			if !ok {
				errs = append(errs, fmt.Errorf("%s does not know %s", o.name, owner))
				continue
			}
			if m.AnnouncedGen != m.Meta.AnnounceGen || !slices.Equal(m.Announced, set) || m.Meta.AnnounceCount != len(set) {
				errs = append(errs, fmt.Errorf("%s holds %s's set gen %d (%d IPs), meta gen %d (%d IPs), want %d IPs",
					o.name, owner, m.AnnouncedGen, len(m.Announced), m.Meta.AnnounceGen, m.Meta.AnnounceCount, len(set)))
			}
		}
	}
	return errors.Join(errs...)
}

func TestRingJoinMetadataAndAnnounced(t *testing.T) {
	c := newCluster(t, 4, nil)
	eventually(t, 3*time.Second, "all join", func() error {
		return seesAlive(c.nodes, c.names(c.nodes))
	})

	want := map[string][]netip.Addr{
		"n1": addrs("192.0.2.100", "2001:db8::100"),
		"n2": addrs("192.0.2.101"),
		"n3": nil,
		// Far more than fits node meta (512 bytes) or one packet.
		"n4": manyAddrs(3000, 4),
	}
	for _, n := range c.nodes {
		n.ring.SetAnnounced(want[n.name])
	}
	took := eventually(t, 5*time.Second, "announced sets spread", func() error {
		return announcedAgree(c.nodes, want)
	})
	t.Logf("announced sets (n4: %d IPs) everywhere after %v", len(want["n4"]), took)

	m, _ := member(c.nodes[0], "n3")
	if diff := cmp.Diff(Meta{Version: "test-1", Labels: map[string]string{"rack": "r1"}, Health: HealthOK},
		m.Meta, cmpIgnoreGens); diff != "" {
		t.Errorf("n1's view of n3's meta (-want +got):\n%s", diff)
	}
	if m.Addr != memAddr(3) {
		t.Errorf("n3 addr = %v, want %v", m.Addr, memAddr(3))
	}
}

var cmpIgnoreGens = cmp.Transformer("noGens", func(m Meta) Meta {
	m.Gen, m.AnnounceGen = 0, 0
	return m
})

func TestRingMetadataUpdate(t *testing.T) {
	c := newCluster(t, 3, nil)
	eventually(t, 3*time.Second, "all join", func() error {
		return seesAlive(c.nodes, c.names(c.nodes))
	})
	n2 := c.nodes[1]
	before := n2.ring.LocalMeta().Gen
	if err := n2.ring.SetLabels(map[string]string{"rack": "b7", "zone": "z"}); err != nil {
		t.Fatal(err)
	}
	if err := n2.ring.SetHealth(HealthDraining); err != nil {
		t.Fatal(err)
	}
	n2.ring.SetAnnounced(addrs("203.0.113.9", "203.0.113.1", "203.0.113.9"))
	took := eventually(t, 2*time.Second, "metadata update spreads", func() error {
		var errs []error
		for _, o := range c.nodes {
			m, _ := member(o, "n2")
			got := Meta{Labels: m.Meta.Labels, Health: m.Meta.Health, Version: m.Meta.Version, AnnounceCount: m.Meta.AnnounceCount}
			want := Meta{Labels: map[string]string{"rack": "b7", "zone": "z"}, Health: HealthDraining, Version: "test-1", AnnounceCount: 2}
			if d := cmp.Diff(want, got); d != "" {
				errs = append(errs, fmt.Errorf("%s: %s", o.name, d))
			}
		}
		return errors.Join(errs...)
	})
	t.Logf("metadata update seen by all after %v", took)
	eventually(t, 2*time.Second, "announced", func() error {
		return announcedAgree(c.nodes, map[string][]netip.Addr{"n2": addrs("203.0.113.1", "203.0.113.9")})
	})
	if after := n2.ring.LocalMeta().Gen; after <= before {
		t.Errorf("meta gen %d after updates, want > %d", after, before)
	}
	// Updates are events for the others.
	eventually(t, time.Second, "update events", func() error {
		for _, o := range []*node{c.nodes[0], c.nodes[2]} {
			ev := o.eventsFor("n2")
			if !slices.Contains(ev, EventUpdate) || !slices.Contains(ev, EventAnnounced) {
				return fmt.Errorf("%s saw %v for n2", o.name, ev)
			}
		}
		return nil
	})

	big := make(map[string]string)
	for i := range 40 {
		big[fmt.Sprintf("label-%02d", i)] = "some-longish-value"
	}
	if err := n2.ring.SetLabels(big); err == nil {
		t.Errorf("SetLabels with %d-byte labels: no error", 40*30)
	}
	if got := n2.ring.LocalMeta().Labels["zone"]; got != "z" {
		t.Errorf("labels after a rejected update: zone=%q, want the old z", got)
	}
}

func TestRingCrashDetectedWithinFastBound(t *testing.T) {
	c := newCluster(t, 5, nil)
	eventually(t, 3*time.Second, "all join", func() error {
		return seesAlive(c.nodes, c.names(c.nodes))
	})
	victim := c.nodes[2]
	others := slices.Delete(slices.Clone(c.nodes), 2, 3)
	c.net.Kill(victim.addr)
	took := eventually(t, 3*time.Second, "crash detected", func() error {
		return seesState(others, victim.name, StateDead)
	})
	t.Logf("crash of %s declared dead by all %d others after %v (fast profile)", victim.name, len(others), took)
	eventually(t, time.Second, "dead events", func() error {
		for _, o := range others {
			if ev := o.eventsFor(victim.name); !slices.Contains(ev, EventDead) {
				return fmt.Errorf("%s saw events %v for %s, want dead", o.name, ev, victim.name)
			}
		}
		return nil
	})
	if err := seesAlive(others, c.names(others)); err != nil {
		t.Error(err)
	}
}

func TestRingGracefulLeave(t *testing.T) {
	c := newCluster(t, 4, nil)
	eventually(t, 3*time.Second, "all join", func() error {
		return seesAlive(c.nodes, c.names(c.nodes))
	})
	leaver := c.nodes[3]
	others := c.nodes[:3]
	start := time.Now()
	leaver.stop(t)
	stopTook := time.Since(start)
	took := eventually(t, time.Second, "leave seen", func() error {
		return seesState(others, leaver.name, StateLeft)
	})
	t.Logf("Run of %s returned after %v; all others saw it left after %v", leaver.name, stopTook, stopTook+took)
	eventually(t, time.Second, "leave events", func() error {
		for _, o := range others {
			if ev := o.eventsFor(leaver.name); slices.Contains(ev, EventDead) || !slices.Contains(ev, EventLeave) {
				return fmt.Errorf("%s saw %v for %s, want leave and no dead", o.name, ev, leaver.name)
			}
		}
		return nil
	})
}

func TestRingPartitionHeals(t *testing.T) {
	c := newCluster(t, 5, nil)
	all := c.names(c.nodes)
	eventually(t, 3*time.Second, "all join", func() error { return seesAlive(c.nodes, all) })
	for _, n := range c.nodes {
		n.ring.SetAnnounced(addrs(fmt.Sprintf("192.0.2.%d", 200+len(n.name))))
	}

	a, b := c.nodes[:2], c.nodes[2:]
	addrsOf := func(ns []*node) []netip.AddrPort {
		var out []netip.AddrPort
		for _, n := range ns {
			out = append(out, n.addr)
		}
		return out
	}
	c.net.Partition(addrsOf(a), addrsOf(b))
	took := eventually(t, 3*time.Second, "partition splits the ring", func() error {
		return errors.Join(seesAlive(a, c.names(a)), seesAlive(b, c.names(b)))
	})
	t.Logf("partition: both sides see only themselves after %v", took)

	// Change metadata on one side during the partition; it must reach the
	// other side after the heal.
	a[0].ring.SetAnnounced(addrs("198.51.100.1", "198.51.100.2"))
	c.net.Heal()
	took = eventually(t, 5*time.Second, "ring heals", func() error { return seesAlive(c.nodes, all) })
	t.Logf("heal: one ring of %d again after %v", len(all), took)
	eventually(t, 3*time.Second, "member lists agree", func() error {
		want := c.nodes[0].ring.Members()
		for _, n := range c.nodes[1:] {
			got := n.ring.Members()
			if d := cmp.Diff(memberKeys(want), memberKeys(got), cmpopts.EquateComparable(netip.AddrPort{}, netip.Addr{})); d != "" {
				return fmt.Errorf("%s vs %s: %s", c.nodes[0].name, n.name, d)
			}
		}
		return nil
	})
	eventually(t, 3*time.Second, "announced after heal", func() error {
		return announcedAgree(b, map[string][]netip.Addr{a[0].name: addrs("198.51.100.1", "198.51.100.2")})
	})
}

// memberKeys is what every node must agree on.
type memberKey struct {
	Name      string
	Addr      netip.AddrPort
	Alive     bool
	Gen       uint64
	Announced []netip.Addr
}

func memberKeys(ms []Member) []memberKey {
	var out []memberKey
	for _, m := range ms {
		out = append(out, memberKey{m.Name, m.Addr, m.Alive, m.Meta.Gen, m.Announced})
	}
	return out
}

func TestRingAloneKeepsTryingSeeds(t *testing.T) {
	c := newCluster(t, 1, nil)
	// n2 starts with its seed n3 not yet up; it must find it later.
	lateSeed := []string{memAddr(3).String()}
	n2 := c.add(t, 2, lateSeed, nil)
	n3 := c.add(t, 3, []string{memAddr(1).String()}, nil)
	eventually(t, 5*time.Second, "late seed joined", func() error {
		return seesAlive([]*node{c.nodes[0], n2, n3}, []string{"n1", "n2", "n3"})
	})
}

func TestRingRunTwiceAndValidation(t *testing.T) {
	if _, err := New(Config{NodeName: "x", Profile: "turbo", SecretKeys: [][]byte{[]byte("short")}}); err == nil {
		t.Error("New with a bad profile and key: no error")
	}
	if _, err := New(Config{NodeName: "x", InsecurePlaintext: true, SecretKeys: [][]byte{testKey}}); err == nil {
		t.Error("New with a key and insecure_plaintext: no error")
	}
	c := newCluster(t, 1, nil)
	if err := c.nodes[0].ring.Run(t.Context()); err == nil {
		t.Error("second Run: no error")
	}
}
