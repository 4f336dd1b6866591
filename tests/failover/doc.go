// Package failover measures VIP failover as a client on the same Ethernet
// sees it, with the real kernel and the real daemons: a bridge, a client
// namespace and three node namespaces (netlab), each node running hostlbd
// (a gossip ring) or keepalived (VRRP, the baseline).
//
// The client probes every 10 ms with ARP requests on a raw socket (who
// answers for the VIP, and when) and with TCP connects to the VIP, answered
// by a listener in every node namespace that writes its node's name, so a
// connect also says which node served it. A fault is a crash (the node's
// link down, then SIGKILL) or a graceful stop (SIGTERM); [Analyze] turns
// the probes around one fault into failover times.
//
// The same code backs three users: the root lab test tests/l2cluster, the
// benchmark tests/failover/cmd/failover (`make bench`) and the cluster demo
// tests/cmd/demo (`make demo`). Programs use [Env] where netlab wants a
// testing.TB.
package failover
