package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Config is the speaker's whole configuration ([bgp] and its peers).
type Config struct {
	Global Global
	Peers  []Peer
	// Import is [bgp.import]; it may change at any Sync.
	Import Import
}

// Global holds the settings GoBGP cannot change without restarting every
// session: they are taken from the first Sync, and later changes are
// ignored (the daemon reports them as "needs restart").
type Global struct {
	ASN      uint32
	RouterID netip.Addr // IPv4 (RFC 4271 BGP Identifier)
	// ListenPort 0: outgoing sessions only. Otherwise the speaker listens
	// on it, and every peer is passive (the router connects).
	ListenPort uint16
	// NextHop4 and NextHop6 are the node's own addresses used as next hop
	// for a path of the other family than the session's (IPv6 paths on an
	// IPv4 session take NextHop6). Invalid: such paths are not sent.
	NextHop4, NextHop6 netip.Addr
}

// Peer is one BGP neighbour ([[bgp.peer]]).
type Peer struct {
	Address netip.Addr
	ASN     uint32
	// LocalASN is the AS this node speaks on this session (a
	// MetalLoadBalancerBGPPeer's myASN); 0 means Global.ASN.
	LocalASN      uint32
	Port          uint16     // 0 = 179
	SourceAddress netip.Addr // invalid: the kernel's choice
	// HoldTime and KeepaliveTime are whole seconds on the wire.
	HoldTime, KeepaliveTime time.Duration
	EBGPMultihop            uint8  // TTL; 0 = directly connected
	Password                string // TCP-MD5 (RFC 2385); "" = none
	GracefulRestart         bool
	BFD                     BFD
}

// BFD is a peer's BFD session (RFC 5880, single hop RFC 5881).
type BFD struct {
	Enabled      bool
	MinRx, MinTx time.Duration
	Multiplier   uint8
}

// LargeCommunity is an RFC 8092 large community, global:local1:local2.
type LargeCommunity struct {
	Global, Local1, Local2 uint32
}

// Well-known communities (RFC 1997).
const (
	NoExport          uint32 = 0xFFFFFF01
	NoAdvertise       uint32 = 0xFFFFFF02
	NoExportSubconfed uint32 = 0xFFFFFF03
)

// Community returns the standard community asn:value (RFC 1997).
func Community(asn, value uint16) uint32 { return uint32(asn)<<16 | uint32(value) }

// Advertisement is one prefix the node advertises, to every peer or to
// some (Peers).
type Advertisement struct {
	// Prefix is a /32 or /128 for one address, or an aggregate; it is
	// masked (netip.Prefix.Masked) before use.
	Prefix netip.Prefix
	// VIP names what it is for ("apiserver", "namespace/service"), for
	// logs only.
	VIP string
	// Communities are standard communities (RFC 1997), well-known ones
	// included (NoExport ...); LargeCommunities RFC 8092.
	Communities      []uint32
	LargeCommunities []LargeCommunity
	// LocalPref is sent to iBGP peers; 0 = GoBGP's default (100).
	LocalPref uint32
	// Peers, when not nil, are the only peers it goes to (sorted); other
	// sessions never see it (scope.go).
	Peers []netip.Addr
}

// same reports whether a and b advertise the same path.
func (a Advertisement) same(b Advertisement) bool {
	return a.Prefix == b.Prefix && a.LocalPref == b.LocalPref &&
		slices.Equal(a.Communities, b.Communities) && slices.Equal(a.LargeCommunities, b.LargeCommunities) &&
		(a.Peers == nil) == (b.Peers == nil) && slices.Equal(a.Peers, b.Peers)
}

func family(p netip.Prefix) bgp.Family {
	if p.Addr().Is4() {
		return bgp.RF_IPv4_UC
	}
	return bgp.RF_IPv6_UC
}

// path builds the GoBGP path of a, with an unspecified next hop (GoBGP
// replaces it with the session's local address), marked with tag, its
// peer set's (scope.go).
func (a Advertisement) path(withdraw bool, tag uint32) (*apiutil.Path, error) {
	p := a.Prefix.Masked()
	nlri, err := bgp.NewIPAddrPrefix(p)
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", p, err)
	}
	fam := family(p)
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if fam == bgp.RF_IPv4_UC {
		nh, err := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, fmt.Errorf("prefix %s: next hop: %w", p, err)
		}
		attrs = append(attrs, nh)
	} else {
		mp, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, fmt.Errorf("prefix %s: next hop: %w", p, err)
		}
		attrs = append(attrs, mp)
	}
	if len(a.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(slices.Clone(a.Communities)))
	}
	lcs := make([]*bgp.LargeCommunity, 0, len(a.LargeCommunities)+1)
	for _, c := range a.LargeCommunities {
		lcs = append(lcs, bgp.NewLargeCommunity(c.Global, c.Local1, c.Local2))
	}
	lcs = append(lcs, bgp.NewLargeCommunity(scopeGlobal, scopeMark, tag)) // removed on export
	attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(lcs))
	if a.LocalPref != 0 {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(a.LocalPref))
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs, Withdrawal: withdraw}, nil
}

// idleHoldAfterReset is how long, in whole seconds, a session stays Idle
// after the speaker reset it itself with a Cease/Administrative Reset.
// GoBGP's BFD does exactly that when its BFD session expires or the
// router's goes down (ResetPeer, Soft false), and GoBGP then holds the
// session Idle for IdleHoldTimeAfterReset — 30 s unless set (0 means the
// default) — closing even the connections a router opens meanwhile. With
// outgoing sessions only (ListenPort 0) nobody reconnects in that time:
// one BFD flap cost 30 s without routes. 1 s is the smallest value. It
// makes no reconnect loop: it follows only the speaker's own resets,
// GoBGP's first connect attempt still waits 1.5–2 s and then ConnectRetry,
// any other end of a session is followed by GoBGP's fixed 5 s Idle, and
// BFD runs only while established (pollBFD), so a flapping BFD resets at
// most once per full establishment. Config changes re-add the peer (a
// fresh FSM, no idle hold) and soft resets keep the session.
const idleHoldAfterReset = 1

// apiPeer is the GoBGP neighbour configuration of p.
func (p Peer) apiPeer(g Global) *api.Peer {
	port := uint32(p.Port)
	if port == 0 {
		port = 179
	}
	out := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			LocalAsn:        p.LocalASN, // 0: GoBGP uses the global AS
			AuthPassword:    p.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(p.HoldTime / time.Second),
			KeepaliveInterval: uint64(p.KeepaliveTime / time.Second),
			// GoBGP's default 120 s between connection attempts would make a
			// router that restarts wait minutes for the node's routes.
			ConnectRetry:           5,
			IdleHoldTimeAfterReset: idleHoldAfterReset,
		}},
		Transport: &api.Transport{
			RemotePort:  port,
			PassiveMode: g.ListenPort != 0,
		},
		AfiSafis: []*api.AfiSafi{afiSafi(bgp.AFI_IP, p.GracefulRestart), afiSafi(bgp.AFI_IP6, p.GracefulRestart)},
	}
	if p.SourceAddress.IsValid() {
		out.Transport.LocalAddress = p.SourceAddress.String()
	}
	if p.EBGPMultihop > 0 {
		out.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihop)}
	}
	if p.GracefulRestart {
		out.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: 120}
	}
	if p.BFD.Enabled {
		out.Bfd = &api.BfdPeerConfig{
			Enabled:                  true,
			DesiredMinimumTxInterval: uint32(p.BFD.MinTx / time.Microsecond),
			RequiredMinimumReceive:   uint32(p.BFD.MinRx / time.Microsecond),
			DetectionMultiplier:      uint32(p.BFD.Multiplier),
		}
	}
	return out
}

func afiSafi(afi uint16, gr bool) *api.AfiSafi {
	a := &api.AfiSafi{Config: &api.AfiSafiConfig{
		Family:  &api.Family{Afi: api.Family_Afi(afi), Safi: api.Family_SAFI_UNICAST},
		Enabled: true,
	}}
	if gr {
		a.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	return a
}

// withBFD is p with other BFD settings (the zero BFD: off).
func (p Peer) withBFD(b BFD) Peer {
	p.BFD = b
	return p
}

// onlyBFDDiffers reports whether a and b differ in their BFD settings
// alone: GoBGP changes those without resetting the session.
func onlyBFDDiffers(a, b Peer) bool {
	a.BFD = b.BFD
	return a == b
}
