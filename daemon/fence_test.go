package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/netif"
)

// TestFencePeersFollowTheRing: the responders' view of the ring (IsPeer,
// RingSize) follows membership: another live member is a peer, this node
// is not its own peer, and a crashed node stops being one before the pass
// its death triggers (so that pass's Recheck sees it).
func TestFencePeersFollowTheRing(t *testing.T) {
	s := newSim(t, 3)
	n1, n2, n3 := s.names[0], s.names[1], s.names[2]
	d := s.running[n1].d
	if !d.IsPeer(n2) || !d.IsPeer(n3) || d.IsPeer(n1) || d.IsPeer("stranger") {
		t.Fatalf("IsPeer: %s=%v %s=%v self=%v stranger=%v", n2, d.IsPeer(n2), n3, d.IsPeer(n3), d.IsPeer(n1), d.IsPeer("stranger"))
	}
	if got := d.RingSize(); got != 3 {
		t.Fatalf("RingSize = %d, want 3", got)
	}
	s.crash(n3)
	s.waitFor(5*time.Second, n3+" no longer a peer", func() error {
		if d.IsPeer(n3) || d.RingSize() != 2 {
			return fmt.Errorf("IsPeer(%s)=%v RingSize=%d", n3, d.IsPeer(n3), d.RingSize())
		}
		return nil
	})
	if !d.IsPeer(n2) {
		t.Errorf("%s stopped being a peer when %s crashed", n2, n3)
	}
}

// conflictL2 is an Announcer with wire conflicts to report.
type conflictL2 struct {
	*fakeAnnouncer
	conflicts map[string][]netif.Conflict
}

func (c *conflictL2) Conflicts() map[string][]netif.Conflict { return c.conflicts }

// TestWireConflictLoggedAndInStatus: every conflict change is logged with
// the VIP, address, both MACs and the other node, and current conflicts are
// in the STATUS line.
func TestWireConflictLoggedAndInStatus(t *testing.T) {
	var logs syncBuffer
	l2 := &conflictL2{fakeAnnouncer: newFakeAnnouncer(), conflicts: map[string][]netif.Conflict{
		"eth0": {
			{Addr: netip.MustParseAddr("192.0.2.100"), Node: "n2", Yielded: true},
			{Addr: netip.MustParseAddr("192.0.2.101"), Node: ""},
		},
	}}
	d, err := New(Options{Config: testConfig(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	d.opts.L2 = l2 // the summary reads only Conflicts
	ours, theirs := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	for _, a := range []netif.ConflictAction{netif.ConflictDefending, netif.ConflictYielding,
		netif.ConflictPeerYielded, netif.ConflictForeign, netif.ConflictResumed, netif.ConflictEnded} {
		d.WireConflict(netif.ConflictEvent{Action: a, Iface: "eth0", Addr: netip.MustParseAddr("192.0.2.100"),
			OurMAC: ours, TheirMAC: theirs, Node: "n2", VIP: "web"})
	}
	out := logs.String()
	for _, want := range []string{
		"this node keeps it", "yielding it to that node", "yielded this IP to this node",
		"a host that is not hostlb", "answering for this IP again", "conflict over",
		"vip=web", "addr=192.0.2.100", "our_mac=02:00:00:00:00:01", "their_mac=02:00:00:00:00:02", "other_node=n2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if got, want := d.wireConflictSummary(), "; CONFLICT on the wire: 2 (1 yielded to other nodes, 1 foreign hosts)"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	l2.conflicts = nil
	if got := d.wireConflictSummary(); got != "" {
		t.Errorf("summary without conflicts = %q", got)
	}
}
