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

// MetalLoadBalancerBGPPeer is a BGP router and how to peer with it
// (reference §5.1).
type MetalLoadBalancerBGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              BGPPeerSpec `json:"spec,omitempty"`
}

// BGPPeerSpec is a MetalLoadBalancerBGPPeer's spec.
type BGPPeerSpec struct {
	PeerAddress string `json:"peerAddress,omitempty"`
	PeerPort    int64  `json:"peerPort,omitempty"`
	PeerASN     int64  `json:"peerASN,omitempty"`
	MyASN       int64  `json:"myASN,omitempty"`
	RouterID    string `json:"routerID,omitempty"`
	HoldTime    string `json:"holdTime,omitempty"`
	// PasswordSecretRef names a Secret that must carry SecretLabel; its
	// key "password" is the TCP-MD5 password.
	PasswordSecretRef *SecretRef `json:"passwordSecretRef,omitempty"`
	// SourceAddresses override the local address per node.
	SourceAddresses []SourceAddress `json:"sourceAddresses,omitempty"`
	// BFD, when present, turns BFD on for the session (hostlb has BFD;
	// Deckhouse only reserves the field). Zero fields take hostlb's
	// defaults; echoMode, passiveMode and minimumTTL are not used.
	BFD *BFDProfile `json:"bfd,omitempty"`
}

// SecretRef names a Secret.
type SecretRef struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// SourceAddress is one node's local address for a peer.
type SourceAddress struct {
	NodeName string `json:"nodeName,omitempty"`
	Address  string `json:"address,omitempty"`
}

// BFDProfile is a peer's bfd object (intervals in milliseconds).
type BFDProfile struct {
	ReceiveInterval  int64 `json:"receiveInterval,omitempty"`
	TransmitInterval int64 `json:"transmitInterval,omitempty"`
	DetectMultiplier int64 `json:"detectMultiplier,omitempty"`
	EchoInterval     int64 `json:"echoInterval,omitempty"`
	EchoMode         bool  `json:"echoMode,omitempty"`
	PassiveMode      bool  `json:"passiveMode,omitempty"`
	MinimumTTL       int64 `json:"minimumTTL,omitempty"`
}

// MetalLoadBalancerConfiguration binds pools, peers and nodes (BGP mode):
// the nodes its nodeSelector selects peer with its peers and advertise
// the IPs of its advertisements' pools.
type MetalLoadBalancerConfiguration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ConfigurationSpec `json:"spec,omitempty"`
}

// ConfigurationSpec is a MetalLoadBalancerConfiguration's spec.
type ConfigurationSpec struct {
	// NodeSelector: exact match of every pair; empty selects every node.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	Mode         string            `json:"mode,omitempty"` // "BGP"
	BGP          struct {
		PeerNames []string `json:"peerNames,omitempty"`
	} `json:"bgp,omitempty"`
	Advertisements []ConfigAdvertisement `json:"advertisements,omitempty"`
}

// ConfigAdvertisement is one entry of a Configuration's advertisements.
type ConfigAdvertisement struct {
	PoolNames []string `json:"poolNames,omitempty"`
	BGP       struct {
		Communities       []string `json:"communities,omitempty"`
		LocalPref         *int64   `json:"localPref,omitempty"`
		AggregationLength *int64   `json:"aggregationLength,omitempty"`
	} `json:"bgp,omitempty"`
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
