package kubelabbench

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/hostlb/hostlb/tests/kubebench"
)

// Request is one API request from the audit log (kubebench.ParseAudit
// keeps its source address: every node's hostlbd authenticates as the same
// ServiceAccount, so only the address tells the nodes apart).
type Request = kubebench.Request

// ParseAudit is kubebench.ParseAudit.
func ParseAudit(r io.Reader) ([]Request, error) { return kubebench.ParseAudit(r) }

// NodeCounts is one node's requests in one window, by kind.
type NodeCounts struct {
	Node   string // the node's name; its source address if no node has it
	Counts []kubebench.Count
}

// CountByNode groups user's requests received in w by source, named by
// nodes (source address → node name), and within each by kind (as
// kubebench.CountRequests). Every node of nodes appears, in name order,
// with no requests too; unknown sources follow, by address.
func CountByNode(reqs []Request, user string, w kubebench.Window, nodes map[string]string) []NodeCounts {
	by := map[string][]kubebench.Request{}
	for _, r := range reqs {
		if r.User != user || !w.Contains(r.Received) {
			continue
		}
		name := nodes[r.Source]
		if name == "" {
			name = r.Source
		}
		by[name] = append(by[name], r)
	}
	for _, name := range nodes {
		if _, ok := by[name]; !ok {
			by[name] = nil
		}
	}
	names := make([]string, 0, len(by))
	for name := range by {
		names = append(names, name)
	}
	known := func(n string) bool {
		for _, v := range nodes {
			if v == n {
				return true
			}
		}
		return false
	}
	slices.SortFunc(names, func(a, b string) int {
		if ka, kb := known(a), known(b); ka != kb {
			if ka {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	out := make([]NodeCounts, 0, len(names))
	for _, name := range names {
		out = append(out, NodeCounts{Node: name, Counts: kubebench.CountRequests(by[name], user, w)})
	}
	return out
}

// Rest splits one node's counts in a quiet window the way the goal
// reads them: watches (allowed), the IPAM Lease's renewals (the leader's
// only duty at rest) and everything else (the goal: none).
type Rest struct {
	Watches, Lease, Other int
	OtherKinds            []string // "create events ×3", for the report
}

// SplitRest sorts counts into a Rest.
func SplitRest(cs []kubebench.Count) Rest {
	var r Rest
	for _, c := range cs {
		switch {
		case strings.HasPrefix(c.Kind, "watch "):
			r.Watches += c.N
		case c.Kind == kubebench.LeaseKind:
			r.Lease += c.N
		default:
			r.Other += c.N
			r.OtherKinds = append(r.OtherKinds, fmt.Sprintf("%s ×%d", c.Kind, c.N))
		}
	}
	return r
}
