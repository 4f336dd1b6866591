// Package kubelab is the Kubernetes-mode lab of hostlb (issue 8, item 5): a
// real control plane and real hostlbd nodes on one Ethernet, for the lab
// tests of this package, the demo and the benchmarks.
//
// [New] builds, with netlab, one bridge and these network namespaces:
//
//   - api (192.0.2.10, 2001:db8::10): etcd, kube-apiserver with hostlb's
//     manifests applied, and kube-controller-manager running only the
//     EndpointSlice controller (tests/kubeapi with Options.Netns);
//   - client (192.0.2.2, 2001:db8::2): asks who answers with arping and
//     ndisc6 ([Lab.WhoAnswers]) or a raw ARP socket ([Lab.NewProber]);
//   - n1..nN (192.0.2.11.., 2001:db8::11..): a Node object each (InternalIPs,
//     Ready) and hostlbd in Kubernetes mode, with no gossip join list (the
//     other Nodes' InternalIPs are its seeds), a kubeconfig written by the
//     real `hostlbctl kubeconfig`, and L2 on eth0;
//   - spare nodes after them (Options.Spare): a namespace on the bridge with
//     neither Node object nor daemon until the caller starts one
//     ([Lab.StartNode], [Lab.RegisterNode]), for a node that boots before
//     its Node exists.
//
// For BGP (TestKubernetesBGP), Options.BGPASN and Options.LoadBalancerClass
// give every node [bgp] asn and [kubernetes] load_balancer_class, and
// [Lab.StartRouter] adds a namespace "router" on the bridge (192.0.2.1,
// .3 and .4, 2001:db8::1) running BIRD 2 through tests/bgplab, with the
// sessions the caller lists; the nodes open theirs when
// MetalLoadBalancerBGPPeers and Configurations ([Lab.ApplyBGP]) tell them
// to. [Router.WaitRoutes] reads the next hops in the router's kernel,
// [Router.ShowRoutes] BIRD's attributes.
//
// There is no kubelet, scheduler, kube-proxy or garbage collector. [Lab.Pods]
// creates Pods bound to nodes and writes their status (Running, Ready, pod
// IPs from 198.51.100.0/24 and 2001:db8:100::/64) as a kubelet would, so that
// the EndpointSlices hostlbd reads come from the real controller. Deleting a
// Service does not delete its EndpointSlices (that is the garbage
// collector's job), so [Lab.DeleteService] deletes them itself; Pods are
// deleted with a zero grace period, since no kubelet would confirm.
// ClusterIPs come from 203.0.113.0/24 and 2001:db8:5::/108: numbers only,
// nothing routes them.
//
// # Using it
//
// New takes a testing.TB and fails it on setup errors; the programs that
// have none pass failover.Env. Every other method returns an error instead
// of failing a test, so that subtests (which must not call FailNow of the
// test that made the lab) and programs can share one lab. Everything New
// started is ended by its PID at the TB's cleanup, and every namespace is
// deleted; when the TB failed, the end of every node's log is dumped.
//
// # Pitfalls
//
//   - The EndpointSlice controller skips a Pod whose node has no Node object
//     and retries the Service with a backoff of 1 s, 2 s, 4 s...: a Pod on
//     a spare node becomes an endpoint only at the retry after its Node is
//     registered. A test that times hostlbd's reaction to a new Node must
//     not wait on such a Pod.
//   - [Lab.KillNode] takes the node's link down before the SIGKILL, like a
//     crashed machine: nothing the dying daemon might still send reaches
//     the others. Node namespaces keep their IPv6 addresses across link
//     down (keep_addr_on_down), so [Lab.RestoreNode] only brings the link up
//     and starts hostlbd again, with the same name.
//   - With watches open, kube-apiserver does not exit within the kubeapi
//     harness's SIGTERM grace (15 s): it stops listening at once and is then
//     killed. [Lab.StopAPIServer] therefore takes that long; the API is
//     unreachable from its start.
//   - After [Lab.StartAPIServer], hostlbd's informers come back only when
//     client-go's reflector backoff lets them (about 20 s after a 30 s
//     outage here). [Lab.WaitWatching] reads the apiserver's audit log
//     (source address per node) to know when every daemon watches again.
//   - BIRD runs one protocol at a time per neighbour address and port,
//     whatever its local address: the router's sessions with one node
//     differ in the (unused) neighbour port, see birdConfig. LOCAL_PREF
//     never crosses eBGP (RFC 4271 §5.1.5; GoBGP strips it), so only
//     iBGP sessions (Session.IBGP) show an advertisement's localPref.
//   - [Lab.WhoAnswers] returns the first answer only; [Prober.Who] sees
//     every MAC that answers, for "exactly one owner", and [Prober.Start]
//     probes every few milliseconds, for timings finer than one arping.
package kubelab
