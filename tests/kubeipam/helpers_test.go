package kubeipam

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/tests/kubeapi"
)

// env is one control plane shared by a test's subtests, with hostlb's
// IPAM running in-process as hostlb's ServiceAccount.
type env struct {
	c     *kubeapi.Cluster
	admin kubernetes.Interface
	k     *kube.Kubernetes
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCluster starts etcd and kube-apiserver with hostlb's manifests.
func startCluster(t *testing.T) *kubeapi.Cluster {
	t.Helper()
	kubeapi.Require(t)
	c, err := kubeapi.New(kubeapi.Options{ApplyManifests: true, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start control plane: %v\n%s", err, c.LogTail("kube-apiserver", 30))
	}
	return c
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newEnv starts a control plane and the IPAM controller.
func newEnv(t *testing.T) *env {
	t.Helper()
	c := startCluster(t)
	e := &env{c: c, admin: c.Admin(), logs: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	cfg, err := c.ServiceAccountConfig(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(e.logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.k, err = kube.New(kube.Options{
		Log: log, Config: cfg, NodeName: "node-a", LeaseNamespace: "kube-system",
		IPAM: kube.IPAMOptions{LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.k.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("kube.Run: %v", err)
		}
		if t.Failed() {
			t.Logf("hostlb log:\n%s", e.logs.String())
		}
	})
	waitFor(t, 60*time.Second, "the IPAM leader", func() error {
		if !e.k.IPAM.Leader() {
			return fmt.Errorf("not leader yet")
		}
		return nil
	})
	return e
}

// namespace creates a namespace for one subtest and deletes it after.
func (e *env) namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	_, err := e.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Services first, so that their IPs are freed before the next
		// subtest; namespace deletion needs the namespace controller.
		if list, err := e.admin.CoreV1().Services(name).List(ctx, metav1.ListOptions{}); err == nil {
			for _, s := range list.Items {
				_ = e.admin.CoreV1().Services(name).Delete(ctx, s.Name, metav1.DeleteOptions{})
			}
		}
		_ = e.admin.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	return name
}

// class creates a MetalLoadBalancerClass, deleted after the subtest.
func (e *env) class(t *testing.T, name string, pool []string, isDefault bool, extra map[string]any) {
	t.Helper()
	spec := map[string]any{"type": "L2", "addressPool": toAny(pool)}
	if isDefault {
		spec["isDefault"] = true
	}
	for k, v := range extra {
		spec[k] = v
	}
	e.create(t, "MetalLoadBalancerClass", name, spec)
}

// pool creates a MetalLoadBalancerPool, deleted after the subtest.
func (e *env) pool(t *testing.T, name string, addrs []string, spec map[string]any) {
	t.Helper()
	if spec == nil {
		spec = map[string]any{}
	}
	spec["addresses"] = toAny(addrs)
	e.create(t, "MetalLoadBalancerPool", name, spec)
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func (e *env) create(t *testing.T, kind, name string, spec map[string]any) {
	t.Helper()
	gvr := kube.ClassGVR
	if kind == "MetalLoadBalancerPool" {
		gvr = kube.PoolGVR
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kube.Group + "/v1alpha1", "kind": kind,
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	ctx := context.Background()
	if _, err := e.c.Dynamic().Resource(gvr).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s %s: %v", kind, name, err)
	}
	t.Cleanup(func() { e.deleteObj(gvr.Resource, name) })
}

func (e *env) deleteObj(resource, name string) {
	gvr := kube.ClassGVR
	if resource == kube.PoolGVR.Resource {
		gvr = kube.PoolGVR
	}
	err := e.c.Dynamic().Resource(gvr).Delete(context.Background(), name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		panic(err)
	}
}

// svcOpt changes a Service before it is created.
type svcOpt func(*corev1.Service)

func withAnn(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func withClass(c string) svcOpt { return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c } }

func withPort(proto corev1.Protocol, port int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: strings.ToLower(string(proto)), Protocol: proto, Port: port, TargetPort: intstr.FromInt32(port)}}
	}
}

func withFamilies(p corev1.IPFamilyPolicy, fs ...corev1.IPFamily) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = &p
		s.Spec.IPFamilies = fs
	}
}

// service creates a LoadBalancer Service (TCP 80 unless changed).
func (e *env) service(t *testing.T, ns, name string, opts ...svcOpt) *corev1.Service {
	t.Helper()
	f := false
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			Selector:                      map[string]string{"app": name},
			Ports:                         []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(80)}},
			AllocateLoadBalancerNodePorts: &f,
		},
	}
	for _, o := range opts {
		o(s)
	}
	out, err := e.admin.CoreV1().Services(ns).Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service %s/%s: %v", ns, name, err)
	}
	return out
}

func (e *env) get(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	s, err := e.admin.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ips returns the Service's ingress IPs.
func ips(s *corev1.Service) []string {
	var out []string
	for _, ing := range s.Status.LoadBalancer.Ingress {
		out = append(out, ing.IP)
	}
	return out
}

// waitIPs waits until the Service has exactly n ingress IPs and returns it.
func (e *env) waitIPs(t *testing.T, ns, name string, n int) *corev1.Service {
	t.Helper()
	var s *corev1.Service
	waitFor(t, 30*time.Second, fmt.Sprintf("%s/%s to have %d IPs", ns, name, n), func() error {
		s = e.get(t, ns, name)
		if got := ips(s); len(got) != n {
			return fmt.Errorf("has %v", got)
		}
		return nil
	})
	return s
}

// waitCondition waits until the Service's condition typ has status st.
func (e *env) waitCondition(t *testing.T, ns, name, typ string, st metav1.ConditionStatus) *corev1.Service {
	t.Helper()
	var s *corev1.Service
	waitFor(t, 30*time.Second, fmt.Sprintf("%s/%s condition %s=%s", ns, name, typ, st), func() error {
		s = e.get(t, ns, name)
		c := apimeta.FindStatusCondition(s.Status.Conditions, typ)
		if c == nil || c.Status != st {
			return fmt.Errorf("conditions %+v", s.Status.Conditions)
		}
		return nil
	})
	return s
}

// waitEvent waits for an Event of reason on the object, whose message
// contains want, and returns its message.
func (e *env) waitEvent(t *testing.T, ns, kind, name, reason, want string) string {
	t.Helper()
	if ns == "" {
		ns = metav1.NamespaceDefault // Events of cluster-scoped objects
	}
	var msg string
	waitFor(t, 30*time.Second, fmt.Sprintf("Event %s on %s %s containing %q", reason, kind, name, want), func() error {
		list, err := e.admin.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
			FieldSelector: fields.Set{"involvedObject.name": name, "involvedObject.kind": kind, "reason": reason}.String(),
		})
		if err != nil {
			return err
		}
		var seen []string
		for _, ev := range list.Items {
			if strings.Contains(ev.Message, want) {
				msg = ev.Message
				return nil
			}
			seen = append(seen, ev.Message)
		}
		return fmt.Errorf("events: %q", seen)
	})
	return msg
}

// waitFor polls check until it returns nil or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = check(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

func mustPrefix(t *testing.T, ip, prefix string) {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatalf("%q: %v", ip, err)
	}
	if !netip.MustParsePrefix(prefix).Contains(a) {
		t.Errorf("IP %s is not in %s", ip, prefix)
	}
}

func distinct(ss []string) bool {
	c := slices.Clone(ss)
	slices.Sort(c)
	return len(slices.Compact(c)) == len(ss)
}
