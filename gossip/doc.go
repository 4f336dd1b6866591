// Package gossip is hostlb's membership ring: every hostlbd runs one Ring, a
// hashicorp/memberlist node, so that the daemons agree without a central
// component which nodes are alive and what each of them announces (SPEC §4
// [gossip], §6). The in-memory test network is in gossip/gossiptest.
//
// # Use
//
//	r, err := gossip.New(gossip.Config{NodeName: "n1", Bind: ..., SecretKeys: keys,
//		Join: seeds, OnChange: func() { loop.Trigger("gossip") }})
//	go r.Run(ctx)            // joins, re-joins, and on ctx done leaves gracefully
//	r.SetAnnounced(ips)      // what this node announces now
//	r.Members()              // the snapshot placement reads
//
// New is inert; Run owns every goroutine (memberlist's included) and returns
// once they are gone. OnChange runs on the Ring's notifier goroutine, never
// under a memberlist lock, so it may call Members.
//
// # Keys and the cluster label
//
// Config.SecretKeys is memberlist's keyring: the first key encrypts, every
// key decrypts. SetKeys changes the set on a running ring (keys.go), which
// makes a rolling rotation possible without a split: add the new key as a
// second key on every node, then make it the first everywhere, then drop
// the old one; at every step every node can read what every other sends.
// memberlist's RemoveKey shifts keys inside the slice its decrypting
// goroutines read, so SetKeys only ever removes the last key (dropKeys).
// Config.Cluster is memberlist's Label: prefixed to every packet and
// stream and, with a key, authenticated with it; a node drops anything
// labelled otherwise, so two clusters sharing a key never merge.
//
// # What is gossiped, and where
//
// memberlist carries at most 512 bytes of node meta (MetaMaxSize), and a
// node may announce thousands of IPs, so the metadata is split:
//
//   - Node meta (meta.go, format byte 1): Gen, health, a Leaving flag,
//     AnnounceGen, AnnounceCount, version, labels, and a retired empty list
//     (earlier builds sent the names of failing VIPs there). memberlist
//     orders it by incarnation and delivers it with join/update events.
//     New and SetLabels refuse metadata that would overflow 512 bytes; its
//     size depends only on the labels and the version, so --check-config
//     can check it (daemon.CheckRingMeta).
//   - The node's set: the IPs it announces, with its exclusions — the
//     addresses it cannot announce (no interface, no responder socket,
//     local address or sysctls not in place) and the names of the VIPs
//     whose health check fails on it (SetExclusions; any number: 10,000
//     failing VIPs are ~100 KB). All three share one generation
//     (AnnounceGen): a change of any of them is a new set, and peers take
//     a set only whole. Exclusions were added within format 1 after the
//     addresses of a chunk and after the sets of a push-pull state, so a
//     build that predates them reads the announced IPs and ignores the
//     rest. (In a ring that mixes such builds, a set an older node relays
//     by push-pull arrives without its exclusions: a newer node that had
//     not seen that generation yet takes it as "no exclusions" until the
//     node's next change.) An exclusion change is an urgent event
//     (Event.Exclusions): the next node takes the IP at once.
//   - The set travels split into chunks of ≤ 1000 bytes (~190 IPv4 or
//     ~55 IPv6 addresses, or 15–100 VIP names by length, each) that ride
//     the gossip packets from the Ring's own transmit-limited queue
//     (queue.go: memberlist's drops broadcasts of equal length). A
//     receiver assembles all chunks of one generation before it commits
//     them, and relays each chunk the first time it sees it (memberlist
//     sends user broadcasts only from the origin, RetransmitMult×log10(n)
//     times). A newer generation invalidates the older chunks still queued.
//   - Push-pull (LocalState/MergeRemoteState) carries every alive member's
//     set, exclusions included, so anti-entropy repairs lost chunks every
//     PushPullInterval.
//   - Every probe ack carries the acking node's digest (format 1, kind 3:
//     the Gen of its advertised meta and its AnnounceGen; PingDelegate), so
//     each node learns the others' current generations once per probe
//     round (n × ProbeInterval) even when it missed their broadcasts.
//     Broadcasts get lost (see pinger; memberlist's queue can drop a meta
//     update), and a node that missed the meta cannot tell that its set
//     is stale either. A member whose set or meta this node holds older
//     than its meta or its last ack say, for longer than a second (fast),
//     is pulled by joining it (a join is a push-pull), instead of waiting
//     until memberlist's random push-pull pairs the two nodes.
//
// Gen starts at the node's wall clock in nanoseconds and grows by one with
// every local change, so a restarted node's generations stay above those its
// peers remember; if a peer still reports a newer one (a clock set back),
// the node jumps past it (within the bounds below). Member.AnnouncedGen ==
// Member.Meta.AnnounceGen means the receiver holds exactly the set the node
// currently advertises.
//
// # Untrusted input
//
// Everything decoded from the ring may be corrupt, or forged by a peer that
// holds the key. The rules (meta.go, delegate.go, log.go):
//
//   - Decoders never allocate from a count the message cannot hold: a
//     count of n items needs n × their minimum size in the bytes left (an
//     address 5 bytes, a set 4, a label 2, a VIP name 2), and counts are
//     capped (200 addresses and 500 names a chunk, 16,384 sets a state;
//     a name is at most 255 bytes and never empty). A 1 MiB state costs at most
//     a few MiB; fuzz targets check every decoder (fuzz_test.go).
//   - Node meta over memberlist's 512 bytes is rejected unread, like meta
//     that does not decode: the member keeps the last meta this node read.
//   - A member's set (exclusions included) moves only forward, and only
//     as far as the member's own meta vouches: a chunk, state or probe
//     digest whose generation is
//     more than genAhead (2^20, ~1 ms of wall clock) beyond the Gen and
//     AnnounceGen of the member's meta, as memberlist delivered it, is
//     dropped. memberlist orders meta by incarnation and the node refutes
//     meta forged about itself, so the bound follows the real node. A
//     forged chunk with generation MaxUint64 can therefore no longer freeze
//     a member's set. A forged set within the bound is taken, relayed and
//     so reaches its owner, which jumps past it; its next set replaces it.
//   - A member that memberlist has not reported yet has no meta: its sets
//     are bounded by this node's clock plus maxClockSkew (24 h), and at most
//     64 such members are kept. When its meta arrives, a set or pending
//     chunks beyond its bound are dropped.
//   - A restarted node's Gen is its new wall clock, far beyond its old meta:
//     its sets are taken once its new meta arrives (before that a pull, or
//     its next broadcast, repairs them). One restarted with its clock set
//     back has meta below the set peers hold; that set is then beyond the
//     bound and dropped, and the node's new sets are taken.
//   - A node follows a peer's report of its own generation only up to its
//     clock plus maxClockSkew: Gen+1 never wraps (MaxUint64 ns is the year
//     2554).
//   - Repeated errors about bad input do not flood the journal: memberlist's
//     warnings and errors about undecryptable, malformed or unknown
//     messages, and the Ring's own about rejected chunks, states, digests
//     and meta, are logged the first time, then at most once per 10 s per
//     kind with the count since the last line (the peer's address is not
//     part of the kind). Ring.InputErrors counts every one by kind. Lines
//     about suspect, dead or refuting members are never aggregated: they
//     explain a failover, and journald's rate limit would drop them first.
//
// # Metrics
//
// memberlist does not tell its delegates that it suspects a member
// (StateAlive includes suspects, see State) and has no per-instance
// metrics sink: its suspicions, awareness score and the like go only to
// hashicorp/go-metrics' process-global sink, which hostlbd's main points
// at daemon/metrics. The probes' round trips need no global: the Ring's
// PingDelegate hands them to Config.OnProbe.
//
// # Failure, leave, partition
//
// memberlist reports a failure and a graceful leave through the same
// NotifyLeave, and v0.7.0 never fills Node.State (nodeState shadows it), so
// a leaving node first gossips meta with Leaving set and then calls Leave:
// peers report it StateLeft, not StateDead. memberlist also never re-contacts
// a node it declared dead, so the Ring's join loop re-joins dead members
// (for ReconnectTimeout, 24 h) every RejoinInterval, which merges the two
// halves of a healed partition, and a node that is alone retries its seeds
// with backoff from 100 ms up to RejoinInterval.
//
// # Profiles
//
// lan and wan are memberlist.DefaultLANConfig and DefaultWANConfig (crash to
// dead ≈ 5–6 s on LAN, see reference/peer-systems.md §2.1). fast is:
//
//	ProbeInterval            100 ms   (LAN 1 s)
//	ProbeTimeout              50 ms   (LAN 500 ms)
//	SuspicionMult              3      (LAN 4)
//	SuspicionMaxTimeoutMult    2      (LAN 6)
//	IndirectChecks             3
//	GossipInterval            50 ms   (LAN 200 ms)
//	GossipNodes                3
//	RetransmitMult             4
//	TCPTimeout                 1 s    (LAN 10 s)
//	PushPullInterval           5 s    (LAN 30 s)
//	AwarenessMaxMultiplier     8
//	GossipToTheDeadTime       15 s    (LAN 30 s)
//	Ring: RejoinInterval 2 s, LeaveTimeout 1 s
//
// How memberlist turns these into a detection time (state.go probeNode and
// suspectNode, util.go suspicionTimeout, suspicion.go):
//
//  1. Every node probes one member per ProbeInterval, round robin over a
//     shuffled list. With n−1 live probers, some node probes the crashed one
//     about once per ProbeInterval: wait ≈ 0–100 ms.
//  2. The probe: direct UDP ping, after ProbeTimeout (50 ms) IndirectChecks
//     (3) peers ping it too, plus a TCP ping; all wait until the end of the
//     probe interval. Suspect after ≈ 100 ms.
//  3. The suspicion timeout: min = SuspicionMult × max(1, log10(n)) ×
//     ProbeInterval = 3 × 1 × 100 ms = 300 ms for n ≤ 10 (390 ms at n = 20);
//     max = SuspicionMaxTimeoutMult × min = 600 ms (780 ms at n = 20). The
//     timer starts at max and falls (logarithmically) to min once k =
//     SuspicionMult − 2 = 1 other node independently confirms the suspicion
//     (for n − 2 < k, i.e. 2-node rings, k = 0 and it starts at min).
//     With n ≥ 3 the next prober fails its own probe ≈ 100–200 ms later, so
//     the usual timeout is min.
//  4. The dead message spreads at GossipInterval 50 ms to GossipNodes 3
//     peers per round, relayed by every receiver: all of 20 nodes in ≈ 3
//     rounds; the other nodes also run their own timers from the suspect
//     message.
//
// So crash → dead everywhere ≈ 50 + 100 + 300 + 50 ≈ 500 ms for 3–10 nodes
// (measured: 0.46–0.49 s in TestRingCrashDetectedWithinFastBound, 5 nodes),
// ≈ 600 ms at 20 nodes; the worst case without any confirmation is ≈ 100 +
// 100 + 600 + 100 = 900 ms (1.1 s at 20 nodes, which needs 18 live nodes to
// all miss the dead one for 780 ms).
//
// Why not faster: a live node is declared dead only if it answers neither the
// direct ping (50 ms) nor three indirect pings nor the TCP ping within 100 ms,
// and then cannot refute the suspicion within 300–600 ms: it must be
// unresponsive for ≈ 0.4–0.7 s. A shorter SuspicionMult or probe interval
// would let an ordinary scheduling or GC hiccup on a loaded node flap its
// IPs. SuspicionMult 3 (not 2) keeps k = 1: one prober alone, possibly the
// slow one, cannot condemn a node at the minimum timeout. Lifeguard's
// awareness (AwarenessMaxMultiplier 8) stretches a node's own probe interval
// up to 800 ms when it misses nacks, so a starved node stops accusing healthy
// ones. Measured with BenchmarkFalsePositivesUnderLoad (5 nodes on loopback
// UDP/TCP, one process, 2 CPUs, false positives among nodes never killed):
//
//	idle, 30 s                                  0 suspicions, 0 dead
//	8 busy processes (4× the CPUs), 20 s        0 suspicions, 0 dead
//	2 busy goroutines in-process (1×), 10+30 s  6 suspicions, all refuted, 0 dead
//	8 busy goroutines in-process (4×), 20–30 s  ≈ 4–6 suspicions/s, ≈ 0.2–0.5 dead/s
//
// Load from other processes (a node's workloads) does not disturb the ring:
// the kernel wakes the daemon's mostly sleeping threads promptly. Load inside
// the daemon's own Go scheduler is what hurts: its goroutines queue behind
// spinning ones 10 ms at a time, and at 4× oversubscription ack round trips
// exceed the 100 ms probe window. hostlbd must therefore keep CPU-heavy work
// bounded (GOMAXPROCS-sized worker pools, no busy loops).
//
// Cost: 10 pings/s per node (plus acks, ≈ 100-byte packets), gossip packets
// only while there is news, one TCP push-pull per node per 5 s (memberlist
// stretches it above 32 nodes). TCPTimeout 1 s bounds a join or push-pull to
// a dead address; a lost broadcast stays lost for about one probe round plus
// one to two seconds (the ack digest, then a pull), not until a random
// push-pull; GossipToTheDeadTime 15 s keeps telling a wrongly declared node,
// so it learns and refutes. The digest adds ≈ 20 bytes to each ack.
package gossip
