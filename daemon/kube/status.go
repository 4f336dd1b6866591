package kube

import (
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hostlb/hostlb/daemon/ipam"
)

// wantStatus returns the status svc should have (reference §3.4): the
// ingress in slot order (dual stack: both families of a slot together),
// the binding condition when the class was chosen now, and
// AllPublicIPsAssigned. A released Service loses its ingress and
// AllPublicIPsAssigned but keeps its binding condition, so the default
// class does not capture it and it is served again when its class returns
// (SPEC §5). res is nil for a released Service. now stamps conditions that
// change.
func wantStatus(svc *corev1.Service, ch Choice, res *ipam.Result, now metav1.Time) corev1.ServiceStatus {
	st := *svc.Status.DeepCopy()
	if ch.Release || res == nil {
		st.LoadBalancer.Ingress = nil
		apimeta.RemoveStatusCondition(&st.Conditions, ConditionAllAssigned)
		return st
	}
	vip := corev1.LoadBalancerIPModeVIP
	addrs := res.Addrs()
	st.LoadBalancer.Ingress = make([]corev1.LoadBalancerIngress, 0, len(addrs))
	for _, a := range addrs {
		st.LoadBalancer.Ingress = append(st.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: a.String(), IPMode: &vip})
	}
	if ch.Path == PathL2 && ch.Bind {
		setCondition(&st.Conditions, metav1.Condition{
			Type: ConditionClass, Status: metav1.ConditionTrue, Reason: ReasonClassBound, Message: ch.Class,
		}, now)
	}
	total := len(addrs)
	for _, f := range res.Failures {
		if f.Slot >= 0 {
			total++
		}
	}
	c := metav1.Condition{
		Type: ConditionAllAssigned, Status: metav1.ConditionTrue, Reason: ReasonAllAssigned,
		Message: fmt.Sprintf("%d of %d public IPs were assigned", len(addrs), total),
	}
	if len(addrs) < total {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonNotAllAssigned
	}
	setCondition(&st.Conditions, c, now)
	return st
}

// setCondition upserts c by type, keeping the transition time while the
// status does not change.
func setCondition(conds *[]metav1.Condition, c metav1.Condition, now metav1.Time) {
	c.LastTransitionTime = now
	c.ObservedGeneration = 0
	apimeta.SetStatusCondition(conds, c)
}

// sameStatus reports whether a and b agree on everything hostlb writes:
// the ingress IPs in order and its two conditions (type, status, reason,
// message). Fields the API server defaults (ipMode) or other controllers
// own are not compared, so a pass never rewrites an unchanged status.
func sameStatus(a, b corev1.ServiceStatus) bool {
	if !slices.EqualFunc(a.LoadBalancer.Ingress, b.LoadBalancer.Ingress, func(x, y corev1.LoadBalancerIngress) bool {
		return x.IP == y.IP && x.Hostname == y.Hostname
	}) {
		return false
	}
	for _, t := range []string{ConditionClass, ConditionAllAssigned} {
		x, y := apimeta.FindStatusCondition(a.Conditions, t), apimeta.FindStatusCondition(b.Conditions, t)
		if (x == nil) != (y == nil) {
			return false
		}
		if x != nil && (x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message) {
			return false
		}
	}
	return true
}

// ingressAddrs returns the IPs of a status's ingress.
func ingressAddrs(st corev1.ServiceStatus) []netip.Addr {
	var out []netip.Addr
	for _, ing := range st.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}
