// Package bgplab is the BGP lab: real routers (BIRD 2 and FRR, from
// Debian's packages) in a network namespace, peering with three node
// namespaces, and a client behind the router.
//
//	client ── br-client ── router ── br-nodes ── node1, node2, node3
//	198.51.100.2           .1 | 192.0.2.1        192.0.2.11 .. .13
//	2001:db8:1::2          ::1| 2001:db8::1      2001:db8::11 .. ::13
//
// [New] builds the namespaces (through tests/netlab, so stale labs of a
// crashed run are removed and nothing outside the lab's namespaces is
// touched); [Lab.StartRouter] starts BIRD or FRR in the router namespace
// with a generated configuration (eBGP, router AS 64500, nodes AS 64512,
// IPv4 and IPv6 sessions to every node, optional BFD and TCP-MD5, import
// everything, ECMP into the router's kernel, export nothing or a test
// prefix). Every file of a router — configuration, control sockets, pid
// files, logs — lives in a temp dir of the test; the system's /etc/bird and
// /etc/frr are never read.
//
// [Router.Routes] reads the next hops of a prefix from the router's kernel
// (netlink, inside the router namespace), which is what forwards the
// client's traffic: a route the daemon has but the kernel lacks does not
// count. [Router.PeerState] reads a session's BGP and BFD state through the
// router's own CLI (birdc, vtysh) on the instance's socket.
//
// [StartBIRD] starts BIRD with a caller's whole configuration in a
// namespace of another lab (tests/kubelab's router), with the same
// [Router] methods and [Birdc] for the rest.
//
// Speakers on the nodes are either hostlbd ([Lab.StartHostlbd]) or, to
// validate the lab itself, a plain GoBGP server ([Lab.StartSpeaker]) that
// runs as a child of the test binary (see [RunSpeakerIfChild]) inside the
// node namespace, so that every socket GoBGP opens — BGP, BFD — is in that
// namespace.
//
// Processes the lab starts are ended by PID; namespaces are deleted when the
// test ends. Everything needs root; without root (or without bird, birdc,
// the FRR daemons or vtysh) a test skips, and with CI set it fails
// (netlab.Missing).
package bgplab
