package kubelabbench

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Lines as hostlbd (format text) and the Go runtime (gctrace) write them.
const nodeLog = `time=2026-11-30T07:40:43.626Z level=INFO msg="gossip member dead" component=gossip node=n2 peer=n1 addr=192.0.2.11:7947
time=2026-11-30T07:40:44.094Z level=INFO msg=announcing component=l2 vip=bench/svc-00002 addr=2001:db8:1000::5 iface=eth0 handover=false
gc 12 @30.1s 1%: 0.1+2+0.02 ms clock, 0.2+1/2/0+0.05 ms cpu, 9->9->5 MB, 10 MB goal, 0 MB stacks, 0 MB globals, 2 P
time=2026-11-30T07:40:44.687Z level=INFO msg="stopped announcing" component=l2 vip=bench/svc-00002 addr=2001:db8:1000::5 iface=eth0
time=2026-11-30T07:40:44.181Z level=ERROR msg="Unable to record event: too many queued events, dropped event" component=client-go event="&Event{…}"
time=2026-11-30T07:32:08.605Z level=WARN msg="IP announced by no node" vip=bench/svc-00881 addr=2001:db8:1000::371 nodes="" for=2.004s
time=2026-11-30T07:32:08.692Z level=INFO msg="IP ownership agrees again" addr=2001:db8:1000::371 lasted=2.088s
time=2026-11-30T07:31:35.636Z level=INFO msg="IPAM: IP allocated" component=ipam service=bench/svc-00881 ips=2001:db8:1000::371
time=2026-11-30T07:40:44.181Z level=ERROR msg="Unable to record event: too many queued events, dropped event" component=client-go event="&Event{…}"
time=2026-11-30T07:40:45.001Z level=WARN msg="Events dropped: the API server takes them slower than they come" component=ipam dropped=1 queued=4096 reason=IPAllocated object=bench/svc-00881
time=2026-11-30T07:40:46.001Z level=WARN msg="Event not written" component=ipam reason=IPAllocated object=bench/svc-00881 tries=8 err="connection refused"
`

func TestCountLogCountsEachMessage(t *testing.T) {
	got, err := CountLog(strings.NewReader(nodeLog), LogMessages)
	if err != nil {
		t.Fatal(err)
	}
	// dead, announcing, stopped, by no node, by several, allocated,
	// released, dropped Events (client-go's, hostlb's), Events not written.
	if diff := cmp.Diff([]int{1, 1, 1, 1, 0, 1, 0, 2, 1, 1}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := EventsDue(got); n != 2 {
		t.Errorf("EventsDue = %d, want 2 (one announcing, one allocated)", n)
	}
}
