// Package daemon is the composition root of hostlbd: it owns the running
// configuration, the reconcile loop and the lifetime of every component.
//
// Lifecycle: New is inert; Run starts the components in order (reconcile
// loop first), sends READY=1 after the first full reconcile, serves reload
// requests (SIGHUP, delivered by main) and, when its context is cancelled
// (SIGTERM/SIGINT), sends STOPPING=1 and stops the components one at a time
// in reverse order within a bounded drain time. Only main touches signals.
//
// L2 (Options.Links, Options.L2): the netlink Monitor runs first and the
// first pass waits for its first dump, so READY=1 follows a pass that saw
// the real interfaces. Every pass hands the L2 output the whole desired L2
// set with the current links (level-triggered: a link event alone moves
// announcements). READY=1 follows the first pass that ran to its end even
// if an output failed (the loop retries; STATUS and the journal say so),
// so a host that cannot set the ARP sysctls still serves what it can. On
// stop the L2 output is closed after the loop: every responder stops and
// every local address is removed.
//
// Health checks (health.go): a static VIP with `health` is announced only
// while its TCP check passes; it starts unhealthy until the first success,
// and every change of state triggers a pass.
//
// # The ring (Options.Ring; ring.go, cluster.go, ownership.go)
//
// With a gossip ring, every pass places every static VIP over the cluster
// (SPEC §6) from this node's view of the ring, and announces only what this
// node owns:
//
//   - Up (placement's alive set): members alive in the ring, gossiping
//     HealthOK and not leaving. Eligible: every member the ring remembers,
//     dead or alive, whose gossiped labels match node_selector, so that
//     preferred ranks do not change while a node is away. Service = VIP
//     name, Slot = index in `addresses`, Current = the one alive member
//     whose gossiped announced set holds the IP ("" if none or several).
//   - Exclusions travel with the node's announced set (gossip
//     SetExclusions; any number, no 512-byte meta budget): the names of
//     this node's VIPs whose health check fails or has no result yet, and
//     the IPs it cannot announce. A node failing a VIP's check is not up
//     for that VIP (it stays eligible, so ranks hold); a node that cannot
//     announce an address of a slot is not up for that slot alone
//     (avoidCannot), so the next node takes it: "never none" (SPEC §6).
//   - After the L2 output applied a pass, the node gossips what it really
//     answers for (netif.L2 Status) with SetAnnounced, and what it was
//     asked to announce and answers on no interface (netif.L2 Cannot: no
//     eligible interface — the link down, gone, renamed or moved away —,
//     no packet socket, local address or ARP sysctls not in place) as
//     exclusions, then runs another pass. Each such episode is logged at
//     warn once (vip, addr, reason) and its end at info; STATUS counts
//     them ("2 IPs this node cannot announce"). The node tries the IP
//     again by leaving it out of its exclusions for one pass (retryDue):
//     with no eligible interface as soon as the L2 output's Check finds
//     one, otherwise after Options.CannotRetry (1 s) doubling to a minute,
//     and on a link change. A failed try loses nothing: its announced set
//     never shows the IP, so the node that took it keeps answering it
//     (make-before-break, below) until this node excludes itself again at
//     the end of the same pass.
//   - Make-before-break (holdLost): an IP this node loses to another live
//     node stays announced here until the ring shows the new owner
//     announcing it, for at most HandoverTimeout (3 s). The new owner's
//     L2 output sends the takeover GARP/NA burst when the IP is added.
//     An IP nobody else can take, or that this node cannot announce
//     anyway, is dropped at once.
//   - Graceful stop: before any component stops, the node gossips
//     HealthDraining, so every node (this one included) places its IPs
//     elsewhere; holdLost keeps each IP answered here until its next
//     owner announces it; then the components stop in reverse order: the
//     L2 output goes quiet, and only then is the ring left (Leaving flag,
//     then memberlist Leave).
//   - Start without flapping: the ring starts HealthNotReady, so peers
//     give this node nothing; the node takes no IP until it has settled —
//     another member is alive and every alive member's announced set is
//     complete (so placement sees the current owners) — or, with seeds
//     configured and none reachable, until SettleTimeout (2 s); with no
//     seeds at once. Then it gossips HealthOK and takes its IPs; those
//     coming back from fallback nodes are released by the fallbacks only
//     once this node announces them. READY=1 follows the first settled
//     pass.
//   - Disagreements: after each pass the placement is compared with the
//     gossiped announced sets; an IP with two or more announcers, or none
//     while a node should announce it, for longer than DisagreementGrace
//     (2 s) is logged at warn once per episode (vip, addr, nodes), and
//     counted in the STATUS line ("cluster: 5 of 5 nodes alive, 0
//     conflicts, 0 unannounced").
//   - BGP-mode static VIPs are placed on every up eligible node, and the
//     BGP output (Options.BGP, bgp.go) advertises each of this node's as
//     a host route; they are not gossiped as announced (many nodes
//     announce them by design). A draining node is not up, so its
//     draining pass withdraws them; then the BGP component, stopped after
//     the reconcile loop and before the ring, withdraws whatever is left
//     and waits until the peers were sent it (bounded), before the ring
//     is left.
//   - Reload: node labels are re-gossiped (SetLabels) and new gossip.join
//     seeds replace the old ones for later re-joins (SetJoin): members
//     already known stay, and a node alone retries the new seeds. The
//     other [gossip] keys need a restart.
//
// Without a ring (tests, and a node built without one) the node announces
// every VIP it is eligible for.
package daemon
