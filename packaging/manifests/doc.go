// Package manifests holds the Kubernetes objects the hostlb package ships in
// /usr/share/hostlb/manifests: the four network.deckhouse.io CRDs hostlbd
// reads (crds/), the ServiceAccount and least-privilege RBAC it runs with
// (rbac.yaml), and the Deckhouse documentation examples rewritten with
// documentation addresses (examples/).
//
// The YAML files are the source of truth; nfpm.yaml ships them as they are.
// This package embeds the same files so that tests can check them
// (manifests_test.go) and apply them to a real API server (FS, Objects)
// without a copy that could drift.
//
// Compatibility with the Deckhouse metallb module is the contract: every
// object written for Deckhouse validates against these CRDs. They differ from
// Deckhouse's where hostlb does more: MetalLoadBalancerPool addresses and
// MetalLoadBalancerBGPPeer peerAddress accept IPv6, MetalLoadBalancerClass
// keeps the older tolerations field, and statuses keep unknown fields.
package manifests
