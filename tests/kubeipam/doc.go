// Package kubeipam proves hostlb's Kubernetes IPAM (daemon/kube, daemon/ipam)
// against a real kube-apiserver and etcd (tests/kubeapi): the IPAM
// controller runs with the token of hostlb's own ServiceAccount, so the
// shipped ClusterRole is what it really has, and every behaviour of the
// Deckhouse API (count, requested IPs, sharing, dual stack, classes, pools,
// release) is checked on the Services' status and Events as a user sees
// them. The leader-change test runs two hostlbd processes and kills the
// leader with SIGKILL in the middle of a burst; the bootstrap test starts a
// node while the API server is down.
package kubeipam
