package kube

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hostlb/hostlb/daemon/ipam"
)

func class(name string, isDefault bool) *MetalLoadBalancerClass {
	c := &MetalLoadBalancerClass{}
	c.Name = name
	c.Spec.IsDefault = isDefault
	return c
}

func lbService(mut ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc", Annotations: map[string]string{}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
	}
	for _, m := range mut {
		m(s)
	}
	return s
}

func bound(c string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{Type: ConditionClass, Status: "True", Message: c})
	}
}

func served(s *corev1.Service) {
	s.Status.Conditions = append(s.Status.Conditions, metav1.Condition{Type: ConditionAllAssigned, Status: "True"})
}

func specClass(c string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c }
}

func annotated(k, v string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Annotations[k] = v }
}

func TestChooseClassPrecedence(t *testing.T) {
	withDefault := newClasses([]*MetalLoadBalancerClass{class("a", false), class("b", false), class("d", true)})
	noDefault := newClasses([]*MetalLoadBalancerClass{class("a", false)})
	for _, tc := range []struct {
		name     string
		svc      *corev1.Service
		cs       classes
		bgpClass string
		pools    bool
		want     Choice
	}{
		{"default class", lbService(), withDefault, "", false, Choice{Path: PathL2, Class: "d", Bind: true}},
		{"annotation over default", lbService(annotated(AnnotationClass, "a")), withDefault, "", false,
			Choice{Path: PathL2, Class: "a", Bind: true}},
		{"spec over annotation", lbService(specClass("b"), annotated(AnnotationClass, "a")), withDefault, "", false,
			Choice{Path: PathL2, Class: "b", Bind: true}},
		{"binding over everything", lbService(bound("a"), specClass("b")), withDefault, "", false,
			Choice{Path: PathL2, Class: "a"}},
		{"bound class gone: not served, not captured", lbService(bound("gone"), served), withDefault, "", true,
			Choice{Release: true, Why: `its MetalLoadBalancerClass "gone" does not exist`}},
		{"foreign spec class never captured by the default", lbService(specClass("example.com/lb")), withDefault, "", true,
			Choice{Why: `spec.loadBalancerClass "example.com/lb" is not hostlb's`}},
		{"unknown annotation class falls to the default", lbService(annotated(AnnotationClass, "x")), withDefault, "", false,
			Choice{Path: PathL2, Class: "d", Bind: true}},
		{"no class, pools: BGP path", lbService(), noDefault, "", true, Choice{Path: PathBGP}},
		{"no class, no pools: not ours", lbService(), noDefault, "", false,
			Choice{Why: "no MetalLoadBalancerClass or MetalLoadBalancerPool serves it"}},
		{"BGP class configured: only that class", lbService(specClass("bgp")), noDefault, "bgp", true, Choice{Path: PathBGP}},
		{"BGP class configured: class-less not ours", lbService(), noDefault, "bgp", true,
			Choice{Why: "no MetalLoadBalancerClass or MetalLoadBalancerPool serves it"}},
		{"not a LoadBalancer, never served: untouched", lbService(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }),
			withDefault, "", true, Choice{}},
		{"no longer a LoadBalancer: released", lbService(served, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }),
			withDefault, "", true, Choice{Release: true, Why: "the Service is no longer of type LoadBalancer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := chooseClass(tc.svc, tc.cs, tc.bgpClass, tc.pools); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTwoDefaultsResolveByLowestName(t *testing.T) {
	for _, order := range [][]string{{"z", "m"}, {"m", "z"}} {
		var cs []*MetalLoadBalancerClass
		for _, n := range order {
			cs = append(cs, class(n, true))
		}
		got := newClasses(cs)
		if got.def != "m" || !slices.Equal(got.defaults, []string{"m", "z"}) {
			t.Errorf("order %v: default %q, defaults %v", order, got.def, got.defaults)
		}
	}
}

func TestIPAMServiceFromAnnotations(t *testing.T) {
	policy := corev1.IPFamilyPolicyPreferDualStack
	svc := lbService(
		annotated(AnnotationIPCount, "3"),
		annotated(AnnotationIPs, "203.0.113.1, bogus,2001:db8::1"),
		annotated(AnnotationAllowSharedIP, "k"),
		func(s *corev1.Service) {
			s.CreationTimestamp = metav1.NewTime(time.Unix(100, 0))
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
			s.Spec.IPFamilyPolicy = &policy
			s.Spec.Ports = []corev1.ServicePort{{Port: 53, Protocol: corev1.ProtocolUDP}, {Port: 80}}
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.Selector = map[string]string{"app": "x"}
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.9"}}
		})
	in, notes := ipamService(svc, []string{"p"}, false)
	want := ipam.Service{
		Key: "ns/svc", Order: time.Unix(100, 0).UnixNano(), Pools: []string{"p"}, Count: 3,
		Families: []ipam.Family{ipam.IPv6, ipam.IPv4}, Policy: ipam.PreferDualStack,
		Requested:  []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1")},
		Current:    []netip.Addr{netip.MustParseAddr("203.0.113.9")},
		SharingKey: "k", BackendKey: "app=x",
		Ports: []ipam.Port{{Protocol: "UDP", Port: 53}, {Protocol: "TCP", Port: 80}},
	}
	if !equalService(in, want) {
		t.Errorf("got %+v\nwant %+v", in, want)
	}
	if len(notes) != 1 || notes[0].Reason != "InvalidAnnotation" {
		t.Errorf("notes %+v, want one about %q", notes, "bogus")
	}
	// Bad counts fall back to 1 (too big: capped), each with a note.
	for v, n := range map[string]int{"x": 1, "0": 1, "-2": 1, "1000": MaxIPCount} {
		in, _ := ipamService(lbService(annotated(AnnotationIPCount, v)), nil, false)
		if in.Count != n {
			t.Errorf("count %q: got %d, want %d", v, in.Count, n)
		}
	}
	// The legacy field when no annotation.
	in, _ = ipamService(lbService(func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.4" }), nil, false)
	if !slices.Equal(in.Requested, []netip.Addr{netip.MustParseAddr("198.51.100.4")}) {
		t.Errorf("spec.loadBalancerIP: %v", in.Requested)
	}
}

func equalService(a, b ipam.Service) bool {
	return a.Key == b.Key && a.Order == b.Order && slices.Equal(a.Pools, b.Pools) && a.Explicit == b.Explicit &&
		a.Count == b.Count && slices.Equal(a.Families, b.Families) && a.Policy == b.Policy &&
		slices.Equal(a.Requested, b.Requested) && slices.Equal(a.Current, b.Current) &&
		a.SharingKey == b.SharingKey && a.BackendKey == b.BackendKey && slices.Equal(a.Ports, b.Ports)
}

func TestWantStatus(t *testing.T) {
	now := metav1.NewTime(time.Unix(200, 0))
	a, b := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1")
	res := &ipam.Result{Key: "ns/svc", Slots: [][]netip.Addr{{a, b}, {}},
		Failures: []ipam.Failure{{Slot: 1, Family: ipam.IPv4, Reason: "full"}, {Slot: 1, Family: ipam.IPv6, Reason: "full"}}}
	st := wantStatus(lbService(), Choice{Path: PathL2, Class: "c", Bind: true}, res, now)
	if got := ingressAddrs(st); !slices.Equal(got, []netip.Addr{a, b}) {
		t.Errorf("ingress %v", got)
	}
	c := apimeta.FindStatusCondition(st.Conditions, ConditionAllAssigned)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonNotAllAssigned || c.Message != "2 of 4 public IPs were assigned" {
		t.Errorf("AllPublicIPsAssigned %+v", c)
	}
	if c := apimeta.FindStatusCondition(st.Conditions, ConditionClass); c == nil || c.Message != "c" || c.Reason != ReasonClassBound {
		t.Errorf("binding %+v", c)
	}
	// Unchanged on the next pass: no write.
	svc := lbService()
	svc.Status = st
	again := wantStatus(svc, Choice{Path: PathL2, Class: "c"}, res, metav1.NewTime(time.Unix(300, 0)))
	if !sameStatus(st, again) {
		t.Error("a second pass over the same result wants a different status")
	}
	// Released: ingress and AllPublicIPsAssigned go, the binding stays.
	rel := wantStatus(svc, Choice{Release: true}, nil, now)
	if len(rel.LoadBalancer.Ingress) != 0 || apimeta.FindStatusCondition(rel.Conditions, ConditionAllAssigned) != nil ||
		apimeta.FindStatusCondition(rel.Conditions, ConditionClass) == nil {
		t.Errorf("released status %+v", rel)
	}
	// ipMode defaulted by the API server is not a difference.
	vip := corev1.LoadBalancerIPModeVIP
	x := corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.1"}}}}
	y := corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.1", IPMode: &vip}}}}
	if !sameStatus(x, y) {
		t.Error("ipMode alone made statuses differ")
	}
}
