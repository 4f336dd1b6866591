package kube

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func TestWatchErrorsAreNamedAndRateLimited(t *testing.T) {
	var buf bytes.Buffer
	s := NewSource(SourceOptions{
		Log:     slog.New(slog.NewTextHandler(&buf, nil)),
		Client:  fake.NewClientset(),
		Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()),
	})
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	refused := errors.New(`Get "https://192.0.2.10:6443/api/v1/services": dial tcp 192.0.2.10:6443: connect: connection refused`)
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "", errors.New(`User "system:serviceaccount:kube-system:hostlb" cannot list resource "services"`))
	for range 100 {
		s.watchError(KindService, refused) // a dead API server retried in a loop
	}
	s.watchError(KindService, forbidden)
	s.watchError(KindClass, apierrors.NewNotFound(schema.GroupResource{Group: Group, Resource: "metalloadbalancerclasses"}, ""))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (one per distinct error), got %d:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"192.0.2.10:6443", `cannot list resource \"services\"`, "crds/"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d lacks %q: %s", i, want, lines[i])
		}
	}
	if !strings.Contains(lines[1], "rbac.yaml") {
		t.Errorf("a permission error does not point at the RBAC manifest: %s", lines[1])
	}
	now = now.Add(time.Minute)
	s.watchError(KindService, refused)
	if n := strings.Count(buf.String(), "connection refused"); n != 2 {
		t.Errorf("after a minute the error is logged again: %d lines, want 2", n)
	}
}

func TestSlimDropsWhatIsNeverRead(t *testing.T) {
	svc := lbService()
	svc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	svc.Labels = map[string]string{"app": "web"}
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "198.51.100.7", []string{"198.51.100.7"}
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolUDP, Port: 53, NodePort: 30053}}
	n := node("n1", map[string]string{"a": "b"})
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"registry.example/app:1"}}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.1"}}
	node1 := "n1"
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "svc-x1", Namespace: "ns", ResourceVersion: "7",
			Annotations:     map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "x"},
			Labels:          map[string]string{discoveryv1.LabelServiceName: "svc", "endpointslice.kubernetes.io/managed-by": "x"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "Service", Name: "svc"}}},
		Ports: []discoveryv1.EndpointPort{{}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"198.51.100.1", "198.51.100.2"}, NodeName: &node1,
			TargetRef: &corev1.ObjectReference{Name: "pod"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
	}
	for _, o := range []any{svc, n, es} {
		if _, err := slim(o); err != nil {
			t.Fatal(err)
		}
	}
	if svc.ManagedFields != nil || n.ManagedFields != nil || n.Status.Images != nil {
		t.Errorf("not slimmed: %v %v %v", svc.ManagedFields, n.ManagedFields, n.Status.Images)
	}
	e := es.Endpoints[0]
	if es.Annotations != nil || es.Ports != nil || e.TargetRef != nil || len(e.Addresses) != 1 ||
		es.OwnerReferences != nil || len(es.Labels) != 1 {
		t.Errorf("EndpointSlice not slimmed: %+v", es)
	}
	if es.Labels[discoveryv1.LabelServiceName] != "svc" || *e.NodeName != "n1" || !*e.Conditions.Ready ||
		es.Name != "svc-x1" || es.Namespace != "ns" || es.ResourceVersion != "7" {
		t.Error("slim dropped what placement reads from an EndpointSlice")
	}
	if svc.Annotations == nil || len(n.Status.Addresses) != 1 || n.Labels["a"] != "b" {
		t.Error("slim dropped something hostlb reads")
	}
	// A status update sends the metadata too: the Service keeps all of it.
	if svc.Labels["app"] != "web" {
		t.Error("slim dropped a Service's labels, which a status update would then remove")
	}
	if svc.Spec.ClusterIPs != nil || svc.Spec.Ports[0].NodePort != 0 || svc.Spec.Ports[0].Name != "" {
		t.Errorf("Service spec not slimmed: %+v", svc.Spec)
	}
	if p := svc.Spec.Ports[0]; p.Protocol != corev1.ProtocolUDP || p.Port != 53 {
		t.Errorf("slim dropped a port IPAM compares: %+v", p)
	}
}
