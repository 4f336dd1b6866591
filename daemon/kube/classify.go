package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/hostlb/hostlb/daemon/ipam"
)

// The Service annotations and conditions of the Deckhouse API (reference
// §3.2, §3.4).
const (
	AnnotationIPCount       = "network.deckhouse.io/l2-load-balancer-external-ips-count"
	AnnotationIPs           = "network.deckhouse.io/load-balancer-ips"
	AnnotationSharedIPKey   = "network.deckhouse.io/load-balancer-shared-ip-key"
	AnnotationAllowSharedIP = "network.deckhouse.io/load-balancer-allow-shared-ip" // the older name
	AnnotationClass         = "network.deckhouse.io/metal-load-balancer-class"
	AnnotationPool          = "network.deckhouse.io/load-balancer-pool"

	// ConditionClass binds a Service to its MetalLoadBalancerClass for good
	// (its message is the class name).
	ConditionClass       = "network.deckhouse.io/load-balancer-class"
	ReasonClassBound     = "LoadBalancerClassBound"
	ConditionAllAssigned = "AllPublicIPsAssigned"
	ReasonAllAssigned    = "AllIPsAssigned"
	ReasonNotAllAssigned = "NotAllIPsAssigned"
)

// MaxIPCount bounds the external-ips-count annotation: each slot takes an
// address from a shared pool, so a typo ("300" for "3") must not drain it.
const MaxIPCount = 64

// Pool names as IPAM and Events show them: the kind says which object to
// look at.
func classPoolName(class string) string { return "MetalLoadBalancerClass/" + class }
func poolName(pool string) string       { return "MetalLoadBalancerPool/" + pool }

// Path is how a Service is served.
type Path uint8

// The paths.
const (
	PathNone Path = iota // not hostlb's (foreign class, not a LoadBalancer, nothing configured)
	PathL2               // a MetalLoadBalancerClass
	PathBGP              // MetalLoadBalancerPools (the BGP path)
)

// note is a problem found on an object, reported as a Warning Event on it
// (and logged).
type note struct {
	Reason  string
	Message string
}

// classes is the cluster's MetalLoadBalancerClasses as one pass sees them.
type classes struct {
	byName map[string]*MetalLoadBalancerClass
	// def is the default class: the lowest name among those with
	// isDefault, so two defaults resolve the same way on every pass and
	// every node, never by map order.
	def string
	// defaults lists every class with isDefault, sorted, to report a
	// conflict when there are several.
	defaults []string
}

func newClasses(cs []*MetalLoadBalancerClass) classes {
	out := classes{byName: make(map[string]*MetalLoadBalancerClass, len(cs))}
	for _, c := range cs {
		out.byName[c.Name] = c
		if c.Spec.IsDefault {
			out.defaults = append(out.defaults, c.Name)
		}
	}
	slices.Sort(out.defaults)
	if len(out.defaults) > 0 {
		out.def = out.defaults[0]
	}
	return out
}

// Choice is where one Service goes.
type Choice struct {
	Path Path
	// Class is the MetalLoadBalancerClass of PathL2.
	Class string
	// Bind: the binding condition must be written (the class was chosen
	// now, not read from the condition).
	Bind bool
	// Release: the Service holds status hostlb wrote, but is no longer
	// served (its bound class was deleted, or it stopped being a
	// LoadBalancer): its IPs are freed and its status cleared.
	Release bool
	Why     string // for Release and PathNone: why, for logs and Events
}

// chooseClass decides where svc goes: the reference's §3.3 precedence
// (the sticky binding condition, then spec.loadBalancerClass, then the
// annotation, then the default class) with SPEC §5's fixes: a default class
// never captures a Service whose spec.loadBalancerClass names another
// controller, and a Service whose bound class is gone is not served (and
// not captured by the default) until the class returns. bgpClass is
// [kubernetes] load_balancer_class: the spec.loadBalancerClass of Services
// on the BGP path ("" = those without one); bgpPools says whether any
// MetalLoadBalancerPool exists (without one there is no BGP path).
func chooseClass(svc *corev1.Service, cs classes, bgpClass string, bgpPools bool) Choice {
	ours := hasOurStatus(svc)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		if ours {
			return Choice{Release: true, Why: "the Service is no longer of type LoadBalancer"}
		}
		return Choice{}
	}
	if bound := boundClass(svc); bound != "" {
		if _, ok := cs.byName[bound]; ok {
			return Choice{Path: PathL2, Class: bound}
		}
		return Choice{Release: ours, Why: fmt.Sprintf("its MetalLoadBalancerClass %q does not exist", bound)}
	}
	if lbc := svc.Spec.LoadBalancerClass; lbc != nil {
		if _, ok := cs.byName[*lbc]; ok {
			return Choice{Path: PathL2, Class: *lbc, Bind: true}
		}
		if bgpClass != "" && *lbc == bgpClass && bgpPools {
			return Choice{Path: PathBGP}
		}
		// Another controller's class: never captured, never written.
		return Choice{Why: fmt.Sprintf("spec.loadBalancerClass %q is not hostlb's", *lbc)}
	}
	if name := svc.Annotations[AnnotationClass]; name != "" {
		if _, ok := cs.byName[name]; ok {
			return Choice{Path: PathL2, Class: name, Bind: true}
		}
	}
	if cs.def != "" {
		return Choice{Path: PathL2, Class: cs.def, Bind: true}
	}
	if bgpClass == "" && bgpPools {
		return Choice{Path: PathBGP}
	}
	if ours {
		return Choice{Release: true, Why: "no MetalLoadBalancerClass or MetalLoadBalancerPool serves it"}
	}
	return Choice{Why: "no MetalLoadBalancerClass or MetalLoadBalancerPool serves it"}
}

// boundClass is the class named by the Service's binding condition.
func boundClass(svc *corev1.Service) string {
	for _, c := range svc.Status.Conditions {
		if c.Type == ConditionClass {
			return c.Message
		}
	}
	return ""
}

// hasOurStatus reports whether the Service carries status hostlb writes.
func hasOurStatus(svc *corev1.Service) bool {
	for _, c := range svc.Status.Conditions {
		if c.Type == ConditionAllAssigned {
			return true
		}
	}
	return false
}

// ipamService turns svc into IPAM's input. pools are the pool names it may
// use; explicit says the Service named its pool.
func ipamService(svc *corev1.Service, pools []string, explicit bool) (ipam.Service, []note) {
	var notes []note
	in := ipam.Service{
		Key:      svc.Namespace + "/" + svc.Name,
		Order:    svc.CreationTimestamp.UnixNano(),
		Pools:    pools,
		Explicit: explicit,
		Count:    1,
		Policy:   ipam.SingleStack,
	}
	if v, ok := svc.Annotations[AnnotationIPCount]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		switch {
		case err != nil:
			notes = append(notes, note{"InvalidAnnotation",
				fmt.Sprintf("%s: %q is not a number; using 1 IP", AnnotationIPCount, v)})
		case n > MaxIPCount:
			notes = append(notes, note{"InvalidAnnotation",
				fmt.Sprintf("%s: %d is more than %d; using %d IPs", AnnotationIPCount, n, MaxIPCount, MaxIPCount)})
			in.Count = MaxIPCount
		case n > 1:
			in.Count = n
		}
	}
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			in.Families = append(in.Families, ipam.IPv4)
		case corev1.IPv6Protocol:
			in.Families = append(in.Families, ipam.IPv6)
		}
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicyPreferDualStack:
			in.Policy = ipam.PreferDualStack
		case corev1.IPFamilyPolicyRequireDualStack:
			in.Policy = ipam.RequireDualStack
		}
	}
	if v, ok := svc.Annotations[AnnotationIPs]; ok {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				notes = append(notes, note{"InvalidAnnotation",
					fmt.Sprintf("%s: %q is not an IP address; ignored", AnnotationIPs, s)})
				continue
			}
			in.Requested = append(in.Requested, a.Unmap())
		}
	} else if s := svc.Spec.LoadBalancerIP; s != "" {
		if a, err := netip.ParseAddr(s); err == nil {
			in.Requested = append(in.Requested, a.Unmap())
		} else {
			notes = append(notes, note{"InvalidLoadBalancerIP",
				fmt.Sprintf("spec.loadBalancerIP %q is not an IP address; ignored", s)})
		}
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			in.Current = append(in.Current, a.Unmap())
		}
	}
	in.SharingKey = svc.Annotations[AnnotationSharedIPKey]
	if in.SharingKey == "" {
		in.SharingKey = svc.Annotations[AnnotationAllowSharedIP]
	}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		in.Ports = append(in.Ports, ipam.Port{Protocol: proto, Port: p.Port})
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
		// MetalLB's backend key: Services sharing an IP under ETP Local
		// must reach the same pods, or one node would answer for both
		// with only one Service's endpoints.
		in.BackendKey = labels.SelectorFromSet(svc.Spec.Selector).String()
	}
	return in, notes
}
