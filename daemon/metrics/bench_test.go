package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/hostlb/hostlb/daemon"
)

// bigState is a node's State with n L2 IPs spread over three nodes, a
// third of them here: what a scrape of a node with 10,000 VIPs formats.
func bigState(n int) daemon.State {
	st := fakeState()
	st.IPs = nil
	a := netip.MustParseAddr("2001:db8:1::")
	nodes := []string{"n1", "n2", "n3"}
	for i := range n {
		a = a.Next()
		o := nodes[i%3]
		ip := daemon.IPState{Addr: a, Name: "web", Mode: "l2", Owners: []string{o}, Announcers: []string{o}, Here: o == "n1"}
		for _, m := range nodes {
			if m != o {
				ip.NotHere = append(ip.NotHere, daemon.NodeReason{Node: m, Reason: "standby: one node announces an L2 IP, " + o + " does"})
			}
		}
		st.IPs = append(st.IPs, ip)
	}
	return st
}

// BenchmarkScrape10000 is one /metrics request of a node with 10,000
// IPs, State given (its own cost is the daemon's BenchmarkState).
func BenchmarkScrape10000(b *testing.B) {
	st := bigState(10000)
	m := New(Options{Runtime: true})
	m.Bind(Sources{State: func() daemon.State { return st }})
	h := m.Handler(nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		_, _ = io.Copy(io.Discard, rec.Result().Body)
	}
}
