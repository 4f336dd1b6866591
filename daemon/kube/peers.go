package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/hostlb/hostlb/daemon/bgp"
)

// The session defaults of a MetalLoadBalancerBGPPeer that leaves them out:
// those of a [[bgp.peer]] (SPEC §4), so a node's sessions behave alike
// wherever they are declared.
const (
	defaultHoldTime  = 9 * time.Second
	defaultBFDRx     = 300 * time.Millisecond
	defaultBFDTx     = 300 * time.Millisecond
	defaultBFDDetect = 3
	minHoldTime      = 3 * time.Second // RFC 4271 §4.2: 0 or at least 3 s
)

// translatePeer turns a MetalLoadBalancerBGPPeer into node's session (the
// reference's translation, §5.1): the per-node source address of
// sourceAddresses when one names node (every other node lets the kernel
// choose), the password from the referenced Secret — only one carrying
// SecretLabel=true (the only Secrets hostlb can see) and its key
// "password"; without it there is no session, rather than one with a
// wrong password. ok is false when the peer cannot be used at all.
func translatePeer(p *MetalLoadBalancerBGPPeer, node string, secrets []*corev1.Secret) (out bgp.Peer, problems []bgpProblem, ok bool) {
	report := func(reason, format string, args ...any) {
		problems = append(problems, bgpProblem{kind: "MetalLoadBalancerBGPPeer", name: p.Name, uid: p.UID,
			reason: reason, msg: fmt.Sprintf(format, args...)})
	}
	s := p.Spec
	addr, err := netip.ParseAddr(strings.TrimSpace(s.PeerAddress))
	if err != nil {
		report("InvalidPeer", "peerAddress %q is not an IP address; no session", s.PeerAddress)
		return bgp.Peer{}, problems, false
	}
	if s.PeerASN < 1 || s.PeerASN > 1<<32-1 {
		report("InvalidPeer", "peerASN %d is not 1-4294967295; no session", s.PeerASN)
		return bgp.Peer{}, problems, false
	}
	if s.MyASN < 1 || s.MyASN > 1<<32-1 {
		report("InvalidPeer", "myASN %d is not 1-4294967295; no session", s.MyASN)
		return bgp.Peer{}, problems, false
	}
	out = bgp.Peer{Address: addr.Unmap(), ASN: uint32(s.PeerASN), LocalASN: uint32(s.MyASN), HoldTime: defaultHoldTime}
	if s.PeerPort > 0 && s.PeerPort <= 65535 {
		out.Port = uint16(s.PeerPort)
	}
	if s.HoldTime != "" {
		d, err := time.ParseDuration(s.HoldTime)
		switch {
		case err != nil || d < 0:
			report("InvalidHoldTime", "holdTime %q is not a duration; using %s", s.HoldTime, defaultHoldTime)
		case d > 0 && d < minHoldTime:
			report("InvalidHoldTime", "holdTime %s is below %s (RFC 4271); using %s", d, minHoldTime, minHoldTime)
			out.HoldTime = minHoldTime
		default:
			out.HoldTime = d.Truncate(time.Second) // BGP carries whole seconds
		}
	}
	out.KeepaliveTime = (out.HoldTime / 3).Truncate(time.Second)
	for _, sa := range s.SourceAddresses {
		a, err := netip.ParseAddr(strings.TrimSpace(sa.Address))
		if err != nil {
			report("InvalidSourceAddress", "sourceAddresses of node %s: %q is not an IP address; the kernel chooses", sa.NodeName, sa.Address)
			continue
		}
		if sa.NodeName == node && node != "" {
			out.SourceAddress = a.Unmap()
		}
	}
	if b := s.BFD; b != nil {
		out.BFD = bgp.BFD{Enabled: true, MinRx: defaultBFDRx, MinTx: defaultBFDTx, Multiplier: defaultBFDDetect}
		if b.ReceiveInterval > 0 {
			out.BFD.MinRx = time.Duration(b.ReceiveInterval) * time.Millisecond
		}
		if b.TransmitInterval > 0 {
			out.BFD.MinTx = time.Duration(b.TransmitInterval) * time.Millisecond
		}
		if b.DetectMultiplier > 0 && b.DetectMultiplier <= 255 {
			out.BFD.Multiplier = uint8(b.DetectMultiplier)
		}
	}
	if ref := s.PasswordSecretRef; ref != nil {
		i := slices.IndexFunc(secrets, func(sec *corev1.Secret) bool {
			return sec.Namespace == ref.Namespace && sec.Name == ref.Name && sec.Labels[SecretLabel] == "true"
		})
		if i < 0 {
			report("PasswordSecretNotFound", "passwordSecretRef %s/%s: no such Secret with the label %s: \"true\" "+
				"(hostlb reads no other Secret); no session until it exists", ref.Namespace, ref.Name, SecretLabel)
			return bgp.Peer{}, problems, false
		}
		pw, has := secrets[i].Data["password"]
		if !has {
			if v, ok := secrets[i].StringData["password"]; ok {
				pw, has = []byte(v), true
			}
		}
		if !has || len(pw) == 0 {
			report("PasswordSecretInvalid", "Secret %s/%s has no key \"password\"; no session until it has", ref.Namespace, ref.Name)
			return bgp.Peer{}, problems, false
		}
		out.Password = string(pw)
	}
	return out, problems, true
}

// nodePeers are the sessions of node (its Node labels) from the API, by
// the reference's merge rules: every Configuration in BGP mode whose
// nodeSelector selects the Node contributes its bgp.peerNames; a peer
// named by several Configurations is one session; a name that matches no
// MetalLoadBalancerBGPPeer is reported and skipped; two peers with the same
// address keep the one met first (Configurations by name, then peerNames
// order). Problems are every reason something was not used as written.
func nodePeers(snap Snapshot, node string) ([]nodePeer, []bgpProblem) {
	var labels map[string]string
	found := false
	for _, n := range snap.Nodes {
		if n.Name == node {
			labels, found = n.Labels, n.DeletionTimestamp == nil
			break
		}
	}
	if !found {
		return nil, nil
	}
	peers := make(map[string]*MetalLoadBalancerBGPPeer, len(snap.BGPPeers))
	for _, p := range snap.BGPPeers {
		peers[p.Name] = p
	}
	cfgs := slices.Clone(snap.Configurations)
	slices.SortFunc(cfgs, func(a, b *MetalLoadBalancerConfiguration) int { return strings.Compare(a.Name, b.Name) })
	var (
		out      []nodePeer
		problems []bgpProblem
		used     = map[string]bool{}
		byAddr   = map[netip.Addr]string{}
	)
	for _, c := range cfgs {
		if (c.Spec.Mode != "" && c.Spec.Mode != "BGP") || !Selects(c.Spec.NodeSelector, labels) {
			continue
		}
		for _, name := range c.Spec.BGP.PeerNames {
			if used[name] {
				continue
			}
			used[name] = true
			p, ok := peers[name]
			if !ok {
				problems = append(problems, missingPeer(c, name))
				continue
			}
			bp, ps, ok := translatePeer(p, node, snap.Secrets)
			problems = append(problems, ps...)
			if !ok {
				continue
			}
			if first, dup := byAddr[bp.Address]; dup {
				problems = append(problems, bgpProblem{kind: "MetalLoadBalancerBGPPeer", name: name, uid: p.UID,
					reason: "DuplicatePeer", msg: fmt.Sprintf("node %s already peers with %s as MetalLoadBalancerBGPPeer %s; this one is not used there",
						node, bp.Address, first)})
				continue
			}
			byAddr[bp.Address] = name
			out = append(out, nodePeer{bp, p})
		}
	}
	return out, problems
}

// nodePeer is a session of the node and the object it comes from.
type nodePeer struct {
	peer bgp.Peer
	obj  *MetalLoadBalancerBGPPeer
}

func missingPeer(c *MetalLoadBalancerConfiguration, name string) bgpProblem {
	return bgpProblem{kind: "MetalLoadBalancerConfiguration", name: c.Name, uid: c.UID, reason: "PeerNotFound",
		msg: fmt.Sprintf("bgp.peerNames: MetalLoadBalancerBGPPeer %q does not exist; the other peers are used", name)}
}

// bgpProblems is every problem of the cluster's BGP objects that does not
// depend on the node (the IPAM leader reports them as Events): bad
// communities and modes, peers named but missing, peers that cannot be
// used (address, ASN, password Secret), bad hold times and source
// addresses.
func bgpProblems(snap Snapshot) []bgpProblem {
	_, problems := newBGPWorld(snap)
	names := map[string]bool{}
	for _, p := range snap.BGPPeers {
		names[p.Name] = true
	}
	cfgs := slices.Clone(snap.Configurations)
	slices.SortFunc(cfgs, func(a, b *MetalLoadBalancerConfiguration) int { return strings.Compare(a.Name, b.Name) })
	for _, c := range cfgs {
		for _, n := range c.Spec.BGP.PeerNames {
			if !names[n] {
				problems = append(problems, missingPeer(c, n))
			}
		}
	}
	for _, p := range snap.BGPPeers {
		_, ps, _ := translatePeer(p, "", snap.Secrets)
		problems = append(problems, ps...)
	}
	return problems
}

// BGPPeers returns this node's BGP sessions from the API (nodePeers), for
// a speaker with router ID routerID. Each session speaks the peer's myASN
// (bgp.Peer.LocalASN; GoBGP sets the local AS per neighbour), so it need
// not be the node's [bgp] asn. It never blocks and makes no API request;
// nil before the caches are complete. GoBGP has one router ID per node: a
// routerID other than the node's is not used, and logged. Every problem is
// logged once while it lasts (the IPAM leader also reports the
// node-independent ones as Events on the objects).
func (k *Kubernetes) BGPPeers(routerID netip.Addr) []bgp.Peer {
	select {
	case <-k.Source.Synced():
	default:
		return nil
	}
	snap := k.Source.Snapshot()
	peers, problems := nodePeers(snap, k.opts.NodeName)
	var out []bgp.Peer
	for _, np := range peers {
		bp, p := np.peer, np.obj
		if p.Spec.RouterID != "" {
			if id, err := netip.ParseAddr(p.Spec.RouterID); err != nil || id != routerID {
				problems = append(problems, bgpProblem{kind: "MetalLoadBalancerBGPPeer", name: p.Name, uid: p.UID, reason: "RouterIDIgnored",
					msg: fmt.Sprintf("routerID %s is not used: node %s has one router ID, %s ([bgp] router_id)", p.Spec.RouterID, k.opts.NodeName, routerID)})
			}
		}
		out = append(out, bp)
	}
	k.logProblems(problems)
	return out
}

// logProblems logs each problem once while it lasts.
func (k *Kubernetes) logProblems(ps []bgpProblem) {
	k.pmu.Lock()
	defer k.pmu.Unlock()
	now := make(map[string]bool, len(ps))
	for _, p := range ps {
		key := p.kind + "/" + p.name + "/" + p.reason + "/" + p.msg
		now[key] = true
		if !k.problems[key] {
			k.log.Warn("BGP: "+p.reason, "object", p.kind+"/"+p.name, "msg", p.msg)
		}
	}
	k.problems = now
}
