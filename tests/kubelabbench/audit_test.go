package kubelabbench

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hostlb/hostlb/tests/kubebench"
)

const user = "system:serviceaccount:kube-system:hostlb"

// Lines as kube-apiserver v1.37 writes them at level Metadata (trimmed),
// from three nodes that share one ServiceAccount.
const auditLog = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"w1","stage":"ResponseStarted","verb":"watch","user":{"username":"system:serviceaccount:kube-system:hostlb"},"sourceIPs":["192.0.2.11"],"userAgent":"hostlbd/0.1.0-dev","objectRef":{"resource":"nodes","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:00.100000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"l1","stage":"ResponseComplete","verb":"update","user":{"username":"system:serviceaccount:kube-system:hostlb"},"sourceIPs":["192.0.2.13"],"objectRef":{"resource":"leases","namespace":"kube-system","name":"hostlb-ipam","apiGroup":"coordination.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:02.000000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"l2","stage":"ResponseComplete","verb":"update","user":{"username":"system:serviceaccount:kube-system:hostlb"},"sourceIPs":["192.0.2.13"],"objectRef":{"resource":"leases","namespace":"kube-system","name":"hostlb-ipam","apiGroup":"coordination.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:04.000000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"e1","stage":"ResponseComplete","verb":"create","user":{"username":"system:serviceaccount:kube-system:hostlb"},"sourceIPs":["192.0.2.12"],"objectRef":{"resource":"events","namespace":"bench","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2026-12-01T10:00:05.000000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"s1","stage":"RequestReceived","verb":"get","user":{"username":"system:serviceaccount:kube-system:hostlb"},"sourceIPs":["192.0.2.12"],"objectRef":{"resource":"services","namespace":"bench","name":"svc-00001","apiVersion":"v1"},"requestReceivedTimestamp":"2026-12-01T10:00:06.000000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x1","stage":"ResponseComplete","verb":"get","user":{"username":"system:serviceaccount:kube-system:hostlb"},"sourceIPs":["198.51.100.7"],"objectRef":{"resource":"services","namespace":"bench","name":"svc-00001","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":404},"requestReceivedTimestamp":"2026-12-01T10:00:07.000000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","verb":"get","user":{"username":"admin"},"sourceIPs":["192.0.2.12"],"objectRef":{"resource":"services","namespace":"bench","name":"svc-00000","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:08.000000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"w1","stage":"ResponseComplete","verb":"watch","user":{"username":"system:serviceaccount:kube-system:hostlb"},"sourceIPs":["192.0.2.11"],"objectRef":{"resource":"nodes","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T10:00:00.100000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Met`

var nodeIPs = map[string]string{"192.0.2.11": "n1", "192.0.2.12": "n2", "192.0.2.13": "n3", "2001:db8::11": "n1"}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, "2026-12-01T10:00:"+s+"Z")
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseAuditKeepsTheSourceAndCountsEachRequestOnce(t *testing.T) {
	reqs, err := ParseAudit(strings.NewReader(auditLog))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range reqs {
		got = append(got, r.AuditID+" "+r.Source+" "+r.Kind())
	}
	want := []string{
		"w1 192.0.2.11 watch nodes",
		"l1 192.0.2.13 update leases.coordination.k8s.io",
		"l2 192.0.2.13 update leases.coordination.k8s.io",
		"e1 192.0.2.12 create events",
		"x1 198.51.100.7 get services",
		"a1 192.0.2.12 get services",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	lines := strings.Split(auditLog, "\n")
	bad := strings.Join([]string{lines[0], "not json", lines[1]}, "\n")
	if _, err := ParseAudit(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a bad line in the middle: err = %v, want one naming line 2", err)
	}
}

func TestCountByNodeListsEveryNodeAndStrangersLast(t *testing.T) {
	reqs, err := ParseAudit(strings.NewReader(auditLog))
	if err != nil {
		t.Fatal(err)
	}
	got := CountByNode(reqs, user, kubebench.Window{From: at("00"), To: at("59")}, nodeIPs)
	want := []NodeCounts{
		{Node: "n1", Counts: []kubebench.Count{{Kind: "watch nodes", N: 1}}},
		{Node: "n2", Counts: []kubebench.Count{{Kind: "create events", N: 1}}},
		{Node: "n3", Counts: []kubebench.Count{{Kind: "update leases.coordination.k8s.io", N: 2}}},
		{Node: "198.51.100.7", Counts: []kubebench.Count{{Kind: "get services", N: 1, Failed: 1}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("whole log (-want +got):\n%s", diff)
	}

	// The window is half-open, by receive time; a quiet node still shows.
	got = CountByNode(reqs, user, kubebench.Window{From: at("01"), To: at("05")}, nodeIPs)
	want = []NodeCounts{
		{Node: "n1", Counts: []kubebench.Count{}},
		{Node: "n2", Counts: []kubebench.Count{}},
		{Node: "n3", Counts: []kubebench.Count{{Kind: "update leases.coordination.k8s.io", N: 2}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("[01, 05) (-want +got):\n%s", diff)
	}
}

func TestSplitRestSortsWatchesLeaseAndTheRest(t *testing.T) {
	got := SplitRest([]kubebench.Count{
		{Kind: "update leases.coordination.k8s.io", N: 30},
		{Kind: "watch services", N: 1},
		{Kind: "watch nodes", N: 2},
		{Kind: "create events", N: 3},
	})
	want := Rest{Watches: 3, Lease: 30, Other: 3, OtherKinds: []string{"create events ×3"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
