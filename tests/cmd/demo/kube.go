package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/packaging/manifests"
	"github.com/hostlb/hostlb/tests/failover"
	"github.com/hostlb/hostlb/tests/kubeapi"
	"github.com/hostlb/hostlb/tests/kubelab"
	"github.com/hostlb/hostlb/tests/netlab"
)

// The Kubernetes demo's objects. The class's pool holds exactly the three
// IPs the Service asks for, so that the next Service can only get IPs that
// came back to the pool.
const (
	kubeNS      = "demo"
	kubeClass   = "l2-default"
	kubeApp     = "web"
	kubeService = "web"
	kubeNext    = "shop" // the Service created after web is deleted
	kubeCount   = 3
)

var kubePool = []string{"192.0.2.100-192.0.2.102"}

// kubeSettle bounds the waits for the control plane and the ring to reach
// a state (IPs in status, first owners); not a measured bound.
const kubeSettle = 30 * time.Second

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// runKube is the Kubernetes demo: a real control plane, hostlb's
// manifests, three hostlbd nodes in Kubernetes mode, and a LoadBalancer
// Service with three IPs followed from creation to deletion, with what
// the client saw.
func runKube(ctx context.Context, keep bool) error {
	if os.Geteuid() != 0 {
		return errors.New("the Kubernetes demo needs root (network namespaces): run `sudo make demo-kube`")
	}
	bins, err := kubeapi.Bins()
	if err != nil {
		return fmt.Errorf("the Kubernetes demo: %w", err)
	}
	for _, tool := range []string{"ip", "arping", "ndisc6"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s (make deps installs it): %w", tool, err)
		}
	}
	defer kubelab.RemoveBinaries()
	began := time.Now()
	logf := func(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }
	return failover.RunEnv(logf, func(e *failover.Env) error {
		tmp := e.TempDir()
		labLog, err := os.Create(filepath.Join(tmp, "kubelab.log"))
		if err != nil {
			return err
		}
		e.Cleanup(func() { labLog.Close() })

		heading("Kubernetes: starting etcd, kube-apiserver and kube-controller-manager, then 3 hostlbd nodes")
		logf("(the lab builds hostlbd and hostlbctl from this tree; its progress goes to %s)", labLog.Name())
		lab := kubelab.New(e, kubelab.Options{Dir: filepath.Join(tmp, "lab"), Log: labLog})
		e.Cleanup(func() {
			heading("Cleaning up: hostlbd, kube-controller-manager, kube-apiserver and etcd stopped by PID, namespaces deleted")
		})
		logf("control plane, manifests and 3 nodes ready after %v", time.Since(began).Round(100*time.Millisecond))
		// The binary the lab built (netlab builds it once per process).
		k := &kubeDemo{lab: lab, logf: logf, hostlbd: netlab.Hostlbd(e)}
		err = k.run(ctx, bins)
		if err != nil {
			lab.DumpLogs(e, 30)
		}
		if err == nil {
			heading("Summary")
			k.summary()
			logf("logs of the nodes and the control plane: %s (removed at the end; -keep keeps the lab)", filepath.Join(tmp, "lab"))
			logf("the Kubernetes demo took %v", time.Since(began).Round(100*time.Millisecond))
		}
		if err == nil && keep {
			heading("The lab keeps running; press Ctrl-C to remove it")
			logf("e.g.: ip netns exec %s arping -c 3 -i eth0 %s", lab.Client.Name, k.ips[0])
			logf("      ip netns exec %s kubectl --kubeconfig %s get svc -A   (with a kubectl of your own)",
				lab.API.Name, lab.Cluster.AdminKubeconfig())
			<-ctx.Done()
		}
		return err
	})
}

// kubeDemo is the state the Kubernetes demo's steps pass on.
type kubeDemo struct {
	lab     *kubelab.Lab
	logf    func(format string, args ...any)
	hostlbd string // the binary the nodes run

	ips    []netip.Addr          // web's IPs
	owners map[netip.Addr]string // their first owners

	// Measurements for the summary.
	victim, heir string
	failover     time.Duration
	silent       time.Duration // the last answer for web's IPs after its delete
	reused       bool
	reanswer     time.Duration // the next Service's create to its last IP's first answer
}

func (k *kubeDemo) run(ctx context.Context, bins string) error {
	steps := []func() error{
		func() error { return k.controlPlane(bins) },
		k.apply,
		k.status,
		k.whoAnswers,
		k.crash,
		k.restart,
		k.delete,
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// controlPlane shows what runs: versions, the manifests, the nodes.
func (k *kubeDemo) controlPlane(bins string) error {
	lab := k.lab
	ctx, cancel := context.WithTimeout(context.Background(), kubeSettle)
	defer cancel()
	// make kube-bins builds from the pin without version stamps: the
	// apiserver's /version says v0.0.0-master, so the pin is the version.
	k.logf("%-24s %-10s %s", "kube-apiserver", kubeapi.Version, "at "+lab.Cluster.URL()+" (namespace "+lab.API.Name+"), with etcd "+
		binVersion(filepath.Join(bins, "etcd"), "--version"))
	k.logf("%-24s %-10s %s", "kube-controller-manager", kubeapi.Version, "the EndpointSlice controller only (no kubelet, scheduler or kube-proxy)")
	k.logf("%-24s %-10s %s", "hostlbd", binVersion(k.hostlbd, "--version"), "one per node namespace (n1, n2, n3); the client has its own")

	heading("Manifests applied (packaging/manifests, as shipped in /usr/share/hostlb/manifests)")
	crds, err := lab.Dynamic().Resource(crdGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list CRDs: %w", err)
	}
	for _, c := range crds.Items {
		est := "not Established"
		conds, _, _ := unstructured.NestedSlice(c.Object, "status", "conditions")
		for _, cond := range conds {
			if m, ok := cond.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
				est = "Established"
			}
		}
		k.logf("%-52s %s", "CustomResourceDefinition "+c.GetName(), est)
	}
	objs, err := manifests.Objects()
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			continue
		}
		name := o.GetName()
		if o.GetNamespace() != "" {
			name = o.GetNamespace() + "/" + name
		}
		k.logf("%s %s", o.GetKind(), name)
	}

	heading("Three nodes: a Node object each, hostlbd in Kubernetes mode, one gossip ring")
	k.logf("# n1's hostlb.toml: [node] name is its Node's; no [gossip] join list, the Nodes' InternalIPs are the seeds")
	cfg, err := os.ReadFile(filepath.Join(filepath.Dir(lab.Nodes()[0].LogPath()), "hostlb.toml"))
	if err != nil {
		return err
	}
	fmt.Print(indent(showSections(string(cfg), "[node]", "[gossip]", "[kubernetes]", "[l2]")))
	nodes, err := lab.Admin().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list Nodes: %w", err)
	}
	tw := table("NODE", "STATUS", "INTERNAL-IP", "MAC", "HOSTLBD")
	for _, n := range nodes.Items {
		status := "NotReady"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				status = "Ready"
			}
		}
		var ips []string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ips = append(ips, a.Address)
			}
		}
		ln := lab.Node(n.Name)
		row(tw, n.Name, status, strings.Join(ips, ","), ln.MAC.String(), fmt.Sprintf("pid %d, joined the ring", ln.PID()))
	}
	return tw.Flush()
}

// apply creates the class, three Ready Pods and the Service.
func (k *kubeDemo) apply() error {
	lab := k.lab
	heading("A MetalLoadBalancerClass, three Ready Pods, a Service asking for 3 IPs")
	if err := lab.Class(kubeClass, kubePool, true, nil); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), kubeSettle)
	defer cancel()
	mlbc, err := lab.Dynamic().Resource(kube.ClassGVR).Get(ctx, kubeClass, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get MetalLoadBalancerClass: %w", err)
	}
	if err := printYAML(map[string]any{
		"apiVersion": mlbc.GetAPIVersion(), "kind": mlbc.GetKind(),
		"metadata": map[string]any{"name": mlbc.GetName()}, "spec": mlbc.Object["spec"],
	}); err != nil {
		return err
	}

	if _, err := lab.Pods(kubeNS, kubeApp, "n1", "n2", "n3"); err != nil {
		return err
	}
	pods, err := lab.Admin().CoreV1().Pods(kubeNS).List(ctx, metav1.ListOptions{LabelSelector: "app=" + kubeApp})
	if err != nil {
		return fmt.Errorf("list Pods: %w", err)
	}
	fmt.Println()
	k.logf("# Pods (no kubelet: the demo writes their status Running and Ready, as a kubelet would)")
	tw := table("NAME", "READY", "STATUS", "IP", "NODE")
	for _, p := range pods.Items {
		ready := "0/1"
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = "1/1"
			}
		}
		row(tw, p.Name, ready, string(p.Status.Phase), p.Status.PodIP, p.Spec.NodeName)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if _, err := lab.Service(kubeNS, kubeService, kubeApp, kubelab.IPsCount(kubeCount)); err != nil {
		return err
	}
	svc, err := lab.GetService(kubeNS, kubeService)
	if err != nil {
		return err
	}
	fmt.Println()
	if err := printYAML(serviceYAML(svc)); err != nil {
		return err
	}
	// The EndpointSlice comes from the real controller, not from the demo.
	var eps []string
	err = lab.Poll(kubeSettle, func() error {
		list, err := lab.Admin().DiscoveryV1().EndpointSlices(kubeNS).List(ctx,
			metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + kubeService})
		if err != nil {
			return err
		}
		eps = eps[:0]
		for _, s := range list.Items {
			for _, ep := range s.Endpoints {
				if ep.NodeName != nil && len(ep.Addresses) > 0 && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
					eps = append(eps, ep.Addresses[0]+" on "+*ep.NodeName)
				}
			}
		}
		if len(eps) != 3 {
			return fmt.Errorf("ready endpoints %v", eps)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("EndpointSlice of %s: %w", kubeService, err)
	}
	slices.Sort(eps)
	fmt.Println()
	k.logf("EndpointSlice (written by kube-controller-manager): ready endpoints %s", strings.Join(eps, ", "))
	return nil
}

// status shows the Service as kubectl would: the table, the condition,
// the Events.
func (k *kubeDemo) status() error {
	lab := k.lab
	heading("The Service's status: `kubectl get svc`, its condition, its Events")
	ips, err := lab.WaitIPs(kubeNS, kubeService, kubeCount, kubeSettle)
	if err != nil {
		return err
	}
	k.ips = ips
	if err := k.getSvc(kubeService); err != nil {
		return err
	}
	svc, err := lab.GetService(kubeNS, kubeService)
	if err != nil {
		return err
	}
	fmt.Println()
	for _, c := range svc.Status.Conditions {
		if c.Type == kube.ConditionAllAssigned {
			k.logf("condition %s=%s  reason %s: %s", c.Type, c.Status, c.Reason, c.Message)
		}
	}
	// Each IP's owner sends one Announcing Event; wait for the three.
	var evs []corev1.Event
	err = lab.Poll(kubeSettle, func() error {
		var err error
		if evs, err = k.events(kubeService); err != nil {
			return err
		}
		for _, ip := range ips {
			if !slices.ContainsFunc(evs, func(ev corev1.Event) bool {
				return ev.Reason == kube.EventAnnouncing && strings.Contains(ev.Message, ip.String())
			}) {
				return fmt.Errorf("no Announcing Event for %s yet", ip)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Println()
	return k.showEvents(evs)
}

// whoAnswers asks, from the client, who answers each IP.
func (k *kubeDemo) whoAnswers() error {
	heading("Who answers each IP? (arping from the client)")
	p, err := k.lab.NewProber()
	if err != nil {
		return err
	}
	defer p.Close()
	owners, err := k.waitOwners(p, k.ips, true)
	if err != nil {
		return err
	}
	k.owners = owners
	return k.showArping(k.ips, owners)
}

// crash kills the owner of the first IP and measures the failover from
// the client.
func (k *kubeDemo) crash() error {
	lab := k.lab
	ip := k.ips[0]
	victim := k.owners[ip]
	heading(fmt.Sprintf("Crash: %s, the owner of %s, loses its link and gets kill -9", victim, ip))
	k.logf("the client sends a raw ARP request for each IP every 10 ms")
	p, err := lab.NewProber()
	if err != nil {
		return err
	}
	defer p.Close()
	p.Start(10*time.Millisecond, k.ips...)
	if _, err := p.WaitReply(ip, time.Now(), 5*time.Second, func(r kubelab.Reply) bool { return r.Node == victim }); err != nil {
		return err
	}
	t0, err := lab.KillNode(victim)
	if err != nil {
		return err
	}
	r, err := p.WaitReply(ip, t0, 10*time.Second, func(r kubelab.Reply) bool { return r.Node != "" && r.Node != victim })
	if err != nil {
		return err
	}
	k.victim, k.heir, k.failover = victim, r.Node, r.At.Sub(t0)
	lastOld := t0
	if rs := p.Replies(ip, t0.Add(-time.Second), t0); len(rs) > 0 {
		lastOld = rs[len(rs)-1].At
	}
	k.logf("fault at t=0; last ARP reply from %s at %s, first from %s at %s",
		victim, ms(lastOld.Sub(t0)), r.Node, ms(r.At.Sub(t0)))
	k.logf("=> the client saw no owner for %v (target: under 1 s)", k.failover.Round(time.Millisecond))
	// Half a second more, so that the other IPs' replies cover the crash.
	if err := k.observe(r.At.Add(500 * time.Millisecond)); err != nil {
		return err
	}
	for _, other := range k.ips[1:] {
		moved := slices.ContainsFunc(p.Replies(other, t0, time.Time{}), func(rr kubelab.Reply) bool { return rr.Node != k.owners[other] })
		gap := p.MaxGap(other, t0, time.Now())
		what := fmt.Sprintf("kept its owner %s, longest silence %v", k.owners[other], gap.Round(time.Millisecond))
		if moved {
			what = "<- changed owner although " + k.owners[other] + " is alive!"
		}
		k.logf("%-13s %s", other, what)
	}
	msg, err := lab.WaitEvent(kubeNS, kubeService, kube.EventAnnouncing, 10*time.Second, "node "+r.Node+" ", ip.String())
	if err != nil {
		return err
	}
	k.logf("Event Announcing from the new owner: %s", msg)
	k.owners[ip] = r.Node
	return nil
}

// restart brings the crashed node back: it rejoins, and takes back the IP
// the placement prefers it for, without two owners at once.
func (k *kubeDemo) restart() error {
	lab := k.lab
	ip := k.ips[0]
	heading(fmt.Sprintf("Restart: %s comes back (link up, hostlbd started) and rejoins", k.victim))
	p, err := lab.NewProber()
	if err != nil {
		return err
	}
	defer p.Close()
	p.Start(10*time.Millisecond, k.ips...)
	t0 := time.Now()
	if err := lab.RestoreNode(k.victim); err != nil {
		return err
	}
	k.logf("hostlbd on %s ready (READY=1) after %v", k.victim, time.Since(t0).Round(time.Millisecond))
	back, err := p.WaitReply(ip, t0, 10*time.Second, func(r kubelab.Reply) bool { return r.Node == k.victim })
	if err != nil {
		k.logf("%s did not take %s back within 10 s: %s keeps it", k.victim, ip, k.heir)
	} else {
		if err := k.observe(back.At.Add(500 * time.Millisecond)); err != nil {
			return err
		}
		lastHeir := t0
		if rs := slices.DeleteFunc(p.Replies(ip, t0, time.Time{}), func(r kubelab.Reply) bool { return r.Node != k.heir }); len(rs) > 0 {
			lastHeir = rs[len(rs)-1].At
		}
		k.logf("%s took %s back from %s %v after its restart began (the placement prefers %s for it)",
			k.victim, ip, k.heir, back.At.Sub(t0).Round(time.Millisecond), k.victim)
		if lastHeir.After(back.At) {
			k.logf("(%s and %s both answered for %v while handing over)", k.heir, k.victim, lastHeir.Sub(back.At).Round(time.Millisecond))
		} else {
			k.logf("hand-over: %s's last reply came %v before %s's first; never two owners at once",
				k.heir, back.At.Sub(lastHeir).Round(time.Millisecond), k.victim)
		}
		k.owners[ip] = k.victim
	}
	for _, other := range k.ips[1:] {
		if slices.ContainsFunc(p.Replies(other, t0, time.Time{}), func(r kubelab.Reply) bool { return r.Node != k.owners[other] }) {
			k.logf("%-13s <- another node than %s answered during the restart!", other, k.owners[other])
		}
	}
	owners, err := k.waitOwners(p, k.ips, true)
	if err != nil {
		return err
	}
	fmt.Println()
	return k.showArping(k.ips, owners)
}

// delete deletes the Service, measures how soon its IPs go silent, and
// shows the next Service get them.
func (k *kubeDemo) delete() error {
	lab := k.lab
	heading("Delete the Service: its IPs go silent and return to the pool")
	p, err := lab.NewProber()
	if err != nil {
		return err
	}
	defer p.Close()
	p.Start(10*time.Millisecond, k.ips...)
	for _, ip := range k.ips {
		if _, err := p.WaitReply(ip, time.Now(), 5*time.Second, func(r kubelab.Reply) bool { return r.Node != "" }); err != nil {
			return err
		}
	}
	t0 := time.Now()
	if err := lab.DeleteService(kubeNS, kubeService); err != nil {
		return err
	}
	// Silent: no reply for any IP during the last 500 ms.
	err = lab.Poll(10*time.Second, func() error {
		for _, ip := range k.ips {
			if rs := p.Replies(ip, time.Now().Add(-500*time.Millisecond), time.Time{}); len(rs) > 0 {
				return fmt.Errorf("%s still answered by %s", ip, rs[len(rs)-1].Node)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("after deleting %s: %w", kubeService, err)
	}
	now, err := k.arpingAll(k.ips)
	if err != nil {
		return err
	}
	k.logf("the client sent a raw ARP request for each IP every 10 ms, then ran arping once the IPs were silent")
	for _, ip := range k.ips {
		last := "no reply after the delete"
		if rs := p.Replies(ip, t0, time.Time{}); len(rs) > 0 {
			d := rs[len(rs)-1].At.Sub(t0)
			k.silent = max(k.silent, d)
			last = fmt.Sprintf("last reply (from %s) %v after the delete", rs[len(rs)-1].Node, d.Round(time.Millisecond))
		}
		k.logf("%-13s %-45s arping: %s", ip, last, k.nodeMAC(now[ip]))
	}

	fmt.Println()
	k.logf("# a new Service %s, count 3, same class: the pool %s holds only the 3 IPs %s had", kubeNext, kubePool[0], kubeService)
	t1 := time.Now()
	if _, err := lab.Service(kubeNS, kubeNext, kubeApp, kubelab.IPsCount(kubeCount)); err != nil {
		return err
	}
	got, err := lab.WaitIPs(kubeNS, kubeNext, kubeCount, kubeSettle)
	if err != nil {
		return err
	}
	if err := k.getSvc(kubeNext); err != nil {
		return err
	}
	k.reused = slices.Equal(sortedAddrs(got), sortedAddrs(k.ips))
	verdict := "the same IPs as " + kubeService + ": they went back to the pool"
	if !k.reused {
		verdict = fmt.Sprintf("<- not %s's IPs %v!", kubeService, k.ips)
	}
	k.logf("%s: %s", kubeNext, verdict)
	fmt.Println()
	owners, err := k.waitOwners(p, got, true)
	if err != nil {
		return err
	}
	for _, ip := range got {
		if rs := p.Replies(ip, t1, time.Time{}); len(rs) > 0 {
			k.reanswer = max(k.reanswer, rs[0].At.Sub(t1))
		}
	}
	k.logf("%s's IPs all answered %v after its create (raw ARP requests every 10 ms)", kubeNext, k.reanswer.Round(time.Millisecond))
	return k.showArping(got, owners)
}

func (k *kubeDemo) summary() {
	var ips []string
	for _, ip := range k.ips {
		ips = append(ips, ip.String())
	}
	k.logf("Service %s/%s, class %s (pool %s): IPs %s, one per node", kubeNS, kubeService, kubeClass, kubePool[0], strings.Join(ips, ", "))
	k.logf("kill -9 of %s: %s answered %s after %v (target: under 1 s)", k.victim, k.heir, k.ips[0], k.failover.Round(time.Millisecond))
	k.logf("Service deleted: all its IPs silent after %v (target: under 1 s)", k.silent.Round(time.Millisecond))
	if k.reused {
		k.logf("the next Service got the same 3 IPs from the pool, all answered %v after its create", k.reanswer.Round(time.Millisecond))
	}
	k.logf("the lab tests (`make test-root`, tests/kubelab) check this and more: IPv6, ETP Local, excluded Nodes, an API-server outage")
}

// waitOwners waits until a raw ARP request for each IP is answered by
// exactly one node, a different one for each IP if distinct, and returns
// the owners.
func (k *kubeDemo) waitOwners(p *kubelab.Prober, ips []netip.Addr, distinct bool) (map[netip.Addr]string, error) {
	owners := map[netip.Addr]string{}
	err := k.lab.Poll(kubeSettle, func() error {
		seen := map[string]bool{}
		for _, ip := range ips {
			who, err := p.Who(ip, 100*time.Millisecond)
			if err != nil {
				return err
			}
			if len(who) != 1 || (distinct && seen[who[0]]) {
				return fmt.Errorf("%s answered by %v, others by %v", ip, who, owners)
			}
			owners[ip] = who[0]
			seen[who[0]] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%v answered by one node each: %w", ips, err)
	}
	return owners, nil
}

// arpingAll runs arping (kubelab.WhoAnswersNode) for each IP at once,
// since each one takes a second.
func (k *kubeDemo) arpingAll(ips []netip.Addr) (map[netip.Addr]string, error) {
	who := make([]string, len(ips))
	errs := make([]error, len(ips))
	var wg sync.WaitGroup
	for i, ip := range ips {
		wg.Go(func() { who[i], errs[i] = k.lab.WhoAnswersNode(ip) })
	}
	wg.Wait()
	out := map[netip.Addr]string{}
	for i, ip := range ips {
		out[ip] = who[i]
	}
	return out, errors.Join(errs...)
}

// showArping prints who answers each IP for arping, and checks it against
// owners (every node that answered a raw ARP request).
func (k *kubeDemo) showArping(ips []netip.Addr, owners map[netip.Addr]string) error {
	got, err := k.arpingAll(ips)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		note := ""
		if got[ip] != owners[ip] {
			note = "   <- a raw ARP request was answered by " + k.nodeMAC(owners[ip]) + "!"
		}
		k.logf("%-13s answered by %s%s", ip, k.nodeMAC(got[ip]), note)
	}
	k.logf("(and by no other node: a raw ARP request for each IP drew replies from that one MAC only)")
	return nil
}

// observe returns at until: the end of a measurement window while a
// prober records, not a wait for an event.
func (k *kubeDemo) observe(until time.Time) error {
	return k.lab.Poll(time.Until(until)+time.Second, func() error {
		if time.Now().Before(until) {
			return errors.New("window open")
		}
		return nil
	})
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%+d ms", d.Round(time.Millisecond).Milliseconds())
}
