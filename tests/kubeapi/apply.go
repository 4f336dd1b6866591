package kubeapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/hostlb/hostlb/packaging/manifests"
)

// fieldManager names the harness in managedFields.
const fieldManager = "hostlb-kubeapi"

var (
	crdGK  = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
	crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// applyManifests applies what a cluster needs before hostlbd can start
// (manifests.Objects: the CRDs, then the ServiceAccount and RBAC) and waits
// until every CRD is Established and its resources are in discovery.
func (c *Cluster) applyManifests(ctx context.Context) error {
	objs, err := manifests.Objects()
	if err != nil {
		return err
	}
	if err := c.Apply(ctx, objs...); err != nil {
		return err
	}
	c.logf("applied %d manifest objects", len(objs))
	return nil
}

// Apply creates each object, or updates it when it exists, in order, with
// the admin dynamic client and a discovery-based RESTMapper; a namespaced
// object without a namespace goes to "default". Then it waits until every
// CustomResourceDefinition among objs is Established and its resources are
// served, so that the caller can use them at once. An object of a kind
// that a CRD earlier in objs defines is applied once that CRD is served.
func (c *Cluster) Apply(ctx context.Context, objs ...*unstructured.Unstructured) error {
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.admin.Discovery()))
	var crds []*unstructured.Unstructured
	waited := 0 // crds[:waited] are known to be served
	for _, o := range objs {
		err := c.applyOne(ctx, mapper, o)
		if meta.IsNoMatchError(err) && waited < len(crds) {
			// Its kind may come from a CRD applied just before.
			if err := c.waitCRDs(ctx, crds[waited:]); err != nil {
				return err
			}
			waited = len(crds)
			mapper.Reset()
			err = c.applyOne(ctx, mapper, o)
		}
		if err != nil {
			return err
		}
		if o.GroupVersionKind().GroupKind() == crdGK {
			crds = append(crds, o)
		}
	}
	return c.waitCRDs(ctx, crds[waited:])
}

// applyOne creates o, or updates it on AlreadyExists.
func (c *Cluster) applyOne(ctx context.Context, mapper meta.RESTMapper, o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	what := fmt.Sprintf("%s %s", gvk.Kind, o.GetName())
	if ns := o.GetNamespace(); ns != "" {
		what = fmt.Sprintf("%s %s/%s", gvk.Kind, ns, o.GetName())
	}
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("map %s: %w", what, err)
	}
	var ri dynamic.ResourceInterface = c.dynamic.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := o.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		ri = c.dynamic.Resource(m.Resource).Namespace(ns)
	}
	_, err = ri.Create(ctx, o, metav1.CreateOptions{FieldManager: fieldManager})
	if apierrors.IsAlreadyExists(err) {
		var cur *unstructured.Unstructured
		if cur, err = ri.Get(ctx, o.GetName(), metav1.GetOptions{}); err == nil {
			upd := o.DeepCopy()
			upd.SetResourceVersion(cur.GetResourceVersion())
			_, err = ri.Update(ctx, upd, metav1.UpdateOptions{FieldManager: fieldManager})
		}
	}
	if err != nil {
		return fmt.Errorf("apply %s: %w", what, err)
	}
	return nil
}

// crdCreateDelay is how long after a CRD turned Established the apiserver
// holds every create of its objects (apiextensions-apiserver
// customresource_handler.go: "justCreated", a 2 s sleep inside the request,
// so that other apiservers of an HA control plane catch up).
const crdCreateDelay = 2 * time.Second

// waitCRDs waits until each CRD is Established and discovery lists its
// plural under every served version, and then until the apiserver no
// longer holds creates of their objects (crdCreateDelay): otherwise the
// first create of a test would take 2 s longer than the next, which skews
// any latency it measures.
func (c *Cluster) waitCRDs(ctx context.Context, crds []*unstructured.Unstructured) error {
	var latest time.Time // the last Established transition
	for _, crd := range crds {
		name := crd.GetName()
		err := poll(ctx, ReadyTimeout, "wait for CRD "+name, func(ctx context.Context) error {
			cur, err := c.dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			at, ok := established(cur)
			if !ok {
				return errors.New("not Established yet")
			}
			if at.After(latest) {
				latest = at
			}
			group, _, _ := unstructured.NestedString(cur.Object, "spec", "group")
			plural, _, _ := unstructured.NestedString(cur.Object, "spec", "names", "plural")
			versions, _, _ := unstructured.NestedSlice(cur.Object, "spec", "versions")
			for _, v := range versions {
				v, _ := v.(map[string]any)
				if served, _ := v["served"].(bool); !served {
					continue
				}
				gv := group + "/" + fmt.Sprint(v["name"])
				list, err := c.admin.Discovery().ServerResourcesForGroupVersion(gv)
				if err != nil {
					return fmt.Errorf("discovery of %s: %w", gv, err)
				}
				if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == plural }) {
					return fmt.Errorf("discovery of %s does not list %s yet", gv, plural)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// The apiserver compares its clock with the same second-granular
	// timestamp, on the same machine.
	if wait := time.Until(latest.Add(crdCreateDelay)); wait > 0 && len(crds) > 0 {
		c.logf("waiting %v for the apiserver's create delay of new CRDs", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait out the create delay of new CRDs: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
	return nil
}

// established reports whether the CRD's Established condition is true, and
// since when.
func established(crd *unstructured.Unstructured) (time.Time, bool) {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, cond := range conds {
		m, _ := cond.(map[string]any)
		if m["type"] != "Established" || m["status"] != "True" {
			continue
		}
		s, _ := m["lastTransitionTime"].(string)
		at, err := time.Parse(time.RFC3339, s)
		if err != nil {
			// Unknown: assume just now, the longer wait.
			at = time.Now()
		}
		return at, true
	}
	return time.Time{}, false
}
