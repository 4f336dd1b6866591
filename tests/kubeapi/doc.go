// Package kubeapi runs a real Kubernetes control plane for hostlb's tests,
// demo and benchmarks: etcd and kube-apiserver (and, on request,
// kube-controller-manager) as child processes on one address, with a
// throwaway PKI, RBAC on, and hostlb's shipped manifests (CRDs, then the
// ServiceAccount, ClusterRole and bindings) applied. There is no kubelet, no
// scheduler and no kube-proxy: Services get ClusterIPs as numbers only, and
// no traffic ever goes to them.
//
// A test calls [Require] (root, as every test under tests/, and the
// binaries), then [New] and [Cluster.Start], and hands the daemon under test
// [Cluster.ServiceAccountConfig], a client that is exactly as privileged as
// hostlb's shipped ClusterRole. [Cluster.Admin] and
// [Cluster.Dynamic] are the test's own cluster-admin clients.
//
// # Binaries
//
// The binaries are built from tools/kube (a separate Go module that pins
// k8s.io/kubernetes [Version]) by `make kube-bins`, that is
// tests/scripts/build-kube.sh, into a cache directory that [Bins] finds
// without make:
//
//   - $HOSTLB_KUBE_BIN_DIR if set, else
//   - /var/cache/hostlb/kube-<Version>/ when running as root, else
//   - $XDG_CACHE_HOME/hostlb/kube-<Version>/ (~/.cache/hostlb/...).
//
// The directory holds kube-apiserver, kube-controller-manager, etcd and a
// file `stamp` with the sha256 of tools/kube/go.mod followed by go.sum. When
// the caller runs inside the hostlb tree (a test), Bins compares the stamp
// with that tree's tools/kube and reports a stale cache.
//
// # Pitfalls
//
//   - The IPv4 default service range, 198.51.100.0/24, holds 253 ClusterIP
//     Services besides `kubernetes`. Bursts of more Services use
//     ipFamilies [IPv6] (2001:db8:5::/108 holds a million), or
//     [Options].ServiceCIDRs with more documentation ranges.
//   - kube-apiserver refuses a loopback --advertise-address for the
//     reconciler of the `kubernetes` Service's endpoints, so it runs with
//     --endpoint-reconciler-type=none: that Service has a ClusterIP and no
//     endpoints, which nothing here needs.
//   - For 2 s after a CRD turns Established, the apiserver holds every
//     create of its objects for 2 s inside the request (apiextensions
//     "justCreated", for HA apiservers). [Cluster.Apply], and so Start,
//     waits that out, so that a test's first create is as fast as the next.
//   - /readyz turns ready before the apiserver has created kube-system;
//     Start also waits for the system namespaces, since NamespaceLifecycle
//     rejects objects in a namespace that does not exist yet.
//   - The processes are children of the test binary, ended by PID with
//     SIGTERM, then SIGKILL after a bound, and waited for; on Linux they also
//     get SIGKILL if the test binary dies first (Pdeathsig), so a panicking
//     test leaves no apiserver behind.
//   - Process output goes to files in the cluster's directory (etcd.log,
//     kube-apiserver.log, kube-controller-manager.log), not to the test log:
//     the apiserver is chatty. [Cluster.LogTail] reads the end of one, and
//     Start's errors quote it.
package kubeapi
