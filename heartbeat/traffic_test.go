package heartbeat_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/placement"
	"github.com/hostlb/hostlb/heartbeat"
)

// cluster is ips L2 IPs over nodes, as 100 ten-IP Services would be placed
// by the daemon, with every IP's owner and heir.
func cluster(nodes []string, ips int) (owners, heirs map[netip.Addr]string) {
	alive := map[string]bool{}
	for _, n := range nodes {
		alive[n] = true
	}
	reqs := make([]placement.Request, ips)
	for i := range reqs {
		reqs[i] = placement.Request{
			Service: fmt.Sprintf("ns/svc-%d", i/10), Slot: i % 10, Mode: placement.L2, Eligible: nodes,
			Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
		}
	}
	as := placement.Place(reqs, alive)
	owners = map[netip.Addr]string{}
	for _, a := range as {
		owners[a.Addr] = a.Owners[0]
	}
	return owners, placement.Heirs(reqs, alive, as)
}

// Heartbeat traffic is per (owner, heir) pair, not per IP: with 10 nodes
// and 1,000 IPs each node sends exactly one datagram per target and round,
// and the targets over all nodes are the distinct (owner, heir) pairs, at
// most N × (N − 1) = 90, against 1,000 heartbeats a round if it were per
// IP.
func TestTrafficIsPerNodePairNotPerIP(t *testing.T) {
	const nNodes = 10
	nodes := make([]string, nNodes)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node-%d", i)
	}
	for _, ips := range []int{100, 1000} {
		t.Run(fmt.Sprintf("%d IPs", ips), func(t *testing.T) {
			owners, heirs := cluster(nodes, ips)
			pairs := map[[2]string]bool{}
			for ip, o := range owners {
				if h := heirs[ip]; h != "" {
					pairs[[2]string{o, h}] = true
				}
			}
			trafficRound(t, nodes, owners, heirs, len(pairs))
		})
	}
}

func trafficRound(t *testing.T, nodes []string, owners, heirs map[netip.Addr]string, pairs int) {
	type member struct {
		h                 *heartbeat.Heart
		addr              netip.AddrPort
		targets, watched  []string
		cancel            context.CancelFunc
		done              chan error
		ticks0, sentBeat0 uint64
		sentWatch0        uint64
	}
	ms := map[string]*member{}
	for _, n := range nodes {
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		// Misses 25 (1 s): this test counts datagrams; a loaded machine
		// must not fail it with a loss.
		h, err := heartbeat.New(heartbeat.Config{Node: n, Conn: conn, Keys: [][]byte{bytes.Repeat([]byte{1}, 32)}, Misses: 25})
		if err != nil {
			t.Fatal(err)
		}
		m := &member{h: h, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), done: make(chan error, 1)}
		m.targets, m.watched = heartbeat.Duties(n, owners, func(ip netip.Addr) string { return heirs[ip] })
		ms[n] = m
	}
	addrs := func(names []string) map[string]netip.AddrPort {
		out := map[string]netip.AddrPort{}
		for _, n := range names {
			out[n] = ms[n].addr
		}
		return out
	}
	sumTargets, sumWatched := 0, 0
	for _, m := range ms {
		m.h.SetTargets(addrs(m.targets))
		m.h.SetWatched(addrs(m.watched))
		sumTargets += len(m.targets)
		sumWatched += len(m.watched)
		var ctx context.Context
		ctx, m.cancel = context.WithCancel(context.Background())
		go func() { m.done <- m.h.Run(ctx) }()
	}
	stopAll := func() {
		for _, m := range ms {
			if m.cancel != nil {
				m.cancel()
				if err := <-m.done; err != nil {
					t.Errorf("Run: %v", err)
				}
				m.cancel = nil
			}
		}
	}
	t.Cleanup(stopAll)
	if sumTargets != pairs || sumWatched != pairs {
		t.Fatalf("targets %d, watched %d over all nodes; want the %d (owner, heir) pairs", sumTargets, sumWatched, pairs)
	}
	if most := len(nodes) * (len(nodes) - 1); pairs > most {
		t.Fatalf("%d pairs, more than N(N-1) = %d", pairs, most)
	}

	// Every watcher hears every node it watches.
	deadline := time.Now().Add(5 * time.Second)
	for n, m := range ms {
		for {
			alive := 0
			for _, w := range m.h.Watched() {
				if w.State == heartbeat.Alive {
					alive++
				}
			}
			if alive == len(m.watched) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s hears %d of the %d nodes it watches", n, alive, len(m.watched))
			}
			time.Sleep(5 * time.Millisecond) // polling, not synchronisation
		}
	}
	// Then at least 10 more rounds everywhere.
	for _, m := range ms {
		s := m.h.Stats()
		m.ticks0, m.sentBeat0, m.sentWatch0 = s.Ticks, s.SentBeats, s.SentWatch
	}
	for _, m := range ms {
		for m.h.Stats().Ticks < m.ticks0+10 {
			if time.Now().After(deadline.Add(5 * time.Second)) {
				t.Fatal("rounds do not advance")
			}
			time.Sleep(5 * time.Millisecond) // polling, not synchronisation
		}
	}
	stopAll() // counters final
	var ticks, beats, watches, losses uint64
	for n, m := range ms {
		s := m.h.Stats()
		dt, db := s.Ticks-m.ticks0, s.SentBeats-m.sentBeat0
		// The two counters are read apart, so a round in progress at
		// either reading may count in one and not the other: one round's
		// worth of slack, against the 1,000s a per-IP design would send.
		nt := uint64(len(m.targets))
		if want := dt * nt; db+nt < want || db > want+nt {
			t.Errorf("%s: %d heartbeats in %d rounds to %d targets, want one per target and round (%d, ± one round)", n, db, dt, nt, want)
		}
		// Watch-only requests go to watched nodes that are not targets,
		// each about once a second (every 25 rounds) once heard.
		onlyWatched := 0
		for _, w := range m.watched {
			if !slices.Contains(m.targets, w) {
				onlyWatched++
			}
		}
		if dw := s.SentWatch - m.sentWatch0; dw > uint64(onlyWatched)*(dt/20+1) {
			t.Errorf("%s: %d watch-only requests in %d rounds to %d watched non-targets", n, dw, dt, onlyWatched)
		}
		ticks += dt
		beats += db
		watches += s.SentWatch - m.sentWatch0
		losses += s.Losses
	}
	perRound := float64(beats) / float64(ticks) * float64(len(nodes))
	t.Logf("%d nodes, %d IPs: %d (owner, heir) pairs, %.1f heartbeats per round over all nodes (%d rounds); %d watch-only requests in those rounds",
		len(nodes), len(owners), pairs, perRound, ticks, watches)
	if losses != 0 {
		t.Errorf("%d losses among live nodes", losses)
	}
}
