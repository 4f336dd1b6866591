package kube

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/hostlb/hostlb/daemon/reconcile"
)

func bgpPool(name string, addrs ...string) *MetalLoadBalancerPool {
	p := &MetalLoadBalancerPool{}
	p.Name = name
	p.Spec.Addresses = addrs
	return p
}

// bgpConfig is a Configuration selecting sel, peering with peers, with one
// advertisement per entry of ads.
func bgpConfig(name string, sel map[string]string, peers []string, ads ...ConfigAdvertisement) *MetalLoadBalancerConfiguration {
	c := &MetalLoadBalancerConfiguration{}
	c.Name = name
	c.Spec.Mode = "BGP"
	c.Spec.NodeSelector = sel
	c.Spec.BGP.PeerNames = peers
	c.Spec.Advertisements = ads
	return c
}

func advert(pools []string, communities []string, localPref, aggr int64) ConfigAdvertisement {
	var a ConfigAdvertisement
	a.PoolNames = pools
	a.BGP.Communities = communities
	if localPref != 0 {
		a.BGP.LocalPref = &localPref
	}
	if aggr != 0 {
		a.BGP.AggregationLength = &aggr
	}
	return a
}

func TestParseCommunities(t *testing.T) {
	std, large, bad := parseCommunities([]string{"65000:100", "no-export", "NO-ADVERTISE", "local-as", "none",
		"65000:100", "1:2:3", "65536:1", "abc", "1:2:3:4", "4294967296:1:1"})
	if want := []uint32{65000<<16 | 100, 0xFFFFFF01, 0xFFFFFF02, 0xFFFFFF03}; !slices.Equal(std, want) {
		t.Errorf("standard %x, want %x", std, want)
	}
	if want := [][3]uint32{{1, 2, 3}}; !slices.Equal(large, want) {
		t.Errorf("large %v, want %v", large, want)
	}
	if want := []string{"65536:1", "abc", "1:2:3:4", "4294967296:1:1"}; !slices.Equal(bad, want) {
		t.Errorf("bad %v, want %v", bad, want)
	}
}

// A BGP-path Service's group: every candidate that a Configuration
// advertising its pool selects, with the advertisement's attributes per
// address; ETP Local narrows to the nodes with a ready endpoint.
func TestGroupsBGPService(t *testing.T) {
	edge := map[string]string{"edge": ""}
	nodes := []*corev1.Node{
		node("n1", edge),
		node("n2", edge),
		node("n3", map[string]string{"edge": "", LabelExcludeLB: ""}),
		node("n4", nil),
		node("n5", map[string]string{"edge": "", "rack": "b"}),
	}
	pools := []*MetalLoadBalancerPool{bgpPool("prod", "203.0.113.0/24", "2001:db8:1::/64"), bgpPool("other", "198.51.100.0/24")}
	cfgs := []*MetalLoadBalancerConfiguration{
		bgpConfig("front", edge, []string{"tor1"},
			advert([]string{"prod"}, []string{"65000:100", "no-export", "64512:1:2", "bogus"}, 150, 24)),
		bgpConfig("rack-b", map[string]string{"rack": "b"}, nil, advert([]string{"prod"}, []string{"65000:200"}, 0, 0)),
		bgpConfig("others", nil, nil, advert([]string{"other"}, nil, 0, 0)),
	}
	yes, no := ptr(true), ptr(false)
	snap := func(svc *corev1.Service, eps ...*discoveryv1.EndpointSlice) Snapshot {
		return Snapshot{Services: []*corev1.Service{svc}, EndpointSlices: eps, Nodes: nodes, Pools: pools, Configurations: cfgs,
			BGPPeers: []*MetalLoadBalancerBGPPeer{bgpPeerObj("tor1", "192.0.2.1", 64512, 64500), bgpPeerObj("tor2", "192.0.2.2", 64512, 64500)}}
	}
	ready := slice("svc", ep("n4", yes, yes, no))

	gs := groupsOf(snap(lbService(withIngress("203.0.113.7", "2001:db8:1::7")), ready), "")
	if len(gs) != 1 {
		t.Fatalf("groups %+v", gs)
	}
	g := gs[0]
	if g.Mode != "bgp" || !slices.Equal(g.Nodes, []string{"n1", "n2", "n5"}) {
		t.Errorf("mode %q nodes %v, want bgp on n1 n2 n5 (n3 excluded, n4 unselected)", g.Mode, g.Nodes)
	}
	front := reconcile.BGPPath{Nodes: []string{"n1", "n2", "n3", "n5"},
		Communities:      []uint32{65000<<16 | 100, 0xFFFFFF01},
		LargeCommunities: [][3]uint32{{64512, 1, 2}}, LocalPref: 150, AggregationLength: 24,
		// front names tor1: its paths go to tor1 alone; rack-b names no
		// peer: to every peer.
		Peers:  []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		Source: "MetalLoadBalancerConfiguration/front#0"}
	rackB := reconcile.BGPPath{Nodes: []string{"n5"}, Communities: []uint32{65000<<16 | 200},
		Source: "MetalLoadBalancerConfiguration/rack-b#0"}
	want := map[netip.Addr][]reconcile.BGPPath{
		netip.MustParseAddr("203.0.113.7"):   {front, rackB},
		netip.MustParseAddr("2001:db8:1::7"): {front, rackB},
	}
	if diff := cmp.Diff(want, g.BGP, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
	// Every owner's announcement carries the paths of its address.
	if a := g.Announcement(netip.MustParseAddr("203.0.113.7")); len(a.BGP) != 2 || a.Mode != "bgp" {
		t.Errorf("announcement %+v", a)
	}

	// ETP Local: only the selected nodes with a ready local endpoint.
	svc := lbService(withIngress("203.0.113.7"), etpLocal)
	gs = groupsOf(snap(svc, slice("svc", ep("n2", yes, yes, no), ep("n4", yes, yes, no), ep("n1", no, no, no))), "")
	if len(gs) != 1 || !slices.Equal(gs[0].Nodes, []string{"n2"}) {
		t.Errorf("ETP Local: %+v", gs)
	}
	// No ready endpoint: nobody advertises.
	gs = groupsOf(snap(lbService(withIngress("203.0.113.7")), slice("svc", ep("n1", no, no, no))), "")
	if len(gs) != 1 || gs[0].Nodes == nil || len(gs[0].Nodes) != 0 {
		t.Errorf("no endpoint: %+v", gs)
	}
	// An address in a pool nobody advertises: no path, no node for it.
	gs = groupsOf(snap(lbService(withIngress("192.0.2.1")), ready), "")
	if len(gs) != 1 || len(gs[0].Nodes) != 0 {
		t.Errorf("unadvertised pool: %+v", gs)
	}
	if a := gs[0].Announcement(netip.MustParseAddr("192.0.2.1")); a.BGP == nil || len(a.BGP) != 0 {
		t.Errorf("an unadvertised address must carry an empty (not nil) path list: %+v", a)
	}
	// Another pool's Configuration selects every node.
	gs = groupsOf(snap(lbService(withIngress("198.51.100.9")), ready), "")
	if len(gs) != 1 || !slices.Equal(gs[0].Nodes, []string{"n1", "n2", "n4", "n5"}) {
		t.Errorf("pool other: %+v", gs)
	}
	// Overlapping pools: the Service's pool annotation decides.
	over := append(slices.Clone(pools), bgpPool("wide", "203.0.0.0/16"))
	s := snap(lbService(withIngress("203.0.113.7"), annotated(AnnotationPool, "wide")), ready)
	s.Pools = over
	s.Configurations = append(slices.Clone(cfgs), bgpConfig("wide", map[string]string{"rack": "b"}, nil, advert([]string{"wide"}, nil, 0, 0)))
	gs = groupsOf(s, "")
	if len(gs) != 1 || len(gs[0].BGP[netip.MustParseAddr("203.0.113.7")]) != 1 || !slices.Equal(gs[0].Nodes, []string{"n5"}) {
		t.Errorf("pool annotation: %+v", gs)
	}
	// [kubernetes] load_balancer_class: only Services of that class.
	gs = groupsOf(snap(lbService(withIngress("203.0.113.7"), specClass("example.com/bgp")), ready), "example.com/bgp")
	if len(gs) != 1 || gs[0].Mode != "bgp" {
		t.Errorf("load_balancer_class: %+v", gs)
	}
	if gs = groupsOf(snap(lbService(withIngress("203.0.113.7")), ready), "example.com/bgp"); len(gs) != 0 {
		t.Errorf("a class-less Service with load_balancer_class set: %+v", gs)
	}
}

// newBGPWorld reports bad communities and unsupported modes, and keeps the
// rest.
func TestBGPWorldProblems(t *testing.T) {
	cfgs := []*MetalLoadBalancerConfiguration{
		bgpConfig("a", nil, nil, advert([]string{"p"}, []string{"65000:1", "99999:1"}, 0, 0)),
		bgpConfig("b", nil, nil),
	}
	cfgs[1].Spec.Mode = "L2"
	w, problems := newBGPWorld(Snapshot{Configurations: cfgs, Pools: []*MetalLoadBalancerPool{bgpPool("p", "192.0.2.0/24")}})
	if len(problems) != 2 || problems[0].reason != "InvalidCommunity" || problems[0].name != "a" || problems[1].reason != "UnsupportedMode" {
		t.Fatalf("problems %+v", problems)
	}
	ps := w.paths(netip.MustParseAddr("192.0.2.1"), "")
	if len(ps) != 1 || !slices.Equal(ps[0].Communities, []uint32{65000<<16 | 1}) {
		t.Errorf("paths %+v", ps)
	}
}

func bgpPeerObj(name, addr string, myASN, peerASN int64, mut ...func(*MetalLoadBalancerBGPPeer)) *MetalLoadBalancerBGPPeer {
	p := &MetalLoadBalancerBGPPeer{}
	p.Name = name
	p.UID = types.UID("uid-" + name)
	p.Spec.PeerAddress, p.Spec.MyASN, p.Spec.PeerASN = addr, myASN, peerASN
	for _, m := range mut {
		m(p)
	}
	return p
}

func passwordSecret(ns, name, pw string, labelled bool) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{"password": []byte(pw)}}
	if labelled {
		s.Labels = map[string]string{SecretLabel: "true"}
	}
	return s
}

// A node's sessions: the peers of every Configuration that selects it,
// once each, translated with its own source address, BFD, hold time and
// the password of a labelled Secret; a missing peer or Secret is a
// problem, never a session with a wrong password.
func TestNodePeersMergeAndSecrets(t *testing.T) {
	edge := map[string]string{"edge": ""}
	nodes := []*corev1.Node{node("n1", edge), node("n2", map[string]string{"edge": "", "rack": "b"}), node("n3", nil)}
	peers := []*MetalLoadBalancerBGPPeer{
		bgpPeerObj("tor1", "192.0.2.1", 64512, 64500, func(p *MetalLoadBalancerBGPPeer) {
			p.Spec.PeerPort = 1179
			p.Spec.HoldTime = "30s"
			p.Spec.SourceAddresses = []SourceAddress{{NodeName: "n2", Address: "192.0.2.12"}}
			p.Spec.BFD = &BFDProfile{ReceiveInterval: 100, DetectMultiplier: 5}
			p.Spec.PasswordSecretRef = &SecretRef{Namespace: "d8", Name: "tor-pw"}
		}),
		bgpPeerObj("tor2", "2001:db8::1", 65010, 64501),
		bgpPeerObj("rack-b", "192.0.2.2", 64512, 64502, func(p *MetalLoadBalancerBGPPeer) {
			p.Spec.PasswordSecretRef = &SecretRef{Namespace: "d8", Name: "unlabelled"}
		}),
		bgpPeerObj("tor1-again", "192.0.2.1", 64512, 64599),
	}
	cfgs := []*MetalLoadBalancerConfiguration{
		bgpConfig("a-front", edge, []string{"tor1", "tor2", "ghost"}),
		bgpConfig("b-rack", map[string]string{"rack": "b"}, []string{"tor1", "rack-b", "tor1-again"}),
	}
	snap := Snapshot{Nodes: nodes, BGPPeers: peers, Configurations: cfgs,
		Secrets: []*corev1.Secret{passwordSecret("d8", "tor-pw", "s3cret", true), passwordSecret("d8", "unlabelled", "x", false)}}

	got, problems := nodePeers(snap, "n1")
	addrsOf := func(ps []nodePeer) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.peer.Address.String())
		}
		return out
	}
	if !slices.Equal(addrsOf(got), []string{"192.0.2.1", "2001:db8::1"}) {
		t.Fatalf("n1 peers %v", addrsOf(got))
	}
	tor1 := got[0].peer
	if tor1.Port != 1179 || tor1.ASN != 64500 || tor1.HoldTime != 30*time.Second || tor1.KeepaliveTime != 10*time.Second ||
		tor1.Password != "s3cret" || tor1.SourceAddress.IsValid() ||
		!tor1.BFD.Enabled || tor1.BFD.MinRx != 100*time.Millisecond || tor1.BFD.MinTx != 300*time.Millisecond || tor1.BFD.Multiplier != 5 {
		t.Errorf("tor1 on n1: %+v", tor1)
	}
	if got[1].peer.HoldTime != defaultHoldTime || got[1].peer.Port != 0 {
		t.Errorf("tor2 defaults: %+v", got[1].peer)
	}
	// Each session speaks its peer's myASN.
	if tor1.LocalASN != 64512 || got[1].peer.LocalASN != 65010 {
		t.Errorf("local AS: tor1 %d, tor2 %d; want 64512, 65010", tor1.LocalASN, got[1].peer.LocalASN)
	}
	if len(problems) != 1 || problems[0].reason != "PeerNotFound" || problems[0].name != "a-front" {
		t.Errorf("n1 problems %+v", problems)
	}

	// n2: both Configurations; tor1 once, with n2's source address; the
	// unlabelled Secret's peer has no session; the same address twice
	// keeps the first.
	got, problems = nodePeers(snap, "n2")
	if !slices.Equal(addrsOf(got), []string{"192.0.2.1", "2001:db8::1"}) || got[0].peer.SourceAddress != netip.MustParseAddr("192.0.2.12") {
		t.Errorf("n2 peers %+v", got)
	}
	var reasons []string
	for _, p := range problems {
		reasons = append(reasons, p.reason+":"+p.name)
	}
	if want := []string{"PeerNotFound:a-front", "PasswordSecretNotFound:rack-b", "DuplicatePeer:tor1-again"}; !slices.Equal(reasons, want) {
		t.Errorf("n2 problems %v, want %v", reasons, want)
	}
	// n3: no Configuration selects it; an unknown node has none either.
	if got, _ := nodePeers(snap, "n3"); len(got) != 0 {
		t.Errorf("n3 peers %+v", got)
	}
	if got, _ := nodePeers(snap, "nope"); len(got) != 0 {
		t.Errorf("unknown node peers %+v", got)
	}
}

func TestTranslatePeerRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		peer   *MetalLoadBalancerBGPPeer
		ok     bool
		reason string
	}{
		{"bad address", bgpPeerObj("p", "192.0.2.300", 1, 2), false, "InvalidPeer"},
		{"bad ASN", bgpPeerObj("p", "192.0.2.1", 1, 0), false, "InvalidPeer"},
		{"bad myASN", bgpPeerObj("p", "192.0.2.1", 0, 2), false, "InvalidPeer"},
		{"short hold time", bgpPeerObj("p", "192.0.2.1", 1, 2, func(p *MetalLoadBalancerBGPPeer) { p.Spec.HoldTime = "1s" }), true, "InvalidHoldTime"},
		{"no password key", bgpPeerObj("p", "192.0.2.1", 1, 2, func(p *MetalLoadBalancerBGPPeer) {
			p.Spec.PasswordSecretRef = &SecretRef{Namespace: "d8", Name: "empty"}
		}), false, "PasswordSecretInvalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			empty := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "d8", Name: "empty", Labels: map[string]string{SecretLabel: "true"}}}
			got, problems, ok := translatePeer(tc.peer, "n1", []*corev1.Secret{empty})
			if ok != tc.ok || len(problems) != 1 || problems[0].reason != tc.reason {
				t.Errorf("ok %v problems %+v", ok, problems)
			}
			if ok && got.HoldTime != minHoldTime {
				t.Errorf("hold time %s", got.HoldTime)
			}
		})
	}
}

// The IPAM leader reports the BGP objects' problems as Warning Events on
// them, once while they last, and the rest keeps working.
func TestIPAMReportsBGPProblems(t *testing.T) {
	rec := record.NewFakeRecorder(100)
	c := NewIPAM(IPAMOptions{Log: slog.New(slog.DiscardHandler), Client: fake.NewClientset(), Recorder: rec, Identity: "n1"})
	cfg := bgpConfig("front", nil, []string{"ghost"}, advert([]string{"p"}, []string{"65000:1", "70000:1"}, 0, 0),
		advert([]string{"p"}, []string{"x"}, 0, 0))
	cfg.UID = "uid-front"
	snap := Snapshot{Configurations: []*MetalLoadBalancerConfiguration{cfg},
		BGPPeers: []*MetalLoadBalancerBGPPeer{bgpPeerObj("tor", "192.0.2.1", 1, 2, func(p *MetalLoadBalancerBGPPeer) {
			p.Spec.PasswordSecretRef = &SecretRef{Namespace: "d8", Name: "pw"}
		})},
		Secrets: []*corev1.Secret{passwordSecret("d8", "pw", "x", false)}}
	c.reportBGP(snap)
	c.reportBGP(snap) // the same again: no new Event
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	want := []string{
		"Warning InvalidCommunity advertisements[0]: communities 70000:1 are not",
		"Warning PeerNotFound bgp.peerNames: MetalLoadBalancerBGPPeer \"ghost\" does not exist",
		"Warning PasswordSecretNotFound passwordSecretRef d8/pw: no such Secret with the label",
	}
	if len(got) != len(want) {
		t.Fatalf("events %q", got)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("event %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
	if !strings.Contains(got[0], "advertisements[1]: communities x") {
		t.Errorf("two bad advertisements are one Event: %q", got[0])
	}
}
