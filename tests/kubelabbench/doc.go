// Package kubelabbench measures hostlb's Kubernetes L2 path end to end in
// the lab of tests/kubelab (issue 8, `make bench`): how long a burst of new
// LoadBalancer Services takes from create to the first answer from their
// owner, what each node's hostlbd costs with 10,000 Services held, and
// which API requests each node makes at rest.
//
// # The run
//
// BenchmarkKubeL2 (run once, -benchtime 1x) builds the lab with
// kubelab.New: etcd, kube-apiserver (audit log on) and
// kube-controller-manager running only the EndpointSlice controller, at
// their defaults except the controller manager's client rate
// (-kubelabbench.kcm-qps, default 200 requests/s and a burst of twice
// that: at its own default of 20 the controller, not hostlbd, decides
// when a burst of Services gets answered), and three hostlbd nodes in
// Kubernetes mode at log level info. Then:
//
//  1. three Pods labelled app=bench, one per node, made Ready: every
//     Service selects them, so each has three ready endpoints, and each
//     Service gets its own EndpointSlice from the real controller;
//  2. 200 IPv4 Services (count 1, pool 192.0.2.32-192.0.2.231) created at
//     once by 16 workers and answered by ARP, for comparison, then
//     deleted: the documentation ranges hold too few IPv4 addresses for
//     1,000;
//  3. 1,000 IPv6 Services (count 1, single-stack IPv6, pool
//     2001:db8:1000::/64) created at once by 16 workers, answered by NDP;
//  4. a quiet minute;
//  5. more IPv6 Services by 32 workers, up to 10,000; creates stop 45 s
//     before -kubelabbench.budget (12 min from the start) and the wait for
//     answers ends at it, so a run that cannot finish reports how far it
//     got;
//  6. a quiet minute; then one request for every held IP.
//
// # What is measured, and how
//
//   - Times, per Service, from its create call's return (the test
//     process's clock): to its IP in status and to its first ready
//     endpoint, as one watch each (client-go's RetryWatcher) first shows
//     them; to the first answer and to the first announcement from the
//     owner, as the Prober receives them. "hostlbd's part" runs from the
//     later of the IP and the endpoint, as the watches saw them, to the
//     first answer. Percentiles are nearest-rank (kubebench.Summarise).
//   - Answers: the Prober sends, from the client namespace on a raw
//     packet socket (no neighbour table in between), ARP requests to
//     broadcast or Neighbor Solicitations to the target's solicited-node
//     group with a source link-layer option, as Linux sends them. An IP
//     is asked about from the moment the watches have shown both it and a
//     ready endpoint of its Service (before that nobody may announce it,
//     and asking would only load the nodes' responders), at once and then
//     every 25 ms, within 2,000 requests per second in all (Schedule),
//     until its first answer: an ARP reply or a solicited NA sent to the
//     client's MAC. Gratuitous ARPs and unsolicited NAs are
//     announcements, recorded apart. The table says how long a request
//     waited at worst, which is the resolution of the answer times.
//     Every MAC heard for an IP is kept: two MACs for one IP is counted.
//   - Ownership: a second MAC heard for an IP (answer or announcement) is
//     counted, with when; at the end every held IP is asked about once
//     and who answers is counted. Each node's log is scanned for the
//     lines that tell how the ring and the Events fared (LogMessages),
//     and the Events each node wrote (audit log) are set against those
//     its log accounts for.
//   - Memory and CPU: VmRSS, VmHWM and utime + stime of each hostlbd,
//     kube-apiserver, kube-controller-manager and etcd from /proc; the
//     daemons run with GODEBUG=gctrace=1 (set while kubelab.New starts
//     them), so their logs say how much of the RSS is live heap.
//     -kubelabbench.heapprofile runs the daemon's informers (kube.Source)
//     in this process at the end and says how much live heap they hold.
//   - Requests: kube-apiserver's audit log records hostlb's
//     ServiceAccount only, and every node authenticates as it; requests
//     are told apart by source address (each node's InternalIP). A
//     request counts once, a watch once when it starts, by the
//     apiserver's receive time. At rest the goal is nothing but watches
//     and the IPAM leader's Lease renewals.
//
// Everything needs root, the lab's tools and `make kube-bins`
// (kubelab.Require); without them the benchmark skips and says why. The
// frame codec, the Schedule, the audit parsing, the Tracker and the
// report are pure and tested without root.
package kubelabbench
