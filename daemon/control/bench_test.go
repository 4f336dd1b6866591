package control_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/control"
	"github.com/hostlb/hostlb/daemon/control/api"
	"github.com/hostlb/hostlb/daemon/control/controltest"
)

// bigState is a three-node ring serving n L2 IPs, each with an owner, a
// previous owner and two reasons: what `hostlbctl vips` costs at scale.
func bigState(n int) daemon.State {
	st := controltest.Cluster()
	st.IPs = make([]daemon.IPState, 0, n)
	base := netip.MustParseAddr("198.18.0.0").As4()
	nodes := []string{"n1", "n2", "n3"}
	for i := range n {
		a := base
		a[2], a[3] = byte(i>>8), byte(i)
		a[1] += byte(i >> 16)
		owner := nodes[i%3]
		var why []daemon.NodeReason
		for _, o := range nodes {
			if o != owner {
				why = append(why, daemon.NodeReason{Node: o, Reason: "standby: one node announces an L2 IP, " + owner + " does"})
			}
		}
		st.IPs = append(st.IPs, daemon.IPState{Addr: netip.AddrFrom4(a), Name: "default/svc", Source: "kubernetes", Mode: "l2",
			Owners: []string{owner}, Announcers: []string{owner}, Preferred: owner, Since: controltest.Now.Add(-time.Hour),
			PrevOwners: []string{nodes[(i+1)%3]}, Here: owner == "n1", NotHere: why})
	}
	return st
}

// BenchmarkVIPs10k is one `hostlbctl -o json vips` of 10,000 IPs: the
// server's conversion and encoding, the socket, the client's decoding.
func BenchmarkVIPs10k(b *testing.B) {
	socket := controltest.Serve(b, &controltest.Source{St: bigState(10000)})
	c := api.NewClient(socket)
	var size int
	b.ReportAllocs()
	for b.Loop() {
		var v api.VIPs
		body, err := c.Get(b.Context(), api.PathVIPs, &v)
		if err != nil || len(v.VIPs) != 10000 {
			b.Fatalf("%d VIPs, %v", len(v.VIPs), err)
		}
		size = len(body)
	}
	b.ReportMetric(float64(size), "bytes/answer")
}

// BenchmarkStatus10k is one `hostlbctl status` with 10,000 IPs.
func BenchmarkStatus10k(b *testing.B) {
	socket := controltest.Serve(b, &controltest.Source{St: bigState(10000)})
	c := api.NewClient(socket)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(b.Context(), api.PathStatus, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServeVIPs10k is the daemon's side of one `hostlbctl vips` of
// 10,000 IPs (with the State given): conversion and encoding, no socket.
func BenchmarkServeVIPs10k(b *testing.B) {
	srv, err := control.New(control.Options{Source: &controltest.Source{St: bigState(10000)},
		Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return controltest.Now }})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, api.PathVIPs, nil))
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
