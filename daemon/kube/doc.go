// Package kube is hostlb's Kubernetes side: it reads the Deckhouse-compatible
// API (Services, EndpointSlices, Nodes, the network.deckhouse.io/v1alpha1
// MetalLoadBalancer* objects, labelled BGP password Secrets) through shared
// informers, and one node at a time, elected with the Lease hostlb-ipam,
// hands out Service IPs (package ipam) and writes them to the Services'
// status with the reference's conditions and Events.
//
// # Guarantees
//
//   - Watches, never polling: at rest the daemon sends no API request
//     beyond its watches and the leader's Lease renewals. Candidates follow
//     the Lease through a watch (watchedLease) instead of client-go's GET
//     per retry.
//   - The API never holds the node hostage: informers retry with backoff
//     while the API server is down or hostlb lacks a permission, and each
//     distinct failure is logged at most once a minute, naming what to fix
//     (the missing CRD, the RBAC manifest, an expired token).
//   - The allocation state is the Services' status: every leader pass
//     rebuilds the whole allocation from it (ipam.Allocate) and writes only
//     the statuses that differ. A new leader first makes its cache at least
//     as new as a quorum LIST (Source.SetFloor), so it sees every status the
//     previous leader wrote; writes are bounded by the Lease's validity, so
//     none lands after another node may lead. No IP is ever handed out
//     twice, across any number of leader changes.
//   - Class choice is the reference's §3.3 (binding condition, then
//     spec.loadBalancerClass, then the annotation, then the default class)
//     with SPEC §5's fixes: a foreign spec.loadBalancerClass is never
//     captured or written; deleting a Service, its class, or its type frees
//     its IPs at once and clears its status (the binding stays); two
//     default classes resolve to the lowest name and are reported.
//   - Status writes use optimistic concurrency and never touch a Service
//     hostlb does not serve.
//   - BGP path (bgp.go, peers.go): a Service's IP is advertised by every
//     candidate Node that a MetalLoadBalancerConfiguration advertising the
//     IP's pool selects, with that advertisement's communities, localPref
//     and aggregationLength; this node peers with the
//     MetalLoadBalancerBGPPeers of the Configurations that select it. A
//     missing peer, a password Secret without the label, a bad community
//     are Warning Events (from the IPAM leader) and warnings on the node;
//     the rest keeps working, and no session starts with a wrong password.
//
// Pure parts (classify.go, status.go) are unit-tested; the whole is tested
// against a real kube-apiserver in tests/kubeipam.
package kube
