// Package kubebench measures hostlbd's Kubernetes IPAM at scale against a
// real control plane (tests/kubeapi: etcd and kube-apiserver on loopback):
// how fast a burst of new LoadBalancer Services gets IPs, what the daemon
// costs in memory next to kube-apiserver, and how many API requests it
// makes during the burst and at rest (issue 7; `make bench`).
//
// # The run
//
// BenchmarkKubeIPAM (run once, -benchtime 1x) starts the control plane
// with hostlb's manifests and the apiserver's audit log on, then ONE real
// hostlbd process (the binary of cmd/hostlbd, Kubernetes mode, as hostlb's
// ServiceAccount, no static VIPs, gossip on loopback), and waits until it
// holds the Lease kube-system/hostlb-ipam. After a short idle baseline:
//
//  1. a MetalLoadBalancerClass with the pool 2001:db8:1000::/64;
//  2. 1,000 Services of that class created at once by 16 concurrent
//     workers (IPv6 SingleStack, allocateLoadBalancerNodePorts false:
//     the harness's IPv4 service range holds only ~250 ClusterIPs);
//  3. an idle minute;
//  4. more Services, by 32 workers, up to 10,000.
//
// One watch on the namespace's Services, started before the first create
// (client-go's RetryWatcher, so a closed watch resumes without a gap),
// notes when each Service is first seen with an ingress IP. A Service's
// latency runs from its create call's return to that event; a wave's
// total runs from its first create sent to its last Service's IP.
//
// # What is counted, and how
//
//   - Memory: VmRSS and VmHWM from /proc/PID/status of hostlbd,
//     kube-apiserver and etcd, at 0 Services, when each wave has its IPs
//     and after each idle minute. The ratio to kube-apiserver is what
//     hostlb adds on top of the control plane. hostlbd has no pprof
//     endpoint, so it runs with GODEBUG=gctrace=1 and the last trace line
//     gives its live heap and heap goal. -kubebench.heapprofile runs the
//     daemon's informers (kube.Source) in this process at the end and
//     writes their heap profile.
//   - Requests: the apiserver's own audit log (kubeapi Options.AuditLog),
//     which records only hostlb's ServiceAccount, at level Metadata. Each
//     request counts once, grouped by verb, resource and subresource; a
//     watch counts once, when it starts. Windows are by the apiserver's
//     requestReceivedTimestamp against this process's clock (one machine).
//   - IP stability: the watch sees every status write in the order etcd
//     committed them; an IP in two Services' status at once, or a
//     Service whose IP changes (nothing here changes or deletes a
//     Service), is counted and reported, not failed on, so that the
//     measurements still come out.
//   - Events: the IPAllocated/IPReleased Events hostlbd created (audit
//     log) against those its log says it recorded.
//
// Everything needs root (kubeapi.Require) and `make kube-bins`; without
// them the benchmark skips and says why. The parsing (audit log,
// /proc/PID/status), the percentiles and the report are pure and tested
// without root.
package kubebench
