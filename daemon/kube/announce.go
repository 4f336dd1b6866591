package kube

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/hostlb/hostlb/daemon/reconcile"
)

// The Events a node emits on a Service about its own announcing (SPEC §5).
const (
	EventAnnouncing     = "Announcing"
	EventAnnounceFailed = "AnnounceFailed"
)

// announcements remembers what this node last reported per address, so an
// Event says what changed: a node that takes an IP over (or moves it to
// other interfaces) emits Announcing, one that owns it but cannot answer
// emits AnnounceFailed. The recorder's spam filter bounds a flapping link
// to a burst and then one Event per object every few minutes.
type announcements struct {
	mu   sync.Mutex // guards last
	last map[netip.Addr]string
}

// Announced implements the daemon's KubeSide: Events for the addresses of
// Services this node owns whose state changed since the last pass.
func (k *Kubernetes) Announced(rs []reconcile.Report) {
	seen := make(map[netip.Addr]bool, len(rs))
	k.ann.mu.Lock()
	if k.ann.last == nil {
		k.ann.last = map[netip.Addr]string{}
	}
	var emit []reconcile.Report
	for _, r := range rs {
		seen[r.Addr] = true
		state := r.Group + "|" + r.Mode + "|" + strings.Join(r.Ifaces, ",") + "|" + r.Err
		if k.ann.last[r.Addr] == state {
			continue
		}
		k.ann.last[r.Addr] = state
		emit = append(emit, r)
	}
	for a := range k.ann.last {
		if !seen[a] {
			delete(k.ann.last, a)
		}
	}
	k.ann.mu.Unlock()
	for _, r := range emit {
		o, ok, _ := k.Source.services.GetStore().GetByKey(r.Group)
		svc, isSvc := o.(*corev1.Service)
		if !ok || !isSvc {
			continue // a static VIP, or a Service already gone
		}
		ref := &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID}
		if len(r.Ifaces) == 0 {
			k.IPAM.rec.Event(ref, corev1.EventTypeWarning, EventAnnounceFailed,
				fmt.Sprintf("node %s cannot announce %s: %s", k.opts.NodeName, r.Addr, r.Err))
			continue
		}
		if r.Mode == "bgp" {
			k.IPAM.rec.Event(ref, corev1.EventTypeNormal, EventAnnouncing,
				fmt.Sprintf("node %s advertises %s over BGP as %s", k.opts.NodeName, r.Addr, strings.Join(r.Ifaces, ", ")))
			continue
		}
		proto := "ARP"
		if r.Addr.Is6() {
			proto = "NDP"
		}
		k.IPAM.rec.Event(ref, corev1.EventTypeNormal, EventAnnouncing,
			fmt.Sprintf("node %s announces %s on %s (%s)", k.opts.NodeName, r.Addr, strings.Join(r.Ifaces, ", "), proto))
	}
}
