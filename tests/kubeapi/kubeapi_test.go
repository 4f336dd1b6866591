package kubeapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/hostlb/hostlb/tests/kubeapi"
)

var classGVR = schema.GroupVersionResource{Group: "network.deckhouse.io", Version: "v1alpha1", Resource: "metalloadbalancerclasses"}

// The cache directory is named after Version: it must be the pin.
func TestVersionMatchesToolsKubePin(t *testing.T) {
	data, err := os.ReadFile("../../tools/kube/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/kubernetes (v\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("tools/kube/go.mod does not require k8s.io/kubernetes")
	}
	if got := string(m[1]); got != kubeapi.Version {
		t.Fatalf("tools/kube pins k8s.io/kubernetes %s, kubeapi.Version is %s", got, kubeapi.Version)
	}
}

// TestCluster runs one control plane with hostlb's manifests and checks
// what the tests built on it rely on: the admin can make LoadBalancer
// Services of both families and hostlb's custom objects, the shipped
// ServiceAccount can do exactly what hostlbd needs and no more, etcd keeps
// the data across an apiserver restart, the controller manager runs, and
// Stop leaves no process behind.
func TestCluster(t *testing.T) {
	kubeapi.Require(t)
	ctx := t.Context()

	c, err := kubeapi.New(kubeapi.Options{ApplyManifests: true, Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, comp := range []string{"kube-apiserver", "etcd", "kube-controller-manager"} {
				t.Logf("%s log, last lines:\n%s", comp, c.LogTail(comp, 40))
			}
		}
		c.Stop()
	})
	t0 := time.Now()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("cold start (etcd + kube-apiserver ready + manifests applied and served): %v", time.Since(t0).Round(time.Millisecond))

	admin := c.Admin()
	t.Run("AdminCreatesLoadBalancerServicesAndClasses", func(t *testing.T) {
		v4 := createLB(ctx, t, admin, "default", "lb-v4", nil)
		requireIn(t, v4.Spec.ClusterIP, "198.51.100.0/24")
		if np := v4.Spec.Ports[0].NodePort; np < 20000 || np > 60000 {
			t.Errorf("NodePort %d outside --service-node-port-range 20000-60000", np)
		}
		v6 := createLB(ctx, t, admin, "default", "lb-v6", []corev1.IPFamily{corev1.IPv6Protocol})
		requireIn(t, v6.Spec.ClusterIP, "2001:db8:5::/108")

		class := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "network.deckhouse.io/v1alpha1",
			"kind":       "MetalLoadBalancerClass",
			"metadata":   map[string]any{"name": "l2-test"},
			"spec": map[string]any{
				"type":        "L2",
				"isDefault":   false,
				"addressPool": []any{"192.0.2.10-192.0.2.20", "2001:db8:10::/120"},
			},
		}}
		if _, err := c.Dynamic().Resource(classGVR).Create(ctx, class, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create MetalLoadBalancerClass: %v", err)
		}
	})

	t.Run("ServiceAccountHasShippedRBAC", func(t *testing.T) {
		cfg, err := c.ServiceAccountConfig(ctx, "", "")
		if err != nil {
			t.Fatal(err)
		}
		sa := kubernetes.NewForConfigOrDie(cfg)
		saDyn := dynamic.NewForConfigOrDie(cfg)

		list, err := sa.CoreV1().Services("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("list Services: %v", err)
		}
		w, err := sa.CoreV1().Services("").Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			t.Fatalf("watch Services: %v", err)
		}
		defer w.Stop()
		createLB(ctx, t, admin, "default", "lb-watched", nil)
		waitWatched(t, w, "lb-watched")

		svc, err := sa.CoreV1().Services("default").Get(ctx, "lb-v4", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get Service: %v", err)
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
		if _, err := sa.CoreV1().Services("default").UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update services/status: %v", err)
		}

		classes, err := saDyn.Resource(classGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("list MetalLoadBalancerClasses: %v", err)
		}
		if len(classes.Items) != 1 || classes.Items[0].GetName() != "l2-test" {
			t.Errorf("MetalLoadBalancerClasses = %d items, want l2-test", len(classes.Items))
		}

		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{GenerateName: "lb-v4.", Namespace: "default"},
			InvolvedObject: corev1.ObjectReference{Kind: "Service", Namespace: "default", Name: "lb-v4", UID: svc.UID, APIVersion: "v1"},
			Reason:         "IPAllocated",
			Message:        "Assigned IP 192.0.2.10",
			Type:           corev1.EventTypeNormal,
			Source:         corev1.EventSource{Component: "hostlb"},
		}
		if _, err := sa.CoreV1().Events("default").Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Event: %v", err)
		}

		leases := sa.CoordinationV1().Leases("kube-system")
		holder := "node-a"
		if _, err := leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "hostlb-ipam"},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create Lease kube-system/hostlb-ipam: %v", err)
		}
		lease, err := leases.Get(ctx, "hostlb-ipam", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get Lease kube-system/hostlb-ipam: %v", err)
		}
		holder = "node-b"
		lease.Spec.HolderIdentity = &holder
		if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update Lease kube-system/hostlb-ipam: %v", err)
		}

		// What the ClusterRole must not allow.
		other, err := admin.CoordinationV1().Leases("kube-system").Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "not-hostlb"},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		other.Spec.HolderIdentity = &holder
		_, err = leases.Update(ctx, other, metav1.UpdateOptions{})
		requireForbidden(t, "update Lease kube-system/not-hostlb", err)
		_, err = sa.CoreV1().Secrets("kube-system").Get(ctx, "any", metav1.GetOptions{})
		requireForbidden(t, "get Secret", err)
		err = sa.CoreV1().Services("default").Delete(ctx, "lb-v4", metav1.DeleteOptions{})
		requireForbidden(t, "delete Service", err)
	})

	t.Run("APIServerRestartKeepsData", func(t *testing.T) {
		before, err := admin.CoreV1().Services("default").Get(ctx, "lb-v6", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		down, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = admin.CoreV1().Services("default").Get(down, "lb-v6", metav1.GetOptions{})
		cancel()
		if err == nil {
			t.Fatal("the API answered with kube-apiserver stopped")
		}
		if err := c.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		after, err := admin.CoreV1().Services("default").Get(ctx, "lb-v6", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Service after the restart: %v", err)
		}
		if after.UID != before.UID || after.Spec.ClusterIP != before.Spec.ClusterIP {
			t.Errorf("Service changed across the restart: uid %s -> %s, clusterIP %s -> %s",
				before.UID, after.UID, before.Spec.ClusterIP, after.Spec.ClusterIP)
		}
	})

	t.Run("ControllerManagerMakesEndpointSlices", func(t *testing.T) {
		if err := c.StartControllerManager(ctx); err != nil {
			t.Fatal(err)
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "selected", Namespace: "default"},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "selected"},
				Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		if _, err := admin.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sel := discoveryv1.LabelServiceName + "=selected," + discoveryv1.LabelManagedBy + "=endpointslice-controller.k8s.io"
		waitFor(t, 60*time.Second, "an EndpointSlice for Service default/selected", func() error {
			l, err := admin.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				return err
			}
			if len(l.Items) == 0 {
				return errors.New("none yet")
			}
			return nil
		})
	})

	pids := c.PIDs()
	dir := c.Dir()
	c.Stop()
	c.Stop() // idempotent, as t.Cleanup calls it again

	// etcd, kube-apiserver twice, kube-controller-manager.
	if len(pids) != 4 {
		t.Errorf("started %d processes, want 4: %v", len(pids), pids)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Stop (kill 0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stop left %s behind (stat: %v)", dir, err)
	}
}

// createLB creates a LoadBalancer Service with one TCP port; families nil
// means the cluster's default (IPv4 single-stack).
func createLB(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string, families []corev1.IPFamily) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeLoadBalancer,
			IPFamilies: families,
			Ports:      []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if families != nil {
		single := corev1.IPFamilyPolicySingleStack
		svc.Spec.IPFamilyPolicy = &single
	}
	got, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service %s/%s: %v", ns, name, err)
	}
	return got
}

func requireIn(t *testing.T, ip, prefix string) {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	if err != nil || !netip.MustParsePrefix(prefix).Contains(a) {
		t.Errorf("ClusterIP %q not in %s", ip, prefix)
	}
}

func requireForbidden(t *testing.T, what string, err error) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Errorf("%s as hostlb: got %v, want Forbidden", what, err)
	}
}

// waitWatched waits for the watch to report name as added.
func waitWatched(t *testing.T, w watch.Interface, name string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed")
			}
			if s, isSvc := ev.Object.(*corev1.Service); isSvc && ev.Type == watch.Added && s.Name == name {
				return
			}
		case <-deadline:
			t.Fatalf("watch did not report Service %s within 30s", name)
		}
	}
}

// waitFor polls check until it returns nil or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("wait for %s: %w", what, err))
		}
		<-tick.C
	}
}
