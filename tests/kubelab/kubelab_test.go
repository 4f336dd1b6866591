package kubelab_test

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/tests/kubelab"
)

var flagDir = flag.String("kubelab.dir", "", "keep the lab's `directory` (hostlbd logs, control plane) here instead of a temporary one")

func TestMain(m *testing.M) {
	code := m.Run()
	kubelab.RemoveBinaries()
	os.Exit(code)
}

const (
	defaultClass = "lab-default"
	// takeoverBound is the acceptance bound of issue 8 for every "another
	// node answers within 1 s".
	takeoverBound = time.Second
	// probeEvery is the raw ARP prober's period: the resolution of the
	// measured times.
	probeEvery = 10 * time.Millisecond
	// settle bounds waits for a state that involves the control plane
	// (IPs in status, first owners): not a measured bound.
	settle = 30 * time.Second
)

// TestKubernetesL2 is the lab acceptance of issue 8: one lab (a real
// control plane and three hostlbd nodes, plus a spare namespace for a
// fourth), shared by subtests that each create and delete their own
// objects. The destructive ones (a node without Node, a crash, the
// apiserver outage) run last and restore the lab.
func TestKubernetesL2(t *testing.T) {
	lab := kubelab.New(t, kubelab.Options{Spare: 1, Dir: *flagDir})
	must(t, lab.Class(defaultClass, []string{"192.0.2.100-192.0.2.120"}, true, nil))
	t.Cleanup(func() { _ = lab.DeleteClass(defaultClass) })

	t.Run("CountThreeAnsweredByThreeNodes", func(t *testing.T) { testCountThree(t, lab) })
	t.Run("IPv6CountThreeAnsweredByThreeNodes", func(t *testing.T) { testIPv6(t, lab) })
	t.Run("ETPLocalFollowsThePod", func(t *testing.T) { testETPLocal(t, lab) })
	t.Run("NoReadyEndpointNobodyAnswers", func(t *testing.T) { testScaleToZero(t, lab) })
	t.Run("ExcludedNodeHandsOverOnlyItsIPs", func(t *testing.T) { testExclude(t, lab) })
	t.Run("DeletedServiceSilentAndIPsReused", func(t *testing.T) { testDelete(t, lab) })
	t.Run("NodeWithoutNodeObjectServesOnceItExists", func(t *testing.T) { testMissingNode(t, lab) })
	t.Run("CrashedOwnerFailsOverWithinOneSecond", func(t *testing.T) { testKill(t, lab) })
	t.Run("APIServerOutageKeepsAndFailsOver", func(t *testing.T) { testOutage(t, lab) })
}

// testCountThree: the default class, count 3, three ready Pods: three IPs
// in status, each answered (ARP, from the client) by exactly one node, by
// three distinct nodes, and an Announcing Event names each owner.
func testCountThree(t *testing.T, lab *kubelab.Lab) {
	ns := namespace(t, lab, "t-count")
	_, err := lab.Pods(ns, "web", "n1", "n2", "n3")
	must(t, err)
	_, err = lab.Service(ns, "web", "web", kubelab.IPsCount(3))
	must(t, err)
	ips, err := lab.WaitIPs(ns, "web", 3, settle)
	must(t, err)
	for _, ip := range ips {
		if !inRange(ip, "192.0.2.100", "192.0.2.120") {
			t.Errorf("IP %s is not from the default class's pool 192.0.2.100-192.0.2.120", ip)
		}
	}
	owners := waitDistinctOwners(t, lab, ips)
	t.Logf("owners: %v", owners)

	p := prober(t, lab)
	for _, ip := range ips {
		who, err := p.Who(ip, 300*time.Millisecond)
		must(t, err)
		if len(who) != 1 || who[0] != owners[ip] {
			t.Errorf("%s answered by %v, want only %s", ip, who, owners[ip])
		}
	}
	for _, ip := range ips {
		msg, err := lab.WaitEvent(ns, "web", kube.EventAnnouncing, 10*time.Second, "node "+owners[ip]+" ", ip.String())
		if err != nil {
			t.Error(err)
			continue
		}
		t.Logf("Event Announcing: %s", msg)
	}
}

// testIPv6: an IPv6 class and a single-stack IPv6 Service with count 3:
// three IPv6 IPs answered (NDP, ndisc6 from the client) by three distinct
// nodes.
func testIPv6(t *testing.T, lab *kubelab.Lab) {
	const class = "lab-v6"
	must(t, lab.Class(class, []string{"2001:db8::100-2001:db8::120"}, false, nil))
	t.Cleanup(func() { _ = lab.DeleteClass(class) })
	ns := namespace(t, lab, "t-v6")
	_, err := lab.Pods(ns, "web6", "n1", "n2", "n3")
	must(t, err)
	_, err = lab.Service(ns, "web6", "web6", kubelab.IPsCount(3), kubelab.IPv6Only(), kubelab.LoadBalancerClass(class))
	must(t, err)
	ips, err := lab.WaitIPs(ns, "web6", 3, settle)
	must(t, err)
	for _, ip := range ips {
		if !inRange(ip, "2001:db8::100", "2001:db8::120") {
			t.Errorf("IP %s is not from the class's pool 2001:db8::100-2001:db8::120", ip)
		}
	}
	owners := waitDistinctOwners(t, lab, ips)
	t.Logf("owners (NDP): %v", owners)
	msg, err := lab.WaitEvent(ns, "web6", kube.EventAnnouncing, 10*time.Second, "node "+owners[ips[0]]+" ", ips[0].String(), "NDP")
	must(t, err)
	t.Logf("Event Announcing: %s", msg)
}

// testETPLocal: externalTrafficPolicy Local with the only ready Pod on n2:
// n2 answers. The Pod "moves" to n3 (deleted, a new one created there and
// made Ready): n3 answers within 1 s of the EndpointSlice showing it.
func testETPLocal(t *testing.T, lab *kubelab.Lab) {
	ns := namespace(t, lab, "t-etp")
	pods, err := lab.Pods(ns, "local", "n2")
	must(t, err)
	_, err = lab.Service(ns, "local", "local", kubelab.ETPLocal())
	must(t, err)
	ips, err := lab.WaitIPs(ns, "local", 1, settle)
	must(t, err)
	ip := ips[0]
	waitOwner(t, lab, ip, "n2", settle)

	p := prober(t, lab)
	sw, err := lab.WatchSlices(ns, "local")
	must(t, err)
	defer sw.Stop()
	p.Start(probeEvery, ip)
	t0 := time.Now()
	_, err = lab.MovePod(ns, pods[0], "n3")
	must(t, err)
	st, err := sw.WaitReady(settle, func(ready []string) bool { return slices.Equal(ready, []string{"n3"}) })
	must(t, err)
	r, err := p.WaitReply(ip, t0, settle, func(r kubelab.Reply) bool { return r.Node == "n3" })
	must(t, err)
	d := r.At.Sub(st.At)
	t.Logf("ETP Local move: EndpointSlice ready on n3 %v after the move began; n3 answered %s %v after that",
		st.At.Sub(t0).Round(time.Millisecond), ip, d.Round(time.Millisecond))
	t.Logf("MEASURE etp_move_ms=%d", d.Milliseconds())
	if d > takeoverBound {
		t.Errorf("n3 answered %v after the EndpointSlice showed its endpoint ready, want ≤ %v", d, takeoverBound)
	}
	for _, s := range sw.States() {
		t.Logf("  EndpointSlice state at +%v: ready on %v", s.At.Sub(t0).Round(time.Millisecond), s.Ready)
	}
	// n2 no longer answers.
	waitOwner(t, lab, ip, "n3", 5*time.Second)
	if late := p.Replies(ip, r.At.Add(100*time.Millisecond), time.Time{}); slices.ContainsFunc(late, func(r kubelab.Reply) bool { return r.Node != "n3" }) {
		t.Errorf("another node than n3 still answered after the move: %v", late)
	}
}

// testScaleToZero: with no ready endpoint, nobody answers the Service's
// IPs (and they stay its IPs): first with its Pods NotReady, then with them
// deleted (scaled to zero). Ready again, or one Pod back, they are answered
// again.
func testScaleToZero(t *testing.T, lab *kubelab.Lab) {
	ns := namespace(t, lab, "t-zero")
	_, err := lab.Pods(ns, "zero", "n1", "n2", "n3")
	must(t, err)
	_, err = lab.Service(ns, "zero", "zero", kubelab.IPsCount(3))
	must(t, err)
	ips, err := lab.WaitIPs(ns, "zero", 3, settle)
	must(t, err)
	waitDistinctOwners(t, lab, ips)
	p := prober(t, lab)
	p.Start(20*time.Millisecond, ips...)
	sw, err := lab.WatchSlices(ns, "zero")
	must(t, err)
	defer sw.Stop()

	t0 := time.Now()
	must(t, lab.SetPodsReady(ns, "zero", false))
	waitSilent(t, lab, p, sw, ips, t0, "every Pod NotReady")
	must(t, lab.SetPodsReady(ns, "zero", true))
	waitDistinctOwners(t, lab, ips)

	t0 = time.Now()
	must(t, lab.DeletePods(ns, "zero"))
	waitSilent(t, lab, p, sw, ips, t0, "the Pods deleted")
	for _, ip := range ips {
		if mac, err := lab.WhoAnswers(ip); err != nil || mac != "" {
			t.Errorf("%s with no ready endpoint: answered by %q (%v), want nobody", ip, mac, err)
		}
	}
	got, err := lab.WaitIPs(ns, "zero", 3, 5*time.Second)
	must(t, err)
	if !slices.Equal(got, ips) {
		t.Errorf("IPs changed with the Pods gone: %v, then %v", ips, got)
	}

	// One ready Pod again (ETP Cluster): every IP answered.
	_, err = lab.Pods(ns, "zero", "n1")
	must(t, err)
	waitDistinctOwners(t, lab, ips)
}

// waitSilent waits until none of ips has been answered for a second, and
// checks that each went silent within 1 s of the EndpointSlices showing no
// endpoint kube-proxy would send traffic to: none ready, and none serving
// while it terminates (the controller may take a second or more after the
// change at t0: it retries with a backoff when its cache lags, and a
// deleted Pod's endpoint may show as terminating first).
func waitSilent(t *testing.T, lab *kubelab.Lab, p *kubelab.Prober, sw *kubelab.SliceWatch, ips []netip.Addr, t0 time.Time, why string) {
	t.Helper()
	err := lab.Poll(settle, func() error {
		for _, ip := range ips {
			if rs := p.Replies(ip, time.Now().Add(-time.Second), time.Time{}); len(rs) > 0 {
				return fmt.Errorf("%s answered by %s in the last second", ip, rs[len(rs)-1].Node)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("silence with %s: %v", why, err)
	}
	var empty time.Time
	for _, st := range sw.States() {
		if !st.At.Before(t0) && !st.Usable {
			empty = st.At
			break
		}
	}
	if empty.IsZero() {
		t.Fatalf("silent with %s, but the EndpointSlices never showed no usable endpoint: %v", why, sw.States())
	}
	for _, ip := range ips {
		last := empty
		if rs := p.Replies(ip, empty, time.Time{}); len(rs) > 0 {
			last = rs[len(rs)-1].At
		}
		d := last.Sub(empty)
		t.Logf("%s: EndpointSlices without a usable endpoint %v after %s; last answer %v after that", ip,
			empty.Sub(t0).Round(time.Millisecond), why, d.Round(time.Millisecond))
		if d > takeoverBound {
			t.Errorf("%s still answered %v after its Service lost its last usable endpoint", ip, d)
		}
	}
}

// testExclude: the owner of a Service's first IP gets the label
// node.kubernetes.io/exclude-from-external-load-balancers: that IP moves
// to another node, the Service's other IPs keep their owners.
func testExclude(t *testing.T, lab *kubelab.Lab) {
	ns := namespace(t, lab, "t-exclude")
	_, err := lab.Pods(ns, "ex", "n1", "n2", "n3")
	must(t, err)
	_, err = lab.Service(ns, "ex", "ex", kubelab.IPsCount(3))
	must(t, err)
	ips, err := lab.WaitIPs(ns, "ex", 3, settle)
	must(t, err)
	before := waitDistinctOwners(t, lab, ips)
	victim := before[ips[0]]

	p := prober(t, lab)
	p.Start(20*time.Millisecond, ips...)
	t0 := time.Now()
	empty := ""
	must(t, lab.LabelNode(victim, kube.LabelExcludeLB, &empty))
	t.Cleanup(func() { must(t, lab.LabelNode(victim, kube.LabelExcludeLB, nil)) })
	r, err := p.WaitReply(ips[0], t0, settle, func(r kubelab.Reply) bool { return r.Node != "" && r.Node != victim })
	must(t, err)
	t.Logf("%s moved from excluded %s to %s %v after the label", ips[0], victim, r.Node, r.At.Sub(t0).Round(time.Millisecond))

	// The victim goes quiet for its IP; nobody else moves.
	err = lab.Poll(5*time.Second, func() error {
		if rs := p.Replies(ips[0], time.Now().Add(-500*time.Millisecond), time.Time{}); slices.ContainsFunc(rs, func(r kubelab.Reply) bool { return r.Node == victim }) {
			return fmt.Errorf("%s still answered by the excluded %s", ips[0], victim)
		}
		return nil
	})
	must(t, err)
	after, err := lab.Owners(ips)
	must(t, err)
	t.Logf("owners before %v, after %v", before, after)
	for _, ip := range ips[1:] {
		if after[ip] != before[ip] {
			t.Errorf("%s moved from %s to %s: only the excluded node's IPs may move", ip, before[ip], after[ip])
		}
		for _, r := range p.Replies(ip, t0, time.Time{}) {
			if r.Node != before[ip] {
				t.Errorf("%s answered by %s at +%v, want only its owner %s", ip, r.Node, r.At.Sub(t0).Round(time.Millisecond), before[ip])
				break
			}
		}
	}
	if after[ips[0]] == victim || after[ips[0]] == "" {
		t.Errorf("%s owned by %q after %s was excluded", ips[0], after[ips[0]], victim)
	}
}

// testDelete: a Service deleted is silent within 1 s, and its IPs go to the
// next Service (a class whose pool holds exactly those three).
func testDelete(t *testing.T, lab *kubelab.Lab) {
	const class = "lab-reuse"
	must(t, lab.Class(class, []string{"192.0.2.130-192.0.2.132"}, false, nil))
	t.Cleanup(func() { _ = lab.DeleteClass(class) })
	ns := namespace(t, lab, "t-delete")
	_, err := lab.Pods(ns, "del", "n1", "n2", "n3")
	must(t, err)
	_, err = lab.Service(ns, "first", "del", kubelab.IPsCount(3), kubelab.LoadBalancerClass(class))
	must(t, err)
	ips, err := lab.WaitIPs(ns, "first", 3, settle)
	must(t, err)
	waitDistinctOwners(t, lab, ips)

	p := prober(t, lab)
	p.Start(probeEvery, ips...)
	t0 := time.Now()
	must(t, lab.DeleteService(ns, "first"))
	// Observe 2 s: a measurement window, not a wait for an event.
	observe(t, lab, t0.Add(2*time.Second))
	for _, ip := range ips {
		rs := p.Replies(ip, t0, time.Time{})
		last := time.Duration(0)
		if len(rs) > 0 {
			last = rs[len(rs)-1].At.Sub(t0)
		}
		t.Logf("%s: last ARP answer %v after the delete", ip, last.Round(time.Millisecond))
		t.Logf("MEASURE delete_silent_ms{ip=%s}=%d", ip, last.Milliseconds())
		if last > takeoverBound {
			t.Errorf("%s still answered %v after its Service was deleted, want silence within %v", ip, last, takeoverBound)
		}
		if mac, err := lab.WhoAnswers(ip); err != nil || mac != "" {
			t.Errorf("%s of a deleted Service answered by %q (%v)", ip, mac, err)
		}
	}

	_, err = lab.Service(ns, "second", "del", kubelab.IPsCount(3), kubelab.LoadBalancerClass(class))
	must(t, err)
	got, err := lab.WaitIPs(ns, "second", 3, settle)
	must(t, err)
	if a, b := sorted(ips), sorted(got); !slices.Equal(a, b) {
		t.Errorf("the next Service got %v, want the freed %v", b, a)
	}
	waitDistinctOwners(t, lab, got)
}

// testMissingNode: a fourth hostlbd named n4 starts with no Node n4: it
// announces nothing, and says why in its log and STATUS line. The Service's
// class selects only n4 (kubernetes.io/hostname) and its ready Pod is on n1,
// so once Node n4 is created n4 must answer: within 1 s, without a restart.
// (Not a Pod on n4: the EndpointSlice controller skips Pods of a node that
// has no Node object and retries with a backoff of 1 s, 2 s, ..., which
// would time the controller, not hostlbd.)
func testMissingNode(t *testing.T, lab *kubelab.Lab) {
	const name, class = "n4", "lab-n4"
	n4 := lab.Node(name)
	if n4 == nil || !n4.Spare {
		t.Fatalf("the lab has no spare node %s", name)
	}
	must(t, lab.Class(class, []string{"192.0.2.140-192.0.2.141"}, false,
		map[string]any{"nodeSelector": map[string]any{"kubernetes.io/hostname": name}}))
	t.Cleanup(func() { _ = lab.DeleteClass(class) })
	ns := namespace(t, lab, "t-missing")
	_, err := lab.Pods(ns, "edge", "n1")
	must(t, err)
	must(t, lab.StartNode(name))
	t.Cleanup(func() {
		if err := lab.StopNode(name); err != nil {
			t.Error(err)
		}
		must(t, lab.DeleteNodeObject(name))
	})
	pid := n4.PID()
	_, err = lab.Service(ns, "edge", "edge", kubelab.LoadBalancerClass(class))
	must(t, err)
	ips, err := lab.WaitIPs(ns, "edge", 1, settle)
	must(t, err)
	ip := ips[0]

	must(t, n4.WaitLog("no Node object has this node's name", 10*time.Second))
	status, err := n4.WaitStatus(10*time.Second, "NO Node named n4")
	must(t, err)
	t.Logf("n4 STATUS without its Node: %s", status)
	for _, line := range strings.Split(n4.Logs(), "\n") {
		if strings.Contains(line, "no Node object has this node's name") {
			t.Logf("n4 log: %s", line)
			break
		}
	}
	p := prober(t, lab)
	if who, err := p.Who(ip, 300*time.Millisecond); err != nil || len(who) != 0 {
		t.Errorf("%s answered by %v (%v) while the only node its class selects has no Node object", ip, who, err)
	}

	p.Start(probeEvery, ip)
	t0 := time.Now()
	must(t, lab.RegisterNode(name))
	r, err := p.WaitReply(ip, t0, settle, func(r kubelab.Reply) bool { return r.Node == name })
	must(t, err)
	d := r.At.Sub(t0)
	t.Logf("n4 answered %s %v after its Node was created", ip, d.Round(time.Millisecond))
	t.Logf("MEASURE node_created_to_answer_ms=%d", d.Milliseconds())
	if d > takeoverBound {
		t.Errorf("n4 answered %v after its Node was created, want ≤ %v", d, takeoverBound)
	}
	if got := n4.PID(); got != pid || !n4.Running() {
		t.Errorf("hostlbd on n4 restarted (pid %d, now %d, running %v)", pid, got, n4.Running())
	}
	if c := strings.Count(n4.Logs(), "msg=ready "); c != 1 {
		t.Errorf("n4 logged ready %d times, want once", c)
	}
	if who, err := p.Who(ip, 300*time.Millisecond); err != nil || !slices.Equal(who, []string{name}) {
		t.Errorf("%s answered by %v (%v), want only %s", ip, who, err, name)
	}
	must(t, n4.WaitLog("Node found", 5*time.Second))
	err = lab.Poll(5*time.Second, func() error {
		st := n4.Statuses()
		if len(st) == 0 || strings.Contains(st[len(st)-1], "NO Node") {
			return fmt.Errorf("STATUS lines %q", st)
		}
		return nil
	})
	if err != nil {
		t.Errorf("n4's STATUS still says its Node is missing: %v", err)
	}
}

// testKill: kill -9 of the owner of a Service's first IP (its link down
// first, as when a machine dies): another node answers within 1 s, and the
// Service's other IPs keep their owners.
func testKill(t *testing.T, lab *kubelab.Lab) {
	ns := namespace(t, lab, "t-kill")
	_, err := lab.Pods(ns, "crash", "n1", "n2", "n3")
	must(t, err)
	_, err = lab.Service(ns, "crash", "crash", kubelab.IPsCount(3))
	must(t, err)
	ips, err := lab.WaitIPs(ns, "crash", 3, settle)
	must(t, err)
	before := waitDistinctOwners(t, lab, ips)
	victim := before[ips[0]]

	p := prober(t, lab)
	p.Start(probeEvery, ips...)
	t0, err := lab.KillNode(victim)
	must(t, err)
	t.Cleanup(func() {
		// The prober still runs (it is closed after this): watch the
		// restarted node for IPs that are not its own to take.
		tr := time.Now()
		must(t, lab.RestoreNode(victim))
		observe(t, lab, time.Now().Add(time.Second))
		for _, ip := range ips[1:] {
			if rs := p.Replies(ip, tr, time.Time{}); slices.ContainsFunc(rs, func(r kubelab.Reply) bool { return r.Node == victim }) {
				// Known issue, reported and not asserted yet (issue 9,
				// fencing): a restarted node now waits for the ring (its
				// Node seeds) before it takes an IP, but the first view
				// it settles on can still miss a member, and it answers
				// a peer's IP until its view completes (~100 ms).
				first := rs[slices.IndexFunc(rs, func(r kubelab.Reply) bool { return r.Node == victim })]
				t.Logf("KNOWN ISSUE: restarted %s answered %s (owned by %s) %v after its restart began",
					victim, ip, before[ip], first.At.Sub(tr).Round(time.Millisecond))
			}
		}
	})
	r, err := p.WaitReply(ips[0], t0, 10*time.Second, func(r kubelab.Reply) bool { return r.Node != "" && r.Node != victim })
	must(t, err)
	d := r.At.Sub(t0)
	t.Logf("kill -9 of %s: %s answered by %s %v later", victim, ips[0], r.Node, d.Round(time.Millisecond))
	t.Logf("MEASURE failover_ms=%d", d.Milliseconds())
	if d > takeoverBound {
		t.Errorf("failover of %s took %v, want ≤ %v", ips[0], d, takeoverBound)
	}
	for _, ip := range ips[1:] {
		for _, rr := range p.Replies(ip, t0, time.Time{}) {
			if rr.Node != before[ip] {
				t.Errorf("%s answered by %s after %s died, want only its owner %s", ip, rr.Node, victim, before[ip])
				break
			}
		}
	}
	msg, err := lab.WaitEvent(ns, "crash", kube.EventAnnouncing, 10*time.Second, "node "+r.Node+" ", ips[0].String())
	must(t, err)
	t.Logf("Event Announcing from the new owner: %s", msg)
}

// testOutage: kube-apiserver stopped for 30 s: every IP stays answered; a
// crash of an owner during the outage still fails over within 1 s; once
// the apiserver is back and every daemon watches again, no owner changes.
func testOutage(t *testing.T, lab *kubelab.Lab) {
	const outage = 30 * time.Second
	ns := namespace(t, lab, "t-outage")
	_, err := lab.Pods(ns, "out", "n1", "n2", "n3")
	must(t, err)
	_, err = lab.Service(ns, "out", "out", kubelab.IPsCount(3))
	must(t, err)
	ips, err := lab.WaitIPs(ns, "out", 3, settle)
	must(t, err)
	before := waitDistinctOwners(t, lab, ips)
	t.Logf("owners before the outage: %v", before)

	p := prober(t, lab)
	p.Start(20*time.Millisecond, ips...)
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			must(t, lab.StartAPIServer())
		}
	})
	tDown := time.Now()
	must(t, lab.StopAPIServer())
	t.Logf("kube-apiserver stopped (process gone) %v after SIGTERM", time.Since(tDown).Round(time.Millisecond))
	if _, err := lab.GetService(ns, "out"); err == nil {
		t.Fatal("the API answers with kube-apiserver stopped")
	}

	// A third of the outage with nothing else happening.
	observe(t, lab, tDown.Add(outage/3))
	victim := before[ips[0]]
	tk, err := lab.KillNode(victim)
	must(t, err)
	t.Cleanup(func() { must(t, lab.RestoreNode(victim)) })
	r, err := p.WaitReply(ips[0], tk, 10*time.Second, func(r kubelab.Reply) bool { return r.Node != "" && r.Node != victim })
	must(t, err)
	d := r.At.Sub(tk)
	t.Logf("kill -9 of %s during the outage: %s answered by %s %v later", victim, ips[0], r.Node, d.Round(time.Millisecond))
	t.Logf("MEASURE outage_failover_ms=%d", d.Milliseconds())
	if d > takeoverBound {
		t.Errorf("failover during the outage took %v, want ≤ %v", d, takeoverBound)
	}
	observe(t, lab, tDown.Add(outage))
	tEnd := time.Now()
	for _, ip := range ips {
		gap := p.MaxGap(ip, tDown, tEnd)
		t.Logf("%s: longest silence during the outage %v", ip, gap.Round(time.Millisecond))
		if gap > takeoverBound+100*time.Millisecond {
			t.Errorf("%s went unanswered for %v during the outage", ip, gap.Round(time.Millisecond))
		}
	}
	// The owners at the end of the outage.
	owners := map[netip.Addr]string{}
	for _, ip := range ips {
		rs := p.Replies(ip, tEnd.Add(-time.Second), tEnd)
		if len(rs) == 0 {
			t.Fatalf("%s unanswered at the end of the outage", ip)
		}
		owners[ip] = rs[len(rs)-1].Node
	}
	t.Logf("owners at the end of the outage: %v", owners)

	tUp := time.Now()
	must(t, lab.StartAPIServer())
	restarted = true
	t.Logf("kube-apiserver ready %v after its start", time.Since(tUp).Round(time.Millisecond))
	var alive []string
	for _, n := range []string{"n1", "n2", "n3"} {
		if n != victim {
			alive = append(alive, n)
		}
	}
	must(t, lab.WaitWatching(tUp, 2*time.Minute, alive...))
	tWatch := time.Now()
	t.Logf("every live hostlbd watches again %v after the apiserver started", tWatch.Sub(tUp).Round(time.Millisecond))
	observe(t, lab, tWatch.Add(5*time.Second))
	tObs := time.Now()
	for _, ip := range ips {
		for _, rr := range p.Replies(ip, tEnd, tObs) {
			if rr.Node != owners[ip] {
				t.Errorf("%s answered by %s at +%v after the outage, its owner was %s: an owner changed on resync",
					ip, rr.Node, rr.At.Sub(tUp).Round(time.Millisecond), owners[ip])
				break
			}
		}
		if gap := p.MaxGap(ip, tEnd, tObs); gap > 200*time.Millisecond {
			t.Errorf("%s went unanswered for %v around the apiserver's return", ip, gap.Round(time.Millisecond))
		}
	}
}

// namespace creates ns and deletes its Services, EndpointSlices and Pods
// when the test ends.
func namespace(t *testing.T, lab *kubelab.Lab, ns string) string {
	t.Helper()
	must(t, lab.Namespace(ns))
	t.Cleanup(func() {
		if err := lab.Clean(ns); err != nil {
			t.Error(err)
		}
	})
	return ns
}

// prober opens a raw ARP prober in the client, closed when the test ends.
func prober(t *testing.T, lab *kubelab.Lab) *kubelab.Prober {
	t.Helper()
	p, err := lab.NewProber()
	must(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// waitDistinctOwners waits until every ip is answered (WhoAnswers), each by
// another node, and returns the owners.
func waitDistinctOwners(t *testing.T, lab *kubelab.Lab, ips []netip.Addr) map[netip.Addr]string {
	t.Helper()
	var owners map[netip.Addr]string
	err := lab.Poll(settle, func() error {
		var err error
		if owners, err = lab.Owners(ips); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, ip := range ips {
			n := owners[ip]
			if n == "" || seen[n] {
				return fmt.Errorf("owners %v", owners)
			}
			seen[n] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v distinct owners: %v", ips, err)
	}
	return owners
}

// waitOwner waits until WhoAnswers says node answers for ip.
func waitOwner(t *testing.T, lab *kubelab.Lab, ip netip.Addr, node string, timeout time.Duration) {
	t.Helper()
	err := lab.Poll(timeout, func() error {
		got, err := lab.WhoAnswersNode(ip)
		if err != nil {
			return err
		}
		if got != node {
			return fmt.Errorf("answered by %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s answered by %s: %v", ip, node, err)
	}
}

// observe returns at until: the end of a measurement window (the probers
// record meanwhile), not a wait for an event.
func observe(t *testing.T, lab *kubelab.Lab, until time.Time) {
	t.Helper()
	err := lab.Poll(time.Until(until)+time.Second, func() error {
		if time.Now().Before(until) {
			return errors.New("window open")
		}
		return nil
	})
	must(t, err)
}

// inRange reports whether ip is in [lo, hi] (of ip's family).
func inRange(ip netip.Addr, lo, hi string) bool {
	l, h := netip.MustParseAddr(lo), netip.MustParseAddr(hi)
	return ip.BitLen() == l.BitLen() && ip.Compare(l) >= 0 && ip.Compare(h) <= 0
}

func sorted(ips []netip.Addr) []netip.Addr {
	out := slices.Clone(ips)
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
