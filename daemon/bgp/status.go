package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Status is the speaker's state for STATUS lines and hostlbctl.
type Status struct {
	Peers []PeerStatus // sorted by address
	// Advertised counts the prefixes advertised to every peer.
	Advertised int
	// Imported counts the routes [bgp.import] holds in the kernel.
	Imported int
}

// PeerStatus is one session.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	// State is the BGP FSM state (RFC 4271 §8): "idle", "connect",
	// "active", "opensent", "openconfirm" or "established".
	State string
	Since time.Time // when it entered State
	// Established counts how often the session came up.
	Established int
	// LastDown says why the session last went down ("" if never).
	LastDown string
	// BFD is the BFD session state ("up", "down", "init", "admin-down"),
	// "" when BFD is off for the peer. BFDDowns counts how often it went
	// from up to another state (a flapping link).
	BFD      string
	BFDDowns int
	// Received and Accepted count the prefixes in the peer's Adj-RIB-In:
	// all it sent, and those the import policy accepted (0 while the
	// session is not established). Read from GoBGP every second.
	Received, Accepted uint64
}

// Up counts the established sessions.
func (s Status) Up() int {
	n := 0
	for _, p := range s.Peers {
		if p.State == "established" {
			n++
		}
	}
	return n
}

// Status returns the sessions and the number of prefixes advertised. It
// never blocks on GoBGP; the caller owns the result.
func (s *Speaker) Status() Status {
	imported := 0
	if s.imp != nil {
		imported = s.imp.Installed()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Status{Advertised: s.advertised, Imported: imported}
	for a, st := range s.state {
		out.Peers = append(out.Peers, PeerStatus{Address: a, ASN: st.asn, State: st.state, Since: st.since,
			Established: st.established, LastDown: st.lastDown, BFD: st.bfd, BFDDowns: st.bfdDowns,
			Received: st.received, Accepted: st.accepted})
	}
	slices.SortFunc(out.Peers, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return out
}

// fsmName is the RFC 4271 name of a GoBGP FSM state, lower case.
func fsmName(st bgp.FSMState) string {
	switch st {
	case bgp.BGP_FSM_IDLE:
		return "idle"
	case bgp.BGP_FSM_CONNECT:
		return "connect"
	case bgp.BGP_FSM_ACTIVE:
		return "active"
	case bgp.BGP_FSM_OPENSENT:
		return "opensent"
	case bgp.BGP_FSM_OPENCONFIRM:
		return "openconfirm"
	case bgp.BGP_FSM_ESTABLISHED:
		return "established"
	}
	return fmt.Sprintf("state-%d", int(st))
}

// onPeer records a session state change from GoBGP's watcher and logs a
// session coming up or going down, with why.
func (s *Speaker) onPeer(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	a := ev.Peer.State.NeighborAddress
	next := fsmName(ev.Peer.State.SessionState)
	s.mu.Lock()
	st := s.state[a]
	if st == nil {
		// A peer removed a moment ago still reports its end: not ours.
		s.mu.Unlock()
		return
	}
	was := st.state
	if was == next {
		s.mu.Unlock()
		return
	}
	st.state, st.since = next, at
	var why string
	if next == "established" {
		st.established++
	} else if was == "established" {
		why = downReason(ev.Peer.State)
		st.lastDown = why
	}
	s.mu.Unlock()
	switch {
	case next == "established":
		s.log.Info("BGP session established", "peer", a, "asn", ev.Peer.State.PeerASN,
			"router_id", ev.Peer.State.RouterID)
	case was == "established":
		s.log.Warn("BGP session down", "peer", a, "state", next, "reason", why)
	default:
		s.log.Debug("BGP session state", "peer", a, "state", next, "was", was)
	}
}

// downReason describes why a session went down, from GoBGP's reason.
func downReason(st apiutil.PeerState) string {
	r := strings.ToLower(strings.TrimPrefix(st.DisconnectReason.String(), "DISCONNECT_REASON_"))
	r = strings.ReplaceAll(r, "_", " ")
	if st.DisconnectMessage != "" {
		r += ": " + st.DisconnectMessage
	}
	return r
}

// bfdName is the lower-case name of a BFD session state (RFC 5880 §4.1).
func bfdName(st api.BfdSessionState) string {
	switch st {
	case api.BfdSessionState_BFD_SESSION_STATE_UP:
		return "up"
	case api.BfdSessionState_BFD_SESSION_STATE_INIT:
		return "init"
	case api.BfdSessionState_BFD_SESSION_STATE_ADMIN_DOWN:
		return "admin-down"
	}
	return "down"
}

// pollBFD, every BFDPoll until ctx is done, turns each peer's BFD on while
// its session is established and off otherwise (applyBFD), reads the BFD
// session states and logs every change (GoBGP has no BFD event): a BFD
// session going down is what makes GoBGP reset the BGP session at once.
//
// It also reads the prefixes each peer sent every receivedPoll
// (pollReceived), so Status never asks GoBGP.
func (s *Speaker) pollBFD(ctx context.Context, srv *server.BgpServer, g Global) {
	t := time.NewTicker(s.opts.BFDPoll)
	defer t.Stop()
	var counted time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(counted) >= receivedPoll {
			counted = time.Now()
			s.pollReceived(ctx, srv)
		}
		s.applyBFD(ctx, srv, g)
		seen := map[netip.Addr]string{}
		srv.ListBfdPeer(ctx, func(addr string, st *api.BfdPeerState) {
			if a, err := netip.ParseAddr(addr); err == nil {
				seen[a] = bfdName(st.GetSessionState())
			}
		})
		type change struct {
			peer      netip.Addr
			was, next string
		}
		var changes []change
		s.mu.Lock()
		for a, st := range s.state {
			next := seen[a] // "" once BFD is off for the peer
			if next != st.bfd {
				changes = append(changes, change{a, st.bfd, next})
				if st.bfd == "up" {
					st.bfdDowns++
				}
				st.bfd = next
			}
		}
		s.mu.Unlock()
		slices.SortFunc(changes, func(a, b change) int { return a.peer.Compare(b.peer) })
		for _, c := range changes {
			switch {
			case c.next == "up":
				s.log.Info("BFD session up", "peer", c.peer)
			case c.was == "up":
				s.log.Warn("BFD session down; the BGP session is reset", "peer", c.peer, "state", c.next)
			case c.next == "":
				s.log.Info("BFD off", "peer", c.peer)
			default:
				s.log.Debug("BFD session state", "peer", c.peer, "state", c.next, "was", c.was)
			}
		}
	}
}

// receivedPoll is how often pollReceived reads the peers' Adj-RIB-In sizes.
const receivedPoll = time.Second

// pollReceived records how many prefixes each peer sent and how many the
// import policy accepted (GoBGP's ListPeer without the Adj-RIB-Out, which
// would walk every advertised path).
func (s *Speaker) pollReceived(ctx context.Context, srv *server.BgpServer) {
	type counts struct{ received, accepted uint64 }
	got := map[netip.Addr]counts{}
	err := srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		a, err := netip.ParseAddr(p.GetState().GetNeighborAddress())
		if err != nil {
			return
		}
		var c counts
		for _, af := range p.GetAfiSafis() {
			c.received += af.GetState().GetReceived()
			c.accepted += af.GetState().GetAccepted()
		}
		got[a] = c
	})
	if err != nil {
		return // stopping; the next poll reads them again
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, st := range s.state {
		c := got[a]
		st.received, st.accepted = c.received, c.accepted
	}
}

// applyBFD makes GoBGP run each peer's configured BFD exactly while its BGP
// session is established (see peerState.bfdApplied). UpdatePeer changes
// only BFD and keeps the session.
func (s *Speaker) applyBFD(ctx context.Context, srv *server.BgpServer, g Global) {
	type apply struct {
		peer Peer
		bfd  BFD
	}
	var todo []apply
	s.mu.Lock()
	for _, st := range s.state {
		want := BFD{}
		if st.state == "established" && st.peer.BFD.Enabled {
			want = st.peer.BFD
		}
		if want != st.bfdApplied {
			todo = append(todo, apply{st.peer, want})
		}
	}
	s.mu.Unlock()
	for _, a := range todo {
		if _, err := srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: a.peer.withBFD(a.bfd).apiPeer(g)}); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("cannot change BFD of a BGP peer; retrying", "peer", a.peer.Address, "err", err)
			}
			continue
		}
		s.mu.Lock()
		if st := s.state[a.peer.Address]; st != nil && st.peer == a.peer {
			st.bfdApplied = a.bfd
		}
		s.mu.Unlock()
		s.log.Debug("BFD for a BGP peer", "peer", a.peer.Address, "on", a.bfd.Enabled)
	}
}
