package bench

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/netif"
)

func TestTracker(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	tr := newTracker([]netip.Addr{a, b})
	tr.sent(0, 10)
	tr.sent(0, 20)
	tr.sent(1, 30)
	tr.sent(1, 40)
	tr.unsend(1) // the write of the request at 40 failed
	if lat, ok := tr.answered(a, 25); !ok || lat != 15 {
		t.Errorf("first answer for a: %d, %v; want the oldest request, 15", lat, ok)
	}
	if _, ok := tr.answered(netip.MustParseAddr("192.0.2.3"), 25); ok {
		t.Error("answer for an unknown address matched")
	}
	if n := tr.expire(25); n != 1 { // a@20 is kept, b@30 too
		t.Errorf("expire(25) = %d, want 1", n)
	}
	if n := tr.outstanding(); n != 1 {
		t.Errorf("outstanding = %d, want 1", n)
	}
	if _, ok := tr.answered(a, 50); ok {
		t.Error("answer for a matched an expired request")
	}
	// A queue that never empties is compacted instead of growing.
	for i := range 10000 {
		tr.sent(0, int64(100+i))
		if _, ok := tr.answered(a, int64(101+i)); !ok {
			t.Fatal("no match")
		}
		tr.sent(0, int64(100+i))
	}
	if c := cap(tr.queues[0].times); c > 40000 {
		t.Errorf("queue capacity %d after 10,000 sends with ~1 outstanding", c)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for p, want := range map[float64]time.Duration{50: 50, 99: 99, 100: 100, 1: 1, 0.5: 1} {
		if got := percentile(d, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
}

// pipeConn is a fake link to netif's ARP or NDP responder in the same
// process: what the generator writes, the responder answers.
type pipeConn struct {
	mu       sync.Mutex // guards deadline and moved
	deadline time.Time
	moved    chan struct{} // closed when the deadline changes
	answers  chan []byte
	drop     func(n int) bool // drop the n-th request
	n        int
}

func (p *pipeConn) Recv(b []byte) (int, time.Time, error) {
	for {
		p.mu.Lock()
		d := p.deadline
		if p.moved == nil {
			p.moved = make(chan struct{})
		}
		moved := p.moved
		p.mu.Unlock()
		var timeout <-chan time.Time
		if !d.IsZero() {
			timeout = time.After(time.Until(d))
		}
		select {
		case f := <-p.answers:
			return copy(b, f), time.Now(), nil
		case <-timeout:
			return 0, time.Time{}, os.ErrDeadlineExceeded
		case <-moved:
		}
	}
}

func (p *pipeConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	p.n++
	if p.drop != nil && p.drop(p.n) {
		return len(b), nil
	}
	// Answer like a responder would: an ARP reply from the target.
	m, err := netif.ParseARP(b)
	if err != nil {
		return 0, err
	}
	reply, err := netif.ARPMessage{
		EthDst: m.EthSrc, EthSrc: nodeMAC, Op: 2, SenderHW: nodeMAC, SenderIP: m.TargetIP,
		TargetHW: m.SenderHW, TargetIP: m.SenderIP,
	}.MarshalBinary()
	if err != nil {
		return 0, err
	}
	p.answers <- reply
	return len(b), nil
}

func (p *pipeConn) SetReadDeadline(t time.Time) error {
	p.mu.Lock()
	p.deadline = t
	if p.moved != nil {
		close(p.moved)
		p.moved = nil
	}
	p.mu.Unlock()
	return nil
}

func TestRunClosedLoop(t *testing.T) {
	vips, _ := VIPs(ARP, 10)
	c := &pipeConn{answers: make(chan []byte, 64), drop: func(n int) bool { return n%100 == 0 }}
	res, err := Run(context.Background(), c, Load{
		Proto: ARP, MAC: clientMAC, Src: ClientIPv4, Targets: vips,
		Duration: 100 * time.Millisecond, Window: 8, Timeout: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Answered+res.Lost != res.Sent || res.Lost != res.Sent/100 {
		t.Errorf("sent %d answered %d lost %d: want every request answered or lost, 1%% lost", res.Sent, res.Answered, res.Lost)
	}
	if uint64(len(res.Latencies)) != res.Answered || res.Rate() <= 0 || res.Unmatched != 0 {
		t.Errorf("%d latencies for %d answers, rate %v, %d unmatched", len(res.Latencies), res.Answered, res.Rate(), res.Unmatched)
	}
}

func TestRunOpenLoop(t *testing.T) {
	vips, _ := VIPs(ARP, 3)
	c := &pipeConn{answers: make(chan []byte, 64)}
	res, err := Run(context.Background(), c, Load{
		Proto: ARP, MAC: clientMAC, Src: ClientIPv4, Targets: vips,
		Duration: 200 * time.Millisecond, Rate: 500, Timeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 100 requests on schedule; allow for a slow machine.
	if res.Sent < 50 || res.Sent > 101 || res.Answered != res.Sent || res.Lost != 0 {
		t.Errorf("sent %d answered %d lost %d; want about 100, all answered", res.Sent, res.Answered, res.Lost)
	}
}

func TestRunRejectsBadLoads(t *testing.T) {
	vips, _ := VIPs(ARP, 1)
	for name, l := range map[string]Load{
		"both shapes": {Proto: ARP, MAC: clientMAC, Src: ClientIPv4, Targets: vips, Duration: time.Second, Timeout: time.Second, Window: 1, Rate: 1},
		"no shape":    {Proto: ARP, MAC: clientMAC, Src: ClientIPv4, Targets: vips, Duration: time.Second, Timeout: time.Second},
		"no targets":  {Proto: ARP, MAC: clientMAC, Src: ClientIPv4, Duration: time.Second, Timeout: time.Second, Window: 1},
		"wrong src":   {Proto: NDP, MAC: clientMAC, Src: ClientIPv4, Targets: vips, Duration: time.Second, Timeout: time.Second, Window: 1},
	} {
		if _, err := Run(context.Background(), &pipeConn{}, l); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
