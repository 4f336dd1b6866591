package kube

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"pgregory.net/rapid"
)

// TestGroupCacheProperty: whatever changes between passes, the cache
// returns what building every group anew returns, as long as a change of
// the Nodes or classes comes with a new world generation (Kubernetes.Groups
// bumps it on their events). Objects are replaced, never modified, as the
// informers do.
func TestGroupCacheProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		yes, no := ptr(true), ptr(false)
		nodeNames := []string{"n1", "n2", "n3"}
		snap := Snapshot{Classes: []*MetalLoadBalancerClass{class("c", true)}}
		for _, n := range nodeNames {
			snap.Nodes = append(snap.Nodes, node(n, nil))
		}
		var (
			c     groupCache
			world uint64
			ids   int
		)
		newSvc := func(t *rapid.T, name string) *corev1.Service {
			s := lbService()
			s.Name = name
			if rapid.Bool().Draw(t, "etpLocal") {
				etpLocal(s)
			}
			for i := range rapid.IntRange(0, 2).Draw(t, "ips") {
				withIngress(fmt.Sprintf("192.0.2.%d", rapid.IntRange(1, 50).Draw(t, "ip")+i))(s)
			}
			if rapid.Bool().Draw(t, "foreign") {
				other := "example.com/other"
				s.Spec.LoadBalancerClass = &other
			}
			return s
		}
		newSlice := func(t *rapid.T, svc string) *discoveryv1.EndpointSlice {
			ids++
			var eps []discoveryv1.Endpoint
			for _, n := range nodeNames {
				switch rapid.IntRange(0, 3).Draw(t, "endpoint") {
				case 1:
					eps = append(eps, ep(n, yes, nil, nil))
				case 2:
					eps = append(eps, ep(n, no, yes, yes))
				case 3:
					eps = append(eps, ep(n, no, no, no))
				}
			}
			es := slice(svc, eps...)
			es.Name = fmt.Sprintf("%s-%d", svc, ids)
			return es
		}
		for step := range rapid.IntRange(1, 30).Draw(t, "steps") {
			switch rapid.IntRange(0, 5).Draw(t, "change") {
			case 0: // a Service added or replaced
				name := fmt.Sprintf("svc-%d", rapid.IntRange(0, 5).Draw(t, "svc"))
				s := newSvc(t, name)
				replaced := false
				for i, old := range snap.Services {
					if old.Name == name {
						snap.Services[i], replaced = s, true
					}
				}
				if !replaced {
					snap.Services = append(snap.Services, s)
				}
			case 1: // a Service deleted
				if n := len(snap.Services); n > 0 {
					i := rapid.IntRange(0, n-1).Draw(t, "del")
					snap.Services = append(snap.Services[:i:i], snap.Services[i+1:]...)
				}
			case 2: // an EndpointSlice added
				snap.EndpointSlices = append(snap.EndpointSlices,
					newSlice(t, fmt.Sprintf("svc-%d", rapid.IntRange(0, 5).Draw(t, "svc"))))
			case 3: // an EndpointSlice replaced or deleted
				if n := len(snap.EndpointSlices); n > 0 {
					i := rapid.IntRange(0, n-1).Draw(t, "slice")
					if rapid.Bool().Draw(t, "delete") {
						snap.EndpointSlices = append(snap.EndpointSlices[:i:i], snap.EndpointSlices[i+1:]...)
					} else {
						old := snap.EndpointSlices[i]
						es := newSlice(t, old.Labels[discoveryv1.LabelServiceName])
						es.Name = old.Name
						snap.EndpointSlices = append(snap.EndpointSlices[:i:i], append([]*discoveryv1.EndpointSlice{es}, snap.EndpointSlices[i+1:]...)...)
					}
				}
			case 4: // a Node excluded or let back: a new world
				i := rapid.IntRange(0, len(nodeNames)-1).Draw(t, "node")
				labels := map[string]string{}
				if rapid.Bool().Draw(t, "exclude") {
					labels[LabelExcludeLB] = ""
				}
				nodes := append([]*corev1.Node(nil), snap.Nodes...)
				nodes[i] = node(nodeNames[i], labels)
				snap.Nodes = nodes
				world++
			case 5: // the store lists in another order
				rapid.Permutation(snap.EndpointSlices).Draw(t, "order")
			}
			got := c.groups(snap, world, "")
			if want := groupsOf(snap, ""); !cmp.Equal(got, want, cmpopts.EquateComparable(netip.Addr{})) {
				t.Fatalf("step %d: cached groups differ from fresh ones (-fresh +cached):\n%s", step, cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})))
			}
		}
	})
}
