package bgplab

import (
	"sync"
	"testing"

	"github.com/hostlb/hostlb/tests/netlab"
)

// gossipKeys holds the gossip key of every hostlbd of a lab, one per test.
var gossipKeys sync.Map // *testing.T of the scenario -> []byte

// hostlbd runs the daemon under test on every node: [bgp] asn 64512, a
// peer per router address (hold 3 s, keepalive 1 s, BFD 100 ms × 3 when
// the scenario has BFD), a static VIP of mode "bgp" with vip4 and vip6,
// local = true (hostlbd adds them to hostlb0), and a gossip key.
var hostlbd = fleet{
	name: "hostlbd",
	start: func(t *testing.T, _ *Lab, n *Node, o opts) *Proc {
		t.Helper()
		bin := netlab.Hostlbd(t)
		key, ok := gossipKeys.Load(t)
		if !ok {
			k, err := NewGossipKey()
			if err != nil {
				t.Fatal(err)
			}
			key, _ = gossipKeys.LoadOrStore(t, k)
			t.Cleanup(func() { gossipKeys.Delete(t) })
		}
		return n.StartHostlbd(bin, HostlbdConfig{Key: key.([]byte), BFD: o.bfd, Password: o.password, VIPs: vips})
	},
}

// Issue 10's acceptance, against BIRD 2 and FRR: three hostlbd nodes
// advertise a static VIP's /32 and /128 over IPv4 and IPv6 sessions; the
// router's kernel has three ECMP next hops and the client reaches the VIP;
// a crashed node (link down, kill -9) loses its next hops within 1 s with
// BFD and within the hold time without; SIGTERM withdraws before the
// process exits; MD5 sessions come up with the right secret only.
func TestHostlbdBGP(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Run("ECMPAndFailover", func(t *testing.T) { testECMPAndFailover(t, kind, hostlbd) })
			t.Run("HoldTime", func(t *testing.T) { testHoldTime(t, kind, hostlbd) })
			t.Run("MD5", func(t *testing.T) { testMD5(t, kind, hostlbd) })
		})
	}
}
