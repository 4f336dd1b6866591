package kube

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
)

// LabelExcludeLB takes a Node out of every load balancer's candidates
// (Kubernetes' well-known label; its value does not matter).
const LabelExcludeLB = "node.kubernetes.io/exclude-from-external-load-balancers"

// groupsOf turns every Service hostlb serves with IPs in its status into a
// group (SPEC §6): one slot per IP (a dual-stack slot's two families
// together) and as eligible nodes the Nodes that are not excluded, not
// NetworkUnavailable and not being deleted, and that its class selects
// (L2, with the class's l2.interfaces) or that a
// MetalLoadBalancerConfiguration advertising the pool of one of its IPs
// selects (BGP, bgpGroup); under externalTrafficPolicy Local only those
// with a local endpoint, and nobody at all while the Service has no
// endpoint to send traffic to. Services of another controller are not
// announced. Pure: no I/O.
func groupsOf(snap Snapshot, bgpClass string) []reconcile.Group {
	var c groupCache
	return c.groups(snap, 0, bgpClass)
}

// groupCache keeps each Service's group between passes, so that a pass
// rebuilds only the groups of the Services whose object or EndpointSlices
// changed: the informers replace an object they update, so an unchanged
// pointer is an unchanged object. Everything else a group depends on —
// the Nodes, classes, pools and Configurations — is the world; a new world generation
// rebuilds every group. Not safe for concurrent use.
type groupCache struct {
	world   uint64
	entries map[string]*cachedGroup
	out     []reconcile.Group // the last result, sorted by name: read-only
}

type cachedGroup struct {
	svc    *corev1.Service
	slices []*discoveryv1.EndpointSlice
	group  reconcile.Group
	ok     bool // a group (else the Service is not announced)
}

// groups returns the groups of snap, whose Nodes, classes and pools are
// those of world generation world. The result is shared with later calls:
// read-only.
func (c *groupCache) groups(snap Snapshot, world uint64, bgpClass string) []reconcile.Group {
	if c.entries == nil || c.world != world {
		c.entries = make(map[string]*cachedGroup, len(snap.Services))
		c.world = world
		c.out = nil
	}
	slicesBySvc := make(map[string][]*discoveryv1.EndpointSlice, len(snap.EndpointSlices))
	for _, es := range snap.EndpointSlices {
		name := es.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		key := es.Namespace + "/" + name
		slicesBySvc[key] = append(slicesBySvc[key], es)
	}
	var (
		w       *groupWorld // built on the first rebuild
		changed = c.out == nil
		seen    = 0
	)
	for _, svc := range snap.Services {
		key := svc.Namespace + "/" + svc.Name
		eps := slicesBySvc[key]
		if len(eps) > 1 {
			// The store lists in no fixed order.
			slices.SortFunc(eps, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
		}
		seen++
		e := c.entries[key]
		if e != nil && e.svc == svc && slices.Equal(e.slices, eps) {
			continue
		}
		if w == nil {
			w = newGroupWorld(snap, bgpClass)
		}
		g, ok := w.group(key, svc, eps)
		if e == nil {
			e = &cachedGroup{}
			c.entries[key] = e
		}
		if ok || e.ok {
			changed = true
		}
		e.svc, e.slices, e.group, e.ok = svc, eps, g, ok
	}
	if seen != len(c.entries) {
		present := make(map[string]bool, seen)
		for _, svc := range snap.Services {
			present[svc.Namespace+"/"+svc.Name] = true
		}
		for key, e := range c.entries {
			if !present[key] {
				changed = changed || e.ok
				delete(c.entries, key)
			}
		}
	}
	if !changed {
		return c.out
	}
	sorted := make([]*cachedGroup, 0, len(c.entries))
	for _, e := range c.entries {
		if e.ok {
			sorted = append(sorted, e)
		}
	}
	// Pointers sort faster than groups.
	slices.SortFunc(sorted, func(a, b *cachedGroup) int { return strings.Compare(a.group.Name, b.group.Name) })
	out := make([]reconcile.Group, len(sorted))
	for i, e := range sorted {
		out[i] = e.group
	}
	c.out = out
	return out
}

// groupWorld is what every group of one snapshot shares: the classes and,
// per class, its ranked Nodes and its candidates (one list, shared by
// every Service of the class that any candidate may announce).
type groupWorld struct {
	snap       Snapshot
	cs         classes
	bgpClass   string
	ranked     map[string][]string
	candidates map[string][]string
	bgp        *bgpWorld // built for the first BGP Service
	// bgpNodes interns the BGP groups' eligible lists, so that Services
	// with the same nodes share one (placement memoises by list).
	bgpNodes map[string][]string
}

func newGroupWorld(snap Snapshot, bgpClass string) *groupWorld {
	return &groupWorld{snap: snap, cs: newClasses(snap.Classes), bgpClass: bgpClass,
		ranked: map[string][]string{}, candidates: map[string][]string{}}
}

// group is svc's group; false when svc is not announced.
func (w *groupWorld) group(key string, svc *corev1.Service, eps []*discoveryv1.EndpointSlice) (reconcile.Group, bool) {
	ch := chooseClass(svc, w.cs, w.bgpClass, len(w.snap.Pools) > 0)
	if ch.Path == PathBGP {
		return w.bgpGroup(key, svc, eps)
	}
	if ch.Path != PathL2 {
		return reconcile.Group{}, false
	}
	slots := slotsOf(ingressAddrs(svc.Status))
	if len(slots) == 0 {
		return reconcile.Group{}, false
	}
	class := w.cs.byName[ch.Class]
	local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	ranks, ok := w.ranked[class.Name]
	if !ok {
		ranks = rankedNodes(class, w.snap.Nodes)
		w.ranked[class.Name] = ranks
	}
	var nodes []string
	withEndpoint := endpointNodes(eps)
	switch {
	case withEndpoint == nil:
		nodes = []string{} // no endpoint to deliver to: nobody announces
	case local:
		nodes = eligibleNodes(class, w.snap.Nodes, withEndpoint, true)
	default:
		if nodes, ok = w.candidates[class.Name]; !ok {
			nodes = eligibleNodes(class, w.snap.Nodes, withEndpoint, false)
			w.candidates[class.Name] = nodes
		}
	}
	return reconcile.Group{
		Name:       key,
		Source:     "kubernetes",
		Mode:       config.ModeL2,
		Slots:      slots,
		Nodes:      nodes,
		Ranks:      ranks,
		Interfaces: class.Spec.L2.Interfaces,
		ETPLocal:   local,
	}, true
}

// bgpGroup is the group of svc on the BGP path (SPEC §1, §6: every alive
// eligible node advertises): each address's paths are the advertisements
// of its pool (the Configurations that list the pool, with their
// communities, localPref and aggregationLength), and the eligible nodes
// are the candidates that some path of some address selects (the
// Configuration's nodeSelector) — under externalTrafficPolicy Local only
// those with a ready local endpoint, and nobody while the Service has no
// endpoint. An address whose pool no Configuration advertises is
// advertised by nobody.
func (w *groupWorld) bgpGroup(key string, svc *corev1.Service, eps []*discoveryv1.EndpointSlice) (reconcile.Group, bool) {
	slots := slotsOf(ingressAddrs(svc.Status))
	if len(slots) == 0 {
		return reconcile.Group{}, false
	}
	if w.bgp == nil {
		w.bgp, _ = newBGPWorld(w.snap) // problems are the IPAM leader's to report
	}
	pool := svc.Annotations[AnnotationPool]
	paths := make(map[netip.Addr][]reconcile.BGPPath)
	selected := map[string]bool{}
	for _, slot := range slots {
		for _, a := range slot {
			ps := w.bgp.paths(a, pool)
			paths[a] = ps
			for _, p := range ps {
				for _, n := range p.Nodes {
					selected[n] = true
				}
			}
		}
	}
	local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	withEndpoint := endpointNodes(eps)
	nodes := []string{}
	if withEndpoint != nil {
		for _, n := range w.snap.Nodes {
			if selected[n.Name] && candidateNode(n) && (!local || withEndpoint[n.Name]) {
				nodes = append(nodes, n.Name)
			}
		}
		slices.Sort(nodes)
	}
	ik := strings.Join(nodes, "\x00")
	if shared, ok := w.bgpNodes[ik]; ok {
		nodes = shared
	} else {
		if w.bgpNodes == nil {
			w.bgpNodes = map[string][]string{}
		}
		w.bgpNodes[ik] = nodes
	}
	return reconcile.Group{
		Name:     key,
		Source:   "kubernetes",
		Mode:     config.ModeBGP,
		Slots:    slots,
		Nodes:    nodes,
		Ranks:    nodes, // every eligible node advertises: no preference
		ETPLocal: local,
		BGP:      paths,
	}, true
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

// eligibleNodes are the Nodes that may announce a Service of class whose
// endpoints are on the nodes withEndpoint (endpointNodes; not nil): never
// nil, so an empty list means nobody (not "everyone").
func eligibleNodes(class *MetalLoadBalancerClass, nodes []*corev1.Node, withEndpoint map[string]bool, etpLocal bool) []string {
	out := []string{}
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
	return Selects(class.Spec.NodeSelector, n.Labels) && candidateNode(n)
}

// candidateNode reports whether a Node may announce any IP: not being
// deleted, not excluded from load balancers, its network available.
func candidateNode(n *corev1.Node) bool {
	if n.DeletionTimestamp != nil {
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
