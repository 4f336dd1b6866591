package kube

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchSnapshot is a cluster of 3 Nodes and n Services of the default
// class, each with one IP and an EndpointSlice with a ready endpoint per
// Node: the shape of the lab benchmark.
func benchSnapshot(n int) Snapshot {
	snap := Snapshot{Classes: []*MetalLoadBalancerClass{class("c", true)}}
	for _, name := range []string{"n1", "n2", "n3"} {
		snap.Nodes = append(snap.Nodes, node(name, nil))
	}
	base := netip.MustParseAddr("2001:db8:1000::")
	yes := ptr(true)
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		ip := base
		for range i + 1 {
			ip = ip.Next()
		}
		svc := lbService(withIngress(ip.String()))
		svc.Name = name
		svc.Status.Conditions = nil
		snap.Services = append(snap.Services, svc)
		snap.EndpointSlices = append(snap.EndpointSlices, slice(name, ep("n1", yes, nil, nil), ep("n2", yes, nil, nil), ep("n3", yes, nil, nil)))
	}
	return snap
}

func BenchmarkGroupsOf10k(b *testing.B) {
	snap := benchSnapshot(10000)
	if got := len(groupsOf(snap, "")); got != 10000 {
		b.Fatalf("%d groups", got)
	}
	b.ReportAllocs()
	for b.Loop() {
		groupsOf(snap, "")
	}
}

// BenchmarkGroupCache10k is a pass after one Service of 10,000 changed:
// what Kubernetes.Groups costs while Services stream in.
func BenchmarkGroupCache10k(b *testing.B) {
	snap := benchSnapshot(10000)
	var c groupCache
	c.groups(snap, 1, "")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i = (i + 1) % len(snap.Services)
		svc := *snap.Services[i] // the informer replaces what it updates
		snap.Services[i] = &svc
		if got := len(c.groups(snap, 1, "")); got != 10000 {
			b.Fatalf("%d groups", got)
		}
	}
}
