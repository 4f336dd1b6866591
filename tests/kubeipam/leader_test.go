package kubeipam

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/hostlb/hostlb/daemon/kube"
)

// TestLeaderChange runs two hostlbd processes; in the middle of a burst of
// 200 Service creates and deletes the IPAM leader is killed with SIGKILL.
// The other must take the Lease over and give every Service its IP, and no
// IP may be in two Services' status at any moment: a watch sees every
// status write in the order etcd committed them, and the check runs after
// each one.
func TestLeaderChange(t *testing.T) {
	c := startCluster(t)
	e := &env{c: c, admin: c.Admin()}
	ctx := context.Background()
	dir := t.TempDir()
	kc := kubeconfigFor(t, c, dir)
	const ns = "burst"
	e.namespace(t, ns)
	// A /25: 128 addresses for up to 150 live Services, so the pool runs
	// out and IPs freed by deletes are handed out again under contention.
	e.class(t, "burst", []string{"203.0.113.0/25"}, true, nil)

	// The watch starts before any Service exists.
	w, err := e.admin.CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	checker := newDupChecker()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*corev1.Service)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted {
				checker.remove(s.Name)
				continue
			}
			checker.set(s.Name, ips(s))
		}
	}()

	a := startHostlbd(t, "node-a", kc, "")
	b := startHostlbd(t, "node-b", kc, "")
	daemons := map[string]*hostlbd{"node-a": a, "node-b": b}
	var leader string
	waitFor(t, 60*time.Second, "an IPAM leader", func() error {
		l, err := e.admin.CoordinationV1().Leases("kube-system").Get(ctx, kube.LeaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return fmt.Errorf("no holder")
		}
		leader = *l.Spec.HolderIdentity
		return nil
	})
	t.Logf("leader: %s", leader)

	// The burst: 200 creates; every fourth Service created is deleted
	// again a little later; the leader is killed after the 100th create.
	var (
		live    []string
		deleted int
	)
	killedAt := time.Time{}
	for i := range 200 {
		name := fmt.Sprintf("s%03d", i)
		f := false
		_, err := e.admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: &f,
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80)}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		live = append(live, name)
		if i%4 == 3 {
			victim := live[len(live)-3]
			if err := e.admin.CoreV1().Services(ns).Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			live = slices.DeleteFunc(live, func(s string) bool { return s == victim })
			deleted++
		}
		if i == 100 {
			daemons[leader].stop(syscall.SIGKILL)
			killedAt = time.Now()
			t.Logf("killed the leader %s (SIGKILL) after %d creates", leader, i+1)
		}
	}
	survivor := "node-a"
	if leader == "node-a" {
		survivor = "node-b"
	}

	// Every live Service ends with an IP, or is refused because the pool
	// is full, and exactly the pool's size is in use.
	waitFor(t, 90*time.Second, "every Service decided", func() error {
		list, err := e.admin.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		with, pending := 0, 0
		for i := range list.Items {
			s := &list.Items[i]
			switch c := apimeta.FindStatusCondition(s.Status.Conditions, kube.ConditionAllAssigned); {
			case c == nil:
				pending++
			case c.Status == metav1.ConditionTrue:
				with++
			}
		}
		want := min(len(list.Items), 128)
		if pending > 0 || with != want {
			return fmt.Errorf("%d Services: %d with an IP (want %d), %d without a decision", len(list.Items), with, want, pending)
		}
		return nil
	})
	l, err := e.admin.CoordinationV1().Leases("kube-system").Get(ctx, kube.LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := l.Spec.HolderIdentity; h == nil || *h != survivor {
		t.Errorf("lease holder after the kill: %v, want %s", l.Spec.HolderIdentity, survivor)
	}
	t.Logf("%d Services created, %d deleted, leader killed at %s; survivor %s took over",
		200, deleted, killedAt.Format(time.TimeOnly), survivor)

	// Free IPs by deleting Services: the Services left without one get them.
	list, err := e.admin.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Items[:min(40, len(list.Items))] {
		if err := e.admin.CoreV1().Services(ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 60*time.Second, "every remaining Service to have its IP", func() error {
		list, err := e.admin.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var without []string
		for _, s := range list.Items {
			if len(ips(&s)) != 1 {
				without = append(without, s.Name)
			}
		}
		if len(list.Items) > 128 {
			return fmt.Errorf("%d Services for 128 addresses", len(list.Items))
		}
		if len(without) > 0 {
			return fmt.Errorf("without an IP: %s", strings.Join(without, ","))
		}
		return nil
	})
	w.Stop()
	<-watchDone
	if d := checker.violations(); len(d) > 0 {
		t.Errorf("an IP was in two Services' status at once, %d times; first: %s", len(d), d[0])
	}
	if checker.events() < 200 {
		t.Errorf("the watch saw only %d events", checker.events())
	}
}

// dupChecker follows the Services' status IPs, one watch event at a
// time, and records every moment an IP is held by two Services.
type dupChecker struct {
	mu     sync.Mutex
	held   map[string][]netip.Addr // Service -> its IPs
	owner  map[netip.Addr]string
	seen   int
	broken []string
}

func newDupChecker() *dupChecker {
	return &dupChecker{held: map[string][]netip.Addr{}, owner: map[netip.Addr]string{}}
}

func (d *dupChecker) set(name string, ss []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen++
	d.removeLocked(name)
	for _, s := range ss {
		a := netip.MustParseAddr(s)
		if o, ok := d.owner[a]; ok && o != name {
			d.broken = append(d.broken, fmt.Sprintf("%s in %s and %s (event %d)", a, o, name, d.seen))
			continue
		}
		d.owner[a] = name
		d.held[name] = append(d.held[name], a)
	}
}

func (d *dupChecker) remove(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen++
	d.removeLocked(name)
}

func (d *dupChecker) removeLocked(name string) {
	for _, a := range d.held[name] {
		if d.owner[a] == name {
			delete(d.owner, a)
		}
	}
	delete(d.held, name)
}

func (d *dupChecker) violations() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.broken)
}

func (d *dupChecker) events() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen
}
