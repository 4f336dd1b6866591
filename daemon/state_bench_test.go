package daemon

import (
	"log/slog"
	"testing"
	"time"
)

// BenchmarkState10k is one State of n1 in a settled three-node ring with
// 10,000 L2 IPs: what every metrics scrape and hostlbctl vips read.
func BenchmarkState10k(b *testing.B) {
	groups := benchGroups(10000)
	v := benchView(groups)
	ps := placeGroups(v, groups)
	d, err := New(Options{Config: testConfig(), Logger: slog.New(slog.DiscardHandler), Ring: &exclusionsRing{}})
	if err != nil {
		b.Fatal(err)
	}
	d.recordPass(v, ps, groups, time.Now())
	d.desired = ownedDesired("n1", ps)
	b.ReportAllocs()
	for b.Loop() {
		if st := d.State(); len(st.IPs) != 10000 {
			b.Fatalf("%d IPs", len(st.IPs))
		}
	}
}
