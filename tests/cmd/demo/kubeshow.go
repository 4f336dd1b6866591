package main

// The kubectl-style printers of the Kubernetes demo (kube.go).

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/yaml"

	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/tests/kubelab"
)

// getSvc prints `kubectl get svc` of one Service.
func (k *kubeDemo) getSvc(name string) error {
	s, err := k.lab.GetService(kubeNS, name)
	if err != nil {
		return err
	}
	var ext []string
	for _, ip := range kubelab.IngressIPs(s) {
		ext = append(ext, ip.String())
	}
	if len(ext) == 0 {
		ext = []string{"<pending>"}
	}
	var ports []string
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			ports = append(ports, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol))
		} else {
			ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		}
	}
	k.logf("$ kubectl get svc -n %s %s", kubeNS, name)
	tw := table("NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE")
	row(tw, s.Namespace, s.Name, string(s.Spec.Type), s.Spec.ClusterIP, strings.Join(ext, ","), strings.Join(ports, ","),
		age(s.CreationTimestamp.Time))
	return tw.Flush()
}

// events returns the Events of the Service name, oldest first.
func (k *kubeDemo) events(name string) ([]corev1.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kubeSettle)
	defer cancel()
	list, err := k.lab.Admin().CoreV1().Events(kubeNS).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": name, "involvedObject.kind": "Service"}.String(),
	})
	if err != nil {
		return nil, fmt.Errorf("list Events of %s: %w", name, err)
	}
	evs := list.Items
	// Event times have a resolution of one second: within one, the
	// allocation comes before the announcements it allows.
	later := func(ev corev1.Event) bool { return ev.Reason != kube.EventIPAllocated }
	slices.SortStableFunc(evs, func(a, b corev1.Event) int {
		return cmp.Or(eventTime(a).Compare(eventTime(b)), cmpBool(later(a), later(b)), strings.Compare(a.Message, b.Message))
	})
	return evs, nil
}

// showEvents prints Events as `kubectl describe` does.
func (k *kubeDemo) showEvents(evs []corev1.Event) error {
	k.logf("$ kubectl describe svc -n %s %s   # Events:", kubeNS, kubeService)
	tw := table("TYPE", "REASON", "FROM", "MESSAGE")
	for _, ev := range evs {
		from := ev.Source.Component
		if ev.Source.Host != "" {
			from += ", " + ev.Source.Host
		}
		row(tw, ev.Type, ev.Reason, from, ev.Message)
	}
	return tw.Flush()
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	if a == b {
		return 0
	}
	if a {
		return 1
	}
	return -1
}

func eventTime(ev corev1.Event) time.Time {
	switch {
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	}
	return ev.CreationTimestamp.Time
}

// nodeMAC is "n2 (02:...)", or name alone for a stranger.
func (k *kubeDemo) nodeMAC(name string) string {
	if mac := k.lab.NodeMAC(name); mac != "" {
		return name + " (" + mac + ")"
	}
	if name == "" {
		return "nobody"
	}
	return name
}

// serviceYAML is the Service as applied: what a manifest would say.
func serviceYAML(s *corev1.Service) map[string]any {
	var ports []any
	for _, p := range s.Spec.Ports {
		ports = append(ports, map[string]any{"name": p.Name, "port": p.Port, "protocol": string(p.Protocol), "targetPort": p.TargetPort.IntValue()})
	}
	spec := map[string]any{"type": string(s.Spec.Type), "selector": s.Spec.Selector, "ports": ports}
	if s.Spec.AllocateLoadBalancerNodePorts != nil {
		spec["allocateLoadBalancerNodePorts"] = *s.Spec.AllocateLoadBalancerNodePorts
	}
	return map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": s.Name, "namespace": s.Namespace, "annotations": s.Annotations},
		"spec":     spec,
	}
}

func printYAML(v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Errorf("YAML: %w", err)
	}
	fmt.Print(indent(string(b)))
	return nil
}

// showSections keeps the TOML sections named.
func showSections(cfg string, names ...string) string {
	var out []string
	keep := false
	for _, line := range strings.Split(cfg, "\n") {
		if strings.HasPrefix(line, "[") {
			keep = slices.Contains(names, line)
		}
		if keep && line != "" {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

// binVersion runs bin with the flag and returns the version in its first
// line of output: the first word that starts with a digit or "v<digit>".
func binVersion(bin, flag string) string {
	out, err := exec.Command(bin, flag).CombinedOutput()
	if err != nil {
		return "(" + err.Error() + ")"
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	for _, w := range strings.Fields(first) {
		if w[0] >= '0' && w[0] <= '9' || len(w) > 1 && w[0] == 'v' && w[1] >= '0' && w[1] <= '9' {
			return w
		}
	}
	return first
}

func table(cols ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 3, ' ', 0)
	row(tw, cols...)
	return tw
}

func row(tw *tabwriter.Writer, cells ...string) {
	fmt.Fprintln(tw, "    "+strings.Join(cells, "\t"))
}

func age(t time.Time) string {
	d := time.Since(t)
	if d < 2*time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	return fmt.Sprintf("%dm", int(d.Minutes()))
}

func sortedAddrs(ips []netip.Addr) []netip.Addr {
	out := slices.Clone(ips)
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
