package kube

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The network.deckhouse.io/v1alpha1 objects hostlb reads, as plain Go
// types (reference §2, §5.1). They are decoded from the dynamic informers'
// unstructured objects; fields hostlb does not use are kept only where a
// later feature needs them.

// Group is the API group of the Deckhouse-compatible objects.
const Group = "network.deckhouse.io"

// The resources hostlb watches.
var (
	ClassGVR         = schema.GroupVersionResource{Group: Group, Version: "v1alpha1", Resource: "metalloadbalancerclasses"}
	PoolGVR          = schema.GroupVersionResource{Group: Group, Version: "v1alpha1", Resource: "metalloadbalancerpools"}
	BGPPeerGVR       = schema.GroupVersionResource{Group: Group, Version: "v1alpha1", Resource: "metalloadbalancerbgppeers"}
	ConfigurationGVR = schema.GroupVersionResource{Group: Group, Version: "v1alpha1", Resource: "metalloadbalancerconfigurations"}
)

// MetalLoadBalancerClass is an L2 class: a pool, the nodes that announce it
// and their interfaces.
type MetalLoadBalancerClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		IsDefault    bool              `json:"isDefault,omitempty"`
		Type         string            `json:"type,omitempty"`
		AddressPool  []string          `json:"addressPool,omitempty"`
		NodeSelector map[string]string `json:"nodeSelector,omitempty"`
		L2           struct {
			Interfaces []string `json:"interfaces,omitempty"`
		} `json:"l2,omitempty"`
	} `json:"spec,omitempty"`
}

// MetalLoadBalancerPool is a BGP-mode pool.
type MetalLoadBalancerPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Addresses []string `json:"addresses,omitempty"`
		// AutoAssign defaults to true (the CRD's default; nil when the
		// object was stored before the default existed).
		AutoAssign    *bool `json:"autoAssign,omitempty"`
		AvoidBuggyIPs bool  `json:"avoidBuggyIPs,omitempty"`
	} `json:"spec,omitempty"`
}

// MetalLoadBalancerBGPPeer is a BGP router (read by the BGP mode).
type MetalLoadBalancerBGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              map[string]any `json:"spec,omitempty"`
}

// MetalLoadBalancerConfiguration binds pools, peers and nodes (BGP mode).
type MetalLoadBalancerConfiguration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              map[string]any `json:"spec,omitempty"`
}

// fromUnstructured decodes an informer's object into out.
func fromUnstructured(obj any, out any) error {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("unexpected object %T", obj)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		return fmt.Errorf("decode %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}
