package netif

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
)

func TestMarkerRoundTrip(t *testing.T) {
	long := string(bytes.Repeat([]byte("n"), 100))
	for _, m := range []Marker{
		{Kind: markerClaim, Ring: 3, Node: "n1"},
		{Kind: markerProbe, Ring: 0xffff, Node: ""},
		{Kind: markerYielded, Ring: 1, Node: long},
	} {
		want := m
		if len(want.Node) > maxMarkerName {
			want.Node = want.Node[:maxMarkerName]
		}
		req, _ := gratuitousARP(vip4, ourMAC, m)
		got, err := ParseARP(mustMarshal(t, req))
		if err != nil || got.Marker != want {
			t.Errorf("ARP marker %+v: got %+v, %v", want, got.Marker, err)
		}
		na := unsolicitedNA(vip6, ourMAC)
		na.Marker = m
		gotNA, err := ParseNA(mustMarshal(t, na))
		if err != nil || gotNA.Marker != want {
			t.Errorf("NA marker %+v: got %+v, %v", want, gotNA.Marker, err)
		}
		gotNS, err := ParseNS(mustMarshal(t, dadProbe(vip6, ourMAC, m)))
		if err != nil || gotNS.Marker != want || !gotNS.IsDAD() {
			t.Errorf("DAD probe marker %+v: got %+v, %v", want, gotNS, err)
		}
	}
	// Unmarked frames (zero padding, no option) and bad markers read as none.
	req, _ := gratuitousARP(vip4, ourMAC, Marker{})
	if got, _ := ParseARP(mustMarshal(t, req)); got.Marker.IsHostlb() {
		t.Errorf("unmarked ARP read as %+v", got.Marker)
	}
	for _, b := range [][]byte{
		nil, []byte("HLB1"), []byte("HLB1\x09\x00\x01\x00"), []byte("HLB1\x01\x00\x01\x05ab"), []byte("XLB1\x01\x00\x01\x00"),
	} {
		if m := parseMarker(b); m.IsHostlb() {
			t.Errorf("parseMarker(%q) = %+v", b, m)
		}
	}
}

// hub joins fake packet conns like a switch: every frame one responder
// writes reaches every other conn that is still plugged in.
type hub struct {
	mu    sync.Mutex
	ports map[*fakePacketConn]bool
	wg    sync.WaitGroup
}

func newHub(t *testing.T, conns ...*fakePacketConn) *hub {
	h := &hub{ports: map[*fakePacketConn]bool{}}
	for _, c := range conns {
		h.ports[c] = true
	}
	done := make(chan struct{})
	for _, c := range conns {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			for {
				select {
				case b := <-c.written:
					h.forward(c, b)
				case <-done:
					return
				}
			}
		}()
	}
	t.Cleanup(func() { close(done); h.wg.Wait() })
	return h
}

func (h *hub) forward(from *fakePacketConn, b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.ports[from] {
		return
	}
	for c, up := range h.ports {
		if c == from || !up {
			continue
		}
		select {
		case c.in <- b:
		default: // a full port drops, as a switch would
		}
	}
}

func (h *hub) unplug(c *fakePacketConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ports[c] = false
}

// eventLog collects one responder's conflict events.
type eventLog struct {
	mu  sync.Mutex
	evs []ConflictEvent
}

func (l *eventLog) add(ev ConflictEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

func (l *eventLog) has(a ConflictAction, node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.evs, func(ev ConflictEvent) bool { return ev.Action == a && ev.Node == node })
}

func (l *eventLog) count(a ConflictAction) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.evs {
		if ev.Action == a {
			n++
		}
	}
	return n
}

type fenced struct {
	conn *fakePacketConn
	r    Responder
	log  *eventLog
	stop context.CancelFunc
	done chan struct{}
}

func startFenced(t *testing.T, v6 bool, node string, mac net.HardwareAddr, isPeer func(string) bool, addr netip.Addr) *fenced {
	return startFencedRing(t, v6, node, mac, isPeer, nil, addr)
}

func startFencedRing(t *testing.T, v6 bool, node string, mac net.HardwareAddr, isPeer func(string) bool, ring func() int, addr netip.Addr) *fenced {
	t.Helper()
	f := &fenced{conn: newFakePacketConn(), log: &eventLog{}, done: make(chan struct{})}
	cfg := ResponderConfig{Ifindex: 7, Ifname: "test0", HardwareAddr: mac, Fence: &FenceConfig{
		Node: node, IsPeer: isPeer, RingSize: ring, OnEvent: f.log.add,
		Burst: func() (int, time.Duration) { return 1, 0 },
	}}
	if v6 {
		f.r = NewNDPResponder(f.conn, cfg)
	} else {
		f.r = NewARPResponder(f.conn, cfg)
	}
	if err := f.r.SetOwned([]netip.Addr{addr}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	go func() {
		defer close(f.done)
		_ = f.r.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-f.done })
	return f
}

// TestFenceLowerMACKeeps: two nodes outside each other's ring answer one
// address; the lower MAC keeps it, the other yields and tells it, and takes
// the address back when the winner goes quiet. ARP and NDP alike.
func TestFenceLowerMACKeeps(t *testing.T) {
	for _, tc := range []struct {
		name string
		v6   bool
		addr netip.Addr
	}{{"ARP", false, vip4}, {"NDP", true, vip6}} {
		t.Run(tc.name, func(t *testing.T) {
			low := startFenced(t, tc.v6, "n1", ourMAC, nil, tc.addr)
			high := startFenced(t, tc.v6, "n2", peerMAC, nil, tc.addr)
			h := newHub(t, low.conn, high.conn)

			// The higher MAC takes over (a burst round), as a node that
			// lost the ring would.
			if err := high.r.Announce(context.Background(), tc.addr, 1, 0); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the higher MAC to yield", func() bool { return !high.r.Answers(tc.addr) })
			if !low.r.Answers(tc.addr) {
				t.Fatal("the lower MAC stopped answering too")
			}
			waitFor(t, "both sides to log the conflict", func() bool {
				return low.log.has(ConflictDefending, "n2") && high.log.has(ConflictYielding, "n1") &&
					low.log.has(ConflictPeerYielded, "n2")
			})
			if cs := high.r.Conflicts(); len(cs) != 1 || !cs[0].Yielded || cs[0].Node != "n1" || !bytes.Equal(cs[0].TheirMAC, ourMAC) {
				t.Errorf("loser's conflicts: %+v", cs)
			}
			// It stays settled: the loser's probes keep finding the winner.
			waitFor(t, "the loser to probe the winner", func() bool { return high.r.Stats()[statFenceProbes] >= 3 })
			if high.r.Answers(tc.addr) || high.log.count(ConflictYielding) != 1 {
				t.Fatalf("the loser flapped: answers=%v yields=%d", high.r.Answers(tc.addr), high.log.count(ConflictYielding))
			}

			// The winner dies: the loser answers again after a probe goes
			// unanswered.
			h.unplug(low.conn)
			low.stop()
			start := time.Now()
			waitFor(t, "the loser to take the address back", func() bool {
				return high.r.Answers(tc.addr) && high.log.has(ConflictResumed, "n1")
			})
			t.Logf("resumed %v after the winner went quiet", time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestFenceLargerRingKeeps: the side of a partition with more live members
// keeps the address whatever the MACs; a node cut off alone yields.
func TestFenceLargerRingKeeps(t *testing.T) {
	alone := startFencedRing(t, false, "n1", ourMAC, nil, func() int { return 1 }, vip4)
	majority := startFencedRing(t, false, "n2", peerMAC, nil, func() int { return 2 }, vip4)
	newHub(t, alone.conn, majority.conn)
	if err := alone.r.Announce(context.Background(), vip4, 1, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lone node to yield", func() bool { return !alone.r.Answers(vip4) })
	if !majority.r.Answers(vip4) {
		t.Fatal("the majority side stopped answering")
	}
	waitFor(t, "both to log it", func() bool {
		return alone.log.has(ConflictYielding, "n2") && majority.log.has(ConflictDefending, "n1")
	})
}

// TestFencePeersLeftToPlacement: a claim from a live member of the ring is a
// handover in flight, never fenced; when the winner joins the ring the loser
// answers again at once (Recheck), so the ring's handover takes over.
func TestFencePeersLeftToPlacement(t *testing.T) {
	var mu sync.Mutex
	members := map[string]bool{"n1": true, "n2": true}
	isPeer := func(n string) bool { mu.Lock(); defer mu.Unlock(); return members[n] }
	low := startFenced(t, false, "n1", ourMAC, isPeer, vip4)
	high := startFenced(t, false, "n2", peerMAC, isPeer, vip4)
	newHub(t, low.conn, high.conn)
	if err := high.r.Announce(context.Background(), vip4, 1, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both to probe", func() bool {
		return low.r.Stats()[statFenceProbes] >= 2 && high.r.Stats()[statFenceProbes] >= 2
	})
	if !high.r.Answers(vip4) || !low.r.Answers(vip4) || high.log.count(ConflictYielding) > 0 {
		t.Fatalf("a member was fenced: low=%v high=%v", low.r.Answers(vip4), high.r.Answers(vip4))
	}

	// The ring splits: now they settle.
	mu.Lock()
	members = map[string]bool{}
	mu.Unlock()
	waitFor(t, "the split to be settled", func() bool { return !high.r.Answers(vip4) })

	// The ring heals: the loser answers again without waiting for a probe.
	mu.Lock()
	members = map[string]bool{"n1": true, "n2": true}
	mu.Unlock()
	high.r.Recheck()
	if !high.r.Answers(vip4) {
		t.Fatal("Recheck after the winner joined the ring left the address yielded")
	}
}

// TestFenceForeignReportedNotFought: a host without the marker that answers
// for an owned address is reported once and never fought: the node keeps
// answering and sends nothing extra.
func TestFenceForeignReportedNotFought(t *testing.T) {
	f := startFenced(t, false, "n1", peerMAC, nil, vip4)
	foreign := mustMarshal(t, ARPMessage{
		EthDst: broadcastMAC, EthSrc: otherMAC, Op: arp.OperationReply,
		SenderHW: otherMAC, SenderIP: vip4, TargetHW: broadcastMAC, TargetIP: vip4,
	})
	f.conn.deliver(t, foreign)
	f.conn.deliver(t, foreign)
	// A sentinel request, answered: everything before it was handled.
	f.conn.deliver(t, mustMarshal(t, arpRequestMsg(otherMAC, peer4, vip4)))
	for {
		m, err := ParseARP(f.conn.next(t))
		if err != nil {
			t.Fatal(err)
		}
		if m.IsProbe() && m.Marker.Kind == markerProbe {
			continue // the regular probe
		}
		if m.Op != arp.OperationReply || !bytes.Equal(m.EthDst, otherMAC) {
			t.Fatalf("wrote %+v, want only the answer to the sentinel", m)
		}
		break
	}
	if !f.r.Answers(vip4) || f.log.count(ConflictForeign) != 1 || f.r.Stats()[statFenceForeign] != 1 {
		t.Fatalf("answers=%v foreign events=%d", f.r.Answers(vip4), f.log.count(ConflictForeign))
	}
	if cs := f.r.Conflicts(); len(cs) != 1 || cs[0].Node != "" || cs[0].Yielded {
		t.Errorf("conflicts: %+v", cs)
	}
}

// TestFenceProbeBudget: however many addresses a responder owns, it sends
// at most one probe per tick, probes each address at most once per
// probeEvery, and reaches every address.
func TestFenceProbeBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	f := newFence(FenceConfig{Node: "n1", Now: func() time.Time { return now }}, ourMAC, nil)
	owned := &ownedSet{addrs: map[netip.Addr]struct{}{}}
	const n = 10_000
	base := netip.MustParseAddr("198.51.100.0").As4()
	for i := range n {
		b := base
		b[2], b[3] = byte(i>>8), byte(i)
		owned.addrs[netip.AddrFrom4(b)] = struct{}{}
	}
	seen := map[netip.Addr]time.Time{}
	ticks := 2 * n // twice what a full round needs
	probes := 0
	for range ticks {
		now = now.Add(probeTick)
		addr, kind, _, _ := f.probeDue(owned)
		if kind == markerNone {
			continue
		}
		probes++
		if last, ok := seen[addr]; ok && now.Sub(last) < probeEvery {
			t.Fatalf("%v probed again after %v", addr, now.Sub(last))
		}
		seen[addr] = now
	}
	if probes > ticks {
		t.Fatalf("%d probes in %d ticks", probes, ticks)
	}
	if len(seen) != n {
		t.Fatalf("probed %d of %d addresses in %d ticks", len(seen), n, ticks)
	}
}

// TestFenceStaleClaimsNeverLeaveTheAddressDark: each side holds a stale
// claim of the other that says the other wins (ring sizes age while
// memberlist declares members dead). Neither may go quiet on that alone: a
// node yields only to a winner it heard answer after its own probe, so at
// no moment do both stop answering, and they settle on the real rule.
func TestFenceStaleClaimsNeverLeaveTheAddressDark(t *testing.T) {
	low := startFencedRing(t, false, "n1", ourMAC, nil, func() int { return 2 }, vip4)
	high := startFencedRing(t, false, "n2", peerMAC, nil, func() int { return 2 }, vip4)
	stale := func(from net.HardwareAddr, node string) []byte {
		req, _ := gratuitousARP(vip4, from, Marker{Kind: markerClaim, Ring: 3, Node: node})
		return mustMarshal(t, req)
	}
	// Both stale claims land while the two cannot hear each other yet:
	// neither may act on its stale claim alone, however long it waits.
	low.conn.deliver(t, stale(peerMAC, "n2"))
	high.conn.deliver(t, stale(ourMAC, "n1"))
	for end := time.Now().Add(3 * settleDelay); time.Now().Before(end); {
		if !low.r.Answers(vip4) || !high.r.Answers(vip4) {
			t.Fatalf("yielded on a stale claim, unconfirmed: low=%v high=%v", low.r.Answers(vip4), high.r.Answers(vip4))
		}
		time.Sleep(time.Millisecond) // sampling the invariant over the window
	}
	newHub(t, low.conn, high.conn)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if !low.r.Answers(vip4) && !high.r.Answers(vip4) {
			t.Fatal("both nodes stopped answering the address")
		}
		if !high.r.Answers(vip4) && low.r.Answers(vip4) && high.log.has(ConflictYielding, "n1") {
			break // settled: the same ring size, the lower MAC keeps it
		}
		time.Sleep(time.Millisecond) // sampling the invariant, not waiting for an event
	}
	if high.r.Answers(vip4) || !low.r.Answers(vip4) {
		t.Fatalf("not settled on the lower MAC: low=%v high=%v", low.r.Answers(vip4), high.r.Answers(vip4))
	}
}
