package gossip

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestDigestRoundTrip(t *testing.T) {
	for _, d := range []digest{{}, {gen: 1 << 62, announceGen: 1<<62 - 3}} {
		got, err := decodeDigest(encodeDigest(d))
		if err != nil || got != d {
			t.Errorf("decodeDigest(encodeDigest(%+v)) = %+v, %v", d, got, err)
		}
	}
	// Fields added later within format 1 are ignored.
	if got, err := decodeDigest(append(encodeDigest(digest{gen: 7, announceGen: 5}), 0xff)); err != nil || got != (digest{gen: 7, announceGen: 5}) {
		t.Errorf("digest with trailing bytes: %+v, %v", got, err)
	}
	for _, b := range [][]byte{nil, {formatV1}, {formatV1, kindState, 1, 1}, {2, kindDigest, 1, 1}, {formatV1, kindDigest, 1}} {
		if _, err := decodeDigest(b); err == nil {
			t.Errorf("decodeDigest(%x): no error", b)
		}
	}
}

// A node that missed a member's broadcasts (its set chunks and the meta
// update that announced them travel together, so it usually misses both)
// learns from the member's probe ack that it lags, and pulls the member
// once it has lagged for staleRepair.
func TestLaggingMemberIsPulled(t *testing.T) {
	r, err := New(Config{NodeName: "n1", InsecurePlaintext: true, Bind: memAddr(1)})
	if err != nil {
		t.Fatal(err)
	}
	peer := &memberlist.Node{Name: "n2", Addr: net.IP(memAddr(2).Addr().AsSlice()), Port: memAddr(2).Port()}
	setMeta := func(gen, announceGen uint64) {
		t.Helper()
		b, err := encodeMeta(Meta{Gen: gen, AnnounceGen: announceGen})
		if err != nil {
			t.Fatal(err)
		}
		peer.Meta = b
		(*events)(r).NotifyUpdate(peer)
	}
	setMeta(10, 10)
	r.mergeSets(map[string]announcedSet{"n2": {gen: 10, addrs: addrs("192.0.2.1")}})
	ack := func(gen, announceGen uint64) {
		(*pinger)(r).NotifyPingComplete(peer, time.Millisecond, encodeDigest(digest{gen: gen, announceGen: announceGen}))
	}
	now := time.Now()
	pulls := func(at time.Duration) []string { return r.staleTargets(now.Add(at)) }
	want := []string{memAddr(2).String()}
	step := r.timing.staleRepair

	ack(10, 10)
	if got := fmt.Sprint(pulls(0), pulls(step)); got != "[] []" {
		t.Fatalf("in step with n2: pulls %s, want none", got)
	}

	// n2's set and meta moved to gen 12; only its ack says so.
	ack(12, 12)
	if got := pulls(2 * step); got != nil {
		t.Errorf("lag first seen: pulls %v, want none yet (broadcasts may be in flight)", got)
	}
	if got := pulls(3*step - time.Millisecond); got != nil {
		t.Errorf("lagging for less than staleRepair: pulls %v, want none", got)
	}
	if got := fmt.Sprint(pulls(3 * step)); got != fmt.Sprint(want) {
		t.Errorf("lagging for staleRepair: pulls %s, want %v", got, want)
	}
	if got := fmt.Sprint(pulls(4 * step)); got != fmt.Sprint(want) {
		t.Errorf("still lagging: pulls %s, want %v again", got, want)
	}

	// The pull brings the set; the meta is still behind the ack (a meta
	// update that memberlist has not sent yet): pull again.
	r.mergeSets(map[string]announcedSet{"n2": {gen: 12}})
	if got := fmt.Sprint(pulls(5 * step)); got != fmt.Sprint(want) {
		t.Errorf("meta behind the ack: pulls %s, want %v", got, want)
	}
	setMeta(12, 12)
	if got := fmt.Sprint(pulls(7*step), pulls(8*step)); got != "[] []" {
		t.Errorf("caught up: pulls %s, want none", got)
	}

	// A restarted n2 whose clock went back acks lower generations: that is
	// not lagging (the ack replaces what was heard; it is not a maximum).
	ack(1000, 1000)
	ack(5, 5)
	if got := fmt.Sprint(pulls(9*step), pulls(10*step)); got != "[] []" {
		t.Errorf("ack below what is held: pulls %s, want none", got)
	}

	// A dead member is not pulled (the join loop re-joins dead members on
	// its own schedule).
	ack(20, 20)
	(*events)(r).NotifyLeave(peer)
	if got := fmt.Sprint(pulls(11*step), pulls(12*step)); got != "[] []" {
		t.Errorf("dead member: pulls %s, want none", got)
	}
}

// Every probe ack carries the acking node's generations, so each node
// knows what the others advertise right now, broadcasts lost or not.
func TestProbeAcksCarryGenerations(t *testing.T) {
	c := newCluster(t, 3, nil)
	eventually(t, 3*time.Second, "all join", func() error { return seesAlive(c.nodes, c.names(c.nodes)) })
	c.nodes[1].ring.SetAnnounced(addrs("192.0.2.7"))
	eventually(t, 3*time.Second, "probe acks carry every member's generations", func() error {
		for _, o := range c.nodes {
			for _, p := range c.nodes {
				if o == p {
					continue
				}
				lm := p.ring.LocalMeta()
				want := digest{gen: lm.Gen, announceGen: lm.AnnounceGen}
				o.ring.mu.Lock()
				var got digest
				if e := o.ring.members[p.name]; e != nil {
					got = e.heard
				}
				o.ring.mu.Unlock()
				if got != want {
					return fmt.Errorf("%s heard %+v from %s, want %+v", o.name, got, p.name, want)
				}
			}
		}
		return nil
	})
}
