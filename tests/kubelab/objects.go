package kubelab

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hostlb/hostlb/daemon/kube"
)

// Service annotations of the Deckhouse API (SPEC §5).
const (
	AnnotationIPsCount = "network.deckhouse.io/l2-load-balancer-external-ips-count"
	AnnotationClass    = "network.deckhouse.io/metal-load-balancer-class"
)

// RegisterNode creates the Node object of the lab node called name, as a
// kubelet registers it: labels kubernetes.io/hostname and os, InternalIPs
// (its IPv4 and IPv6), Hostname, and condition Ready=True (written with
// UpdateStatus).
func (l *Lab) RegisterNode(name string) error {
	n := l.Node(name)
	if n == nil {
		return fmt.Errorf("kubelab: no node %q", name)
	}
	ctx, cancel := l.apiCtx()
	defer cancel()
	now := metav1.Now()
	status := corev1.NodeStatus{
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.IPv4.String()},
			{Type: corev1.NodeInternalIP, Address: n.IPv6.String()},
			{Type: corev1.NodeHostName, Address: n.Name},
		},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			LastHeartbeatTime: now, LastTransitionTime: now,
			Reason: "KubeletReady", Message: "kubelab: no kubelet, ready by decree",
		}},
	}
	obj, err := l.Admin().CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{
			corev1.LabelHostname: n.Name, corev1.LabelOSStable: "linux",
		}},
		Status: status,
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("kubelab: create Node %s: %w", name, err)
	}
	obj.Status = status
	if _, err := l.Admin().CoreV1().Nodes().UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("kubelab: status of Node %s: %w", name, err)
	}
	return nil
}

// DeleteNodeObject deletes the Node object called name (no error if it
// does not exist).
func (l *Lab) DeleteNodeObject(name string) error {
	ctx, cancel := l.apiCtx()
	defer cancel()
	err := l.Admin().CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubelab: delete Node %s: %w", name, err)
	}
	return nil
}

// LabelNode sets a label on the Node object called name; value nil
// removes it.
func (l *Lab) LabelNode(name, key string, value *string) error {
	ctx, cancel := l.apiCtx()
	defer cancel()
	patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:null}}}`, key)
	if value != nil {
		patch = fmt.Appendf(nil, `{"metadata":{"labels":{%q:%q}}}`, key, *value)
	}
	if _, err := l.Admin().CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("kubelab: label Node %s: %w", name, err)
	}
	return nil
}

// Class creates a MetalLoadBalancerClass of type L2 with the pool (ranges
// or CIDRs); extra adds spec fields (nodeSelector, l2...).
func (l *Lab) Class(name string, pool []string, isDefault bool, extra map[string]any) error {
	spec := map[string]any{"type": "L2", "addressPool": toAny(pool)}
	if isDefault {
		spec["isDefault"] = true
	}
	for k, v := range extra {
		spec[k] = v
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kube.Group + "/v1alpha1", "kind": "MetalLoadBalancerClass",
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	ctx, cancel := l.apiCtx()
	defer cancel()
	if _, err := l.Dynamic().Resource(kube.ClassGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kubelab: create MetalLoadBalancerClass %s: %w", name, err)
	}
	return nil
}

// DeleteClass deletes a MetalLoadBalancerClass (no error if it is gone).
func (l *Lab) DeleteClass(name string) error {
	ctx, cancel := l.apiCtx()
	defer cancel()
	err := l.Dynamic().Resource(kube.ClassGVR).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubelab: delete MetalLoadBalancerClass %s: %w", name, err)
	}
	return nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Namespace creates the namespace ns and its ServiceAccount "default"
// (which Pods need, and which no controller here creates), unless the lab
// did so already. Pods and Service call it.
func (l *Lab) Namespace(ns string) error {
	l.mu.Lock()
	done := l.namespaces[ns]
	l.mu.Unlock()
	if done {
		return nil
	}
	ctx, cancel := l.apiCtx()
	defer cancel()
	_, err := l.Admin().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubelab: create namespace %s: %w", ns, err)
	}
	_, err = l.Admin().CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubelab: create ServiceAccount %s/default: %w", ns, err)
	}
	l.mu.Lock()
	l.namespaces[ns] = true
	l.mu.Unlock()
	return nil
}

// podIPs hands out pod IPs, one per family: 198.51.100.10.. and
// 2001:db8:100::10.. (wrapping after 240 Pods; nothing routes them).
func (l *Lab) podIPs() (netip.Addr, netip.Addr) {
	l.mu.Lock()
	k := l.podSeq
	l.podSeq++
	l.mu.Unlock()
	b := byte(10 + k%240)
	v6 := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 15: b}
	return netip.AddrFrom4([4]byte{198, 51, 100, b}), netip.AddrFrom16(v6)
}

// Pods creates one Pod labelled app=app per node named (a node may repeat),
// bound to it (spec.nodeName), and writes its status as a kubelet would:
// Running and Ready, with an IPv4 and an IPv6 pod IP. It returns the Pods'
// names, in the order of nodes.
func (l *Lab) Pods(ns, app string, nodes ...string) ([]string, error) {
	if err := l.Namespace(ns); err != nil {
		return nil, err
	}
	var names []string
	for _, node := range nodes {
		name, err := l.pod(ns, app, node)
		if err != nil {
			return names, err
		}
		names = append(names, name)
	}
	return names, nil
}

func (l *Lab) pod(ns, app, node string) (string, error) {
	ctx, cancel := l.apiCtx()
	defer cancel()
	grace := int64(0)
	p, err := l.Admin().CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: app + "-" + node + "-", Namespace: ns, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.invalid/kubelab/app:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("kubelab: create Pod %s/%s on %s: %w", ns, app, node, err)
	}
	v4, v6 := l.podIPs()
	now := metav1.Now()
	p.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     v4.String(),
		PodIPs:    []corev1.PodIP{{IP: v4.String()}, {IP: v6.String()}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", Image: "registry.invalid/kubelab/app:1", Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	if nd := l.Node(node); nd != nil {
		p.Status.HostIP = nd.IPv4.String()
		p.Status.HostIPs = []corev1.HostIP{{IP: nd.IPv4.String()}, {IP: nd.IPv6.String()}}
	}
	if _, err := l.Admin().CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		return "", fmt.Errorf("kubelab: status of Pod %s/%s: %w", ns, p.Name, err)
	}
	return p.Name, nil
}

// SetPodsReady sets the Ready (and ContainersReady) condition of every Pod
// labelled app=app in ns.
func (l *Lab) SetPodsReady(ns, app string, ready bool) error {
	ctx, cancel := l.apiCtx()
	defer cancel()
	list, err := l.Admin().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return fmt.Errorf("kubelab: list Pods %s app=%s: %w", ns, app, err)
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	for i := range list.Items {
		p := &list.Items[i]
		now := metav1.Now()
		for j := range p.Status.Conditions {
			c := &p.Status.Conditions[j]
			if (c.Type == corev1.PodReady || c.Type == corev1.ContainersReady) && c.Status != st {
				c.Status, c.LastTransitionTime = st, now
			}
		}
		for j := range p.Status.ContainerStatuses {
			p.Status.ContainerStatuses[j].Ready = ready
		}
		if _, err := l.Admin().CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("kubelab: status of Pod %s/%s: %w", ns, p.Name, err)
		}
	}
	return nil
}

// MovePod "moves" a Pod as a Deployment does: it is deleted, and a new one
// with the same app label is created on node and made Ready. It returns
// the new Pod's name.
func (l *Lab) MovePod(ns, pod, node string) (string, error) {
	ctx, cancel := l.apiCtx()
	defer cancel()
	p, err := l.Admin().CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("kubelab: get Pod %s/%s: %w", ns, pod, err)
	}
	if err := l.deletePod(ns, pod); err != nil {
		return "", err
	}
	return l.pod(ns, p.Labels["app"], node)
}

// deletePod deletes a Pod at once (grace period 0: no kubelet confirms).
func (l *Lab) deletePod(ns, name string) error {
	ctx, cancel := l.apiCtx()
	defer cancel()
	grace := int64(0)
	err := l.Admin().CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubelab: delete Pod %s/%s: %w", ns, name, err)
	}
	return nil
}

// DeletePods deletes every Pod labelled app=app in ns ("" app: every Pod
// in ns), at once.
func (l *Lab) DeletePods(ns, app string) error {
	ctx, cancel := l.apiCtx()
	defer cancel()
	opts := metav1.ListOptions{}
	if app != "" {
		opts.LabelSelector = "app=" + app
	}
	list, err := l.Admin().CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		return fmt.Errorf("kubelab: list Pods in %s: %w", ns, err)
	}
	for _, p := range list.Items {
		if err := l.deletePod(ns, p.Name); err != nil {
			return err
		}
	}
	return nil
}

// ServiceOption changes a Service before Service creates it.
type ServiceOption func(*corev1.Service)

// IPsCount asks for n IPs (the Deckhouse count annotation).
func IPsCount(n int) ServiceOption {
	return Annotation(AnnotationIPsCount, fmt.Sprint(n))
}

// Annotation sets an annotation.
func Annotation(k, v string) ServiceOption {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

// LoadBalancerClass sets spec.loadBalancerClass (an MLBC's name).
func LoadBalancerClass(name string) ServiceOption {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &name }
}

// ETPLocal sets externalTrafficPolicy: Local.
func ETPLocal() ServiceOption {
	return func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
}

// IPv6Only makes the Service single-stack IPv6.
func IPv6Only() ServiceOption {
	return func(s *corev1.Service) {
		p := corev1.IPFamilyPolicySingleStack
		s.Spec.IPFamilyPolicy = &p
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
	}
}

// Service creates a LoadBalancer Service ns/name selecting the Pods
// labelled app=app, TCP 80, without node ports
// (allocateLoadBalancerNodePorts false).
func (l *Lab) Service(ns, name, app string, opts ...ServiceOption) (*corev1.Service, error) {
	if err := l.Namespace(ns); err != nil {
		return nil, err
	}
	f := false
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			Selector:                      map[string]string{"app": app},
			Ports:                         []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(80)}},
			AllocateLoadBalancerNodePorts: &f,
		},
	}
	for _, o := range opts {
		o(s)
	}
	ctx, cancel := l.apiCtx()
	defer cancel()
	out, err := l.Admin().CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubelab: create Service %s/%s: %w", ns, name, err)
	}
	return out, nil
}

// DeleteService deletes a Service and its EndpointSlices (the garbage
// collector, which would delete them, does not run here).
func (l *Lab) DeleteService(ns, name string) error {
	ctx, cancel := l.apiCtx()
	defer cancel()
	err := l.Admin().CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubelab: delete Service %s/%s: %w", ns, name, err)
	}
	err = l.Admin().DiscoveryV1().EndpointSlices(ns).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return fmt.Errorf("kubelab: delete EndpointSlices of %s/%s: %w", ns, name, err)
	}
	return nil
}

// Clean deletes every Service (with its EndpointSlices) and Pod in ns: a
// test's cleanup, so that the next one starts from free IPs.
func (l *Lab) Clean(ns string) error {
	ctx, cancel := l.apiCtx()
	list, err := l.Admin().CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	cancel()
	if err != nil {
		return fmt.Errorf("kubelab: list Services in %s: %w", ns, err)
	}
	var errs []error
	for _, s := range list.Items {
		errs = append(errs, l.DeleteService(ns, s.Name))
	}
	errs = append(errs, l.DeletePods(ns, ""))
	return errors.Join(errs...)
}

// GetService returns the Service ns/name.
func (l *Lab) GetService(ns, name string) (*corev1.Service, error) {
	ctx, cancel := l.apiCtx()
	defer cancel()
	return l.Admin().CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
}

// IngressIPs returns the IPs of a Service's status.loadBalancer.ingress.
func IngressIPs(s *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, ing := range s.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// WaitIPs waits until the Service ns/name lists exactly n IPs in its status
// and returns them.
func (l *Lab) WaitIPs(ns, name string, n int, timeout time.Duration) ([]netip.Addr, error) {
	var ips []netip.Addr
	err := l.Poll(timeout, func() error {
		s, err := l.GetService(ns, name)
		if err != nil {
			return err
		}
		ips = IngressIPs(s)
		if len(ips) != n {
			return fmt.Errorf("status lists %v", ips)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kubelab: Service %s/%s with %d IPs: %w", ns, name, n, err)
	}
	return ips, nil
}

// Events returns the messages of the Events of reason on Service ns/name.
func (l *Lab) Events(ns, name, reason string) ([]string, error) {
	return l.events(ns, "Service", name, reason)
}

// WaitEvent waits for an Event of reason on the Service ns/name whose
// message contains every string of want, and returns the message.
func (l *Lab) WaitEvent(ns, name, reason string, timeout time.Duration, want ...string) (string, error) {
	msg, err := l.waitEvent(timeout, reason, func() ([]string, error) { return l.Events(ns, name, reason) }, want)
	if err != nil {
		return "", fmt.Errorf("kubelab: Event %s on %s/%s with %q: %w", reason, ns, name, want, err)
	}
	return msg, nil
}

// waitEvent polls list until a message contains every string of want.
func (l *Lab) waitEvent(timeout time.Duration, reason string, list func() ([]string, error), want []string) (string, error) {
	var msg string
	err := l.Poll(timeout, func() error {
		msgs, err := list()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(m, w) }) {
				msg = m
				return nil
			}
		}
		return fmt.Errorf("%s Events: %q", reason, msgs)
	})
	return msg, err
}
