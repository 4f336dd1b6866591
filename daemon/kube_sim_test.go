package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/hostlb/hostlb/daemon/kube"
)

// fakeAPI is one in-memory API server (client-go's fake clientsets)
// shared by every simulated node.
type fakeAPI struct {
	client *fake.Clientset
	dyn    *dynamicfake.FakeDynamicClient
}

func newFakeAPI(t *testing.T, nodes []string) *fakeAPI {
	var objs []runtime.Object
	for _, n := range nodes {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	class := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kube.Group + "/v1alpha1", "kind": "MetalLoadBalancerClass",
		"metadata": map[string]any{"name": "c"},
		"spec":     map[string]any{"isDefault": true, "addressPool": []any{"203.0.113.0/28", "2001:db8:7::/120"}},
	}}
	kinds := map[schema.GroupVersionResource]string{
		kube.ClassGVR: "MetalLoadBalancerClassList", kube.PoolGVR: "MetalLoadBalancerPoolList",
		kube.BGPPeerGVR: "MetalLoadBalancerBGPPeerList", kube.ConfigurationGVR: "MetalLoadBalancerConfigurationList",
	}
	return &fakeAPI{
		client: fake.NewClientset(objs...),
		dyn:    dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), kinds, class),
	}
}

func (f *fakeAPI) kubeFor(t *testing.T) func(string, *slog.Logger, func()) kubeSideGroups {
	return func(node string, log *slog.Logger, trigger func()) kubeSideGroups {
		k, err := kube.New(kube.Options{
			Log: log, NodeName: node, LeaseNamespace: "kube-system", Client: f.client, Dynamic: f.dyn,
			OnChange: func(kube.Kind) { trigger() },
		})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
}

// endpoints sets the Service's one EndpointSlice: an endpoint per node,
// with ready as given.
func (f *fakeAPI) endpoints(t *testing.T, ready map[string]bool) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, n := range slices.Sorted(mapKeys(ready)) {
		r := ready[n]
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{"198.51.100.9"}, NodeName: &n,
			Conditions: discoveryv1.EndpointConditions{Ready: &r}})
	}
	ctx := context.Background()
	cl := f.client.DiscoveryV1().EndpointSlices("ns")
	if _, err := cl.Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		if _, err := cl.Create(ctx, es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestSimKubernetesService runs four daemons, each with its own Kubernetes
// side (informers and IPAM candidate) over one fake API: the IPAM leader
// gives a dual-stack Service two slots, the ring announces them from
// distinct nodes with each slot's two families together, and the
// announcing nodes follow the EndpointSlices (externalTrafficPolicy Local)
// and the Nodes' conditions.
func TestSimKubernetesService(t *testing.T) {
	names := []string{"n1", "n2", "n3", "n4"}
	api := newFakeAPI(t, names)
	s := newSimKube(t, len(names), false, api.kubeFor(t))
	ctx := context.Background()
	api.endpoints(t, map[string]bool{"n1": true, "n2": true, "n3": true, "n4": true})
	policy := corev1.IPFamilyPolicyRequireDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web",
			Annotations: map[string]string{kube.AnnotationIPCount: "2"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}, IPFamilyPolicy: &policy},
	}
	if _, err := api.client.CoreV1().Services("ns").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var slots [][]netip.Addr
	s.waitFor(20*time.Second, "the Service's IPs allocated", func() error {
		got, err := api.client.CoreV1().Services("ns").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n := len(got.Status.LoadBalancer.Ingress); n != 4 {
			return fmt.Errorf("%d IPs in status", n)
		}
		slots = nil
		for i := 0; i < 4; i += 2 {
			slots = append(slots, []netip.Addr{
				netip.MustParseAddr(got.Status.LoadBalancer.Ingress[i].IP), netip.MustParseAddr(got.Status.LoadBalancer.Ingress[i+1].IP)})
		}
		return nil
	})
	// ownersOf returns each slot's owner, failing unless both families of
	// every slot have the same single owner.
	ownersOf := func() ([]string, error) {
		owners := s.ledger.owners()
		var out []string
		for i, sl := range slots {
			o4, o6 := owners[sl[0]], owners[sl[1]]
			if len(o4) > 1 || !slices.Equal(o4, o6) {
				return nil, fmt.Errorf("slot %d: %s on %v, %s on %v", i, sl[0], o4, sl[1], o6)
			}
			if len(o4) == 0 {
				out = append(out, "")
				continue
			}
			out = append(out, o4[0])
		}
		return out, nil
	}
	s.waitFor(10*time.Second, "two slots on two nodes", func() error {
		o, err := ownersOf()
		if err != nil {
			return err
		}
		if o[0] == "" || o[1] == "" || o[0] == o[1] {
			return fmt.Errorf("owners %v", o)
		}
		return nil
	})

	// externalTrafficPolicy Local with the only ready endpoint on n3: n3
	// announces both slots; then the endpoint moves to n2.
	cur, err := api.client.CoreV1().Services("ns").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	if _, err := api.client.CoreV1().Services("ns").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	api.endpoints(t, map[string]bool{"n1": false, "n3": true})
	onlyOn := func(node string) func() error {
		return func() error {
			o, err := ownersOf()
			if err != nil {
				return err
			}
			for _, n := range o {
				if n != node {
					return fmt.Errorf("owners %v, want %q", o, node)
				}
			}
			return nil
		}
	}
	s.waitFor(10*time.Second, "n3 alone", onlyOn("n3"))
	api.endpoints(t, map[string]bool{"n2": true})
	s.waitFor(10*time.Second, "n2 alone", onlyOn("n2"))

	// n2's network unavailable: nobody else has an endpoint, so nobody.
	node, err := api.client.CoreV1().Nodes().Get(ctx, "n2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue}}
	if _, err := api.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.waitFor(10*time.Second, "nobody", onlyOn(""))
}
