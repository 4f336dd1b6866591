package metrics

import (
	"errors"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/bgp"
	"github.com/hostlb/hostlb/daemon/ipam"
	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/heartbeat"
	"github.com/hostlb/hostlb/netif"
)

type fakeL2 []netif.ResponderStats

func (f fakeL2) Stats() []netif.ResponderStats { return f }

type fakeRing map[string]uint64

func (f fakeRing) InputErrors() map[string]uint64 { return f }

type fakeKube struct {
	w []kube.WatchStatus
	s kube.IPAMStatus
}

func (f fakeKube) Watches() []kube.WatchStatus { return f.w }
func (f fakeKube) IPAMStatus() kube.IPAMStatus { return f.s }

type fakeHeartbeat struct {
	s heartbeat.Stats
	w []heartbeat.WatchStatus
}

func (f fakeHeartbeat) Stats() heartbeat.Stats           { return f.s }
func (f fakeHeartbeat) Watched() []heartbeat.WatchStatus { return f.w }

// fakeHeart is a Heart that sent, received and rejected datagrams, lost a
// node and heard it again, and watches a node in each state, one twice.
func fakeHeart() fakeHeartbeat {
	return fakeHeartbeat{
		s: heartbeat.Stats{
			Ticks: 1000, SentBeats: 2000, SentWatch: 40, SendErrors: 3, Received: 1900,
			Rejected: map[string]uint64{heartbeat.RejectDecrypt: 7, heartbeat.RejectReplay: 2, heartbeat.RejectRead: 5},
			Losses:   2, Resumes: 1, MaxGap: 95 * time.Millisecond,
		},
		w: []heartbeat.WatchStatus{
			{Node: "n2", State: heartbeat.Alive},
			{Node: "n3", State: heartbeat.Lost},
			{Node: "n4", State: heartbeat.Pending},
			{Node: "n5", State: heartbeat.Alive},
		},
	}
}

var (
	t0  = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now = t0.Add(time.Hour)
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// fakeState is node n1's picture of a three-node cluster that has every
// kind of thing a metric reports: IPs of both modes owned here and
// elsewhere, one with no owner, disagreements of both kinds, members in
// every state, wire conflicts, BGP peers with BFD.
func fakeState() daemon.State {
	return daemon.State{
		Node: "n1", Started: t0, Ready: true, Joined: true, FirstPass: true, KubeSynced: true,
		LastPass: now, Reloads: 3, ReloadFailures: 1, ReloadError: "line 3: bad", CannotAnnounce: 1,
		Members: []daemon.MemberState{
			{Name: "n1", State: "alive", Health: "ok", Self: true},
			{Name: "n2", State: "alive", Health: "ok"},
			{Name: "n3", State: "dead", Health: "ok"},
			{Name: "n4", State: "left", Health: "draining", Leaving: true},
		},
		IPs: []daemon.IPState{
			{Addr: ip("192.0.2.10"), Name: "web", Mode: "l2", Owners: []string{"n1"}, Announcers: []string{"n1"}, Here: true},
			{Addr: ip("192.0.2.11"), Name: "web", Mode: "l2", Owners: []string{"n2"}, Announcers: []string{"n1", "n2"}},
			{Addr: ip("192.0.2.12"), Name: "web", Mode: "l2", Owners: []string{"n2"}},
			{Addr: ip("192.0.2.13"), Name: "web", Mode: "l2"},
			{Addr: ip("2001:db8::10"), Name: "ns/svc", Mode: "bgp", Owners: []string{"n1", "n2"}, Here: true},
		},
		Disagreements: []daemon.Disagreement{
			{Addr: ip("192.0.2.11"), Name: "web", Announcers: []string{"n1", "n2"}, Since: now},
			{Addr: ip("192.0.2.12"), Name: "web", Since: now},
		},
		WireCounts: map[netif.ConflictAction]uint64{netif.ConflictDefending: 2, netif.ConflictForeign: 1},
		WireNow: map[string][]netif.Conflict{"eth0": {
			{Addr: ip("192.0.2.10"), Node: "n9"},
			{Addr: ip("192.0.2.10"), Node: ""},
			{Addr: ip("192.0.2.14"), Node: "n8", Yielded: true},
		}},
		L2: []netif.L2Status{{Iface: "eth0", Addrs: []netip.Addr{ip("192.0.2.10")}}},
		BGP: &bgp.Status{Advertised: 1, Imported: 7, Peers: []bgp.PeerStatus{
			{Address: ip("198.51.100.1"), State: "established", Established: 2, BFD: "up", BFDDowns: 1, Received: 12, Accepted: 10},
			{Address: ip("198.51.100.2"), State: "active"},
		}},
	}
}

// every counter name a responder has, so the test sees each mapping.
func fakeCounters() map[string]uint64 {
	m := map[string]uint64{}
	for i, n := range []string{
		netif.StatRequests, netif.StatReplies, netif.StatAnnounced, netif.StatProbes, netif.StatUnicastNS,
		netif.StatMulticastNS, netif.StatReadErrors, netif.StatWriteErrors, netif.StatJoinErrors,
		netif.StatMLDJoinErrors, netif.StatConflictProbes, netif.StatConflictDefended, netif.StatConflictYielded,
		netif.StatConflictForeign, string(netif.ErrARPNotOwned), "other",
	} {
		m[n] = uint64(i + 1)
	}
	return m
}

// populated returns Metrics whose every series has at least one sample:
// the real collectors over fake sources, and one of each event.
func populated(t *testing.T) *Metrics { return populatedWith(t, false) }

// populatedWith is populated, with the Go runtime's and the process's
// metrics when runtime is set.
func populatedWith(t *testing.T, runtime bool) *Metrics {
	t.Helper()
	m := New(Options{Version: "1.2.3", Commit: "abc", Runtime: runtime})
	m.col.now = func() time.Time { return now }
	st := fakeState()
	m.Bind(Sources{
		State:    func() daemon.State { return st },
		NotReady: func() []string { return nil },
		L2: fakeL2{
			{Iface: "eth0", Proto: netif.ProtoARP, Counters: fakeCounters()},
			{Iface: "eth0", Proto: netif.ProtoNDP, Counters: fakeCounters()},
		},
		Ring:      fakeRing{"decrypt": 4},
		Heartbeat: fakeHeart(),
		Kube: fakeKube{
			w: []kube.WatchStatus{
				{Kind: kube.KindService, Synced: true, Restarts: 2, LastSync: now.Add(-90 * time.Second)},
				{Kind: kube.KindLease, Synced: true, Restarts: 1},
			},
			s: kube.IPAMStatus{Leader: true, Failing: 1, AllocationFailures: 5, Pools: []ipam.PoolUsage{
				{Pool: "class/default", Family: ipam.IPv4, Size: 256, Used: 250},
				{Pool: "class/default", Family: ipam.IPv6, Size: math.Exp2(64), Used: 3},
			}},
		},
	})
	m.Pass(3*time.Millisecond, nil)
	m.Pass(5*time.Millisecond, errors.New("sysctl"))
	m.Takeover(daemon.Takeover{Addr: ip("192.0.2.12"), From: []string{"n3"}, Reason: daemon.TakeoverDead, Took: 40 * time.Millisecond})
	m.ProbeRTT("n2", 300*time.Microsecond)
	sink := memberlistSink{m}
	sink.IncrCounterWithLabels([]string{"memberlist", "msg", "suspect"}, 1, nil)
	sink.SetGaugeWithLabels([]string{"memberlist", "health", "score"}, 2, nil)
	sink.IncrCounter([]string{"memberlist", "udp", "sent"}, 1400) // dropped
	return m
}

// descNames are the names of everything the registry's collectors
// describe (Desc has no accessor for its name).
func descNames(t *testing.T, cs ...prometheus.Collector) []string {
	t.Helper()
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	var out []string
	for _, c := range cs {
		ch := make(chan *prometheus.Desc, 256)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			mm := re.FindStringSubmatch(d.String())
			if mm == nil {
				t.Fatalf("no name in %s", d)
			}
			out = append(out, mm[1])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// Every metric the collectors describe has samples in populated: the
// fixture the dashboard and docs tests rely on covers all of them.
func TestPopulatedHasEveryMetric(t *testing.T) {
	m := populated(t)
	fams := gather(t, m)
	want := descNames(t, m.col, m.passDuration, m.passErrors, m.takeovers, m.takeoverDuration, m.probeRTT, m.suspicions, m.healthScore)
	for _, n := range want {
		if fams[n] == nil {
			t.Errorf("%s is described but has no sample", n)
		}
	}
	if len(fams) != len(want) {
		t.Errorf("%d families gathered, %d described", len(fams), len(want))
	}
}

// The names, types, units and help texts pass promlint, the linter of
// `promtool check metrics`.
func TestLint(t *testing.T) {
	problems, err := testutil.GatherAndLint(populated(t).Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	t.Helper()
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, mt := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range mt.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && got[labels[i]] == labels[i+1]
		}
		if !match {
			continue
		}
		switch {
		case mt.Gauge != nil:
			return mt.GetGauge().GetValue(), true
		case mt.Counter != nil:
			return mt.GetCounter().GetValue(), true
		case mt.Histogram != nil:
			return float64(mt.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func TestValues(t *testing.T) {
	fams := gather(t, populated(t))
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hostlb_ready", nil, 1},
		{"hostlb_config_reloads_total", []string{"result", "success"}, 2},
		{"hostlb_config_reloads_total", []string{"result", "failure"}, 1},
		{"hostlb_config_last_reload_successful", nil, 0},
		{"hostlb_ip_owner", []string{"ip", "192.0.2.10", "vip", "web", "mode", "l2", "node", "n1"}, 1},
		{"hostlb_ip_owner", []string{"ip", "2001:db8::10", "mode", "bgp", "node", "n1"}, 1},
		{"hostlb_ips", []string{"mode", "l2"}, 4},
		{"hostlb_ips_announced", []string{"mode", "bgp"}, 1},
		{"hostlb_ips_without_owner", []string{"mode", "l2"}, 1},
		{"hostlb_ip_disagreements", []string{"kind", "conflict"}, 1},
		{"hostlb_ip_disagreements", []string{"kind", "unannounced"}, 1},
		{"hostlb_ip_disagreement", []string{"ip", "192.0.2.11", "kind", "conflict"}, 1},
		{"hostlb_l2_requests_total", []string{"iface", "eth0", "proto", "arp"}, 1},
		{"hostlb_l2_gratuitous_sent_total", []string{"iface", "eth0", "proto", "ndp"}, 3},
		{"hostlb_l2_drops_total", []string{"proto", "arp", "reason", "arp_not_owned"}, 15},
		{"hostlb_l2_errors_total", []string{"proto", "ndp", "op", "mld_join"}, 10},
		{"hostlb_ndp_solicitations_total", []string{"dest", "multicast"}, 6},
		{"hostlb_wire_conflicts_total", []string{"action", "defending"}, 2},
		{"hostlb_wire_conflicts_total", []string{"action", "ended"}, 0},
		{"hostlb_wire_conflicts_active", []string{"kind", "foreign"}, 1},
		{"hostlb_wire_conflicts_active", []string{"kind", "yielded"}, 1},
		{"hostlb_gossip_members", []string{"state", "alive"}, 2},
		{"hostlb_gossip_members", []string{"state", "left"}, 1},
		{"hostlb_gossip_members_up", nil, 2},
		{"hostlb_gossip_suspicions_total", nil, 1},
		{"hostlb_gossip_health_score", nil, 2},
		{"hostlb_bgp_session_state", []string{"peer", "198.51.100.2", "state", "active"}, 1},
		{"hostlb_bgp_session_state", []string{"peer", "198.51.100.2", "state", "established"}, 0},
		{"hostlb_bgp_session_up", []string{"peer", "198.51.100.1"}, 1},
		{"hostlb_bfd_session_state", []string{"peer", "198.51.100.1", "state", "up"}, 1},
		{"hostlb_bfd_session_downs_total", []string{"peer", "198.51.100.2"}, 0},
		{"hostlb_bgp_prefixes_received", []string{"peer", "198.51.100.1"}, 12},
		{"hostlb_kube_last_sync_age_seconds", []string{"kind", "Service"}, 90},
		{"hostlb_kube_watch_restarts_total", []string{"kind", "Lease"}, 1},
		{"hostlb_ipam_pool_addresses", []string{"family", "IPv6"}, math.Exp2(64)},
		{"hostlb_ipam_pool_free_addresses", []string{"family", "IPv6"}, math.Exp2(64) - 3},
		{"hostlb_ipam_pool_free_addresses", []string{"family", "IPv4"}, 6},
		{"hostlb_reconcile_errors_total", nil, 1},
		{"hostlb_reconcile_duration_seconds", nil, 2},
		{"hostlb_takeovers_total", []string{"reason", "dead"}, 1},
		{"hostlb_takeovers_total", []string{"reason", "left"}, 0},
		{"hostlb_takeovers_total", []string{"reason", "heartbeat"}, 0},
		{"hostlb_heartbeat_sent_total", []string{"kind", "beat"}, 2000},
		{"hostlb_heartbeat_sent_total", []string{"kind", "watch"}, 40},
		{"hostlb_heartbeat_send_errors_total", nil, 3},
		{"hostlb_heartbeat_received_total", nil, 1900},
		{"hostlb_heartbeat_rejected_total", []string{"reason", "decrypt"}, 7},
		{"hostlb_heartbeat_rejected_total", []string{"reason", "stale"}, 0},
		{"hostlb_heartbeat_losses_total", nil, 2},
		{"hostlb_heartbeat_resumes_total", nil, 1},
		{"hostlb_heartbeat_watched", []string{"state", "alive"}, 2},
		{"hostlb_heartbeat_watched", []string{"state", "pending"}, 1},
		{"hostlb_heartbeat_max_gap_seconds", nil, 0.095},
	} {
		got, ok := value(t, fams, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// Only the owner exports an IP's owner series.
	if _, ok := value(t, fams, "hostlb_ip_owner", "ip", "192.0.2.12"); ok {
		t.Error("n1 exports an owner series of an IP n2 owns")
	}
	// BFD off for a peer: no state series.
	if _, ok := value(t, fams, "hostlb_bfd_session_state", "peer", "198.51.100.2"); ok {
		t.Error("a BFD state for a peer without BFD")
	}
}

// memberlist's metrics go through go-metrics' process-global sink.
func TestMemberlistSinkInstalled(t *testing.T) {
	m := New(Options{})
	if err := m.InstallMemberlistSink(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = gometrics.NewGlobal(&gometrics.Config{}, &gometrics.BlackholeSink{}) })
	gometrics.IncrCounterWithLabels([]string{"memberlist", "msg", "suspect"}, 1, []gometrics.Label{{Name: "x", Value: "y"}})
	gometrics.SetGaugeWithLabels([]string{"memberlist", "health", "score"}, 3, nil)
	if got := testutil.ToFloat64(m.suspicions); got != 1 {
		t.Errorf("suspicions = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.healthScore); got != 3 {
		t.Errorf("health score = %v, want 3", got)
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestEndpoints(t *testing.T) {
	m := New(Options{})
	h := m.Handler(nil)
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Errorf("/readyz before Bind: %d %q", code, body)
	}
	var why []string
	st := fakeState()
	m.Bind(Sources{State: func() daemon.State { return st }, NotReady: func() []string { return why }})
	if code, body := get(t, h, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	why = []string{"not joined the gossip ring yet", "first reconcile pass not done yet"}
	code, body := get(t, h, "/readyz")
	if code != http.StatusServiceUnavailable || body != "not ready: not joined the gossip ring yet\nnot ready: first reconcile pass not done yet\n" {
		t.Errorf("/readyz while not ready: %d %q", code, body)
	}
	if _, body := get(t, h, "/metrics"); !strings.Contains(body, "hostlb_ready 0\n") {
		t.Errorf("/metrics while not ready lacks hostlb_ready 0:\n%s", body)
	}
	why = nil
	if code, body := get(t, h, "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz when ready: %d %q", code, body)
	}
	code, body = get(t, h, "/metrics")
	if code != http.StatusOK || !strings.Contains(body, `hostlb_ip_owner{ip="192.0.2.10",mode="l2",node="n1",vip="web"} 1`) {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
}

// docs/metrics.md documents every metric, and only those.
func TestDocsListEveryMetric(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(hostlb_[a-z0-9_]+)`").FindAllStringSubmatch(string(b), -1) {
		documented = append(documented, m[1])
	}
	slices.Sort(documented)
	var exported []string
	for n := range gather(t, populated(t)) {
		exported = append(exported, n)
	}
	slices.Sort(exported)
	for _, n := range exported {
		if _, ok := slices.BinarySearch(documented, n); !ok {
			t.Errorf("%s is not in docs/metrics.md", n)
		}
	}
	for _, n := range documented {
		if _, ok := slices.BinarySearch(exported, n); !ok {
			t.Errorf("docs/metrics.md documents %s, which is not exported", n)
		}
	}
}

// The heartbeat's series, exactly: every reject reason and every watched
// state has a series, a failed read is no rejected datagram, and a reject
// kind the list does not know is exported anyway.
func TestHeartbeatExposition(t *testing.T) {
	m := New(Options{})
	st := fakeState()
	hb := fakeHeartbeat{
		s: heartbeat.Stats{
			SentBeats: 250, SentWatch: 12, SendErrors: 1, Received: 240,
			Rejected: map[string]uint64{heartbeat.RejectDecrypt: 5, heartbeat.RejectStale: 2, heartbeat.RejectRead: 9, "newer-kind": 1},
			Losses:   3, Resumes: 2, MaxGap: 61 * time.Millisecond,
		},
		w: []heartbeat.WatchStatus{{Node: "n2", State: heartbeat.Lost}, {Node: "n3", State: heartbeat.Lost}},
	}
	m.Bind(Sources{State: func() daemon.State { return st }, Heartbeat: hb})
	want := `# HELP hostlb_heartbeat_losses_total Watched nodes this node declared lost (silent for 3 heartbeat intervals: 120 ms): as their heir, it takes their IPs over before the ring decides.
# TYPE hostlb_heartbeat_losses_total counter
hostlb_heartbeat_losses_total 3
# HELP hostlb_heartbeat_max_gap_seconds The longest silence of a watched node while it was alive, since hostlbd started: how close a node came to being declared lost (at 120 ms) and to a false takeover.
# TYPE hostlb_heartbeat_max_gap_seconds gauge
hostlb_heartbeat_max_gap_seconds 0.061
# HELP hostlb_heartbeat_received_total Heartbeat datagrams accepted: each proves its sender alive.
# TYPE hostlb_heartbeat_received_total counter
hostlb_heartbeat_received_total 240
# HELP hostlb_heartbeat_rejected_total Heartbeat datagrams dropped, by reason: oversized, short, format (unknown), decrypt (no key opens it: another key or cluster, or forged), malformed, replay (seq not above the last), old-boot, stale (read over a second late), self (this node's own name), peers-full.
# TYPE hostlb_heartbeat_rejected_total counter
hostlb_heartbeat_rejected_total{reason="decrypt"} 5
hostlb_heartbeat_rejected_total{reason="format"} 0
hostlb_heartbeat_rejected_total{reason="malformed"} 0
hostlb_heartbeat_rejected_total{reason="newer-kind"} 1
hostlb_heartbeat_rejected_total{reason="old-boot"} 0
hostlb_heartbeat_rejected_total{reason="oversized"} 0
hostlb_heartbeat_rejected_total{reason="peers-full"} 0
hostlb_heartbeat_rejected_total{reason="replay"} 0
hostlb_heartbeat_rejected_total{reason="self"} 0
hostlb_heartbeat_rejected_total{reason="short"} 0
hostlb_heartbeat_rejected_total{reason="stale"} 2
# HELP hostlb_heartbeat_resumes_total Lost nodes heard again (they were stalled, or their datagrams lost): this node gives their IPs back.
# TYPE hostlb_heartbeat_resumes_total counter
hostlb_heartbeat_resumes_total 2
# HELP hostlb_heartbeat_send_errors_total Heartbeat datagrams whose send failed.
# TYPE hostlb_heartbeat_send_errors_total counter
hostlb_heartbeat_send_errors_total 1
# HELP hostlb_heartbeat_sent_total Heartbeat datagrams sent, by kind: beat (to the heirs of this node's IPs, and to the nodes that asked for it) or watch (a watch request alone, to a node this node is heir to that got no beat that round).
# TYPE hostlb_heartbeat_sent_total counter
hostlb_heartbeat_sent_total{kind="beat"} 250
hostlb_heartbeat_sent_total{kind="watch"} 12
# HELP hostlb_heartbeat_watched Nodes whose heartbeat this node watches (it is heir to some of their IPs), by state: pending (not heard since watched; never declared lost), alive, lost.
# TYPE hostlb_heartbeat_watched gauge
hostlb_heartbeat_watched{state="alive"} 0
hostlb_heartbeat_watched{state="lost"} 2
hostlb_heartbeat_watched{state="pending"} 0
`
	names := []string{
		"hostlb_heartbeat_sent_total", "hostlb_heartbeat_send_errors_total", "hostlb_heartbeat_received_total",
		"hostlb_heartbeat_rejected_total", "hostlb_heartbeat_losses_total", "hostlb_heartbeat_resumes_total",
		"hostlb_heartbeat_watched", "hostlb_heartbeat_max_gap_seconds",
	}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// A node without a Heart (the lan and wan profiles) exports no heartbeat
// series, not even zeros.
func TestNoHeartbeatNoSeries(t *testing.T) {
	m := New(Options{})
	st := fakeState()
	m.Bind(Sources{State: func() daemon.State { return st }, Ring: fakeRing{}})
	fams := gather(t, m)
	if fams["hostlb_ready"] == nil {
		t.Fatal("no hostlb_ready: the collector did not run")
	}
	for n := range fams {
		if strings.HasPrefix(n, "hostlb_heartbeat_") {
			t.Errorf("%s exported without a heartbeat source", n)
		}
	}
}

// docs/metrics.md's table says of each metric what its help text says,
// with its type and labels.
func TestDocsMatchHelp(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{} // name: type, labels, meaning
	for _, m := range regexp.MustCompile("(?m)^\\| `(hostlb_[a-z0-9_]+)` \\| ([a-z]+) \\| (.*?) \\| (.*) \\|$").FindAllStringSubmatch(string(b), -1) {
		rows[m[1]] = m[2:]
	}
	for name, f := range gather(t, populated(t)) {
		row, ok := rows[name]
		if !ok {
			continue // TestDocsListEveryMetric
		}
		labels := map[string]bool{}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				labels["`"+l.GetName()+"`"] = true
			}
		}
		wantLabels := strings.Join(slices.Sorted(maps.Keys(labels)), ", ")
		if typ := strings.ToLower(f.GetType().String()); row[0] != typ {
			t.Errorf("%s: docs say %s, registry %s", name, row[0], typ)
		}
		if strings.TrimSpace(row[1]) != wantLabels {
			t.Errorf("%s: docs' labels %q, registry's %q", name, row[1], wantLabels)
		}
		if row[2] != f.GetHelp() {
			t.Errorf("%s: docs' meaning differs from the help text:\ndocs: %s\nhelp: %s", name, row[2], f.GetHelp())
		}
	}
}
