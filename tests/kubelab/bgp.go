package kubelab

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/hostlb/hostlb/daemon/kube"
)

// The BGP objects of the Deckhouse API (reference §5.1), all
// cluster-scoped, for ApplyBGP and DeleteBGP.
const (
	KindPool          = "MetalLoadBalancerPool"
	KindBGPPeer       = "MetalLoadBalancerBGPPeer"
	KindConfiguration = "MetalLoadBalancerConfiguration"
)

// AnnotationPool picks a Service's MetalLoadBalancerPool on the BGP path.
const AnnotationPool = kube.AnnotationPool

var bgpGVRs = map[string]schema.GroupVersionResource{
	KindPool:          kube.PoolGVR,
	KindBGPPeer:       kube.BGPPeerGVR,
	KindConfiguration: kube.ConfigurationGVR,
}

func bgpGVR(kind string) (schema.GroupVersionResource, error) {
	gvr, ok := bgpGVRs[kind]
	if !ok {
		return gvr, fmt.Errorf("kubelab: %q is not a BGP object kind", kind)
	}
	return gvr, nil
}

// ApplyBGP creates the object kind/name with spec, or gives the one that
// exists exactly that spec (as `kubectl apply` of the whole object would).
func (l *Lab) ApplyBGP(kind, name string, spec map[string]any) error {
	gvr, err := bgpGVR(kind)
	if err != nil {
		return err
	}
	ctx, cancel := l.apiCtx()
	defer cancel()
	res := l.Dynamic().Resource(gvr)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := res.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = res.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": kube.Group + "/v1alpha1", "kind": kind,
				"metadata": map[string]any{"name": name}, "spec": spec,
			}}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Object["spec"] = spec
		_, err = res.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("kubelab: apply %s %s: %w", kind, name, err)
	}
	return nil
}

// DeleteBGP deletes the object kind/name (no error if it does not exist).
func (l *Lab) DeleteBGP(kind, name string) error {
	gvr, err := bgpGVR(kind)
	if err != nil {
		return err
	}
	ctx, cancel := l.apiCtx()
	defer cancel()
	err = l.Dynamic().Resource(gvr).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubelab: delete %s %s: %w", kind, name, err)
	}
	return nil
}

// PasswordSecret creates the Secret ns/name with the key "password" (a
// MetalLoadBalancerBGPPeer's passwordSecretRef), with the label
// kube.SecretLabel: "true" when labelled.
func (l *Lab) PasswordSecret(ns, name, password string, labelled bool) error {
	if err := l.Namespace(ns); err != nil {
		return err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeBasicAuth,
		Data:       map[string][]byte{corev1.BasicAuthPasswordKey: []byte(password)},
	}
	if labelled {
		sec.Labels = map[string]string{kube.SecretLabel: "true"}
	}
	ctx, cancel := l.apiCtx()
	defer cancel()
	if _, err := l.Admin().CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kubelab: create Secret %s/%s: %w", ns, name, err)
	}
	return nil
}

// LabelSecret sets (labelled) or removes the label kube.SecretLabel of
// the Secret ns/name.
func (l *Lab) LabelSecret(ns, name string, labelled bool) error {
	patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:null}}}`, kube.SecretLabel)
	if labelled {
		patch = fmt.Appendf(nil, `{"metadata":{"labels":{%q:"true"}}}`, kube.SecretLabel)
	}
	ctx, cancel := l.apiCtx()
	defer cancel()
	if _, err := l.Admin().CoreV1().Secrets(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("kubelab: label Secret %s/%s: %w", ns, name, err)
	}
	return nil
}

// DeleteSecret deletes the Secret ns/name (no error if it does not exist).
func (l *Lab) DeleteSecret(ns, name string) error {
	ctx, cancel := l.apiCtx()
	defer cancel()
	err := l.Admin().CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("kubelab: delete Secret %s/%s: %w", ns, name, err)
	}
	return nil
}

// ObjectEvents returns the messages of the Events of reason on the
// cluster-scoped object kind/name. An Event about a cluster-scoped object
// lives in the namespace "default"; every namespace is searched.
func (l *Lab) ObjectEvents(kind, name, reason string) ([]string, error) {
	return l.events(metav1.NamespaceAll, kind, name, reason)
}

// WaitObjectEvent waits for an Event of reason on the cluster-scoped object
// kind/name whose message contains every string of want, and returns the
// message.
func (l *Lab) WaitObjectEvent(kind, name, reason string, timeout time.Duration, want ...string) (string, error) {
	msg, err := l.waitEvent(timeout, reason, func() ([]string, error) { return l.ObjectEvents(kind, name, reason) }, want)
	if err != nil {
		return "", fmt.Errorf("kubelab: Event %s on %s %s with %q: %w", reason, kind, name, want, err)
	}
	return msg, nil
}

// events lists the messages of the Events of reason on kind ns/name.
func (l *Lab) events(ns, kind, name, reason string) ([]string, error) {
	ctx, cancel := l.apiCtx()
	defer cancel()
	list, err := l.Admin().CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": name, "involvedObject.kind": kind, "reason": reason}.String(),
	})
	if err != nil {
		return nil, fmt.Errorf("kubelab: list Events of %s %s: %w", kind, joinNS(ns, name), err)
	}
	var out []string
	for _, ev := range list.Items {
		out = append(out, ev.Message)
	}
	return out, nil
}

func joinNS(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}
