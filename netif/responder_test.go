package netif

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
)

// startResponder runs r over conn until the test ends and checks Run
// returned nil.
func startResponder(t *testing.T, r Responder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestARPResponder(t *testing.T) {
	leakCheck(t)
	conn := newFakePacketConn()
	r := NewARPResponder(conn, testRcCfg)
	if err := r.SetOwned([]netip.Addr{vip4, vip6}); err != nil {
		t.Fatal(err)
	}
	startResponder(t, r)
	sentinel := mustMarshal(t, arpRequestMsg(otherMAC, peer4, vip4))

	// An owned address is answered, unicast, from our MAC.
	conn.deliver(t, mustMarshal(t, arpRequestMsg(peerMAC, peer4, vip4)))
	got, err := ParseARP(conn.next(t))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(arpReply(arpRequestMsg(peerMAC, peer4, vip4), ourMAC, Marker{}), got, addrComparer); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}

	// An RFC 5227 probe is answered: the owner defends its address.
	conn.deliver(t, mustMarshal(t, arpRequestMsg(peerMAC, netip.IPv4Unspecified(), vip4)))
	got, err = ParseARP(conn.next(t))
	if err != nil {
		t.Fatal(err)
	}
	if got.Op != arp.OperationReply || got.SenderIP != vip4 || got.TargetIP != netip.IPv4Unspecified() || !bytes.Equal(got.EthDst, peerMAC) {
		t.Errorf("probe answer: %+v", got)
	}

	// None of these is answered, each for its own counted reason.
	unicastElsewhere := arpRequestMsg(peerMAC, peer4, vip4)
	unicastElsewhere.EthDst = otherMAC
	fromSelf := arpRequestMsg(ourMAC, vip4b, vip4)
	fromSelfARPOnly := arpRequestMsg(peerMAC, peer4, vip4)
	fromSelfARPOnly.SenderHW = ourMAC
	conflict, _ := gratuitousARP(vip4, peerMAC, Marker{})
	replyFromPeer := arpReply(arpRequestMsg(ourMAC, vip4, peer4), peerMAC, Marker{})
	announcement, _ := gratuitousARP(peer4, peerMAC, Marker{})
	silent := []ARPMessage{
		arpRequestMsg(peerMAC, peer4, vip4b), // arp_not_owned
		unicastElsewhere,                     // frame_not_for_us
		fromSelf, fromSelfARPOnly,            // frame_from_self x2
		conflict,      // arp_conflict
		replyFromPeer, // arp_not_request
		announcement,  // arp_announcement
		arpRequestMsg(peerMAC, peer4, netip.MustParseAddr("192.0.2.1")), // arp_not_owned
	}
	for _, m := range silent {
		conn.deliver(t, mustMarshal(t, m))
	}
	for _, tc := range badARPFrames(t) {
		conn.deliver(t, tc.frame)
	}
	conn.deliver(t, sentinel)
	if got, _ := ParseARP(conn.next(t)); !bytes.Equal(got.EthDst, otherMAC) {
		t.Fatalf("first answer after the silent frames is not the sentinel's: %+v", got)
	}
	conn.expectNone(t)

	want := map[string]uint64{
		"requests": 3, "replies": 3, "probes": 1,
		"arp_not_owned": 2, "frame_not_for_us": 1, "frame_from_self": 2, "arp_conflict": 1,
		"arp_not_request": 1, "arp_announcement": 1,
	}
	for _, tc := range badARPFrames(t) {
		want[string(tc.want)]++
	}
	checkStats(t, r, want)

	// Losing the address stops the answers with the next frame.
	if err := r.SetOwned(nil); err != nil {
		t.Fatal(err)
	}
	if r.Owns(vip4) {
		t.Fatal("still owns after SetOwned(nil)")
	}
	conn.deliver(t, mustMarshal(t, arpRequestMsg(peerMAC, peer4, vip4)))
	if err := r.Add(vip4b); err != nil {
		t.Fatal(err)
	}
	conn.deliver(t, mustMarshal(t, arpRequestMsg(otherMAC, peer4, vip4b)))
	if got, _ := ParseARP(conn.next(t)); got.SenderIP != vip4b {
		t.Fatalf("answered for a released address: %+v", got)
	}
	conn.expectNone(t)
}

// checkStats compares the non-zero counters with want. The answer to the
// last frame may be on the wire a moment before it is counted, so it first
// waits for the replies counter.
func checkStats(t *testing.T, r Responder, want map[string]uint64) {
	t.Helper()
	waitFor(t, "replies counted", func() bool { return r.Stats()[statReplies] >= want[statReplies] })
	got := r.Stats()
	nonZero := map[string]uint64{}
	for k, v := range got {
		if v != 0 {
			nonZero[k] = v
		}
	}
	if diff := cmp.Diff(want, nonZero); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("stats has no key %q", k)
		}
	}
}

func TestNDPResponder(t *testing.T) {
	leakCheck(t)
	conn := newFakePacketConn()
	r := NewNDPResponder(conn, testRcCfg)
	if err := r.SetOwned([]netip.Addr{vip6, vip4}); err != nil {
		t.Fatal(err)
	}
	startResponder(t, r)

	answer := func(ns NSMessage) NAMessage {
		t.Helper()
		conn.deliver(t, mustMarshal(t, ns))
		na, err := ParseNA(conn.next(t))
		if err != nil {
			t.Fatalf("answer to %+v: %v", ns, err)
		}
		return na
	}
	tests := []struct {
		name string
		ns   NSMessage
		want NAMessage
	}{
		{"multicast", nsMulticastMsg(vip6), ndpAnswer(nsMulticastMsg(vip6), ourMAC)},
		{"unicast (NUD)", nsUnicastMsg(vip6), ndpAnswer(nsUnicastMsg(vip6), ourMAC)},
		{"DAD", nsDADMsg(vip6), ndpAnswer(nsDADMsg(vip6), ourMAC)},
	}
	for _, tc := range tests {
		got := answer(tc.ns)
		if diff := cmp.Diff(tc.want, got, addrComparer); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
		if got.Src != vip6 || got.Router || !got.Override || !bytes.Equal(got.TargetLLA, ourMAC) {
			t.Errorf("%s: NA %+v", tc.name, got)
		}
	}
	if na := answer(nsDADMsg(vip6)); na.Solicited || na.Dst != allNodes {
		t.Errorf("DAD answer: %+v", na)
	}

	fromSelf := nsMulticastMsg(vip6)
	fromSelf.EthSrc = ourMAC
	fromSelfLLA := nsMulticastMsg(vip6)
	fromSelfLLA.SourceLLA = ourMAC
	elsewhere := nsUnicastMsg(vip6)
	elsewhere.EthDst = otherMAC
	for _, m := range []NSMessage{nsMulticastMsg(vip6b), nsUnicastMsg(vip6b), fromSelf, fromSelfLLA, elsewhere} {
		conn.deliver(t, mustMarshal(t, m))
	}
	for _, tc := range badNSFrames(t) {
		conn.deliver(t, tc.frame)
	}
	sentinel := nsUnicastMsg(vip6)
	sentinel.EthSrc = otherMAC
	if na := answer(sentinel); !bytes.Equal(na.EthDst, otherMAC) {
		t.Fatalf("first answer after the silent frames is not the sentinel's: %+v", na)
	}
	conn.expectNone(t)
	want := map[string]uint64{
		"requests": 5, "replies": 5, "probes": 2, "ns_multicast": 1, "ns_unicast": 2,
		"ndp_not_owned": 2, "frame_from_self": 2, "frame_not_for_us": 1,
	}
	for _, tc := range badNSFrames(t) {
		want[string(tc.want)]++
	}
	checkStats(t, r, want)

	if err := r.Remove(vip6); err != nil {
		t.Fatal(err)
	}
	conn.deliver(t, mustMarshal(t, nsUnicastMsg(vip6)))
	if err := r.Add(vip6b); err != nil {
		t.Fatal(err)
	}
	if na := answer(nsUnicastMsg(vip6b)); na.Target != vip6b {
		t.Fatalf("answered for a released address: %+v", na)
	}
	conn.expectNone(t)
}

func TestNDPGroupRefcount(t *testing.T) {
	conn := newFakePacketConn()
	r := NewNDPResponder(conn, testRcCfg)
	defer r.Close()
	group := ipv6MulticastMAC(solicitedNode(vip6)).String()
	groupB := ipv6MulticastMAC(solicitedNode(vip6b)).String()
	step := func(name string, err error, want map[string]int) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(want, conn.memberships()); diff != "" {
			t.Errorf("%s: memberships (-want +got):\n%s", name, diff)
		}
	}
	step("two VIPs, one group", r.SetOwned([]netip.Addr{vip6, vip6Twin, vip4}), map[string]int{group: 1})
	step("idempotent", r.SetOwned([]netip.Addr{vip6Twin, vip6}), map[string]int{group: 1})
	step("add another group", r.Add(vip6b), map[string]int{group: 1, groupB: 1})
	step("group still needed", r.Remove(vip6), map[string]int{group: 1, groupB: 1})
	step("last user leaves", r.Remove(vip6Twin), map[string]int{groupB: 1})
	step("remove what is not owned", r.Remove(vip6), map[string]int{groupB: 1})
	step("replace", r.SetOwned([]netip.Addr{vip6}), map[string]int{group: 1})

	// A failed join is reported, counted, and retried on the next change.
	conn.mu.Lock()
	conn.joinErr = errors.New("ENOBUFS")
	conn.mu.Unlock()
	if err := r.Add(vip6b); err == nil {
		t.Error("join failure not reported")
	}
	if !r.Owns(vip6b) {
		t.Error("address not owned after a failed join")
	}
	conn.mu.Lock()
	conn.joinErr = nil
	conn.mu.Unlock()
	step("retry", r.Add(vip6Twin), map[string]int{group: 1, groupB: 1})
	if got := r.Stats()[statJoinErrors]; got != 1 {
		t.Errorf("join_errors = %d", got)
	}
	step("all gone", r.SetOwned(nil), map[string]int{})
}

func TestAnnounce(t *testing.T) {
	leakCheck(t)
	ctx := context.Background()

	conn := newFakePacketConn()
	a := NewARPResponder(conn, testRcCfg)
	defer a.Close()
	if err := a.Announce(ctx, vip4, 3, time.Millisecond); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("Announce before owning: %v", err)
	}
	if err := a.Add(vip4); err != nil {
		t.Fatal(err)
	}
	if err := a.Announce(ctx, vip4, 3, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var ops []arp.Operation
	for range 6 {
		m, err := ParseARP(conn.next(t))
		if err != nil {
			t.Fatal(err)
		}
		if !m.IsAnnouncement() || m.SenderIP != vip4 || !bytes.Equal(m.EthDst, broadcastMAC) || !bytes.Equal(m.SenderHW, ourMAC) {
			t.Errorf("gratuitous ARP: %+v", m)
		}
		ops = append(ops, m.Op)
	}
	if diff := cmp.Diff([]arp.Operation{1, 2, 1, 2, 1, 2}, ops); diff != "" {
		t.Errorf("request and reply forms (-want +got):\n%s", diff)
	}
	conn.expectNone(t)
	if got := a.Stats()[statAnnounced]; got != 6 {
		t.Errorf("announced = %d", got)
	}
	if err := a.Announce(ctx, vip6, 1, 0); err == nil {
		t.Error("ARP announced an IPv6 address")
	}

	conn6 := newFakePacketConn()
	n := NewNDPResponder(conn6, testRcCfg)
	defer n.Close()
	if err := n.SetOwned([]netip.Addr{vip6}); err != nil {
		t.Fatal(err)
	}
	if err := n.Announce(ctx, vip6, 2, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		na, err := ParseNA(conn6.next(t))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(unsolicitedNA(vip6, ourMAC), na, addrComparer); diff != "" {
			t.Errorf("unsolicited NA (-want +got):\n%s", diff)
		}
	}
	conn6.expectNone(t)
}

// TestAnnounceStops checks a long burst ends at once when ownership is
// lost, the context is cancelled or the responder is closed.
func TestAnnounceStops(t *testing.T) {
	leakCheck(t)
	stops := []struct {
		name string
		stop func(r Responder, cancel context.CancelFunc)
		want error
	}{
		{"ownership lost", func(r Responder, _ context.CancelFunc) { _ = r.Remove(vip4) }, ErrNotOwned},
		{"ownership replaced", func(r Responder, _ context.CancelFunc) { _ = r.SetOwned([]netip.Addr{vip4b}) }, ErrNotOwned},
		{"context cancelled", func(_ Responder, cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"closed", func(r Responder, _ context.CancelFunc) { _ = r.Close() }, ErrClosed},
	}
	for _, tc := range stops {
		t.Run(tc.name, func(t *testing.T) {
			conn := newFakePacketConn()
			r := NewARPResponder(conn, testRcCfg)
			defer r.Close()
			if err := r.SetOwned([]netip.Addr{vip4}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- r.Announce(ctx, vip4, 1_000_000, time.Hour) }()
			conn.next(t) // the first round is sent at once
			conn.next(t)
			tc.stop(r, cancel)
			select {
			case err := <-errc:
				if !errors.Is(err, tc.want) {
					t.Errorf("Announce = %v, want %v", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("burst did not stop")
			}
		})
	}
}

func TestRunAndClose(t *testing.T) {
	leakCheck(t)

	// Cancelling ctx makes Run return nil and close the socket.
	conn := newFakePacketConn()
	r := NewARPResponder(conn, testRcCfg)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if !conn.isClosed() {
		t.Error("socket open after Run returned")
	}
	if err := r.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close after Run: %v", err)
	}

	// Close stops a running Run, waits for it, and is idempotent.
	conn = newFakePacketConn()
	n := NewNDPResponder(conn, testRcCfg)
	go func() { errc <- n.Run(context.Background()) }()
	conn.deliver(t, []byte("garbage"))
	waitFor(t, "Run reads", func() bool { return n.Stats()[string(ErrFrameShort)] == 1 })
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run after Close: %v", err)
		}
	default:
		t.Error("Close returned before Run")
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := n.Run(context.Background()); err == nil {
		t.Error("Run after Close succeeded")
	}
	if err := n.Announce(context.Background(), vip6, 1, 0); !errors.Is(err, ErrNotOwned) && !errors.Is(err, ErrClosed) {
		t.Errorf("Announce after Close: %v", err)
	}

	// A constructor is inert: nothing is read or written before Run.
	conn = newFakePacketConn()
	_ = NewARPResponder(conn, testRcCfg)
	if conn.isClosed() || len(conn.written) != 0 {
		t.Error("constructor touched the socket")
	}
}

// TestRunSurvivesReadErrors: a link going down makes reads fail for a
// while; the responder keeps going and answers once frames flow again.
func TestRunSurvivesReadErrors(t *testing.T) {
	leakCheck(t)
	conn := &flakyConn{fakePacketConn: newFakePacketConn(), failures: 3}
	r := NewARPResponder(conn, testRcCfg)
	if err := r.SetOwned([]netip.Addr{vip4}); err != nil {
		t.Fatal(err)
	}
	startResponder(t, r)
	conn.deliver(t, mustMarshal(t, arpRequestMsg(peerMAC, peer4, vip4)))
	if _, err := ParseARP(conn.next(t)); err != nil {
		t.Fatal(err)
	}
	if got := r.Stats()[statReadErrors]; got != 3 {
		t.Errorf("read_errors = %d, want 3", got)
	}
}

type flakyConn struct {
	*fakePacketConn
	failures int // touched only by the reading goroutine
}

func (f *flakyConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if f.failures > 0 {
		f.failures--
		return 0, nil, errors.New("network is down")
	}
	return f.fakePacketConn.ReadFrom(b)
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
