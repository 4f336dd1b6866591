package kubeipam

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hostlb/hostlb/daemon/kube"
)

// TestIPAM runs every IPAM behaviour against one control plane. The
// subtests run in order and each removes its classes, pools and Services:
// a default class or a pool is cluster-wide and would capture the next
// subtest's Services.
func TestIPAM(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	t.Run("count", func(t *testing.T) {
		ns := e.namespace(t, "count")
		e.class(t, "c-count", []string{"203.0.113.0/28"}, false, nil)
		created := e.service(t, ns, "three", withClass("c-count"), withAnn(kube.AnnotationIPCount, "3"),
			func(s *corev1.Service) { s.Labels = map[string]string{"team": "web"} })
		s := e.waitIPs(t, ns, "three", 3)
		// hostlbd caches Services without their cluster IPs and port names
		// and writes status from that copy: the server must keep them, and
		// the labels.
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP != created.Spec.ClusterIP || s.Spec.Ports[0].Name != "http" ||
			s.Spec.Ports[0].TargetPort != intstr.FromInt32(80) || s.Labels["team"] != "web" {
			t.Errorf("the status write changed more than status: spec %+v, labels %v", s.Spec, s.Labels)
		}
		if got := ips(s); !distinct(got) {
			t.Errorf("IPs not distinct: %v", got)
		}
		for _, ip := range ips(s) {
			mustPrefix(t, ip, "203.0.113.0/28")
		}
		c := apimeta.FindStatusCondition(s.Status.Conditions, kube.ConditionAllAssigned)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != kube.ReasonAllAssigned || c.Message != "3 of 3 public IPs were assigned" {
			t.Errorf("AllPublicIPsAssigned = %+v", c)
		}
		b := apimeta.FindStatusCondition(s.Status.Conditions, kube.ConditionClass)
		if b == nil || b.Message != "c-count" || b.Reason != kube.ReasonClassBound {
			t.Errorf("binding condition = %+v", b)
		}
		e.waitEvent(t, ns, "Service", "three", kube.EventIPAllocated, "Assigned IP")

		// Unparsable: one IP, and an Event that says why.
		e.service(t, ns, "bad-count", withClass("c-count"), withAnn(kube.AnnotationIPCount, "three"))
		e.waitIPs(t, ns, "bad-count", 1)
		e.waitEvent(t, ns, "Service", "bad-count", "InvalidAnnotation", `"three" is not a number`)

		// Lowering the count releases the extra IPs and keeps the first.
		s = e.get(t, ns, "three")
		first := ips(s)[0]
		s.Annotations[kube.AnnotationIPCount] = "1"
		if _, err := e.admin.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		s = e.waitIPs(t, ns, "three", 1)
		if ips(s)[0] != first {
			t.Errorf("count 3 -> 1 kept %s, want the first IP %s", ips(s)[0], first)
		}
	})

	t.Run("requested", func(t *testing.T) {
		ns := e.namespace(t, "requested")
		e.class(t, "c-req", []string{"203.0.113.16/28"}, false, nil)
		e.service(t, ns, "pinned", withClass("c-req"),
			withAnn(kube.AnnotationIPCount, "2"), withAnn(kube.AnnotationIPs, "203.0.113.30, 203.0.113.29"))
		s := e.waitIPs(t, ns, "pinned", 2)
		if got := ips(s); !slices.Equal(got, []string{"203.0.113.30", "203.0.113.29"}) {
			t.Errorf("requested IPs in slot order: got %v", got)
		}
		lb := e.service(t, ns, "legacy", withClass("c-req"))
		lb.Spec.LoadBalancerIP = "203.0.113.20"
		if _, err := e.admin.CoreV1().Services(ns).Update(ctx, lb, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30e9, "spec.loadBalancerIP honoured", func() error {
			if got := ips(e.get(t, ns, "legacy")); !slices.Equal(got, []string{"203.0.113.20"}) {
				return fmt.Errorf("has %v", got)
			}
			return nil
		})
		// Outside the class's pool: no IP, AllocationFailed says why.
		e.service(t, ns, "outside", withClass("c-req"), withAnn(kube.AnnotationIPs, "198.51.100.77"))
		s = e.waitCondition(t, ns, "outside", kube.ConditionAllAssigned, metav1.ConditionFalse)
		if len(ips(s)) != 0 {
			t.Errorf("got IPs %v for an IP outside the pool", ips(s))
		}
		e.waitEvent(t, ns, "Service", "outside", kube.EventAllocationFailed, "198.51.100.77")
		// Taken by another Service that does not share: refused, and the
		// holder keeps it.
		e.service(t, ns, "thief", withClass("c-req"), withAnn(kube.AnnotationIPs, "203.0.113.30"))
		e.waitCondition(t, ns, "thief", kube.ConditionAllAssigned, metav1.ConditionFalse)
		e.waitEvent(t, ns, "Service", "thief", kube.EventAllocationFailed, "in use by requested/pinned")
		if got := ips(e.get(t, ns, "pinned")); !slices.Equal(got, []string{"203.0.113.30", "203.0.113.29"}) {
			t.Errorf("holder lost its IP: %v", got)
		}
	})

	t.Run("sharing", func(t *testing.T) {
		ns := e.namespace(t, "sharing")
		e.class(t, "c-share", []string{"203.0.113.32/30"}, false, nil)
		e.service(t, ns, "dns-tcp", withClass("c-share"), withPort(corev1.ProtocolTCP, 53),
			withAnn(kube.AnnotationSharedIPKey, "key-to-share"))
		e.service(t, ns, "dns-udp", withClass("c-share"), withPort(corev1.ProtocolUDP, 53),
			withAnn(kube.AnnotationSharedIPKey, "key-to-share"))
		a, b := e.waitIPs(t, ns, "dns-tcp", 1), e.waitIPs(t, ns, "dns-udp", 1)
		if ips(a)[0] != ips(b)[0] {
			t.Errorf("same key, TCP/53 and UDP/53: got %v and %v, want one shared IP", ips(a), ips(b))
		}
		// The older annotation name shares too.
		e.service(t, ns, "old-name", withClass("c-share"), withPort(corev1.ProtocolTCP, 853),
			withAnn(kube.AnnotationAllowSharedIP, "key-to-share"))
		if got := ips(e.waitIPs(t, ns, "old-name", 1)); got[0] != ips(a)[0] {
			t.Errorf("older annotation: got %v, want %v", got, ips(a))
		}
		// Same key, same port: refused when asked for that IP.
		e.service(t, ns, "clash", withClass("c-share"), withPort(corev1.ProtocolTCP, 53),
			withAnn(kube.AnnotationSharedIPKey, "key-to-share"), withAnn(kube.AnnotationIPs, ips(a)[0]))
		e.waitCondition(t, ns, "clash", kube.ConditionAllAssigned, metav1.ConditionFalse)
		e.waitEvent(t, ns, "Service", "clash", kube.EventAllocationFailed, "TCP/53")
		// No key: never shares, gets an address of its own.
		if got := ips(e.waitIPs(t, ns, "dns-tcp", 1)); true {
			e.service(t, ns, "nokey", withClass("c-share"), withPort(corev1.ProtocolTCP, 8080))
			if own := ips(e.waitIPs(t, ns, "nokey", 1)); own[0] == got[0] {
				t.Errorf("a Service without a sharing key got the shared IP %s", own[0])
			}
		}
	})

	t.Run("dual-stack", func(t *testing.T) {
		ns := e.namespace(t, "dual")
		e.class(t, "c-dual", []string{"203.0.113.40/29", "2001:db8:40::/120"}, false, nil)
		e.class(t, "c-v4only", []string{"203.0.113.48/29"}, false, nil)
		e.service(t, ns, "both", withClass("c-dual"), withAnn(kube.AnnotationIPCount, "2"),
			withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
		s := e.waitIPs(t, ns, "both", 4)
		got := ips(s)
		// Slot order, both families of a slot together.
		mustPrefix(t, got[0], "203.0.113.40/29")
		mustPrefix(t, got[1], "2001:db8:40::/120")
		mustPrefix(t, got[2], "203.0.113.40/29")
		mustPrefix(t, got[3], "2001:db8:40::/120")
		// PreferDualStack over an IPv4-only pool degrades to IPv4.
		e.service(t, ns, "prefer", withClass("c-v4only"),
			withFamilies(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
		s = e.waitCondition(t, ns, "prefer", kube.ConditionAllAssigned, metav1.ConditionTrue)
		if got := ips(s); len(got) != 1 {
			t.Errorf("PreferDualStack on an IPv4 pool: got %v, want one IPv4", got)
		}
		// RequireDualStack over it fails for IPv6 and says so.
		e.service(t, ns, "require", withClass("c-v4only"),
			withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
		e.waitCondition(t, ns, "require", kube.ConditionAllAssigned, metav1.ConditionFalse)
		e.waitEvent(t, ns, "Service", "require", kube.EventAllocationFailed, "IPv6")
	})

	t.Run("ipv6 /64 pool", func(t *testing.T) {
		ns := e.namespace(t, "v6")
		e.class(t, "c-v6", []string{"2001:db8:64::/64"}, false, nil)
		e.service(t, ns, "six", withClass("c-v6"), withAnn(kube.AnnotationIPCount, "2"),
			withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
		for _, ip := range ips(e.waitIPs(t, ns, "six", 2)) {
			mustPrefix(t, ip, "2001:db8:64::/64")
		}
	})

	t.Run("pools: avoidBuggyIPs and autoAssign", func(t *testing.T) {
		ns := e.namespace(t, "pools")
		e.pool(t, "p-buggy", []string{"203.0.113.56/30"}, map[string]any{"avoidBuggyIPs": true})
		e.pool(t, "p-manual", []string{"203.0.113.60/30"}, map[string]any{"autoAssign": false})
		// The BGP path (no class): the pool annotation names a pool.
		e.service(t, ns, "named", withAnn(kube.AnnotationPool, "p-manual"))
		mustPrefix(t, ips(e.waitIPs(t, ns, "named", 1))[0], "203.0.113.60/30")
		e.service(t, ns, "auto", withAnn(kube.AnnotationIPCount, "2"))
		for _, ip := range ips(e.waitIPs(t, ns, "auto", 2)) {
			// autoAssign false: never used without being named.
			mustPrefix(t, ip, "203.0.113.56/30")
		}
		e.pool(t, "p-zero", []string{"192.0.2.0/31"}, map[string]any{"avoidBuggyIPs": true, "autoAssign": false})
		e.service(t, ns, "buggy", withAnn(kube.AnnotationPool, "p-zero"))
		if got := ips(e.waitIPs(t, ns, "buggy", 1)); got[0] != "192.0.2.1" {
			t.Errorf("avoidBuggyIPs: got %v, want 192.0.2.1 (never .0)", got)
		}
		e.service(t, ns, "buggy2", withAnn(kube.AnnotationPool, "p-zero"))
		e.waitCondition(t, ns, "buggy2", kube.ConditionAllAssigned, metav1.ConditionFalse)
		e.waitEvent(t, ns, "Service", "buggy2", kube.EventAllocationFailed, "p-zero")
	})

	t.Run("class precedence and stickiness", func(t *testing.T) {
		ns := e.namespace(t, "classes")
		e.class(t, "c-a", []string{"203.0.113.64/29"}, false, nil)
		e.class(t, "c-b", []string{"203.0.113.72/29"}, false, nil)
		e.class(t, "c-default", []string{"203.0.113.80/29"}, true, nil)
		e.service(t, ns, "plain")
		e.service(t, ns, "annotated", withAnn(kube.AnnotationClass, "c-a"))
		e.service(t, ns, "both", withClass("c-b"), withAnn(kube.AnnotationClass, "c-a"))
		mustPrefix(t, ips(e.waitIPs(t, ns, "plain", 1))[0], "203.0.113.80/29")
		mustPrefix(t, ips(e.waitIPs(t, ns, "annotated", 1))[0], "203.0.113.64/29")
		mustPrefix(t, ips(e.waitIPs(t, ns, "both", 1))[0], "203.0.113.72/29")
		// Sticky: changing the annotation after binding changes nothing.
		s := e.get(t, ns, "annotated")
		before := ips(s)
		s.Annotations[kube.AnnotationClass] = "c-b"
		if _, err := e.admin.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// A later Service proves a pass ran after the change.
		e.service(t, ns, "later", withAnn(kube.AnnotationClass, "c-b"))
		e.waitIPs(t, ns, "later", 1)
		s = e.get(t, ns, "annotated")
		if b := apimeta.FindStatusCondition(s.Status.Conditions, kube.ConditionClass); b == nil || b.Message != "c-a" {
			t.Errorf("binding moved: %+v", b)
		}
		if !slices.Equal(ips(s), before) {
			t.Errorf("IPs moved from %v to %v", before, ips(s))
		}

		// A foreign spec.loadBalancerClass is never captured by the
		// default class, nor written to at all.
		f := e.service(t, ns, "foreign", withClass("example.com/other-lb"))
		e.service(t, ns, "after-foreign")
		e.waitIPs(t, ns, "after-foreign", 1)
		got := e.get(t, ns, "foreign")
		if got.ResourceVersion != f.ResourceVersion || len(got.Status.Conditions) != 0 || len(ips(got)) != 0 {
			t.Errorf("a foreign Service was written: rv %s -> %s, status %+v", f.ResourceVersion, got.ResourceVersion, got.Status)
		}
	})

	t.Run("release at once", func(t *testing.T) {
		ns := e.namespace(t, "release")
		e.class(t, "c-one", []string{"203.0.113.88/32"}, false, nil)
		e.service(t, ns, "first", withClass("c-one"))
		ip := ips(e.waitIPs(t, ns, "first", 1))[0]
		e.service(t, ns, "second", withClass("c-one"))
		e.waitCondition(t, ns, "second", kube.ConditionAllAssigned, metav1.ConditionFalse)
		e.waitEvent(t, ns, "Service", "second", kube.EventAllocationFailed, "no free IPv4 address")

		// Delete: the next Service gets the IP.
		if err := e.admin.CoreV1().Services(ns).Delete(ctx, "first", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := ips(e.waitIPs(t, ns, "second", 1)); got[0] != ip {
			t.Fatalf("after delete: got %v, want %s", got, ip)
		}

		// Type change: status cleared, IP to the next.
		e.service(t, ns, "third", withClass("c-one"))
		e.waitCondition(t, ns, "third", kube.ConditionAllAssigned, metav1.ConditionFalse)
		s := e.get(t, ns, "second")
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.LoadBalancerClass = nil
		s.Spec.AllocateLoadBalancerNodePorts = nil
		if _, err := e.admin.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := ips(e.waitIPs(t, ns, "third", 1)); got[0] != ip {
			t.Fatalf("after type change: got %v, want %s", got, ip)
		}
		// The API server drops the ingress of a Service that is no longer
		// a LoadBalancer itself; hostlb removes its condition.
		waitFor(t, 30*time.Second, "the type-changed Service's status cleared", func() error {
			s := e.get(t, ns, "second")
			if c := apimeta.FindStatusCondition(s.Status.Conditions, kube.ConditionAllAssigned); c != nil || len(ips(s)) != 0 {
				return fmt.Errorf("ingress %v, AllPublicIPsAssigned %+v", ips(s), c)
			}
			return nil
		})

		// Class deleted: status cleared, binding kept, default class does
		// not capture it; the class back: served again.
		e.class(t, "c-fallback-default", []string{"203.0.113.89/32"}, true, nil)
		e.deleteObj(kube.ClassGVR.Resource, "c-one")
		s = e.waitIPs(t, ns, "third", 0)
		if b := apimeta.FindStatusCondition(s.Status.Conditions, kube.ConditionClass); b == nil || b.Message != "c-one" {
			t.Errorf("binding condition after class delete: %+v", b)
		}
		e.waitEvent(t, ns, "Service", "third", kube.EventIPReleased, `MetalLoadBalancerClass "c-one" does not exist`)
		e.class(t, "c-one", []string{"203.0.113.88/32"}, false, nil)
		if got := ips(e.waitIPs(t, ns, "third", 1)); got[0] != ip {
			t.Errorf("class back: got %v, want %s", got, ip)
		}
	})

	t.Run("problems reported", func(t *testing.T) {
		ns := e.namespace(t, "problems")
		e.class(t, "c-def-1", []string{"203.0.113.96/29"}, true, nil)
		e.class(t, "c-def-2", []string{"203.0.113.100/30"}, true, nil) // overlaps c-def-1
		e.class(t, "c-bad", []string{"203.0.113.104/30", "not-an-ip"}, false, nil)
		e.waitEvent(t, "", "MetalLoadBalancerClass", "c-def-1", "MultipleDefaultClasses", `"c-def-1" is used`)
		e.waitEvent(t, "", "MetalLoadBalancerClass", "c-def-2", "MultipleDefaultClasses", `"c-def-1" is used`)
		e.waitEvent(t, "", "MetalLoadBalancerClass", "c-def-2", "OverlappingPools", "MetalLoadBalancerClass/c-def-1")
		e.waitEvent(t, "", "MetalLoadBalancerClass", "c-bad", "InvalidAddressPool", "not-an-ip")
		// Deterministic: the lowest name is the default; the bad entry
		// does not stop the rest of its pool.
		e.service(t, ns, "d")
		mustPrefix(t, ips(e.waitIPs(t, ns, "d", 1))[0], "203.0.113.96/29")
		e.service(t, ns, "bad", withClass("c-bad"))
		mustPrefix(t, ips(e.waitIPs(t, ns, "bad", 1))[0], "203.0.113.104/30")
	})

	t.Run("deckhouse examples apply unchanged", func(t *testing.T) {
		testExamples(t, e)
	})

	if strings.Contains(e.logs.String(), "panic") {
		t.Errorf("hostlb log mentions a panic:\n%s", e.logs.String())
	}
}
