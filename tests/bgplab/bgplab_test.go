package bgplab

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// gobgp is the lab's reference speaker: plain GoBGP, with the VIP's
// addresses on the node's loopback so the node accepts their traffic.
var gobgp = fleet{
	name: "gobgp",
	start: func(t *testing.T, _ *Lab, n *Node, o opts) *Proc {
		t.Helper()
		var bfd *BFDTimers
		if o.bfd {
			bfd = &DefaultBFD
		}
		var prefixes []netip.Prefix
		for _, v := range vips {
			n.NS.AddAddr("lo", hostPrefix(v).String())
			prefixes = append(prefixes, hostPrefix(v))
		}
		cfg := n.SpeakerFor(bfd, o.password, prefixes...)
		for i := range cfg.Peers {
			cfg.Peers[i].BFDWhileEstablished = o.kind == FRR
		}
		return n.StartSpeaker(cfg).Proc
	},
}

// The lab itself, before hostlbd: BIRD and FRR learn a /32 and a /128 from
// three GoBGP speakers over IPv4 and IPv6 sessions, install them as ECMP
// routes, bring BFD up, and lose a crashed speaker's next hop by BFD or
// by the hold timer; MD5 separates the right secret from a wrong one.
func TestLabWithGoBGP(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(string(kind), func(t *testing.T) {
			t.Run("ECMPAndFailover", func(t *testing.T) { testECMPAndFailover(t, kind, gobgp) })
			t.Run("HoldTime", func(t *testing.T) { testHoldTime(t, kind, gobgp) })
			t.Run("MD5", func(t *testing.T) { testMD5(t, kind, gobgp) })
		})
	}
}

// A router with RouterConfig.Export advertises ExportPrefix to the nodes,
// and no route of its own besides (its connected networks). Whether it
// sends one node's VIP to the others cannot be seen from here: GoBGP drops
// such a path for the AS-path loop (all nodes are AS 64512).
func TestRouterExport(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(string(kind), func(t *testing.T) {
			l := New(t)
			RequireRouter(t, kind)
			cfg := RouterConfig{Peers: l.RouterPeers(false, ""), Export: true}
			r := l.StartRouter(kind, cfg)
			var speakers []*Speaker
			for _, n := range l.Nodes {
				speakers = append(speakers, n.StartSpeaker(n.SpeakerFor(nil, "", hostPrefix(vip4), hostPrefix(vip6))))
			}
			if _, err := WaitPeers(r, cfg.Peers, upBound); err != nil {
				t.Fatalf("%v\n%s", err, r.Logs())
			}
			want := speakerLearned + " " + ExportPrefix.String() + " from AS 64500"
			for _, s := range speakers {
				if _, err := Eventually(10*time.Second, 20*time.Millisecond, func() error {
					if !strings.Contains(s.Log(), want) {
						return errNotYet
					}
					return nil
				}); err != nil {
					t.Fatalf("%s never learned %s from %s: %v\n%s", s.Node.Name, ExportPrefix, kind, err, s.Log())
				}
			}
			// Once the VIP's routes are in, everything the router would
			// send has been sent.
			if _, err := WaitRoutes(r, hostPrefix(vip4), nextHops(l.Nodes, vip4), upBound); err != nil {
				t.Fatal(err)
			}
			for _, s := range speakers {
				for _, line := range strings.Split(s.Log(), "\n") {
					if strings.HasPrefix(line, speakerLearned) && !strings.Contains(line, " "+ExportPrefix.String()+" ") {
						t.Errorf("%s learned more than %s from %s: %q", s.Node.Name, ExportPrefix, kind, line)
					}
				}
			}
			t.Logf("%s: every node learned %s and no other route of the router", kind, ExportPrefix)
		})
	}
}
