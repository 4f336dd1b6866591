package kube

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
)

// LabelExcludeLB takes a Node out of every load balancer's candidates
// (Kubernetes' well-known label; its value does not matter).
const LabelExcludeLB = "node.kubernetes.io/exclude-from-external-load-balancers"

// groupsOf turns every L2 Service with IPs in its status into a group
// (SPEC §6): one slot per IP (a dual-stack slot's two families together),
// the class's l2.interfaces, and as eligible nodes the Nodes its class
// selects that are not excluded, not NetworkUnavailable and not being
// deleted; under externalTrafficPolicy Local only those with a local
// endpoint, and nobody at all while the Service has no endpoint to send
// traffic to. Services of another controller or on the BGP path are not
// announced in L2. Pure: no I/O.
func groupsOf(snap Snapshot, bgpClass string) []reconcile.Group {
	cs := newClasses(snap.Classes)
	slicesBySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, es := range snap.EndpointSlices {
		name := es.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		key := es.Namespace + "/" + name
		slicesBySvc[key] = append(slicesBySvc[key], es)
	}
	var out []reconcile.Group
	for _, svc := range snap.Services {
		ch := chooseClass(svc, cs, bgpClass, len(snap.Pools) > 0)
		if ch.Path != PathL2 {
			continue
		}
		slots := slotsOf(ingressAddrs(svc.Status))
		if len(slots) == 0 {
			continue
		}
		key := svc.Namespace + "/" + svc.Name
		class := cs.byName[ch.Class]
		local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		out = append(out, reconcile.Group{
			Name:       key,
			Source:     "kubernetes",
			Mode:       config.ModeL2,
			Slots:      slots,
			Nodes:      eligibleNodes(class, snap.Nodes, slicesBySvc[key], local),
			Ranks:      rankedNodes(class, snap.Nodes),
			Interfaces: slices.Clone(class.Spec.L2.Interfaces),
			ETPLocal:   local,
		})
	}
	slices.SortFunc(out, func(a, b reconcile.Group) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// slotsOf splits a status ingress list into slots: the list is in slot
// order with a dual-stack slot's two families together, so a new slot
// starts whenever an address's family is already in the current one.
func slotsOf(addrs []netip.Addr) [][]netip.Addr {
	var out [][]netip.Addr
	for _, a := range addrs {
		n := len(out)
		if n == 0 || slices.ContainsFunc(out[n-1], func(b netip.Addr) bool { return b.Is4() == a.Is4() }) {
			out = append(out, []netip.Addr{a})
			continue
		}
		out[n-1] = append(out[n-1], a)
	}
	return out
}

// eligibleNodes are the Nodes that may announce a Service of class: never
// nil, so an empty list means nobody (not "everyone").
func eligibleNodes(class *MetalLoadBalancerClass, nodes []*corev1.Node, eps []*discoveryv1.EndpointSlice, etpLocal bool) []string {
	withEndpoint := endpointNodes(eps)
	out := []string{}
	if withEndpoint == nil {
		return out // no endpoint to deliver to: nobody announces
	}
	for _, n := range nodes {
		if !candidate(class, n) {
			continue
		}
		if etpLocal && !withEndpoint[n.Name] {
			continue
		}
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out
}

// rankedNodes are the Nodes whose order decides the class's preferred
// nodes: every Node it selects, excluded or not, so that a Node leaving
// the candidates (a label, NetworkUnavailable, its endpoints gone) moves
// only the IPs it held. Never nil.
func rankedNodes(class *MetalLoadBalancerClass, nodes []*corev1.Node) []string {
	out := []string{}
	for _, n := range nodes {
		if n.DeletionTimestamp == nil && Selects(class.Spec.NodeSelector, n.Labels) {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

// candidate reports whether a Node may announce the class's IPs at all.
func candidate(class *MetalLoadBalancerClass, n *corev1.Node) bool {
	if n.DeletionTimestamp != nil || !Selects(class.Spec.NodeSelector, n.Labels) {
		return false
	}
	if _, excluded := n.Labels[LabelExcludeLB]; excluded {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionTrue {
			return false
		}
	}
	return true
}

// endpointNodes returns the nodes that have an endpoint traffic may go to,
// read as kube-proxy reads EndpointSlices: ready endpoints (a nil condition
// counts as true); when the Service has none, the serving ones that are
// terminating (kube-proxy's fallback, so connections drain). nil means no
// such endpoint anywhere. An endpoint without a nodeName still counts for
// "anywhere" (ETP Cluster) but for no node.
func endpointNodes(eps []*discoveryv1.EndpointSlice) map[string]bool {
	collect := func(use func(c discoveryv1.EndpointConditions) bool) map[string]bool {
		var out map[string]bool
		for _, es := range eps {
			for _, ep := range es.Endpoints {
				if len(ep.Addresses) == 0 || !use(ep.Conditions) {
					continue
				}
				if out == nil {
					out = map[string]bool{}
				}
				if ep.NodeName != nil {
					out[*ep.NodeName] = true
				}
			}
		}
		return out
	}
	isTrue := func(b *bool, def bool) bool {
		if b == nil {
			return def
		}
		return *b
	}
	if ready := collect(func(c discoveryv1.EndpointConditions) bool { return isTrue(c.Ready, true) }); ready != nil {
		return ready
	}
	return collect(func(c discoveryv1.EndpointConditions) bool {
		return isTrue(c.Serving, true) && isTrue(c.Terminating, false)
	})
}
