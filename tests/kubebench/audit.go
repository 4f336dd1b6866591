package kubebench

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"
)

// Request is one API request as kube-apiserver's audit log records it
// (audit.k8s.io/v1 Event, level Metadata).
type Request struct {
	AuditID     string
	User        string
	Verb        string // get, list, watch, create, update, patch, delete, …
	Group       string // "" for the core group
	Resource    string
	Subresource string
	Namespace   string
	Name        string
	Code        int    // HTTP status; 0 when the line has none
	Source      string // the first of sourceIPs: tells apart nodes that share one ServiceAccount
	// Received is requestReceivedTimestamp: when the apiserver got it.
	Received time.Time
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

// maxAuditLine bounds one line of the log; Metadata lines are ~1 KiB.
const maxAuditLine = 1 << 20

// ParseAudit reads an audit log in JSON format (--audit-log-format=json)
// and returns each request once, in the order of the log, at its first
// line: a watch logs ResponseStarted when it starts and ResponseComplete
// when it ends, and counts once, when it starts (Received is the same on
// both lines). Lines of stage RequestReceived are skipped (the harness's
// policy omits them anyway, and they carry no status). A line that is not
// JSON is an error naming its number, except a last line cut short by a
// write in progress.
func ParseAudit(r io.Reader) ([]Request, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxAuditLine)
	var (
		out     []Request
		seen    = map[string]bool{}
		lineNo  int
		lastErr error
	)
	for sc.Scan() {
		lineNo++
		if lastErr != nil {
			// A bad line followed by more lines: not a torn last write.
			return nil, lastErr
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
		req := Request{
			AuditID:  ev.AuditID,
			User:     ev.User.Username,
			Verb:     ev.Verb,
			Received: ev.RequestReceivedTimestamp,
		}
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

// Kind names a kind of request: verb, resource (with its group when not
// the core group) and subresource, e.g. "update services/status" or
// "update leases.coordination.k8s.io".
func (r Request) Kind() string {
	res := r.Resource
	if r.Group != "" {
		res += "." + r.Group
	}
	if r.Subresource != "" {
		res += "/" + r.Subresource
	}
	if res == "" {
		return r.Verb
	}
	return r.Verb + " " + res
}

// Count is how many requests of one kind a window holds.
type Count struct {
	Kind   string
	N      int
	Failed int // HTTP status ≥ 400 (e.g. 409 Conflict)
}

// Window is a half-open interval [From, To) of requestReceivedTimestamp.
type Window struct{ From, To time.Time }

// Contains reports whether t is in the window.
func (w Window) Contains(t time.Time) bool { return !t.Before(w.From) && t.Before(w.To) }

// CountRequests groups user's requests received within w by Kind, most
// frequent first (ties by kind).
func CountRequests(reqs []Request, user string, w Window) []Count {
	by := map[string]*Count{}
	for _, r := range reqs {
		if r.User != user || !w.Contains(r.Received) {
			continue
		}
		c := by[r.Kind()]
		if c == nil {
			c = &Count{Kind: r.Kind()}
			by[r.Kind()] = c
		}
		c.N++
		if r.Code >= 400 {
			c.Failed++
		}
	}
	out := make([]Count, 0, len(by))
	for _, c := range by {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Count) int {
		return cmp.Or(cmp.Compare(b.N, a.N), cmp.Compare(a.Kind, b.Kind))
	})
	return out
}

// Total sums the counts.
func Total(cs []Count) (n, failed int) {
	for _, c := range cs {
		n += c.N
		failed += c.Failed
	}
	return n, failed
}
