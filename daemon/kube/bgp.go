package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/hostlb/hostlb/daemon/ipam"
	"github.com/hostlb/hostlb/daemon/reconcile"
)

// The BGP path of Kubernetes (reference §5): MetalLoadBalancerPools give
// Services their IPs (IPAM), MetalLoadBalancerConfigurations say which
// nodes advertise which pools with which attributes and peer with which
// MetalLoadBalancerBGPPeers. This file turns them into the groups' BGP
// paths; peers.go into this node's sessions.

// Well-known communities (RFC 1997; "local-as" is NO_EXPORT_SUBCONFED, as
// MetalLB names it).
var wellKnownCommunities = map[string]uint32{
	"no-export":    0xFFFFFF01,
	"no-advertise": 0xFFFFFF02,
	"local-as":     0xFFFFFF03,
}

// parseCommunities reads an advertisement's communities: "asn:value"
// (each ≤ 65535, RFC 1997), "global:local1:local2" (RFC 8092 large), the
// well-known names, and "none" (nothing). A bad entry is left out and
// reported; the others are used. The results are sorted and unique.
func parseCommunities(in []string) (std []uint32, large [][3]uint32, bad []string) {
	for _, s := range in {
		s = strings.TrimSpace(s)
		if v, ok := wellKnownCommunities[strings.ToLower(s)]; ok {
			std = append(std, v)
			continue
		}
		if strings.EqualFold(s, "none") {
			continue
		}
		parts := strings.Split(s, ":")
		switch len(parts) {
		case 2:
			a, err1 := strconv.ParseUint(parts[0], 10, 16)
			b, err2 := strconv.ParseUint(parts[1], 10, 16)
			if err1 != nil || err2 != nil {
				bad = append(bad, s)
				continue
			}
			std = append(std, uint32(a)<<16|uint32(b))
		case 3:
			var c [3]uint32
			ok := true
			for i, p := range parts {
				v, err := strconv.ParseUint(p, 10, 32)
				ok = ok && err == nil
				c[i] = uint32(v)
			}
			if !ok {
				bad = append(bad, s)
				continue
			}
			large = append(large, c)
		default:
			bad = append(bad, s)
		}
	}
	slices.Sort(std)
	std = slices.Compact(std)
	slices.SortFunc(large, func(a, b [3]uint32) int { return slices.Compare(a[:], b[:]) })
	large = slices.Compact(large)
	return std, large, bad
}

// bgpAdvert is one advertisement of one Configuration, ready to become a
// path of every address of its pools.
type bgpAdvert struct {
	path  reconcile.BGPPath
	pools []string
}

// bgpWorld is the BGP part of a groupWorld: the pools (to find an
// address's pool) and the advertisements by pool.
type bgpWorld struct {
	pools  []ipam.Pool // named by the MetalLoadBalancerPool's own name
	byPool map[string][]*bgpAdvert
}

// bgpProblem is something wrong in the BGP objects, reported on the object
// (Warning Event) by the IPAM leader; the rest works.
type bgpProblem struct {
	kind, name string
	uid        types.UID
	reason     string
	msg        string
}

// newBGPWorld reads the pools and Configurations of snap (with its Nodes,
// for each Configuration's selection). Pool entries that do not
// parse are left out (IPAM reports them).
func newBGPWorld(snap Snapshot) (*bgpWorld, []bgpProblem) {
	w := &bgpWorld{byPool: map[string][]*bgpAdvert{}}
	for _, p := range snap.Pools {
		var good []string
		for _, a := range p.Spec.Addresses {
			if _, err := ipam.ParsePool(p.Name, []string{a}, true, false); err == nil {
				good = append(good, a)
			}
		}
		if pool, err := ipam.ParsePool(p.Name, good, true, false); err == nil {
			w.pools = append(w.pools, pool)
		}
	}
	slices.SortFunc(w.pools, func(a, b ipam.Pool) int { return strings.Compare(a.Name, b.Name) })
	cfgs := slices.Clone(snap.Configurations)
	slices.SortFunc(cfgs, func(a, b *MetalLoadBalancerConfiguration) int { return strings.Compare(a.Name, b.Name) })
	var problems []bgpProblem
	for _, c := range cfgs {
		if c.Spec.Mode != "" && c.Spec.Mode != "BGP" {
			problems = append(problems, bgpProblem{"MetalLoadBalancerConfiguration", c.Name, c.UID, "UnsupportedMode",
				fmt.Sprintf("mode %q is not BGP; the configuration is ignored", c.Spec.Mode)})
			continue
		}
		nodes := selectedNodes(c.Spec.NodeSelector, snap.Nodes)
		peers := configPeerAddrs(c, snap.BGPPeers)
		for i, a := range c.Spec.Advertisements {
			std, large, bad := parseCommunities(a.BGP.Communities)
			if len(bad) > 0 {
				problems = append(problems, bgpProblem{"MetalLoadBalancerConfiguration", c.Name, c.UID, "InvalidCommunity",
					fmt.Sprintf("advertisements[%d]: communities %s are not asn:value (0-65535 each), "+
						"global:local1:local2, no-export, no-advertise, local-as or none; left out, the rest is advertised",
						i, strings.Join(bad, ", "))})
			}
			ad := &bgpAdvert{pools: a.PoolNames, path: reconcile.BGPPath{
				Nodes: nodes, Communities: std, LargeCommunities: large, Peers: peers,
				Source: fmt.Sprintf("MetalLoadBalancerConfiguration/%s#%d", c.Name, i),
			}}
			if lp := a.BGP.LocalPref; lp != nil && *lp > 0 && *lp <= 1<<32-1 {
				ad.path.LocalPref = uint32(*lp)
			}
			if l := a.BGP.AggregationLength; l != nil && *l > 0 && *l <= 128 {
				ad.path.AggregationLength = int(*l)
			}
			for _, p := range a.PoolNames {
				w.byPool[p] = append(w.byPool[p], ad)
			}
		}
	}
	return w, problems
}

// configPeerAddrs are the addresses of c's peers: its advertisements go to
// them alone (the reference's BGPAdvertisement peers). A Configuration
// that names no peer advertises to every peer (MetalLB's empty peers);
// one whose peers all do not exist or do not parse, to none (an empty,
// non-nil list).
func configPeerAddrs(c *MetalLoadBalancerConfiguration, peers []*MetalLoadBalancerBGPPeer) []netip.Addr {
	if len(c.Spec.BGP.PeerNames) == 0 {
		return nil
	}
	out := []netip.Addr{}
	for _, p := range peers {
		if !slices.Contains(c.Spec.BGP.PeerNames, p.Name) {
			continue
		}
		if a, err := netip.ParseAddr(strings.TrimSpace(p.Spec.PeerAddress)); err == nil {
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// selectedNodes are the Nodes a selector selects, not being deleted,
// sorted; never nil.
func selectedNodes(sel map[string]string, nodes []*corev1.Node) []string {
	out := []string{}
	for _, n := range nodes {
		if n.DeletionTimestamp == nil && Selects(sel, n.Labels) {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

// paths returns the BGP paths of addr, an IP of a Service that names pool
// (its annotation; "" when it names none): the advertisements of the
// pools that contain addr (of that pool alone when it does).
func (w *bgpWorld) paths(addr netip.Addr, pool string) []reconcile.BGPPath {
	var names []string
	for _, p := range w.pools {
		if p.Contains(addr) {
			names = append(names, p.Name)
		}
	}
	if slices.Contains(names, pool) {
		names = []string{pool}
	}
	out := []reconcile.BGPPath{}
	for _, n := range names {
		for _, ad := range w.byPool[n] {
			if !slices.ContainsFunc(out, func(p reconcile.BGPPath) bool { return p.Source == ad.path.Source }) {
				out = append(out, ad.path)
			}
		}
	}
	return out
}
