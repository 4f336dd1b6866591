package netif_test

import (
	"testing"
	"time"

	"github.com/hostlb/hostlb/netif"
)

// waitStat waits until the counter reaches want (a frame is counted just
// after it is written) and returns the stats then.
func waitStat(t *testing.T, l2 *netif.L2, iface, proto, name string, want uint64) []netif.ResponderStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := l2.Stats()
		if n, _ := stat(st, iface, proto, name); n >= want || time.Now().After(deadline) {
			return st
		}
		time.Sleep(time.Millisecond) // polling the counters
	}
}

// stat is the counter name of iface/proto in st, 0 when absent.
func stat(st []netif.ResponderStats, iface, proto, name string) (uint64, bool) {
	for _, s := range st {
		if s.Iface == iface && s.Proto == proto {
			return s.Counters[name], true
		}
	}
	return 0, false
}

// A responder's counters outlive it: after its interface loses its last
// address (the responder closes) and gets one again (a new responder), the
// counts go on from where they were, so a rate never sees a reset.
func TestL2StatsSurviveResponders(t *testing.T) {
	e := newL2Env(t, link(2, "eth0", mac1, "192.0.2.1/24", "2001:db8::1/64"))
	e.mustSync(t, ann(v4a), ann(v6a))
	waitFrames(t, e.lis.last(t, "arp eth0"), 4) // the burst: 2 rounds of 2 frames
	waitFrames(t, e.lis.last(t, "ndp eth0"), 2)
	waitStat(t, e.l2, "eth0", netif.ProtoARP, netif.StatAnnounced, 4)
	st := waitStat(t, e.l2, "eth0", netif.ProtoNDP, netif.StatAnnounced, 2)
	if n, _ := stat(st, "eth0", netif.ProtoARP, netif.StatAnnounced); n != 4 {
		t.Fatalf("ARP announced %d, want 4: %+v", n, st)
	}
	if n, _ := stat(st, "eth0", netif.ProtoNDP, netif.StatAnnounced); n != 2 {
		t.Fatalf("NDP announced %d, want 2: %+v", n, st)
	}
	if _, ok := stat(st, "eth0", netif.ProtoNDP, string(netif.ErrNDPNotOwned)); !ok {
		t.Errorf("no NDP counters: %+v", st)
	}

	e.mustSync(t, ann(v6a)) // the ARP responder closes
	if got := e.lis.open(); len(got) != 1 || got[0] != "ndp eth0" {
		t.Fatalf("open conns %v, want the NDP one only", got)
	}
	if n, ok := stat(e.l2.Stats(), "eth0", netif.ProtoARP, netif.StatAnnounced); !ok || n != 4 {
		t.Errorf("after the ARP responder closed: announced %d (present %v), want 4 kept", n, ok)
	}
	e.mustSync(t, ann(v4a), ann(v6a)) // a new ARP responder, a new burst
	waitFrames(t, e.lis.last(t, "arp eth0"), 4)
	if n, _ := stat(waitStat(t, e.l2, "eth0", netif.ProtoARP, netif.StatAnnounced, 8), "eth0", netif.ProtoARP, netif.StatAnnounced); n != 8 {
		t.Errorf("after a second responder's burst: announced %d, want 8", n)
	}
}
