package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hostlb/hostlb/daemon/bgp"
	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/daemon/reconcile"
)

// A Service's addresses take the paths that list the node: attributes,
// aggregation (IPv4 up to /32, IPv6 above it), and one advertisement per
// prefix with the communities joined and the highest localPref.
func TestBGPWantedServicePaths(t *testing.T) {
	front := reconcile.BGPPath{Nodes: []string{"n1", "n2"}, Communities: []uint32{bgp.Community(65000, 100), bgp.NoExport},
		LargeCommunities: [][3]uint32{{64512, 1, 2}}, LocalPref: 150}
	agg := reconcile.BGPPath{Nodes: []string{"n1"}, Communities: []uint32{bgp.Community(65000, 200)}, LocalPref: 120, AggregationLength: 24}
	other := reconcile.BGPPath{Nodes: []string{"n3"}, Communities: []uint32{bgp.Community(65000, 300)}}
	a1, a2, a6 := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("203.0.113.8"), netip.MustParseAddr("2001:db8::7")
	d := reconcile.Desired{
		a1: {Addr: a1, VIP: "ns/web", Mode: config.ModeBGP, BGP: []reconcile.BGPPath{front, agg, other}},
		a2: {Addr: a2, VIP: "ns/api", Mode: config.ModeBGP, BGP: []reconcile.BGPPath{agg}},
		a6: {Addr: a6, VIP: "ns/web", Mode: config.ModeBGP, BGP: []reconcile.BGPPath{front, agg}},
		netip.MustParseAddr("203.0.113.9"): {Addr: netip.MustParseAddr("203.0.113.9"), VIP: "ns/none", Mode: config.ModeBGP,
			BGP: []reconcile.BGPPath{}},
	}
	got := bgpWanted("n1", d)
	want := []bgp.Advertisement{
		{Prefix: netip.MustParsePrefix("203.0.113.7/32"), VIP: "ns/web", LocalPref: 150,
			Communities: []uint32{bgp.Community(65000, 100), bgp.NoExport}, LargeCommunities: []bgp.LargeCommunity{{Global: 64512, Local1: 1, Local2: 2}}},
		// Both Services' aggregate: one advertisement.
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), VIP: "ns/web", LocalPref: 120, Communities: []uint32{bgp.Community(65000, 200)}},
		// /24 does not apply to IPv6: the host route, merged with front's.
		{Prefix: netip.MustParsePrefix("2001:db8::7/128"), VIP: "ns/web", LocalPref: 150,
			Communities:      []uint32{bgp.Community(65000, 100), bgp.Community(65000, 200), bgp.NoExport},
			LargeCommunities: []bgp.LargeCommunity{{Global: 64512, Local1: 1, Local2: 2}}},
	}
	if diff := cmp.Diff(want, got, prefixEq, addrEq); diff != "" {
		t.Errorf("n1 (-want +got):\n%s", diff)
	}
	got = bgpWanted("n3", d)
	want = []bgp.Advertisement{{Prefix: netip.MustParsePrefix("203.0.113.7/32"), VIP: "ns/web", Communities: []uint32{bgp.Community(65000, 300)}}}
	if diff := cmp.Diff(want, got, prefixEq, addrEq); diff != "" {
		t.Errorf("n3 (-want +got):\n%s", diff)
	}

	// The Kubernetes Events' reports: each address n1 advertises, with the
	// prefixes it goes out as; ns/none (no path) is not reported.
	reps := bgpReports("n1", d)
	wantReps := []reconcile.Report{
		{Group: "ns/web", Addr: a1, Mode: config.ModeBGP, Ifaces: []string{"203.0.113.7/32", "203.0.113.0/24"}},
		{Group: "ns/api", Addr: a2, Mode: config.ModeBGP, Ifaces: []string{"203.0.113.0/24"}},
		{Group: "ns/web", Addr: a6, Mode: config.ModeBGP, Ifaces: []string{"2001:db8::7/128"}},
	}
	if diff := cmp.Diff(wantReps, reps, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("bgpReports n1 (-want +got):\n%s", diff)
	}
	if got := bgpWanted("n9", d); len(got) != 0 {
		t.Errorf("n9 is on no path: %v", got)
	}
}

var (
	prefixEq = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
	addrEq   = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
)

// TestSimKubernetesBGPService runs three daemons with real Kubernetes sides
// over one fake API and fake BGP speakers: a Service of [kubernetes]
// load_balancer_class gets an IP from a MetalLoadBalancerPool, and every
// node the MetalLoadBalancerConfiguration selects advertises it with the
// advertisement's communities and localPref; under externalTrafficPolicy
// Local only the node with the ready endpoint does.
func TestSimKubernetesBGPService(t *testing.T) {
	const lbClass = "example.com/bgp"
	names := []string{"n1", "n2", "n3"}
	api := newFakeAPI(t, names)
	ctx := context.Background()
	for _, n := range []string{"n1", "n2"} {
		nd, err := api.client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nd.Labels = map[string]string{"edge": "yes"}
		if _, err := api.client.CoreV1().Nodes().Update(ctx, nd, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create := func(gvr schema.GroupVersionResource, kind, name string, spec map[string]any) {
		t.Helper()
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": kube.Group + "/v1alpha1", "kind": kind, "metadata": map[string]any{"name": name}, "spec": spec}}
		if _, err := api.dyn.Resource(gvr).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create(kube.PoolGVR, "MetalLoadBalancerPool", "prod", map[string]any{"addresses": []any{"198.51.100.64/28"}})
	create(kube.BGPPeerGVR, "MetalLoadBalancerBGPPeer", "tor1", map[string]any{
		"peerAddress": "192.0.2.254", "peerASN": int64(64500), "myASN": int64(64512), "holdTime": "30s",
		"passwordSecretRef": map[string]any{"namespace": "d8", "name": "tor1-pw"},
		"sourceAddresses":   []any{map[string]any{"nodeName": "n2", "address": "192.0.2.12"}},
	})
	create(kube.BGPPeerGVR, "MetalLoadBalancerBGPPeer", "tor2", map[string]any{
		"peerAddress": "2001:db8::fe", "peerASN": int64(64501), "myASN": int64(64512),
		"passwordSecretRef": map[string]any{"namespace": "d8", "name": "tor2-pw"}, // not labelled
	})
	for name, labelled := range map[string]bool{"tor1-pw": true, "tor2-pw": false} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "d8", Name: name}, Data: map[string][]byte{"password": []byte(name)}}
		if labelled {
			sec.Labels = map[string]string{kube.SecretLabel: "true"}
		}
		if _, err := api.client.CoreV1().Secrets("d8").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create(kube.ConfigurationGVR, "MetalLoadBalancerConfiguration", "front", map[string]any{
		"mode": "BGP", "nodeSelector": map[string]any{"edge": "yes"}, "bgp": map[string]any{"peerNames": []any{"tor1", "tor2", "ghost"}},
		"advertisements": []any{map[string]any{"poolNames": []any{"prod"},
			"bgp": map[string]any{"communities": []any{"65000:100", "no-export"}, "localPref": int64(150)}}},
	})

	var (
		mu       sync.Mutex
		speakers = map[string]*fakeSpeaker{}
	)
	tweak := func(node string, opts *Options) {
		opts.Config.BGP.ASN = 64512
		opts.Config.BGP.RouterID = netip.MustParseAddr("192.0.2.1")
		if node == "n1" {
			// The file's peer wins over the API's at the same address.
			opts.Config.BGP.Peers = []config.BGPPeer{{Address: netip.MustParseAddr("192.0.2.254"), ASN: 65001, Port: 179}}
		}
		f := &fakeSpeaker{node: node, leftRing: func() bool { return false }}
		opts.BGP = f
		mu.Lock()
		speakers[node] = f
		mu.Unlock()
	}
	kubeFor := func(node string, log *slog.Logger, trigger func()) kubeSideGroups {
		k, err := kube.New(kube.Options{
			Log: log, NodeName: node, LeaseNamespace: "kube-system", Client: api.client, Dynamic: api.dyn,
			BGPClass: lbClass, OnChange: func(kube.Kind) { trigger() },
		})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	s := newSimFull(t, len(names), false, kubeFor, nil, tweak)
	api.endpoints(t, map[string]bool{"n1": true, "n2": true, "n3": true})
	class := lbClass
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class, Selector: map[string]string{"app": "web"}},
	}
	if _, err := api.client.CoreV1().Services("ns").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ip netip.Addr
	s.waitFor(20*time.Second, "the Service's IP allocated from the pool", func() error {
		got, err := api.client.CoreV1().Services("ns").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(got.Status.LoadBalancer.Ingress) != 1 {
			return fmt.Errorf("status %+v", got.Status.LoadBalancer)
		}
		ip = netip.MustParseAddr(got.Status.LoadBalancer.Ingress[0].IP)
		return nil
	})
	if !netip.MustParsePrefix("198.51.100.64/28").Contains(ip) {
		t.Fatalf("IP %s not from the pool", ip)
	}
	// To the Configuration's peers only: tor1 and tor6.
	wantAdv := bgp.Advertisement{Prefix: netip.PrefixFrom(ip, 32), VIP: "ns/web", LocalPref: 150,
		Communities: []uint32{bgp.Community(65000, 100), bgp.NoExport},
		Peers:       []netip.Addr{netip.MustParseAddr("192.0.2.254"), netip.MustParseAddr("2001:db8::fe")}}
	advertisedBy := func(want ...string) func() error {
		return func() error {
			var errs []error
			for _, n := range names {
				mu.Lock()
				f := speakers[n]
				mu.Unlock()
				f.mu.Lock()
				got := slices.Clone(f.want)
				f.mu.Unlock()
				var exp []bgp.Advertisement
				if slices.Contains(want, n) {
					exp = []bgp.Advertisement{wantAdv}
				}
				if len(got) != len(exp) || (len(exp) > 0 && cmp.Diff(exp, got, prefixEq, addrEq) != "") {
					errs = append(errs, fmt.Errorf("%s advertises %+v, want %+v", n, got, exp))
				}
			}
			return errors.Join(errs...)
		}
	}
	s.waitFor(10*time.Second, "n1 and n2 advertise with the communities", advertisedBy("n1", "n2"))

	// Sessions: tor1 (labelled Secret) on the selected nodes, n2 with its
	// own source address, n1 with the file's settings; tor2's Secret is
	// not labelled and ghost does not exist: no session, nothing crashes.
	wantPeers := map[string]bgp.Peer{
		"n1": {Address: netip.MustParseAddr("192.0.2.254"), ASN: 65001, Port: 179},
		"n2": {Address: netip.MustParseAddr("192.0.2.254"), ASN: 64500, SourceAddress: netip.MustParseAddr("192.0.2.12"),
			HoldTime: 30 * time.Second, KeepaliveTime: 10 * time.Second, Password: "tor1-pw", LocalASN: 64512},
	}
	s.waitFor(10*time.Second, "the API's peers merged", func() error {
		var errs []error
		for _, n := range names {
			mu.Lock()
			f := speakers[n]
			mu.Unlock()
			f.mu.Lock()
			got := slices.Clone(f.cfg.Peers)
			f.mu.Unlock()
			var want []bgp.Peer
			if p, ok := wantPeers[n]; ok {
				want = []bgp.Peer{p}
			}
			if len(got) != len(want) || (len(want) > 0 && cmp.Diff(want, got, addrEq) != "") {
				errs = append(errs, fmt.Errorf("%s peers %+v, want %+v", n, got, want))
			}
		}
		return errors.Join(errs...)
	})

	// externalTrafficPolicy Local, the only ready endpoint on n2.
	cur, err := api.client.CoreV1().Services("ns").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	if _, err := api.client.CoreV1().Services("ns").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	api.endpoints(t, map[string]bool{"n2": true, "n3": true})
	s.waitFor(10*time.Second, "n2 alone", advertisedBy("n2"))
	api.endpoints(t, map[string]bool{"n1": false})
	s.waitFor(10*time.Second, "nobody without a ready endpoint", advertisedBy())
}
