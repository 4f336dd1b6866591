package failover

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
)

// Reply is one ARP reply the client received.
type Reply struct {
	At  time.Time
	IP  netip.Addr
	MAC string
}

// ARPProber sends ARP requests (RFC 826) from the client's eth0 on a raw
// socket, which bypasses the client's neighbour table, and records every
// reply with its arrival time.
type ARPProber struct {
	c    *arp.Client
	done chan struct{}

	mu      sync.Mutex // guards replies and sent
	replies []Reply
	sent    []time.Time
}

// NewARPProber opens the raw socket inside the client namespace. Close it.
func (c *Cluster) NewARPProber() (*ARPProber, error) {
	var ac *arp.Client
	if err := c.Client.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ac, err = arp.Dial(ifi)
		return err
	}); err != nil {
		return nil, fmt.Errorf("open ARP socket in the client namespace: %w", err)
	}
	p := &ARPProber{c: ac, done: make(chan struct{})}
	go p.read()
	return p, nil
}

func (p *ARPProber) read() {
	defer close(p.done)
	for {
		pkt, _, err := p.c.Read()
		now := time.Now()
		if err != nil {
			// A closed packet socket may answer EBADF rather than
			// ErrClosed: either way the reader must end, or Close hangs.
			if errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EBADF) || strings.Contains(err.Error(), "closed") {
				return
			}
			continue // not an ARP packet we can parse
		}
		if pkt.Operation != arp.OperationReply {
			continue
		}
		p.mu.Lock()
		p.replies = append(p.replies, Reply{At: now, IP: pkt.SenderIP, MAC: pkt.SenderHardwareAddr.String()})
		p.mu.Unlock()
	}
}

// Request sends one request for ip.
func (p *ARPProber) Request(ip netip.Addr) error {
	now := time.Now()
	if err := p.c.Request(ip); err != nil {
		return fmt.Errorf("send ARP request for %s: %w", ip, err)
	}
	p.mu.Lock()
	p.sent = append(p.sent, now)
	p.mu.Unlock()
	return nil
}

// Replies returns the replies for ip that arrived in [from, to).
func (p *ARPProber) Replies(ip netip.Addr, from, to time.Time) []Reply {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Reply
	for _, r := range p.replies {
		if r.IP == ip && !r.At.Before(from) && r.At.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// Sent counts the requests sent in [from, to).
func (p *ARPProber) Sent(from, to time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, t := range p.sent {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// Forget drops the replies and requests recorded before t, so a long run
// does not grow without bound.
func (p *ARPProber) Forget(t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.replies = slices.DeleteFunc(p.replies, func(r Reply) bool { return r.At.Before(t) })
	p.sent = slices.DeleteFunc(p.sent, func(s time.Time) bool { return s.Before(t) })
}

// Who asks for ip once and returns the distinct MACs that answered within
// window.
func (p *ARPProber) Who(ip netip.Addr, window time.Duration) ([]string, error) {
	start := time.Now()
	if err := p.Request(ip); err != nil {
		return nil, err
	}
	time.Sleep(window) // the receive window of this one request
	var macs []string
	for _, r := range p.Replies(ip, start, time.Now()) {
		if !slices.Contains(macs, r.MAC) {
			macs = append(macs, r.MAC)
		}
	}
	slices.Sort(macs)
	return macs, nil
}

// Close closes the socket and waits for the reader.
func (p *ARPProber) Close() error {
	err := p.c.Close()
	<-p.done
	return err
}

// Connect is one TCP connect to the VIP from the client.
type Connect struct {
	Start, End time.Time
	Node       string // the node that served it; "" when it failed
	Err        string
}

// OK reports whether the connect succeeded.
func (c Connect) OK() bool { return c.Node != "" }

// TCPProber connects to the VIP from the client namespace, through the
// client's kernel (its neighbour table included), on a pool of goroutines
// locked into the namespace, so a connect that hangs does not delay the
// next one.
type TCPProber struct {
	addr    string
	timeout time.Duration
	jobs    chan time.Time
	wg      sync.WaitGroup

	mu      sync.Mutex // guards results
	results []Connect
}

// tcpWorkers bounds the connects in flight: 10 ms apart with a 200 ms
// timeout keeps at most 20 busy.
const tcpWorkers = 32

// NewTCPProber starts the workers; each connect gives up after timeout.
// Close stops them.
func (c *Cluster) NewTCPProber(vip netip.Addr, timeout time.Duration) *TCPProber {
	p := &TCPProber{
		addr:    netip.AddrPortFrom(vip, uint16(c.opts.Port)).String(),
		timeout: timeout,
		jobs:    make(chan time.Time, tcpWorkers),
	}
	for range tcpWorkers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			// The worker's thread stays in the client namespace until
			// jobs closes; every socket it opens is the client's.
			err := c.Client.Do(func() error {
				for range p.jobs {
					p.record(p.connect())
				}
				return nil
			})
			if err != nil {
				c.tb.Errorf("failover: TCP worker in the client namespace: %v", err)
			}
		}()
	}
	return p
}

func (p *TCPProber) connect() Connect {
	r := Connect{Start: time.Now()}
	conn, err := net.DialTimeout("tcp4", p.addr, p.timeout)
	if err == nil {
		_ = conn.SetReadDeadline(r.Start.Add(p.timeout))
		var line string
		line, err = bufio.NewReader(conn).ReadString('\n')
		_ = conn.Close()
		r.Node = strings.TrimSpace(line)
	}
	r.End = time.Now()
	if err != nil {
		r.Node, r.Err = "", err.Error()
	}
	return r
}

func (p *TCPProber) record(r Connect) {
	p.mu.Lock()
	p.results = append(p.results, r)
	p.mu.Unlock()
}

// Probe queues one connect; it never blocks (a connect that finds every
// worker busy is recorded as failed).
func (p *TCPProber) Probe() {
	select {
	case p.jobs <- time.Now():
	default:
		now := time.Now()
		p.record(Connect{Start: now, End: now, Err: "no free worker"})
	}
}

// Once connects now, on a worker, and returns the result.
func (p *TCPProber) Once() Connect {
	start := time.Now()
	p.Probe()
	deadline := start.Add(p.timeout + time.Second)
	for time.Now().Before(deadline) {
		if rs := p.Results(start, time.Now().Add(time.Second)); len(rs) > 0 {
			return rs[0]
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
	return Connect{Start: start, End: time.Now(), Err: "no result"}
}

// Results returns the connects started in [from, to) that have finished,
// in start order.
func (p *TCPProber) Results(from, to time.Time) []Connect {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Connect
	for _, r := range p.results {
		if !r.Start.Before(from) && r.Start.Before(to) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Connect) int { return a.Start.Compare(b.Start) })
	return out
}

// Forget drops the connects started before t.
func (p *TCPProber) Forget(t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.results = slices.DeleteFunc(p.results, func(r Connect) bool { return r.Start.Before(t) })
}

// Close stops the workers after the connects in flight.
func (p *TCPProber) Close() {
	close(p.jobs)
	p.wg.Wait()
}
