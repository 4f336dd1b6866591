// Package bgpbench measures hostlbd's BGP output in the BGP lab
// (tests/bgplab: BIRD 2 in a router namespace, nodes in their own), at
// the router's kernel, which is what forwards traffic:
//
//   - VIP to route: a hostlbd reload (SIGHUP) adds one static BGP address;
//     the time from the signal until the router's kernel has its /32 or
//     /128 (polled every millisecond), split at the first BGP UPDATE
//     segment the router received from the node (captured on the router's
//     interface, kernel timestamps) into hostlbd's part (reload, reconcile,
//     GoBGP) and the router's (BIRD, its kernel protocol, the kernel).
//   - 10,000 prefixes: a SIGHUP adds, then removes, a VIP of 10,000 IPv6
//     addresses (/128s in 2001:db8:100::/112); the time until the router's
//     kernel holds all of them, then none (counted from netlink route
//     events inside the router namespace), split at the first and the last
//     UPDATE segment: hostlbd before it sends, GoBGP sending, and the
//     router after the last segment. The same with a SIGTERM (withdraw on
//     stop), and against the baseline in the same run: the lab's plain
//     GoBGP speaker (tests/bgplab's reference) advertising the same
//     prefixes from its start and withdrawing them on SIGTERM.
//   - Crash withdrawal: a hostlbd node and a plain GoBGP node crash at
//     once (link down, then kill -9); the time until each one's next hop
//     of the VIP's /32 left the router's kernel, with BFD (100 ms × 3) and
//     with the hold timer alone (hold 3 s, keepalive 1 s). The CDFs go to
//     a PNG (gnuplot) and every run to a CSV.
//
// The benchmarks build their own labs, need root (they skip without it,
// and fail under CI), and report with nearest-rank percentiles
// (failover.Summarize). `make bench` runs them once with -benchtime 1x.
package bgpbench
