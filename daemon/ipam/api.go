package ipam

import "net/netip"

// This file is the package's contract with its one user, daemon/kube's IPAM
// controller. The controller turns Kubernetes objects into these plain
// values, calls Allocate with the whole cluster on every pass (the leader
// rebuilds its state from the Services' status, so nothing else is kept),
// and writes the Results back as Service status and Events.

// Family is an IP family.
type Family uint8

// The families.
const (
	IPv4 Family = iota + 1
	IPv6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return "invalid"
}

// FamilyOf returns the family of a.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// Policy is a Service's spec.ipFamilyPolicy.
type Policy uint8

// The policies; the zero value is SingleStack.
const (
	SingleStack Policy = iota
	// PreferDualStack: one IP of each of Families per slot when the
	// Service's pools have both, else only the families they have.
	PreferDualStack
	// RequireDualStack: one IP of each of Families per slot, or the slot
	// fails.
	RequireDualStack
)

// Port is one port of a Service, compared for IP sharing.
type Port struct {
	Protocol string // "TCP", "UDP", "SCTP"
	Port     int32
}

// Service is one LoadBalancer Service as IPAM sees it.
type Service struct {
	// Key identifies the Service: "namespace/name".
	Key string
	// Order breaks ties between Services claiming the same IP: lower
	// first (the controller passes the creation time in Unix nanoseconds,
	// Key breaks ties of equal Order), so the older Service keeps an IP.
	Order int64
	// Pools are the names of the pools the Service may use, in preference
	// order. Requested IPs must lie in one of them. Automatic allocation
	// uses those with AutoAssign, or all of them when Explicit.
	Pools []string
	// Explicit: the Service named its pool (annotation), so a pool with
	// AutoAssign false serves it too.
	Explicit bool
	// Count is the number of slots (N IPs per family); < 1 means 1.
	Count int
	// Families in the order of spec.ipFamilies; empty means IPv4. With
	// SingleStack only the first is used.
	Families []Family
	Policy   Policy
	// Requested are the IPs asked for (annotation or spec.loadBalancerIP),
	// in order: the k-th requested IP of a family goes to slot k's IP of
	// that family (single stack: Requested[i] is slot i). Requests past
	// Count, or of a family the Service does not use, are reported and
	// ignored.
	Requested []netip.Addr
	// Current are the IPs the Service holds now (its status ingress, in
	// order): the allocation state. Valid ones are kept.
	Current []netip.Addr
	// Sharing: Services with the same non-empty SharingKey may share an
	// IP if no Port (protocol and number) is used by both and their
	// BackendKey is equal (the controller sets BackendKey to the selector
	// under externalTrafficPolicy Local, "" otherwise) — MetalLB's rules.
	SharingKey string
	BackendKey string
	Ports      []Port
}

// Result is one Service's allocation.
type Result struct {
	Key string
	// Slots[i] holds slot i's IPs, one per family in the Service's family
	// order; a slot that failed holds what it could get (possibly none).
	Slots [][]netip.Addr
	// Failures say why a slot, or a family of a slot, has no IP.
	Failures []Failure
}

// Addrs returns every allocated IP in slot order (dual stack: both
// families of a slot together): the status ingress order.
func (r Result) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, s := range r.Slots {
		out = append(out, s...)
	}
	return out
}

// Failure is one IP that could not be allocated.
type Failure struct {
	Slot   int
	Family Family
	Pool   string // the pool concerned, "" when none applies
	Reason string // human text for the AllocationFailed Event
}
