package kube

import (
	"log/slog"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func node(name string, labels map[string]string, mut ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	for _, m := range mut {
		m(n)
	}
	return n
}

func ptr[T any](v T) *T { return &v }

// ep is an endpoint on node with conditions (nil: unset).
func ep(node string, ready, serving, terminating *bool) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{"198.51.100.50"},
		Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}}
	if node != "" {
		e.NodeName = &node
	}
	return e
}

func slice(svc string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		Endpoints:  eps,
	}
}

func withIngress(ips ...string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}

func etpLocal(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

func TestGroupsEligibility(t *testing.T) {
	lb := map[string]string{"lb": ""}
	cl := class("c", true)
	cl.Spec.NodeSelector = lb
	cl.Spec.L2.Interfaces = []string{"eth1"}
	nodes := []*corev1.Node{
		node("n1", lb),
		node("n2", lb),
		node("n3", map[string]string{"lb": "", LabelExcludeLB: ""}),
		node("n4", lb, func(n *corev1.Node) {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue}}
		}),
		node("n5", nil), // not selected
		node("n6", lb, func(n *corev1.Node) { n.DeletionTimestamp = ptr(metav1.Now()) }),
		node("n7", lb, func(n *corev1.Node) {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse}}
		}),
	}
	yes, no := ptr(true), ptr(false)
	for _, tc := range []struct {
		name  string
		svc   *corev1.Service
		eps   []*discoveryv1.EndpointSlice
		nodes []string // nil: no group at all
	}{
		{"cluster: every candidate", lbService(withIngress("192.0.2.1")),
			[]*discoveryv1.EndpointSlice{slice("svc", ep("n5", yes, yes, no))}, []string{"n1", "n2", "n7"}},
		{"nil conditions count as ready", lbService(withIngress("192.0.2.1")),
			[]*discoveryv1.EndpointSlice{slice("svc", ep("n1", nil, nil, nil))}, []string{"n1", "n2", "n7"}},
		{"no endpoint anywhere: nobody", lbService(withIngress("192.0.2.1")), nil, []string{}},
		{"only not-ready endpoints: nobody", lbService(withIngress("192.0.2.1")),
			[]*discoveryv1.EndpointSlice{slice("svc", ep("n1", no, no, no))}, []string{}},
		{"local: the node with the ready endpoint", lbService(withIngress("192.0.2.1"), etpLocal),
			[]*discoveryv1.EndpointSlice{slice("svc", ep("n2", yes, yes, no), ep("n1", no, no, no))}, []string{"n2"}},
		{"local: endpoints across slices", lbService(withIngress("192.0.2.1"), etpLocal),
			[]*discoveryv1.EndpointSlice{slice("svc", ep("n2", yes, yes, no)), slice("svc", ep("n7", yes, yes, no))}, []string{"n2", "n7"}},
		{"local: an excluded node's endpoint does not make it eligible", lbService(withIngress("192.0.2.1"), etpLocal),
			[]*discoveryv1.EndpointSlice{slice("svc", ep("n3", yes, yes, no))}, []string{}},
		{"local: none ready, serving and terminating ones drain", lbService(withIngress("192.0.2.1"), etpLocal),
			[]*discoveryv1.EndpointSlice{slice("svc", ep("n1", no, yes, yes), ep("n2", no, no, yes))}, []string{"n1"}},
		{"local: a ready one anywhere wins over terminating ones", lbService(withIngress("192.0.2.1"), etpLocal),
			[]*discoveryv1.EndpointSlice{slice("svc", ep("n1", no, yes, yes), ep("n2", yes, yes, no))}, []string{"n2"}},
		{"another Service's endpoints do not count", lbService(withIngress("192.0.2.1")),
			[]*discoveryv1.EndpointSlice{slice("other", ep("n1", yes, yes, no))}, []string{}},
		{"no IP yet: no group", lbService(), []*discoveryv1.EndpointSlice{slice("svc", ep("n1", yes, yes, no))}, nil},
		{"foreign class: no group", lbService(withIngress("192.0.2.1"), specClass("example.com/lb")),
			[]*discoveryv1.EndpointSlice{slice("svc", ep("n1", yes, yes, no))}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := Snapshot{Services: []*corev1.Service{tc.svc}, EndpointSlices: tc.eps, Nodes: nodes,
				Classes: []*MetalLoadBalancerClass{cl}}
			gs := groupsOf(snap, "")
			if tc.nodes == nil {
				if len(gs) != 0 {
					t.Fatalf("want no group, got %+v", gs)
				}
				return
			}
			if len(gs) != 1 {
				t.Fatalf("want one group, got %+v", gs)
			}
			g := gs[0]
			if g.Nodes == nil || !slices.Equal(g.Nodes, tc.nodes) {
				t.Errorf("eligible %v, want %v", g.Nodes, tc.nodes)
			}
			// Every selected, not deleted Node ranks, excluded or not.
			if want := []string{"n1", "n2", "n3", "n4", "n7"}; !slices.Equal(g.Ranks, want) {
				t.Errorf("ranks %v, want %v", g.Ranks, want)
			}
			if g.Name != "ns/svc" || g.Mode != "l2" || g.Local || !slices.Equal(g.Interfaces, []string{"eth1"}) {
				t.Errorf("group %+v", g)
			}
		})
	}
}

func TestGroupsSlotsAndPaths(t *testing.T) {
	ready := []*discoveryv1.EndpointSlice{slice("svc", ep("n1", ptr(true), nil, nil))}
	nodes := []*corev1.Node{node("n1", nil)}
	// Dual stack: slot order, a slot's two families together.
	svc := lbService(withIngress("192.0.2.1", "2001:db8::1", "192.0.2.2", "2001:db8::2", "192.0.2.3"))
	gs := groupsOf(Snapshot{Services: []*corev1.Service{svc}, EndpointSlices: ready, Nodes: nodes,
		Classes: []*MetalLoadBalancerClass{class("c", true)}}, "")
	want := [][]string{{"192.0.2.1", "2001:db8::1"}, {"192.0.2.2", "2001:db8::2"}, {"192.0.2.3"}}
	if len(gs) != 1 || len(gs[0].Slots) != len(want) {
		t.Fatalf("groups %+v", gs)
	}
	for i, s := range gs[0].Slots {
		var got []string
		for _, a := range s {
			got = append(got, a.String())
		}
		if !slices.Equal(got, want[i]) {
			t.Errorf("slot %d = %v, want %v", i, got, want[i])
		}
	}
	// The BGP path (no class, pools) is not announced in L2; with no
	// Configuration advertising its pool, nobody advertises it.
	p := &MetalLoadBalancerPool{}
	p.Name = "p"
	gs = groupsOf(Snapshot{Services: []*corev1.Service{lbService(withIngress("198.51.100.1"))}, EndpointSlices: ready,
		Nodes: nodes, Pools: []*MetalLoadBalancerPool{p}}, "")
	if len(gs) != 1 || gs[0].Mode != "bgp" || len(gs[0].Nodes) != 0 {
		t.Errorf("a BGP-path Service without an advertisement: %+v", gs)
	}
	if got := slotsOf([]netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}); len(got) != 2 {
		t.Errorf("two IPv4 addresses are two slots: %v", got)
	}
}

func TestSeedsAreOtherNodesInternalIPs(t *testing.T) {
	s := NewSource(SourceOptions{Log: slog.New(slog.DiscardHandler), Client: fake.NewClientset(),
		Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme())})
	addrs := func(as ...corev1.NodeAddress) func(*corev1.Node) {
		return func(n *corev1.Node) { n.Status.Addresses = as }
	}
	for _, n := range []*corev1.Node{
		node("self", nil, addrs(corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.0.2.1"})),
		node("b", nil, addrs(corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.9"},
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.0.2.2"},
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "192.0.2.22"},
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "2001:db8::2"})),
		node("c", nil, addrs(corev1.NodeAddress{Type: corev1.NodeHostName, Address: "c"})),
	} {
		if err := s.nodes.GetStore().Add(n); err != nil {
			t.Fatal(err)
		}
	}
	k := &Kubernetes{Source: s, opts: Options{NodeName: "self"}}
	got := k.Seeds()
	want := []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2")}
	if !slices.Equal(got, want) {
		t.Errorf("Seeds = %v, want %v", got, want)
	}
}
