package netif

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeJoiner is an in-memory groupJoiner. Unlike the kernel, which refuses
// a second join of a group on one socket, it fails the test on any join of a
// group already joined or leave of one not joined: the responder counts
// references, so each must happen exactly once.
type fakeJoiner struct {
	t *testing.T

	mu      sync.Mutex // guards the fields below
	groups  map[netip.Addr]bool
	joins   int   // successful joins, ever
	tries   int   // JoinGroup calls, ever
	joinErr error // returned by JoinGroup while set
	closes  int
}

func newFakeJoiner(t *testing.T) *fakeJoiner {
	return &fakeJoiner{t: t, groups: map[netip.Addr]bool{}}
}

func (f *fakeJoiner) JoinGroup(g netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tries++
	switch {
	case f.closes > 0:
		f.t.Errorf("JoinGroup(%v) after Close", g)
		return errors.New("closed")
	case f.joinErr != nil:
		return f.joinErr
	case f.groups[g]:
		f.t.Errorf("JoinGroup(%v): already joined", g)
	}
	f.groups[g] = true
	f.joins++
	return nil
}

func (f *fakeJoiner) LeaveGroup(g netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.groups[g] {
		f.t.Errorf("LeaveGroup(%v): not joined", g)
	}
	delete(f.groups, g)
	return nil
}

func (f *fakeJoiner) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closes++
	clear(f.groups)
	return nil
}

func (f *fakeJoiner) joined() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var gs []string
	for g := range f.groups {
		gs = append(gs, g.String())
	}
	slices.Sort(gs)
	return gs
}

func (f *fakeJoiner) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joinErr = err
}

// linkGroups lists the solicited-node groups whose MAC the packet socket
// has joined, so they compare with fakeJoiner.joined.
func linkGroups(conn *fakePacketConn, candidates ...netip.Addr) []string {
	m := conn.memberships()
	var gs []string
	for _, a := range candidates {
		g := solicitedNode(a)
		if m[ipv6MulticastMAC(g).String()] > 0 && !slices.Contains(gs, g.String()) {
			gs = append(gs, g.String())
		}
	}
	slices.Sort(gs)
	return gs
}

var vip6c = netip.MustParseAddr("2001:db8::300")

// groups lists the solicited-node groups of addrs, as the joined lists do.
func groups(addrs ...netip.Addr) []string {
	var gs []string
	for _, a := range addrs {
		if g := solicitedNode(a).String(); !slices.Contains(gs, g) {
			gs = append(gs, g)
		}
	}
	slices.Sort(gs)
	return gs
}

// newMLDResponder returns a responder with the joiner j, closed when the
// test ends, and a function that waits for its MLD worker to finish the
// sync that the last change asked for.
func newMLDResponder(t *testing.T, conn *fakePacketConn, j *fakeJoiner) (*NDPResponder, func()) {
	t.Helper()
	leakCheck(t) // the MLD worker must end with Close
	r := newNDPResponder(conn, testRcCfg, j)
	synced := make(chan struct{}, 1024)
	r.mldSynced = synced
	t.Cleanup(func() { _ = r.Close() })
	return r, func() {
		t.Helper()
		select {
		case <-synced:
		case <-time.After(5 * time.Second):
			t.Fatal("MLD worker did not sync within 5 s")
		}
	}
}

func TestMLDJoinsFollowOwnedSetWithRefcounts(t *testing.T) {
	conn, j := newFakePacketConn(), newFakeJoiner(t)
	r, synced := newMLDResponder(t, conn, j)
	all := []netip.Addr{vip6, vip6Twin, vip6b}

	steps := []struct {
		name string
		do   func() error
		want []netip.Addr // owned addresses whose groups must be joined
	}{
		{"own two twins and another", func() error { return r.SetOwned(all) }, all},
		{"one twin gone keeps the shared group", func() error { return r.Remove(vip6) }, []netip.Addr{vip6Twin, vip6b}},
		{"last twin gone leaves it", func() error { return r.Remove(vip6Twin) }, []netip.Addr{vip6b}},
		{"IPv4 is ignored", func() error { return r.Add(vip4) }, []netip.Addr{vip6b}},
		{"twin back joins again", func() error { return r.Add(vip6Twin) }, []netip.Addr{vip6Twin, vip6b}},
		{"nothing owned leaves all", func() error { return r.SetOwned(nil) }, nil},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		synced()
		if diff := cmp.Diff(groups(s.want...), j.joined()); diff != "" {
			t.Errorf("%s: MLD groups (-want +got):\n%s", s.name, diff)
		}
		if diff := cmp.Diff(groups(s.want...), linkGroups(conn, all...)); diff != "" {
			t.Errorf("%s: link-layer groups (-want +got):\n%s", s.name, diff)
		}
	}
	// vip6 and vip6Twin share a group: 2 groups, then the twin's again.
	if j.joins != 3 {
		t.Errorf("%d MLD joins, want 3 (one per group and ownership period)", j.joins)
	}
	if got := r.Stats()[statMLDJoinErrors]; got != 0 {
		t.Errorf("%s = %d", statMLDJoinErrors, got)
	}
}

func TestMLDJoinFailureIsCountedNotFatalAndRetried(t *testing.T) {
	conn, j := newFakePacketConn(), newFakeJoiner(t)
	r, synced := newMLDResponder(t, conn, j)
	j.setErr(errors.New("IPv6 is disabled"))

	// Three groups fail alike: one attempt per change, not one per group.
	if err := r.SetOwned([]netip.Addr{vip6, vip6b, vip6c}); err != nil {
		t.Fatalf("SetOwned returned the MLD failure: %v", err)
	}
	synced()
	if got := r.Stats()[statMLDJoinErrors]; got != 1 {
		t.Errorf("%s = %d after one failing change, want 1", statMLDJoinErrors, got)
	}
	if got := r.Stats()[statJoinErrors]; got != 0 {
		t.Errorf("%s = %d: an MLD failure is not a link-layer one", statJoinErrors, got)
	}
	// NS must still reach the packet socket.
	if diff := cmp.Diff(groups(vip6, vip6b, vip6c), linkGroups(conn, vip6, vip6b, vip6c)); diff != "" {
		t.Errorf("link-layer groups (-want +got):\n%s", diff)
	}
	if len(j.joined()) != 0 {
		t.Errorf("joined %v while failing", j.joined())
	}
	if err := r.Remove(vip6c); err != nil { // a change, still failing
		t.Fatal(err)
	}
	synced()
	if got := r.Stats()[statMLDJoinErrors]; got != 2 {
		t.Errorf("%s = %d after the second failing change, want 2", statMLDJoinErrors, got)
	}

	// The next change retries every group that is still needed.
	j.setErr(nil)
	if err := r.Add(vip6Twin); err != nil {
		t.Fatal(err)
	}
	synced()
	if diff := cmp.Diff(groups(vip6, vip6b), j.joined()); diff != "" {
		t.Errorf("MLD groups after recovery (-want +got):\n%s", diff)
	}
	// Another update finds everything joined: no join is tried twice.
	if err := r.SetOwned([]netip.Addr{vip6, vip6Twin, vip6b}); err != nil {
		t.Fatal(err)
	}
	synced()
	if got := r.Stats()[statMLDJoinErrors]; got != 2 {
		t.Errorf("%s = %d after recovery", statMLDJoinErrors, got)
	}
}

func TestMLDRemovedWhileFailingIsNotLeft(t *testing.T) {
	j := newFakeJoiner(t)
	r, synced := newMLDResponder(t, newFakePacketConn(), j)
	j.setErr(errors.New("no"))
	if err := r.SetOwned([]netip.Addr{vip6}); err != nil {
		t.Fatal(err)
	}
	synced()
	j.setErr(nil)
	// vip6 was never joined in the IPv6 stack, so it must not be left
	// (fakeJoiner fails the test on that), and vip6b is joined.
	if err := r.SetOwned([]netip.Addr{vip6b}); err != nil {
		t.Fatal(err)
	}
	synced()
	if diff := cmp.Diff(groups(vip6b), j.joined()); diff != "" {
		t.Errorf("MLD groups (-want +got):\n%s", diff)
	}
}

func TestMLDCloseClosesJoinerOnceAndStopsJoining(t *testing.T) {
	j := newFakeJoiner(t)
	r, synced := newMLDResponder(t, newFakePacketConn(), j)
	if err := r.SetOwned([]netip.Addr{vip6}); err != nil {
		t.Fatal(err)
	}
	synced()
	for range 2 {
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	j.mu.Lock()
	closes, tries := j.closes, j.tries
	j.mu.Unlock()
	if closes == 0 {
		t.Fatal("Close did not close the joiner")
	}
	if len(j.joined()) != 0 {
		t.Errorf("still joined after Close: %v", j.joined())
	}
	_ = r.SetOwned([]netip.Addr{vip6, vip6b}) // fakeJoiner fails the test on a join after Close
	_ = r.SetOwned(nil)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.tries != tries {
		t.Errorf("%d joins tried after Close", j.tries-tries)
	}
}

// A conn that is not an mldConn (every fake, any non-ListenNDP conn) gives
// a responder that joins at the link layer only.
func TestNDPResponderWithoutJoiner(t *testing.T) {
	leakCheck(t)
	conn := newFakePacketConn()
	r := NewNDPResponder(conn, testRcCfg)
	defer r.Close()
	if r.mld != nil {
		t.Fatalf("joiner %T from a plain PacketConn", r.mld)
	}
	if err := r.SetOwned([]netip.Addr{vip6}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(groups(vip6), linkGroups(conn, vip6)); diff != "" {
		t.Errorf("link-layer groups (-want +got):\n%s", diff)
	}

	// And one that is gets its joiner wired.
	j := newFakeJoiner(t)
	r2 := NewNDPResponder(&fakeMLDConn{fakePacketConn: newFakePacketConn(), j: j}, testRcCfg)
	defer r2.Close()
	if err := r2.SetOwned([]netip.Addr{vip6}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "MLD join through the conn's joiner", func() bool { return slices.Equal(j.joined(), groups(vip6)) })
}

type fakeMLDConn struct {
	*fakePacketConn
	j *fakeJoiner
}

func (c *fakeMLDConn) mldJoiner() groupJoiner { return c.j }
