package kubebench

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const user = "system:serviceaccount:kube-system:hostlb"

// Lines as kube-apiserver v1.37 writes them at level Metadata (trimmed to
// the fields read, plus some that are not).
const auditLog = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"w1","stage":"ResponseStarted","requestURI":"/api/v1/services?allowWatchBookmarks=true\u0026watch=true","verb":"watch","user":{"username":"system:serviceaccount:kube-system:hostlb","groups":["system:serviceaccounts"]},"objectRef":{"resource":"services","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:00.100000Z","stageTimestamp":"2026-12-01T10:00:00.101000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"u1","stage":"ResponseComplete","verb":"update","user":{"username":"system:serviceaccount:kube-system:hostlb"},"objectRef":{"resource":"services","namespace":"bench","name":"svc-00000","apiVersion":"v1","subresource":"status"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:01.000000Z","stageTimestamp":"2026-12-01T10:00:01.010000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"u2","stage":"ResponseComplete","verb":"update","user":{"username":"system:serviceaccount:kube-system:hostlb"},"objectRef":{"resource":"services","namespace":"bench","name":"svc-00001","apiVersion":"v1","subresource":"status"},"responseStatus":{"metadata":{},"status":"Failure","reason":"Conflict","code":409},"requestReceivedTimestamp":"2026-12-01T10:00:01.500000Z","stageTimestamp":"2026-12-01T10:00:01.510000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"l1","stage":"ResponseComplete","verb":"update","user":{"username":"system:serviceaccount:kube-system:hostlb"},"objectRef":{"resource":"leases","namespace":"kube-system","name":"hostlb-ipam","apiGroup":"coordination.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:02.000000Z","stageTimestamp":"2026-12-01T10:00:02.003000Z"}

{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"e1","stage":"ResponseComplete","verb":"create","user":{"username":"system:serviceaccount:kube-system:hostlb"},"objectRef":{"resource":"events","namespace":"bench","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2026-12-01T10:00:02.500000Z","stageTimestamp":"2026-12-01T10:00:02.503000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","verb":"get","user":{"username":"admin"},"objectRef":{"resource":"services","namespace":"bench","name":"svc-00000","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:02.600000Z","stageTimestamp":"2026-12-01T10:00:02.601000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"w1","stage":"ResponseComplete","verb":"watch","user":{"username":"system:serviceaccount:kube-system:hostlb"},"objectRef":{"resource":"services","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:00.100000Z","stageTimestamp":"2026-12-01T10:05:00.000000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"v1","stage":"ResponseComplete","verb":"get","user":{"username":"system:serviceaccount:kube-system:hostlb"},"nonResourceURI":"/version","responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:03.000000Z","stageTimestamp":"2026-12-01T10:00:03.001000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metad`

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, "2026-12-01T10:00:"+s+"Z")
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseAuditCountsEachRequestOnceAndAWatchWhenItStarts(t *testing.T) {
	reqs, err := ParseAudit(strings.NewReader(auditLog))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range reqs {
		ids = append(ids, r.AuditID)
	}
	if diff := cmp.Diff([]string{"w1", "u1", "u2", "l1", "e1", "a1", "v1"}, ids); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if w := reqs[0]; w.Kind() != "watch services" || !w.Received.Equal(at("00.1")) {
		t.Errorf("watch = %q at %v", w.Kind(), w.Received)
	}

	all := CountRequests(reqs, user, Window{From: at("00"), To: at("59")})
	want := []Count{
		{Kind: "update services/status", N: 2, Failed: 1},
		{Kind: "create events", N: 1},
		{Kind: "get", N: 1}, // a non-resource request: the verb alone
		{Kind: "update leases.coordination.k8s.io", N: 1},
		{Kind: "watch services", N: 1},
	}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	n, failed := Total(all)
	if n != 6 || failed != 1 {
		t.Errorf("Total = %d, %d failed; want 6, 1", n, failed)
	}

	// The window is half-open, by the time the request was received.
	got := CountRequests(reqs, user, Window{From: at("01"), To: at("02")})
	if diff := cmp.Diff([]Count{{Kind: "update services/status", N: 2, Failed: 1}}, got); diff != "" {
		t.Errorf("[01, 02) (-want +got):\n%s", diff)
	}
	lease, rest := WithoutLease(CountRequests(reqs, user, Window{From: at("02"), To: at("03")}))
	if lease != 1 || len(rest) != 1 || rest[0].Kind != "create events" {
		t.Errorf("WithoutLease = %d, %+v", lease, rest)
	}
}

func TestParseAuditRejectsABadLineInTheMiddle(t *testing.T) {
	lines := strings.Split(auditLog, "\n")
	bad := strings.Join(append([]string{lines[0], "not json"}, lines[1:3]...), "\n")
	if _, err := ParseAudit(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("err = %v, want one naming line 2", err)
	}
}
