// Package l2lab runs the real hostlbd binary inside a network namespace of
// a netlab bridge and checks its L2 behaviour with the Linux kernel as the
// client: arping, ndisc6 and ping from another namespace, the local VIP
// link, health-gated announcement and a clean SIGTERM. The tests need root
// and skip with a clear message otherwise.
package l2lab
