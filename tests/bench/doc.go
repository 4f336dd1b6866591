// Package bench measures how hostlb answers address resolution against the
// Linux kernel answering for the same addresses: ARP (RFC 826) and NDP
// Neighbor Solicitations (RFC 4861) with 1 to 10,000 VIPs on one node, in a
// network-namespace lab, in the same run, reported as ratios (issue 3,
// item 7; `make bench`).
//
// # The lab
//
// One client namespace is joined to two node namespaces by two bridges, so
// each node hears only the client's frames meant for it:
//
//	client ek ── brk ── eth0 node-kernel   N VIPs configured as local addresses
//	client eh ── brh ── eth0 node-hostlb   no VIPs configured; a responder process
//	                                       (netif.ListenARP/ListenNDP and
//	                                       NewARPResponder/NewNDPResponder, as
//	                                       hostlbd builds them) owns the N VIPs
//
// The hostlb responder runs in its own process (this test binary re-executed
// inside node-hostlb), so it does not share a Go runtime with the load
// generator, as hostlbd would not.
//
// # The load generator
//
// The client sends ARP requests or multicast Neighbor Solicitations from a
// raw packet socket (github.com/mdlayher/packet), for targets drawn
// uniformly from the N VIPs, and reads the answers on the same socket
// through a BPF filter that passes only ARP replies or Neighbor
// Advertisements. Replies are matched to requests by their target address,
// oldest outstanding request first; a lost answer therefore makes the next
// one for that target look late, never early, which errs against whichever
// side loses frames. Latency runs from just before the send syscall to the
// client kernel's receive timestamp of the answer (SO_TIMESTAMPNS), so the
// generator's own wake-up counts on neither side.
//
// Two load shapes run for each side:
//   - rate: closed loop with a window of K outstanding requests, as fast as
//     answers come back; the answered rate is replies per second.
//   - latency: open loop at a fixed offered rate well below either side's
//     capacity; p50 and p99 of the per-request latency.
//
// Kernel and hostlb alternate (kernel, hostlb, hostlb, kernel) so slow drift
// of a shared machine affects both alike. The client's own kernel sees the
// answers too (an ARP reply or NA it did not ask for, which it ignores) and
// never sends anything itself, so it does not interfere.
//
// Everything needs root; when not root, the benchmark skips with a message.
// Codecs and bookkeeping are pure and tested without root.
package bench
