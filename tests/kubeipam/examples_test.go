package kubeipam

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/packaging/manifests"
)

// testExamples applies the shipped examples (the Deckhouse documentation's
// YAML, addresses changed to documentation ranges) as a user would, and
// checks that hostlb serves them as the documentation says.
func testExamples(t *testing.T, e *env) {
	ctx := context.Background()
	objs, err := manifests.Objects("examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "Service" && o.GetNamespace() == "" {
			o.SetNamespace(metav1.NamespaceDefault)
		}
	}
	if err := e.c.Apply(ctx, objs...); err != nil {
		t.Fatalf("apply the examples unchanged: %v", err)
	}
	t.Cleanup(func() {
		for _, o := range objs {
			switch o.GetKind() {
			case "Service":
				_ = e.admin.CoreV1().Services(o.GetNamespace()).Delete(ctx, o.GetName(), metav1.DeleteOptions{})
			case "MetalLoadBalancerClass":
				e.deleteObj(kube.ClassGVR.Resource, o.GetName())
			case "MetalLoadBalancerPool":
				e.deleteObj(kube.PoolGVR.Resource, o.GetName())
			}
		}
	})
	ns := metav1.NamespaceDefault
	// "kubectl get svc shows EXTERNAL-IP 203.0.113.100,203.0.113.101,203.0.113.102".
	s := e.waitIPs(t, ns, "nginx-deployment", 3)
	if got, want := ips(s), []string{"203.0.113.100", "203.0.113.101", "203.0.113.102"}; !equal(got, want) {
		t.Errorf("nginx-deployment: got %v, want %v", got, want)
	}
	if got := ips(e.waitIPs(t, ns, "nginx", 1)); got[0] != "198.51.100.217" {
		t.Errorf("forced IP: got %v", got)
	}
	a, b := e.waitIPs(t, ns, "dns-service-tcp", 1), e.waitIPs(t, ns, "dns-service-udp", 1)
	if ips(a)[0] != ips(b)[0] {
		t.Errorf("shared IP: got %v and %v", ips(a), ips(b))
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
