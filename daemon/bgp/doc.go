// Package bgp is hostlbd's BGP output: an embedded GoBGP v4 speaker
// (github.com/osrg/gobgp/v4/pkg/server, in-process, no gobgpd, no FRR)
// that advertises the node's BGP addresses to the configured peers.
//
// It is level-triggered like every output (SPEC §2): each reconcile pass
// calls Speaker.Sync with the whole peer configuration and the whole set
// of advertisements this node must make, and the speaker applies only the
// difference to what it applied before. A peer whose settings did not
// change keeps its session; a path that did not change is not re-sent.
// It never imports the daemon's root package: the daemon translates its
// configuration and desired state into this package's plain types.
//
// What each session carries (RFC 4271, RFC 4760): IPv4 and IPv6 unicast
// are both offered on every session, and used where the peer agrees in its
// OPEN. The next hop of a path is the node's own address on the session
// (GoBGP fills an unspecified next hop with the session's local address);
// a path of the other family than the session's gets Global.NextHop4 or
// NextHop6, the node's own address of that family, or is not sent on that
// session when the node has none. Routes learned from peers are rejected
// by the global import policy: they never enter the RIB, so the speaker is
// no transit and re-advertises nothing it learned.
//
// Route import ([bgp.import], import.go): with Options.Routes set, the
// speaker owns the kernel's routes of hostlb's protocol
// (netif.RTProtoHostlb, in every table). A pass reads every peer's
// Adj-RIB-In (GoBGP fills it before the import policy), picks per prefix
// the best paths (local-pref, AS-path length, origin, MED, eBGP over
// iBGP; equally good paths from several peers make one multipath route),
// and makes the kernel hold exactly those routes in [bgp.import] table
// with its metric: nothing while import is off, nothing after Close.
// Passes are level-triggered — on any UPDATE received, session change,
// change of a route of our protocol, netlink resubscription (overrun),
// config change, and every ImportResync — so a withdrawal, a peer going
// down or a route deleted behind our back converges. A key (table,
// prefix, metric) another protocol holds is reported, never taken.
//
// Graceful stop: Drain withdraws every path and waits (bounded by its
// context) until each established peer has been sent the withdrawal.
//
// # GoBGP v4.8.0 pitfalls, read from its source
//
//   - NewBgpServer starts goroutines (the BFD server's loop) and Serve must
//     run before any request; so the server is created on the first Sync,
//     not in New, and Close stops it.
//   - Every apiutil.Path needs Family set, and a path to delete needs
//     Withdrawal set (or a next hop), or AddPath/DeletePath fail.
//   - WatchEvent with no WatchOption fails ("no events to watch"); its
//     goroutine ends on its context, which Close cancels.
//   - TCP-MD5 is set on GoBGP's listeners only when it listens
//     (ListenPort > 0); an outgoing session sets it on its own socket. A
//     listener created outside GoBGP would need SetMultipathTCP(false) for
//     MD5 to work; we let GoBGP create its own.
//   - BFD (RFC 5880/5881) is single-hop only, listens on UDP 3784 once a
//     peer has BFD enabled, and resets the BGP session when BFD goes down.
//     GoBGP reports no BFD event: the speaker reads the BFD session states
//     every BFDPoll and logs changes.
//   - That reset is a Cease/Administrative Reset (ResetPeer), after which
//     GoBGP keeps the session Idle for IdleHoldTimeAfterReset: 30 s unless
//     set, and the API's 0 means unset. The speaker sets 1 s
//     (idleHoldAfterReset).
//   - Export policies of non-route-server peers are global in GoBGP (the
//     "global" table), not per peer: the cross-family next hop is one
//     global export policy whose statements match the neighbour's family
//     with a neighbour set.
//   - GoBGP offers no event for "UPDATE sent"; Drain watches each peer's
//     sent-UPDATE counter instead. It grows once the withdrawal was
//     written to the session's socket, which is as far as GoBGP lets us
//     know (the kernel then delivers it in order).
//   - GoBGP logs with capitalised keys ("Topic", "Key", "Error") and logs
//     every session change at info; the bridge (log.go) renames the keys
//     (peer, err, topic) and moves GoBGP's info lines to debug, since the
//     speaker logs session and BFD changes itself with their reasons.
package bgp
