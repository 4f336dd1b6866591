package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// # Scoping paths to peers
//
// A Service's address goes only to the peers of its Configuration
// (Advertisement.Peers): a node in two Configurations must not hand one's
// routes, with their communities, to the other's routers. GoBGP's export
// policy is global for non-route-server peers (doc.go), so the speaker
// marks every path with a private large community, (0, scopeMark, tag),
// where tag names the path's set of peers (0: every peer; the others are
// numbered as the speaker first sees each set), and the global export
// policy
//
//  1. rejects, for each session that may not receive every tag in use, a
//     path with none of the tags allowed to it (the neighbour set of that
//     one peer and a large-community set matched inverted);
//  2. removes the marks from whatever it lets through, so no router ever
//     sees them;
//  3. gives a path of the other family its next hop, or keeps it off
//     the session when the node has no address of that family.
//
// The policy is rebuilt whole (SetPolicies) when the allowed tags of a
// session change, before new paths are added, and each changed session is
// re-evaluated (a soft reset out), so a route never goes where it may not.

const (
	scopeGlobal uint32 = 0
	scopeMark   uint32 = 0x686c62 // "hlb"
)

// scopeCommunity is the mark of tag, as GoBGP parses a large community.
func scopeCommunity(tag uint32) string { return fmt.Sprintf("%d:%d:%d", scopeGlobal, scopeMark, tag) }

// tagOf returns the tag of the peer set peers (0 for nil: every peer),
// numbering a set seen for the first time. Called with op held.
func (s *Speaker) tagOf(peers []netip.Addr) uint32 {
	if peers == nil {
		return 0
	}
	k := fmt.Sprint(peers)
	t, ok := s.tags[k]
	if !ok {
		s.nextTag++
		t = s.nextTag
		s.tags[k] = t
	}
	return t
}

// scopeFor computes, for each session address, the tags it may receive
// when that is not every tag of want; sessions that may receive all are
// left out. Called with op held.
func (s *Speaker) scopeFor(sessions []netip.Addr, want []Advertisement) map[netip.Addr][]uint32 {
	sets := map[uint32][]netip.Addr{}
	for _, a := range want {
		if a.Peers != nil {
			sets[s.tagOf(a.Peers)] = a.Peers
		}
	}
	out := map[netip.Addr][]uint32{}
	for _, p := range sessions {
		allowed, all := []uint32{0}, true
		for _, tag := range slices.Sorted(maps.Keys(sets)) {
			if slices.Contains(sets[tag], p) {
				allowed = append(allowed, tag)
			} else {
				all = false
			}
		}
		if !all {
			out[p] = allowed
		}
	}
	return out
}

// policies is the speaker's whole GoBGP policy: the import policy and the
// export policy with scope statements for the sessions of scope.
func policies(g Global, scope map[netip.Addr][]uint32) *api.SetPoliciesRequest {
	req := &api.SetPoliciesRequest{}
	for name, prefix := range map[string]string{setV4Peers: "0.0.0.0/0", setV6Peers: "::/0"} {
		req.DefinedSets = append(req.DefinedSets, &api.DefinedSet{
			DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: name, List: []string{prefix}})
	}
	reject := func(name string, typ api.Conditions_RouteType) *api.Statement {
		return &api.Statement{Name: name, Conditions: &api.Conditions{RouteType: typ},
			Actions: &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT}}
	}
	req.Policies = append(req.Policies, &api.Policy{
		Name: policyImport,
		Statements: []*api.Statement{
			reject("hostlb-no-ibgp-routes", api.Conditions_ROUTE_TYPE_INTERNAL),
			reject("hostlb-no-ebgp-routes", api.Conditions_ROUTE_TYPE_EXTERNAL),
		},
	})

	var export []*api.Statement
	for _, p := range slices.SortedFunc(maps.Keys(scope), netip.Addr.Compare) {
		id := strings.NewReplacer(".", "-", ":", "-").Replace(p.String())
		peerSet, tagSet := "hostlb-peer-"+id, "hostlb-tags-"+id
		var tags []string
		for _, t := range scope[p] {
			tags = append(tags, scopeCommunity(t))
		}
		req.DefinedSets = append(req.DefinedSets,
			&api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: peerSet,
				List: []string{netip.PrefixFrom(p, p.BitLen()).String()}},
			&api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_LARGE_COMMUNITY, Name: tagSet, List: tags})
		export = append(export, &api.Statement{
			Name: "hostlb-scope-" + id,
			Conditions: &api.Conditions{
				NeighborSet:       &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: peerSet},
				LargeCommunitySet: &api.MatchSet{Type: api.MatchSet_TYPE_INVERT, Name: tagSet},
			},
			Actions: &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT},
		})
	}
	export = append(export, &api.Statement{
		Name: "hostlb-unmark",
		Actions: &api.Actions{LargeCommunity: &api.CommunityAction{
			Type: api.CommunityAction_TYPE_REMOVE, Communities: []string{fmt.Sprintf("^%d:%d:", scopeGlobal, scopeMark)}}},
	})
	cross := func(name string, afi api.Family_Afi, peers string, nh netip.Addr) *api.Statement {
		act := &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT}
		if nh.IsValid() {
			act = &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT, Nexthop: &api.NexthopAction{Address: nh.String()}}
		}
		return &api.Statement{
			Name: name,
			Conditions: &api.Conditions{
				AfiSafiIn:   []*api.Family{{Afi: afi, Safi: api.Family_SAFI_UNICAST}},
				NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: peers},
			},
			Actions: act,
		}
	}
	export = append(export,
		cross("hostlb-ipv6-on-ipv4", api.Family_AFI_IP6, setV4Peers, g.NextHop6),
		cross("hostlb-ipv4-on-ipv6", api.Family_AFI_IP, setV6Peers, g.NextHop4))
	req.Policies = append(req.Policies, &api.Policy{Name: policyExport, Statements: export})
	return req
}

// setPolicies installs the policies and assigns them to the global RIB.
// Called once, at start.
func setPolicies(ctx context.Context, srv *server.BgpServer, g Global) error {
	if err := srv.SetPolicies(ctx, policies(g, nil)); err != nil {
		return err
	}
	for name, dir := range map[string]api.PolicyDirection{
		policyImport: api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		policyExport: api.PolicyDirection_POLICY_DIRECTION_EXPORT,
	} {
		if err := srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: dir,
			Policies: []*api.Policy{{Name: name}}, DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
		}}); err != nil {
			return fmt.Errorf("assign %s: %w", name, err)
		}
	}
	return nil
}

// syncScope makes the export policy scope want's paths to their peers,
// before they are added: the policy is replaced when a session's allowed
// tags change, and each such session re-evaluates what it was sent.
func (s *Speaker) syncScope(ctx context.Context, peers []Peer, want []Advertisement) error {
	var sessions []netip.Addr
	for _, p := range peers {
		sessions = append(sessions, p.Address)
	}
	scope := s.scopeFor(sessions, want)
	if maps.EqualFunc(scope, s.scope, slices.Equal) {
		return nil
	}
	var changed []netip.Addr // sessions that exist and were sent under other rules
	for p := range s.peers {
		if !slices.Equal(scope[p], s.scope[p]) {
			changed = append(changed, p)
		}
	}
	slices.SortFunc(changed, netip.Addr.Compare)
	if err := s.srv.SetPolicies(ctx, policies(s.global, scope)); err != nil {
		return fmt.Errorf("scope paths to their peers: %w", err)
	}
	s.scope = scope
	var errs []error
	for _, p := range changed {
		if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: p.String(), Soft: true,
			Direction: api.ResetPeerRequest_DIRECTION_OUT}); err != nil {
			errs = append(errs, fmt.Errorf("re-send to %s after a scope change: %w", p, err))
		}
	}
	if len(changed) > 0 {
		s.log.Info("paths scoped to their peers", "restricted_sessions", len(scope), "changed", fmt.Sprint(changed))
	}
	return errors.Join(errs...)
}
