// Package l2cluster runs three real hostlbd daemons, one per network
// namespace on a netlab bridge, as one gossip ring, and checks with the
// Linux kernel and arping as the client that the addresses of one static
// VIP are spread over the nodes, that a crashed owner's address moves, and
// that a SIGTERM hands an address over without losing a TCP connect
// (SPEC §6, §7; issue 4 item 6). The lab itself is tests/failover's. The
// tests need root and skip with a clear message otherwise.
package l2cluster
