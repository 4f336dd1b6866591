// Package heartbeat lets the heir of an IP see its owner die within
// Misses × Interval (120 ms in the fast profile) instead of memberlist's
// ≈ 0.5 s (gossip/doc.go): every owner sends a small authenticated UDP
// datagram to each of its heirs every Interval, and an heir that stops
// hearing from an owner it watches calls OnLoss, so that it can take the
// owner's IPs over at once (issue 12). memberlist stays the source of
// membership: who exists, what they announce, who is dead for good. The
// heartbeat never marks anyone dead in the ring; it only lets the node
// that would take over act before the ring agrees, and the ring's verdict
// follows and confirms it (or, if the owner keeps answering memberlist, the
// caller gives the IPs back; see Safety).
//
// # Use
//
//	h, err := heartbeat.New(heartbeat.Config{Node: "n1", Bind: heartbeat.AddrFor(gossipBind),
//		Keys: ringKeys, Cluster: label, OnLoss: ..., OnResume: ..., OnAccused: ...})
//	go h.Run(ctx)                // opens the socket; returns once everything stopped
//	targets, watched := heartbeat.Duties("n1", owners, func(ip netip.Addr) string { return heirs[ip] })
//	h.SetTargets(addrs(targets)) // the heirs of the IPs n1 owns
//	h.SetWatched(addrs(watched)) // the owners of the IPs n1 is heir to
//
// heirs comes from placement.Heirs: for each L2 IP, the node placement
// would choose with the owner dead. New is inert; Run owns both goroutines
// (one sends, one receives and decides losses; there is no goroutine or
// timer per node or IP) and closes the socket when ctx is done. The
// callbacks run on the receiving goroutine and must not block.
//
// # Port
//
// The heartbeat has its own UDP socket, by default beside the gossip port:
// AddrFor(gossip) is the same address with the port plus one (7948 for the
// default 7947). The firewall must let it through between the nodes like
// the gossip port; if it does not, nodes are never heard, and a node never
// heard is never declared lost (below), so the cluster falls back to
// memberlist's timing rather than to false takeovers.
//
// # Wire format (format 1)
//
//	format    1   1
//	boot     16   the sender's boot ID: its start time (wall clock, ns, big
//	              endian) and 8 random bytes; new with every Heart
//	seq       8   big endian: 1, 2, 3 … one per datagram within the boot
//	sealed        AES-GCM of the payload below, with its 16-byte tag
//
//	payload:
//	flags     1   bit 0 watching: the sender is heir to one of the
//	              receiver's IPs and asks for its heartbeats;
//	              bit 1 lost: the sender has declared the receiver lost;
//	              other bits ignored
//	interval  4   the sender's Interval, µs (1 µs to 10 s)
//	sent      8   the sender's monotonic clock, ns since its boot (< 2^62)
//	namelen   1   1–255
//	name          the sender's node name
//	              (a reader ignores bytes after the name: room for fields)
//
// 55 bytes plus the name; datagrams over 512 bytes are rejected unread.
// Every datagram, whatever its flags, proves its sender alive.
//
// # Keys
//
// Config.Keys are the ring's keys with the ring's semantics: the first
// seals, every one opens, SetKeys rotates them in the same three passes as
// gossip.Ring.SetKeys (add the new key second, make it first, drop the old
// one), and every pass keeps every node able to read every other. A
// datagram is not sealed with a ring key itself but with a key derived for
// the sender's boot, HMAC-SHA256(ring key, "hostlb heartbeat v1\x00" ‖
// boot), cut to the ring key's length, with the nonce 0⁴ ‖ seq. Every node
// sends tens of datagrams a second under the shared ring key, so random
// 96-bit nonces would near GCM's birthday bound in a year in a large
// cluster (2^43 datagrams, 100 nodes: collision probability ≈ 2^-11, and
// one collision gives away the authentication key); per-boot keys with a
// counter nonce never repeat a nonce while seq grows, and keep the
// heartbeat's use of the key apart from memberlist's. The additional data
// is the header and the cluster label (Config.Cluster), so a Heart of
// another cluster sharing the key is ignored like one with another key.
// With InsecurePlaintext (the ring's insecure_plaintext) datagrams are
// sealed with a fixed all-zero key: corruption and other clusters are still
// rejected, forgery is not.
//
// # Untrusted input
//
// A receiver keeps, per sender name, its current boot and the last seq
// accepted. It rejects, and counts by kind in Stats.Rejected (logging each
// kind the first time and then once per 10 s): datagrams too short or over
// 512 bytes, of an unknown format, that no key opens, whose payload does
// not decode, with a seq not above the last (replayed, duplicated or
// reordered: UDP reordering only costs the older datagram), from a boot
// older than the current one (a replay of a previous life; a node whose
// boot has been silent for 10 s may come back with an older-looking one, in
// case its clock was set back across a restart), read more than StaleAfter
// (1 s) later than the sender's fastest delivery (below), carrying this
// node's own name, or from one sender too many (4,096 tracked). Nothing
// decoded allocates more than the name; FuzzDecode checks the decoders.
//
// Staleness needs no synchronised clocks: the receiver tracks, per sender
// boot, the smallest difference between its own clock and the sender's
// `sent` (the fastest delivery, plus the clocks' offset), letting it rise
// by 1/64 of the time passed so that drift and a lasting change of path are
// absorbed. A datagram that took StaleAfter longer than that was sitting in
// a queue (most likely this node's socket while the node was stalled) and
// says nothing about the sender now. The bound is a second, not the loss
// timeout, because when a whole host stalls, the backlog it reads on waking
// is all late, though its senders are alive.
//
// # Who sends to whom
//
// Heartbeats are per node pair, not per IP: a node sends one datagram per
// round to each of its targets (SetTargets: the heirs of the IPs it owns,
// from Duties) and to each node that asked (below), however many IPs they
// share. Each node therefore sends at most N − 1 datagrams per Interval,
// and the cluster at most N × (N − 1); TestTrafficIsPerNodePairNotPerIP
// counts exactly the distinct (owner, heir) pairs per round with 10 nodes
// and 1,000 IPs. With placement's fallback rule (lowest hash(node, IP)) the
// heirs of a node's many IPs spread over all other nodes, so with many IPs
// per node the pairs approach N × (N − 1): per node the cost grows with N
// (25 datagrams of ≈ 70 bytes a second per other node at 40 ms), for the
// cluster with N², independent of the number of IPs.
//
// Both sides compute the same heirs from the same view, but views lag by a
// gossip round or more (a lost broadcast: about a second). An heir whose
// view is ahead would watch an owner that does not send to it yet; so a
// watcher also sends a watch request (flag watching) to each node it
// watches: piggybacked on a heartbeat when it sends one to that node
// anyway, else as a datagram of its own, every Interval until the node is
// heard and then once per 25 intervals (1 s). An owner sends heartbeats to
// every node that asked, in addition to its targets, for 5 s (5 of the
// watcher's refresh periods) after the last request, so a lagging owner
// serves its heirs from their first request and an heir that stops watching
// costs 5 s of datagrams.
//
// A node newly watched is Pending until heard, and a Pending node is never
// declared lost: the point is that a freshly computed heir must not take
// over before its owner could learn it must send, and a node that runs
// without a heartbeat (an older build during a rolling upgrade, a
// firewalled port) must not lose its IPs every second. The owner answers a
// watch request within one round trip and one Interval; until then
// memberlist detects a crash as before. Only a node heard since it was
// watched can be lost; SetWatched keeps a node's state while it stays
// watched, and a node newly watched that was heard within the timeout
// starts Alive.
//
// # Timing
//
// The fast profile: Interval 40 ms, Misses 3. A watched node is lost when
// no valid datagram from it has arrived for Misses × the larger of the two
// nodes' intervals (each datagram says its sender's), 120 ms: so a crash is
// seen 80–120 ms after it happens (the last datagram left up to one
// Interval before), plus the one-way delay and a 1 ms sweep. Each node
// sends its rounds from a random phase, so rounds of different nodes do not
// line up. lan and wan keep memberlist-only timing: the caller runs no
// Heart for them.
//
// Losses are decided on the receiving goroutine, after a sweep: when the
// earliest deadline passes, it reads whatever is in the socket for one
// more millisecond and only then declares losses. A checker on a goroutine
// (or timer) of its own would wake ahead of the receiver when the process
// is busy — the Go runtime puts a goroutine woken by a timer next in line
// and one woken by the network poller at the back of a run queue — and
// would take datagrams waiting unread in the socket for the sender's
// silence: the receiver's own lag would become a false loss. Measured
// with 4 busy goroutines (2× GOMAXPROCS), checking at the deadline without
// the sweep gave about 2 to 6 times the false losses.
//
// A receiver that wakes more than an Interval after its deadline was
// stalled itself, and holds its verdicts for one more Interval (at most
// once per loss timeout): a sender stalled with it — on the same paused VM,
// or in the same test process — owes a round, which its ticker sends as
// soon as it runs. A sender elsewhere was not stalled, and its datagrams
// are already in the socket. In TestWholeProcessStallLosesNobody's setting
// (three Hearts in a process SIGSTOPped for 300 ms), the hold took false
// losses from 17 in 40 stalls to 0.
//
// Measured with BenchmarkFalseLossesUnderLoad (3 nodes in a mesh on
// loopback, 6 watched pairs, one process, 2 CPUs; nobody stops, so every
// loss is false, and in the daemon each would be a spurious takeover, given
// back when the owner is heard again). On an otherwise quiet machine
// (make bench, BENCHMARKS.md):
//
//	idle, 5 min                                  0 (max gap 61 ms)
//	2 busy processes, 5 min                      0 (max gap 66 ms)
//	8 busy processes, 1 min                      0 (max gap 56 ms)
//	2 busy goroutines in-process, 1 min          0 (max gap 95 ms)
//	8 busy goroutines in-process, 1 min          22 (1,320/h; max gap 278 ms)
//
// and earlier, on the same machine while other work kept it under CPU
// pressure (PSI "some" 40–98 %), 30 s windows: idle 0; 2 busy processes
// 2–14; 8 busy processes 1–2; 2 busy goroutines 14–83. At the worst, the
// process sent only two thirds of its rounds: the senders themselves were
// starved. A 120 ms timeout is four to six times as sensitive as
// memberlist's fast profile, and load inside the daemon's own Go scheduler
// is what hurts most, as for memberlist. An in-process benchmark is also
// harsher than production, where a starved heir does not stop its owner
// from sending.
//
// # Safety
//
// A false loss makes the heir take the owner's IPs while the owner still
// answers for them: two nodes answer ARP/NDP for an IP until one stops.
//
//   - The owner was stalled (stopped process, paused VM, long GC) for more
//     than the timeout: while stalled it answered nothing, and the heir
//     serving is the point. On waking, the owner still believes it owns the
//     IPs (memberlist has not declared it dead unless the stall lasted
//     ≈ 0.5 s) and answers again; its next round (at once: its ticker has a
//     tick pending) reaches the heir one one-way delay later, OnResume runs,
//     and the heir's next reconcile pass, with the owner alive again, gives
//     the IPs back. Two owners for at most one Interval + one-way delay +
//     one reconcile pass after the stall ends (≈ 40 ms + a pass).
//   - The owner is alive but its datagrams do not arrive (Misses lost in a
//     row, a one-way filter): two owners until a heartbeat arrives again
//     (OnResume), or — if none does while memberlist keeps the owner alive
//     — until the caller overrides the heartbeat with memberlist's verdict
//     once memberlist's own worst-case detection time has passed without a
//     death (fast profile: 0.9 s below 20 nodes, 1.1 s at 20), plus a pass.
//     This override is the caller's duty: the Heart knows nothing of the
//     ring (the daemon: Daemon.overrideLost, with gossip.DetectionBound).
//
// So the bound on two owners after a false loss is min(the owner's next
// heartbeat reaching the heir, memberlist's worst-case detection) + one
// reconcile pass. The heir's takeover burst pointed neighbours' caches at
// the heir; the owner must point them back when the heir gives up. The heir
// tells it: the moment it declares the node lost (between rounds, before
// its own takeover can reach the wire, so that a stalled owner finds the
// message in its socket on waking however fast it ends the loss), and then
// every Interval while it holds it lost, it sends it a watch request with
// the lost flag, and the owner's Heart calls OnAccused, on which the owner
// re-announces its IPs (the daemon: netif.L2.Reassert). The on-wire fencing of
// netif/fence.go does not shorten this: it settles claims only from nodes
// outside the ring, and treats a claim from a live member as a handover in
// flight that placement settles; the owner and its heir are both members.
package heartbeat
