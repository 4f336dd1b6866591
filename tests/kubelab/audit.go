package kubelab

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// WatchedResources are the resources whose watches WaitWatching requires:
// what hostlbd needs to place Service IPs.
var WatchedResources = []string{"services", "endpointslices", "nodes", "metalloadbalancerclasses"}

// auditLine is the part of an audit.k8s.io/v1 Event read here (the
// harness logs hostlbd's requests at level Metadata, see kubeapi.AuditLog).
type auditLine struct {
	Stage     string   `json:"stage"`
	Verb      string   `json:"verb"`
	SourceIPs []string `json:"sourceIPs"`
	ObjectRef *struct {
		Resource string `json:"resource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Received time.Time `json:"requestReceivedTimestamp"`
}

// WaitWatching waits until the hostlbd of every node named has a watch of
// each of WatchedResources that the apiserver accepted after since: its
// informers are connected again (after StartAPIServer, a reflector's
// backoff can hold a reconnect for tens of seconds). Nodes are told apart
// by the source address of their requests in the apiserver's audit log.
func (l *Lab) WaitWatching(since time.Time, timeout time.Duration, nodes ...string) error {
	want := map[string]string{} // source IP -> node
	for _, name := range nodes {
		n := l.Node(name)
		if n == nil {
			return fmt.Errorf("kubelab: no node %q", name)
		}
		want[n.IPv4.String()] = name
	}
	err := l.Poll(timeout, func() error {
		got, err := l.watchesSince(since)
		if err != nil {
			return permanent(err)
		}
		var missing []string
		for ip, name := range want {
			for _, res := range WatchedResources {
				if !got[ip][res] {
					missing = append(missing, name+":"+res)
				}
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return fmt.Errorf("no watch yet of %s", strings.Join(missing, ", "))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kubelab: hostlbd watching again since %s: %w", since.Format("15:04:05.000"), err)
	}
	return nil
}

// watchesSince reads the audit log: source IP -> resource -> a watch
// answered 200 was received after since.
func (l *Lab) watchesSince(since time.Time) (map[string]map[string]bool, error) {
	f, err := os.Open(l.Cluster.AuditLogPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // nothing logged yet
	}
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	out := map[string]map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev auditLine
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue // a line being written
		}
		if ev.Verb != "watch" || ev.Stage != "ResponseStarted" || ev.ObjectRef == nil ||
			ev.ResponseStatus == nil || ev.ResponseStatus.Code != 200 || ev.Received.Before(since) {
			continue
		}
		for _, ip := range ev.SourceIPs {
			if out[ip] == nil {
				out[ip] = map[string]bool{}
			}
			out[ip][ev.ObjectRef.Resource] = true
		}
	}
	return out, sc.Err()
}
