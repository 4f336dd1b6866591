// Package reconcile is the heart of hostlbd's control flow: inputs (static
// VIPs, later gossip members, netlink links and Kubernetes objects) mark the
// state dirty; one Loop takes a consistent snapshot, computes the whole
// desired state with pure functions, and hands each output only the
// difference from what it last applied. No output decides ownership itself.
package reconcile
