package kubelabbench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/hostlb/hostlb/tests/kubebench"
)

// Request is one API request from the audit log, with the address it came
// from: every node's hostlbd authenticates as the same ServiceAccount, so
// only the source address tells the nodes apart.
type Request struct {
	kubebench.Request
	Source string // the first of sourceIPs
}

// auditEvent is the part of an audit.k8s.io/v1 Event read here.
type auditEvent struct {
	AuditID string `json:"auditID"`
	Stage   string `json:"stage"`
	Verb    string `json:"verb"`
	User    struct {
		Username string `json:"username"`
	} `json:"user"`
	SourceIPs []string `json:"sourceIPs"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
}

// ParseAudit reads a JSON audit log (--audit-log-format=json) and returns
// each request once, at its first line: a watch logs ResponseStarted when
// it starts and ResponseComplete when it ends, and counts once, when it
// starts. RequestReceived lines are skipped. A line that is not JSON is an
// error naming it, except a last line cut short by a write in progress.
// (The rules of kubebench.ParseAudit, plus the source address.)
func ParseAudit(r io.Reader) ([]Request, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var (
		out     []Request
		seen    = map[string]bool{}
		lineNo  int
		lastErr error
	)
	for sc.Scan() {
		lineNo++
		if lastErr != nil {
			return nil, lastErr // a bad line with more after it: not a torn write
		}
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var ev auditEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			lastErr = fmt.Errorf("audit log line %d: %w", lineNo, err)
			continue
		}
		if ev.Stage == "RequestReceived" || seen[ev.AuditID] {
			continue
		}
		seen[ev.AuditID] = true
		req := Request{Request: kubebench.Request{
			AuditID: ev.AuditID, User: ev.User.Username, Verb: ev.Verb, Received: ev.RequestReceivedTimestamp,
		}}
		if len(ev.SourceIPs) > 0 {
			req.Source = ev.SourceIPs[0]
		}
		if o := ev.ObjectRef; o != nil {
			req.Group, req.Resource, req.Subresource = o.APIGroup, o.Resource, o.Subresource
			req.Namespace, req.Name = o.Namespace, o.Name
		}
		if ev.ResponseStatus != nil {
			req.Code = ev.ResponseStatus.Code
		}
		out = append(out, req)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}

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
		by[name] = append(by[name], r.Request)
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
