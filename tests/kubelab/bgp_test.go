package kubelab_test

import (
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/tests/bgplab"
	"github.com/hostlb/hostlb/tests/kubelab"
)

var flagBGPDir = flag.String("kubelab.bgp-dir", "", "keep TestKubernetesBGP's lab `directory` (hostlbd and BIRD logs, control plane) here instead of a temporary one")

// The BGP lab's objects: every name and address in one place.
const (
	// bgpClass is the nodes' [kubernetes] load_balancer_class.
	bgpClass = "kubelab.test/bgp"

	pool4      = "lab-bgp-v4"
	pool4CIDR  = "192.0.2.200/29" // on the bridge's subnet, but no interface has one
	pool6      = "lab-bgp-v6"
	pool6First = "2001:db8:200::10"
	pool6Last  = "2001:db8:200::1f"

	peerTor  = "tor"      // eBGP, RouterAddr
	peerTor6 = "tor6"     // eBGP, RouterAddr6
	peerIBGP = "tor-ibgp" // iBGP, RouterIBGPAddr: LOCAL_PREF travels only there
	peerMD5  = "tor-md5"  // eBGP with TCP-MD5, RouterMD5Addr

	cfgEdge   = "edge"   // peers tor and tor-ibgp, advertises pool4
	cfgEdge6  = "edge6"  // peer tor6, advertises pool6
	cfgSecure = "secure" // n1 only, peer tor-md5, advertises pool4

	// labelA is on n1 and n2, labelB on n2 and n3: the selectors of the
	// Configurations pick {n1, n2}, {n2, n3} or (empty) every node.
	labelA = "kubelab/bgp-a"
	labelB = "kubelab/bgp-b"

	// The advertisement attributes of edge: BIRD prints 65000:100 as
	// (65000,100) and no-export as (65535,65281).
	edgeCommunity   = "(65000,100)"
	noExport        = "(65535,65281)"
	edgeLocalPref   = 200
	edge6Community  = "(65000,600)"
	md5Password     = "kubelab-md5"
	secretNamespace = "t-bgp-secrets"
	md5Secret       = "tor-md5-password"
)

var (
	selA   = map[string]any{labelA: "true"}
	selB   = map[string]any{labelB: "true"}
	selAll = map[string]any{}
)

// bgpLab is TestKubernetesBGP's lab: the Kubernetes lab with BGP on every
// node, and BIRD on its bridge.
type bgpLab struct {
	*kubelab.Lab
	r          *kubelab.Router
	n1, n2, n3 *kubelab.Node
	webCreated time.Time // when the Service web was created
}

// TestKubernetesBGP is the lab acceptance of the BGP issue's item
// "Kubernetes objects (real apiserver) drive peers, pools and
// advertisements": the Kubernetes lab (a real control plane, three
// hostlbd nodes with [bgp] asn and [kubernetes] load_balancer_class) and
// BIRD 2 on the same bridge with sessions to every node (eBGP over IPv4
// and IPv6, iBGP, and eBGP with TCP-MD5 to n1), which hostlbd opens only
// when MetalLoadBalancerBGPPeers and MetalLoadBalancerConfigurations ask
// for them. What counts is what BIRD says and the next hops in the
// router's kernel.
//
// The subtests run in order on shared objects (the peer tor, the
// Configuration edge, the pool and the Service web, made here), each
// setting edge's nodeSelector as it needs; a failed one leaves the next
// ones little chance.
func TestKubernetesBGP(t *testing.T) {
	bgplab.RequireRouter(t, bgplab.BIRD) // before the control plane starts
	lab := &bgpLab{Lab: kubelab.New(t, kubelab.Options{
		Dir: *flagBGPDir, LoadBalancerClass: bgpClass, BGPASN: kubelab.NodeASN,
	})}
	lab.n1, lab.n2, lab.n3 = lab.Node("n1"), lab.Node("n2"), lab.Node("n3")
	var sessions []kubelab.Session
	for _, n := range []*kubelab.Node{lab.n1, lab.n2, lab.n3} {
		sessions = append(sessions,
			kubelab.Session{Name: "tor_" + n.Name, Local: kubelab.RouterAddr, Node: n.IPv4, ASN: kubelab.RouterASN},
			kubelab.Session{Name: "tor6_" + n.Name, Local: kubelab.RouterAddr6, Node: n.IPv6, ASN: kubelab.RouterASN},
			kubelab.Session{Name: "ibgp_" + n.Name, Local: kubelab.RouterIBGPAddr, Node: n.IPv4, ASN: kubelab.NodeASN})
	}
	sessions = append(sessions, kubelab.Session{Name: "md5_n1", Local: kubelab.RouterMD5Addr, Node: lab.n1.IPv4,
		ASN: kubelab.RouterASN, Password: md5Password})
	lab.r = lab.StartRouter(sessions)

	yes := "true"
	for node, labels := range map[string][]string{"n1": {labelA}, "n2": {labelA, labelB}, "n3": {labelB}} {
		for _, l := range labels {
			must(t, lab.LabelNode(node, l, &yes))
		}
	}
	t.Cleanup(func() {
		for _, o := range [][2]string{
			{kubelab.KindConfiguration, cfgEdge}, {kubelab.KindConfiguration, cfgEdge6}, {kubelab.KindConfiguration, cfgSecure},
			{kubelab.KindBGPPeer, peerTor}, {kubelab.KindBGPPeer, peerTor6}, {kubelab.KindBGPPeer, peerIBGP}, {kubelab.KindBGPPeer, peerMD5},
			{kubelab.KindPool, pool4}, {kubelab.KindPool, pool6},
		} {
			if err := lab.DeleteBGP(o[0], o[1]); err != nil {
				t.Error(err)
			}
		}
	})
	must(t, lab.ApplyBGP(kubelab.KindPool, pool4, map[string]any{"addresses": []any{pool4CIDR}}))
	must(t, lab.ApplyBGP(kubelab.KindBGPPeer, peerTor, map[string]any{
		"peerAddress": kubelab.RouterAddr.String(), "peerASN": int64(kubelab.RouterASN), "myASN": int64(kubelab.NodeASN),
	}))
	must(t, lab.ApplyBGP(kubelab.KindBGPPeer, peerIBGP, map[string]any{
		"peerAddress": kubelab.RouterIBGPAddr.String(), "peerASN": int64(kubelab.NodeASN), "myASN": int64(kubelab.NodeASN),
	}))
	must(t, lab.applyEdge(selA))

	ns := namespace(t, lab.Lab, "t-bgp")
	_, err := lab.Pods(ns, "web", "n1", "n2", "n3")
	must(t, err)
	lab.webCreated = time.Now()
	_, err = lab.Service(ns, "web", "web", kubelab.LoadBalancerClass(bgpClass), kubelab.Annotation(kubelab.AnnotationPool, pool4))
	must(t, err)

	t.Run("ConfigurationPeersAndAdvertisesPool", func(t *testing.T) { testBGPFirst(t, lab, ns) })
	t.Run("NodeSelectorChangesNextHops", func(t *testing.T) { testBGPSelector(t, lab, ns) })
	t.Run("ETPLocalNextHopFollowsThePod", func(t *testing.T) { testBGPETPLocal(t, lab, ns) })
	t.Run("PasswordFromLabelledSecretOnly", func(t *testing.T) { testBGPPassword(t, lab, ns) })
	t.Run("AdvertisementsOnlyToTheirConfigurationsPeers", func(t *testing.T) { testBGPAdvertScope(t, lab, ns) })
	t.Run("IPv6PeerAndPool", func(t *testing.T) { testBGPIPv6(t, lab, ns) })
	t.Run("DeletedPeerTakesSessionsAndRoutesDown", func(t *testing.T) { testBGPDeletePeer(t, lab, ns) })
}

// testBGPFirst: the Configuration edge selects n1 and n2 (label A) with
// the peers tor and tor-ibgp and advertises pool4 with a community, no-export
// and localPref 200. The Service web (the lab's loadBalancerClass, the
// pool's annotation, ready Pods on every node) gets an IP of the pool; BIRD
// has its sessions with n1 and n2 up, none with n3, whose hostlbd added no
// peer; the router's kernel routes the /32 via exactly n1 and n2, and n1
// and n2 (not n3) say so in Announcing Events on web; the eBGP
// routes carry the communities, and the iBGP ones also the localPref
// (eBGP never carries LOCAL_PREF, RFC 4271 §5.1.5).
func testBGPFirst(t *testing.T, lab *bgpLab, ns string) {
	t0 := lab.webCreated
	ip := webIP(t, lab, ns)
	t.Logf("web got %s from %s %v after it was created", ip, pool4CIDR, time.Since(t0).Round(time.Millisecond))
	if !netip.MustParsePrefix(pool4CIDR).Contains(ip) {
		t.Errorf("IP %s is not from the pool %s", ip, pool4CIDR)
	}
	_, err := lab.r.WaitSessions(settle, true, "tor_n1", "tor_n2", "ibgp_n1", "ibgp_n2")
	must(t, err)
	t.Logf("sessions with n1 and n2 established %v after web was created", time.Since(t0).Round(time.Millisecond))
	host := netip.PrefixFrom(ip, 32)
	_, err = lab.r.WaitRoutes(host, []netip.Addr{lab.n1.IPv4, lab.n2.IPv4}, settle)
	must(t, err)
	t.Logf("the router's kernel routes %s via n1 and n2 %v after the Service was created", host, time.Since(t0).Round(time.Millisecond))

	for _, s := range []string{"tor_n3", "ibgp_n3"} {
		st, err := lab.r.State(s)
		must(t, err)
		if strings.EqualFold(st, "Established") {
			t.Errorf("BIRD's session %s with n3 is %s; edge does not select n3", s, st)
		}
	}
	if line := logLine(lab.n3, `msg="BGP peer added"`); line != "" {
		t.Errorf("n3, which no Configuration selects, added a BGP peer: %s", line)
	}
	for _, n := range []string{"n1", "n2"} {
		msg, err := lab.WaitEvent(ns, "web", kube.EventAnnouncing, settle, "node "+n+" ", "over BGP as "+host.String())
		must(t, err)
		t.Logf("Event Announcing: %s", msg)
	}
	msgs, err := lab.Events(ns, "web", kube.EventAnnouncing)
	must(t, err)
	if i := slices.IndexFunc(msgs, func(m string) bool { return strings.HasPrefix(m, "node n3 ") }); i >= 0 {
		t.Errorf("n3, which edge does not select, says it announces web: %s", msgs[i])
	}

	routes := showRoutes(t, lab, "master4", host, "tor_n1", "tor_n2")
	for _, rt := range routes {
		t.Logf("BIRD master4 %s from %s: community %s, local_pref %s", host, rt.Proto, rt.Attrs["BGP.community"], rt.Attrs["BGP.local_pref"])
		for _, c := range []string{edgeCommunity, noExport} {
			if !strings.Contains(rt.Attrs["BGP.community"], c) {
				t.Errorf("route %s from %s: BGP.community %q lacks %s", host, rt.Proto, rt.Attrs["BGP.community"], c)
			}
		}
	}
	for _, rt := range showRoutes(t, lab, "ibgp4", host, "ibgp_n1", "ibgp_n2") {
		t.Logf("BIRD ibgp4 %s from %s: community %s, local_pref %s", host, rt.Proto, rt.Attrs["BGP.community"], rt.Attrs["BGP.local_pref"])
		if got := rt.Attrs["BGP.local_pref"]; got != fmt.Sprint(edgeLocalPref) {
			t.Errorf("iBGP route %s from %s: BGP.local_pref %q, want %d (the advertisement's localPref)", host, rt.Proto, got, edgeLocalPref)
		}
		if !strings.Contains(rt.Attrs["BGP.community"], edgeCommunity) {
			t.Errorf("iBGP route %s from %s: BGP.community %q lacks %s", host, rt.Proto, rt.Attrs["BGP.community"], edgeCommunity)
		}
	}
}

// testBGPSelector: edge's nodeSelector changes. Empty (every node): n3's
// session comes up and the kernel has three next hops. Label B (n2, n3):
// n1's session goes down and its next hop leaves.
func testBGPSelector(t *testing.T, lab *bgpLab, ns string) {
	ip := webIP(t, lab, ns)
	host := netip.PrefixFrom(ip, 32)
	_, err := lab.r.WaitRoutes(host, []netip.Addr{lab.n1.IPv4, lab.n2.IPv4}, settle)
	must(t, err)

	must(t, lab.applyEdge(selAll))
	d, err := lab.r.WaitRoutes(host, []netip.Addr{lab.n1.IPv4, lab.n2.IPv4, lab.n3.IPv4}, settle)
	must(t, err)
	t.Logf("nodeSelector {} (n3 added): three next hops after %v", d.Round(time.Millisecond))
	_, err = lab.r.WaitSessions(settle, true, "tor_n3", "ibgp_n3")
	must(t, err)

	must(t, lab.applyEdge(selB))
	d, err = lab.r.WaitRoutes(host, []netip.Addr{lab.n2.IPv4, lab.n3.IPv4}, settle)
	must(t, err)
	t.Logf("nodeSelector %s (n1 removed): n1's next hop gone after %v", labelB, d.Round(time.Millisecond))
	_, err = lab.r.WaitSessions(settle, false, "tor_n1", "ibgp_n1")
	must(t, err)
	must(t, lab.n1.WaitLog(`msg="BGP peer removed" component=bgp peer=`+kubelab.RouterAddr.String()+"\n", settle))
	_, err = lab.r.WaitSessions(settle, true, "tor_n2", "tor_n3")
	must(t, err)
}

// testBGPETPLocal: a Service with externalTrafficPolicy Local whose only
// ready Pod is on n1, edge selecting every node: n1 is the only next hop.
// The Pod "moves" to n3: n3 is. The Service deleted, its route leaves.
func testBGPETPLocal(t *testing.T, lab *bgpLab, ns string) {
	must(t, lab.applyEdge(selAll))
	pods, err := lab.Pods(ns, "local", "n1")
	must(t, err)
	_, err = lab.Service(ns, "local", "local", kubelab.ETPLocal(), kubelab.LoadBalancerClass(bgpClass),
		kubelab.Annotation(kubelab.AnnotationPool, pool4))
	must(t, err)
	ips, err := lab.WaitIPs(ns, "local", 1, settle)
	must(t, err)
	host := netip.PrefixFrom(ips[0], 32)
	_, err = lab.r.WaitRoutes(host, []netip.Addr{lab.n1.IPv4}, settle)
	must(t, err)

	sw, err := lab.WatchSlices(ns, "local")
	must(t, err)
	defer sw.Stop()
	t0 := time.Now()
	_, err = lab.MovePod(ns, pods[0], "n3")
	must(t, err)
	st, err := sw.WaitReady(settle, func(ready []string) bool { return slices.Equal(ready, []string{"n3"}) })
	must(t, err)
	_, err = lab.r.WaitRoutes(host, []netip.Addr{lab.n3.IPv4}, settle)
	must(t, err)
	t.Logf("ETP Local move: EndpointSlice ready on n3 %v after the move began, the router's only next hop n3 %v after that",
		st.At.Sub(t0).Round(time.Millisecond), time.Since(st.At).Round(time.Millisecond))

	// The Service web (ETP Cluster, Pods everywhere) is still on every node.
	web := netip.PrefixFrom(webIP(t, lab, ns), 32)
	_, err = lab.r.WaitRoutes(web, []netip.Addr{lab.n1.IPv4, lab.n2.IPv4, lab.n3.IPv4}, settle)
	must(t, err)

	must(t, lab.DeleteService(ns, "local"))
	must(t, lab.DeletePods(ns, "local"))
	_, err = lab.r.WaitRoutes(host, nil, settle)
	must(t, err)
}

// testBGPPassword: a peer tor-md5 (BIRD has the password on that session)
// whose passwordSecretRef names a Secret without the label
// network.deckhouse.io/metallb-bgp-password: a Warning Event
// PasswordSecretNotFound on the peer, n1 logs it, and no session. With
// the label, the session comes up (TCP-MD5) and carries n1's route;
// without it again, the session goes down and n1's route leaves.
func testBGPPassword(t *testing.T, lab *bgpLab, ns string) {
	// edge without n1: n1's route can only come through tor-md5.
	must(t, lab.applyEdge(selB))
	host := netip.PrefixFrom(webIP(t, lab, ns), 32)
	_, err := lab.r.WaitRoutes(host, []netip.Addr{lab.n2.IPv4, lab.n3.IPv4}, settle)
	must(t, err)

	must(t, lab.PasswordSecret(secretNamespace, md5Secret, md5Password, false))
	t.Cleanup(func() {
		if err := lab.DeleteSecret(secretNamespace, md5Secret); err != nil {
			t.Error(err)
		}
	})
	must(t, lab.ApplyBGP(kubelab.KindBGPPeer, peerMD5, map[string]any{
		"peerAddress": kubelab.RouterMD5Addr.String(), "peerASN": int64(kubelab.RouterASN), "myASN": int64(kubelab.NodeASN),
		"passwordSecretRef": map[string]any{"namespace": secretNamespace, "name": md5Secret},
	}))
	must(t, lab.ApplyBGP(kubelab.KindConfiguration, cfgSecure, map[string]any{
		"mode": "BGP", "nodeSelector": map[string]any{corev1.LabelHostname: "n1"},
		"bgp":            map[string]any{"peerNames": []any{peerMD5}},
		"advertisements": []any{map[string]any{"poolNames": []any{pool4}}},
	}))
	msg, err := lab.WaitObjectEvent(kubelab.KindBGPPeer, peerMD5, "PasswordSecretNotFound", settle, secretNamespace+"/"+md5Secret)
	must(t, err)
	t.Logf("Warning Event on %s %s: %s", kubelab.KindBGPPeer, peerMD5, msg)
	must(t, lab.n1.WaitLog(`msg="BGP: PasswordSecretNotFound" component=kube object=MetalLoadBalancerBGPPeer/`+peerMD5+" ", settle))
	t.Logf("n1: %s", logLine(lab.n1, `msg="BGP: PasswordSecretNotFound"`))
	if st, err := lab.r.State("md5_n1"); err != nil || strings.EqualFold(st, "Established") {
		t.Errorf("session md5_n1 is %q (%v) while its Secret has no label", st, err)
	}
	if line := logLine(lab.n1, `msg="BGP peer added" component=bgp peer=`+kubelab.RouterMD5Addr.String()+" "); line != "" {
		t.Errorf("n1 added the peer %s although its Secret has no label: %s", kubelab.RouterMD5Addr, line)
	}

	t0 := time.Now()
	must(t, lab.LabelSecret(secretNamespace, md5Secret, true))
	d, err := lab.r.WaitSessions(settle, true, "md5_n1")
	must(t, err)
	t.Logf("the Secret labelled: session md5_n1 (TCP-MD5) established after %v", d.Round(time.Millisecond))
	if line := logLine(lab.n1, `msg="BGP peer added" component=bgp peer=`+kubelab.RouterMD5Addr.String()+" "); !strings.Contains(line, " md5=true ") {
		t.Errorf("n1's peer %s is not TCP-MD5: %q", kubelab.RouterMD5Addr, line)
	}
	_, err = lab.r.WaitRoutes(host, []netip.Addr{lab.n1.IPv4, lab.n2.IPv4, lab.n3.IPv4}, settle)
	must(t, err)
	t.Logf("n1 is a next hop again, through tor-md5, %v after the label", time.Since(t0).Round(time.Millisecond))
	showRoutes(t, lab, "master4", host, "md5_n1", "tor_n2", "tor_n3")

	// The label removed, the Secret is not used any more: no session.
	must(t, lab.LabelSecret(secretNamespace, md5Secret, false))
	_, err = lab.r.WaitSessions(settle, false, "md5_n1")
	must(t, err)
	_, err = lab.r.WaitRoutes(host, []netip.Addr{lab.n2.IPv4, lab.n3.IPv4}, settle)
	must(t, err)
	must(t, lab.DeleteBGP(kubelab.KindConfiguration, cfgSecure))
	must(t, lab.DeleteBGP(kubelab.KindBGPPeer, peerMD5))
}

// testBGPAdvertScope: an advertisement goes to the peers of its own
// Configuration only, as in the reference (§5.1: each advertisement of a
// Configuration becomes a BGPAdvertisement whose peers are the peers of
// that Configuration, and MetalLB announces it to no other BGPPeer). n1 is
// in edge (peers tor and tor-ibgp, advertising pool4) and in secure, which
// names the peer tor-md5 and advertises nothing: BIRD's session md5_n1
// comes up and must not receive web's route.
func testBGPAdvertScope(t *testing.T, lab *bgpLab, ns string) {
	must(t, lab.applyEdge(selAll))
	host := netip.PrefixFrom(webIP(t, lab, ns), 32)
	_, err := lab.r.WaitRoutes(host, []netip.Addr{lab.n1.IPv4, lab.n2.IPv4, lab.n3.IPv4}, settle)
	must(t, err)

	must(t, lab.PasswordSecret(secretNamespace, md5Secret, md5Password, true))
	t.Cleanup(func() {
		for _, err := range []error{
			lab.DeleteBGP(kubelab.KindConfiguration, cfgSecure),
			lab.DeleteBGP(kubelab.KindBGPPeer, peerMD5),
			lab.DeleteSecret(secretNamespace, md5Secret),
		} {
			if err != nil {
				t.Error(err)
			}
		}
	})
	must(t, lab.ApplyBGP(kubelab.KindBGPPeer, peerMD5, map[string]any{
		"peerAddress": kubelab.RouterMD5Addr.String(), "peerASN": int64(kubelab.RouterASN), "myASN": int64(kubelab.NodeASN),
		"passwordSecretRef": map[string]any{"namespace": secretNamespace, "name": md5Secret},
	}))
	must(t, lab.ApplyBGP(kubelab.KindConfiguration, cfgSecure, map[string]any{
		"mode": "BGP", "nodeSelector": map[string]any{corev1.LabelHostname: "n1"},
		"bgp": map[string]any{"peerNames": []any{peerMD5}},
	}))
	_, err = lab.r.WaitSessions(settle, true, "md5_n1")
	must(t, err)
	// A speaker sends its routes right after the OPEN (the previous
	// subtest's route came with its session): 3 s is plenty to see one.
	var leaked []kubelab.BIRDRoute
	if err := lab.Poll(3*time.Second, func() error {
		routes, err := lab.r.ShowRoutes("master4", host)
		if err != nil {
			return err
		}
		for _, rt := range routes {
			if rt.Proto == "md5_n1" {
				leaked = append(leaked, rt)
				return nil
			}
		}
		return fmt.Errorf("no route from md5_n1")
	}); err == nil {
		t.Errorf("n1 advertised %s (pool %s, advertised by the Configuration %s to its peers %s and %s) to the peer %s, "+
			"which only the Configuration %s names, and it advertises nothing: BIRD got it on md5_n1 with %v; n1: %s",
			host, pool4, cfgEdge, peerTor, peerIBGP, peerMD5, cfgSecure, leaked[0].Attrs,
			logLine(lab.n1, `msg="sent update" component=bgp topic=gobgp topic=Peer peer=`+kubelab.RouterMD5Addr.String()+" "))
	}
}

// testBGPIPv6: an IPv6 peer (tor6, peerAddress 2001:db8::1), an IPv6 pool
// and a Configuration edge6 selecting n2 and n3 (label B): a single-stack
// IPv6 Service gets an IP of the pool, BIRD's IPv6 sessions with n2 and n3
// are up (not n1's), and the router's kernel routes the /128 via exactly
// n2's and n3's IPv6 addresses, with edge6's community.
func testBGPIPv6(t *testing.T, lab *bgpLab, ns string) {
	must(t, lab.ApplyBGP(kubelab.KindPool, pool6, map[string]any{"addresses": []any{pool6First + "-" + pool6Last}}))
	must(t, lab.ApplyBGP(kubelab.KindBGPPeer, peerTor6, map[string]any{
		"peerAddress": kubelab.RouterAddr6.String(), "peerASN": int64(kubelab.RouterASN), "myASN": int64(kubelab.NodeASN),
	}))
	must(t, lab.ApplyBGP(kubelab.KindConfiguration, cfgEdge6, map[string]any{
		"mode": "BGP", "nodeSelector": selB, "bgp": map[string]any{"peerNames": []any{peerTor6}},
		"advertisements": []any{map[string]any{"poolNames": []any{pool6}, "bgp": map[string]any{"communities": []any{"65000:600"}}}},
	}))
	t0 := time.Now()
	_, err := lab.Service(ns, "web6", "web", kubelab.IPv6Only(), kubelab.LoadBalancerClass(bgpClass), kubelab.Annotation(kubelab.AnnotationPool, pool6))
	must(t, err)
	ips, err := lab.WaitIPs(ns, "web6", 1, settle)
	must(t, err)
	ip := ips[0]
	if !inRange(ip, pool6First, pool6Last) {
		t.Errorf("IP %s is not from the pool %s-%s", ip, pool6First, pool6Last)
	}
	_, err = lab.r.WaitSessions(settle, true, "tor6_n2", "tor6_n3")
	must(t, err)
	host := netip.PrefixFrom(ip, 128)
	_, err = lab.r.WaitRoutes(host, []netip.Addr{lab.n2.IPv6, lab.n3.IPv6}, settle)
	must(t, err)
	t.Logf("web6 %s: the router's kernel routes %s via n2 and n3 %v after the Service was created", ip, host, time.Since(t0).Round(time.Millisecond))
	if st, err := lab.r.State("tor6_n1"); err != nil || strings.EqualFold(st, "Established") {
		t.Errorf("session tor6_n1 is %q (%v); edge6 does not select n1", st, err)
	}
	for _, rt := range showRoutes(t, lab, "master6", host, "tor6_n2", "tor6_n3") {
		if !strings.Contains(rt.Attrs["BGP.community"], edge6Community) {
			t.Errorf("route %s from %s: BGP.community %q lacks %s", host, rt.Proto, rt.Attrs["BGP.community"], edge6Community)
		}
	}
}

// testBGPDeletePeer: the peers tor and tor6 deleted, their sessions go
// down and the Services' routes leave the router's kernel (the Services
// keep their IPs); the other peer's sessions (tor-ibgp) stay, and edge,
// which still names tor, gets a Warning Event PeerNotFound.
func testBGPDeletePeer(t *testing.T, lab *bgpLab, ns string) {
	must(t, lab.applyEdge(selB))
	host4 := netip.PrefixFrom(webIP(t, lab, ns), 32)
	ips6, err := lab.WaitIPs(ns, "web6", 1, settle)
	must(t, err)
	host6 := netip.PrefixFrom(ips6[0], 128)
	_, err = lab.r.WaitRoutes(host4, []netip.Addr{lab.n2.IPv4, lab.n3.IPv4}, settle)
	must(t, err)
	_, err = lab.r.WaitRoutes(host6, []netip.Addr{lab.n2.IPv6, lab.n3.IPv6}, settle)
	must(t, err)

	t0 := time.Now()
	must(t, lab.DeleteBGP(kubelab.KindBGPPeer, peerTor))
	must(t, lab.DeleteBGP(kubelab.KindBGPPeer, peerTor6))
	d, err := lab.r.WaitSessions(settle, false, "tor_n2", "tor_n3", "tor6_n2", "tor6_n3")
	must(t, err)
	t.Logf("peers deleted: their sessions down after %v", d.Round(time.Millisecond))
	_, err = lab.r.WaitRoutes(host4, nil, settle)
	must(t, err)
	_, err = lab.r.WaitRoutes(host6, nil, settle)
	must(t, err)
	t.Logf("%s and %s gone from the router's kernel %v after the deletion", host4, host6, time.Since(t0).Round(time.Millisecond))

	if _, err := lab.r.WaitSessions(time.Second, true, "ibgp_n2", "ibgp_n3"); err != nil {
		t.Errorf("the other peer's sessions: %v", err)
	}
	msg, err := lab.WaitObjectEvent(kubelab.KindConfiguration, cfgEdge, "PeerNotFound", settle, `"`+peerTor+`"`)
	must(t, err)
	t.Logf("Warning Event on %s %s: %s", kubelab.KindConfiguration, cfgEdge, msg)
	if got := webIP(t, lab, ns); got != host4.Addr() {
		t.Errorf("web's IP changed from %s to %s with its peer deleted", host4.Addr(), got)
	}
}

// applyEdge gives the Configuration edge the nodeSelector sel (peers tor
// and tor-ibgp; pool4 with the community 65000:100, no-export and
// localPref 200).
func (lab *bgpLab) applyEdge(sel map[string]any) error {
	return lab.ApplyBGP(kubelab.KindConfiguration, cfgEdge, map[string]any{
		"mode": "BGP", "nodeSelector": sel,
		"bgp": map[string]any{"peerNames": []any{peerTor, peerIBGP}},
		"advertisements": []any{map[string]any{"poolNames": []any{pool4}, "bgp": map[string]any{
			"communities": []any{"65000:100", "no-export"}, "localPref": int64(edgeLocalPref),
		}}},
	})
}

// webIP waits for the IP of the Service web.
func webIP(t *testing.T, lab *bgpLab, ns string) netip.Addr {
	t.Helper()
	ips, err := lab.WaitIPs(ns, "web", 1, settle)
	must(t, err)
	return ips[0]
}

// showRoutes returns BIRD's routes to prefix in table and fails t unless
// they came from exactly the sessions protos.
func showRoutes(t *testing.T, lab *bgpLab, table string, prefix netip.Prefix, protos ...string) []kubelab.BIRDRoute {
	t.Helper()
	var routes []kubelab.BIRDRoute
	err := lab.Poll(settle, func() error {
		var err error
		if routes, err = lab.r.ShowRoutes(table, prefix); err != nil {
			return err
		}
		var got []string
		for _, r := range routes {
			got = append(got, r.Proto)
		}
		slices.Sort(got)
		if !slices.Equal(got, protos) {
			return fmt.Errorf("BIRD's %s has %s from %v", table, prefix, got)
		}
		return nil
	})
	must(t, err)
	return routes
}

// logLine returns the last line of n's current log that contains s, or
// "".
func logLine(n *kubelab.Node, s string) string {
	var last string
	for line := range strings.SplitSeq(n.Logs(), "\n") {
		if strings.Contains(line, s) {
			last = line
		}
	}
	return last
}
