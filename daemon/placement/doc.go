// Package placement decides which nodes announce which load-balancer IP
// (SPEC §6). It is pure: plain values in, plain values out, no I/O, clocks or
// goroutines. Every daemon runs it on its own view of the cluster, with no
// central component, so the answer must depend only on that view: the same
// requests and alive set give the same owners on every node and every run,
// whatever the order of the inputs.
//
// # Rules
//
// For each IP the caller supplies its Service, its slot i (0..N-1) within
// the Service, its mode, and its eligible nodes (selector match, not
// excluded, ready local endpoint under externalTrafficPolicy Local), dead or
// alive. Alive is the set of gossip members not declared dead.
//
//   - L2: the preferred node of slot i is the i-th eligible node ordered by
//     hash(service, node) (i modulo the number of eligible nodes when the
//     Service has more IPs than eligible nodes). It owns the IP while alive.
//     Otherwise the alive eligible node with the lowest hash(node, ip) that
//     holds no other IP of the same Service takes it; if every alive
//     eligible node already holds one, the alive eligible node with the
//     lowest hash(node, ip) at all. With no alive eligible node, nobody.
//   - Sticky fallbacks: a request may name its Current owner (the node
//     that announces it now, from the ring's metadata). An IP whose
//     preferred node is dead stays on Current while Current is alive,
//     eligible and holds no other IP of the Service.
//   - The order of resolution is fixed: first every IP whose preferred node
//     is alive goes to it; then every sticky IP stays, in slot order; then
//     the other IPs take fallbacks in slot order, each seeing the holdings
//     assigned before it.
//   - BGP: every alive eligible node owns the IP.
//
// The hash (FNV-1a 64 over a length-prefixed encoding, murmur3 finaliser)
// is described in hash.go. It is part of the contract between daemons:
// changing it is a wire-compatibility change, because nodes running
// different versions would disagree about owners.
//
// # Guarantees
//
// These hold for every input and are checked by the property tests (at
// least 1,000 random cases each). "View" below means the alive set, with the
// requests (and so every Eligible) unchanged. 2 and 3 are stated first
// without Current (what a stateless rule can promise), then with it.
//
//  1. With agreeing views, every L2 IP with at least one alive eligible node
//     has exactly one owner, which is alive and eligible; every other L2 IP
//     has none. An IP is owned by its preferred node exactly when that node
//     is alive.
//  2. Losing a node x never moves an IP whose preferred node is still alive,
//     nor any IP of a Service in which x held nothing. Within a Service
//     where x held IPs, with m the lowest slot x held, every IP at a slot
//     below m keeps its owner; only x's IPs and fallback IPs (preferred node
//     dead) at slots above m can move. So when a Service had no fallback IP
//     before (the usual case: a single failure), only x's IPs move. When it
//     did, x's orphans are resolved first in slot order and can take the
//     node a later fallback was on, pushing that fallback elsewhere.
//  3. Adding a node z (an eligible node coming alive) is the same change
//     read backwards: IPs whose preferred node was already alive keep their
//     owner; IPs preferred by z move to z; in a Service where z ends up
//     holding IPs, with m the lowest slot it holds, IPs below m keep their
//     owner and fallback IPs above m may move — to z or between other
//     nodes, because z's return frees the fallback nodes its IPs were on.
//     When z was the only dead preferred node of a Service (a rejoin after a
//     single failure), exactly the IPs z is preferred for move, all to z.
//     The stronger statement "only IPs preferred by z move, all to z"
//     cannot hold for any rule that is a function of the alive set and
//     gives a fallback owner to an IP whose preferred node is dead: take a
//     fallback IP on node f; in the view without f it is elsewhere, so
//     adding f moves it to f, which is not its preferred node. What this
//     rule adds on top of that unavoidable move is re-packing: with another
//     preferred node of the Service still dead, z's return frees the node
//     z's own IP had fallen back to, and a later fallback may move onto it.
//  4. If a Service's IPs share one Eligible set and N ≤ the number of alive
//     eligible nodes, its N IPs have N distinct owners.
//  5. Shuffling the requests or any Eligible list changes nothing.
//  6. BGP owners are exactly alive ∩ eligible.
//  7. Over 10 nodes, 10,000 IPs (as 10,000 one-IP Services or 1,000
//     ten-IP Services) land within ±10% of an even share per node.
//
// With sticky fallbacks (Current taken from the converged previous
// placement, which is what a running cluster gossips), 2 and 3 become exact:
// losing a node moves exactly the IPs it held, and adding a node moves
// exactly the IPs it is preferred for (and gives owners to IPs nobody could
// announce), except in a Service that had more IPs than alive eligible
// nodes, where distinct owners (4) take precedence over staying put. A
// placement is a fixpoint of itself: announcing it changes nothing.
//
// Guarantees 2 and 3 are about the alive set only. Changing a Service's
// Eligible set (a node joining the selector, or a Local endpoint appearing
// or going) re-ranks its nodes: every slot whose rank lies after the
// inserted or removed node gets a new preferred node, so more IPs than the
// changed node's can move. Callers that want fewer moves should keep dead
// nodes in Eligible for as long as gossip remembers them.
package placement
