package kubelab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
)

var (
	// Debian's arping (Thomas Habets'): "60 bytes from 02:..:.. (192.0.2.100): index=0 ..."
	arpingReplyRE = regexp.MustCompile(`bytes from ([0-9a-f:]{17}) \(([0-9.]+)\)`)
	// ndisc6: "Target link-layer address: 02:..:.."
	ndiscMACRE = regexp.MustCompile(`(?i)Target link-layer address: ([0-9a-f:]{17})`)
)

// WhoAnswers asks from the client who answers for ip, with the real tools:
// `arping -c 1 -w 1 -i eth0` for IPv4, `ndisc6 -1 -r 1 -w 500` for IPv6,
// after flushing the client's neighbour table. It returns the MAC of the
// first answer (lower case), "" when nobody answered; the error is for a
// tool that could not run.
func (l *Lab) WhoAnswers(ip netip.Addr) (string, error) {
	if _, err := l.Client.Run("ip", "neigh", "flush", "dev", "eth0"); err != nil {
		return "", fmt.Errorf("kubelab: %w", err)
	}
	var argv []string
	re := arpingReplyRE
	if ip.Is4() {
		argv = []string{"arping", "-c", "1", "-w", "1", "-i", "eth0", ip.String()}
	} else {
		argv = []string{"ndisc6", "-1", "-r", "1", "-w", "500", ip.String(), "eth0"}
		re = ndiscMACRE
	}
	ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
	defer cancel()
	out, err := l.Client.Command(ctx, argv...).CombinedOutput()
	if m := re.FindSubmatch(out); m != nil {
		return strings.ToLower(string(m[1])), nil
	}
	// Both tools exit 1 (arping) or 2 (ndisc6) when nobody answered.
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return "", fmt.Errorf("kubelab: %s: %w\n%s", strings.Join(argv, " "), err, out)
	}
	return "", nil
}

// WhoAnswersNode is WhoAnswers as a node name: "" when nobody answered,
// the MAC itself when it is no lab node's.
func (l *Lab) WhoAnswersNode(ip netip.Addr) (string, error) {
	mac, err := l.WhoAnswers(ip)
	if err != nil || mac == "" {
		return "", err
	}
	if n := l.NodeByMAC(mac); n != "" {
		return n, nil
	}
	return mac, nil
}

// Owners asks WhoAnswersNode for every ip.
func (l *Lab) Owners(ips []netip.Addr) (map[netip.Addr]string, error) {
	out := make(map[netip.Addr]string, len(ips))
	for _, ip := range ips {
		n, err := l.WhoAnswersNode(ip)
		if err != nil {
			return nil, err
		}
		out[ip] = n
	}
	return out, nil
}

// Reply is one ARP reply the Prober received.
type Reply struct {
	At   time.Time
	IP   netip.Addr
	MAC  string
	Node string // the lab node with MAC, "" if none
}

// Prober sends ARP requests (RFC 826) from the client's eth0 on a raw
// socket, which bypasses the client's neighbour table, and records every
// reply with its arrival time: the lab's clock for failover times, finer
// than one arping per try.
type Prober struct {
	lab     *Lab
	c       *arp.Client
	done    chan struct{} // the reader ended
	closing atomic.Bool   // Close was called: a read error is the socket closing

	mu      sync.Mutex // guards the fields below
	replies []Reply
	stops   []func()
	readErr error // why the reader ended, if not Close
}

// NewProber opens the raw socket inside the client namespace. Close it.
func (l *Lab) NewProber() (*Prober, error) {
	var ac *arp.Client
	if err := l.Client.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ac, err = arp.Dial(ifi)
		return err
	}); err != nil {
		return nil, fmt.Errorf("kubelab: open an ARP socket in the client namespace: %w", err)
	}
	p := &Prober{lab: l, c: ac, done: make(chan struct{})}
	go p.read()
	return p, nil
}

func (p *Prober) read() {
	defer close(p.done)
	for {
		pkt, _, err := p.c.Read()
		now := time.Now()
		if err != nil {
			if p.closing.Load() {
				return // EBADF or ErrClosed: either way, closed
			}
			if _, socketErr := errors.AsType[*net.OpError](err); socketErr {
				p.mu.Lock()
				p.readErr = fmt.Errorf("kubelab: ARP prober stopped reading: %w", err)
				p.mu.Unlock()
				return
			}
			continue // not an ARP packet arp can parse
		}
		if pkt.Operation != arp.OperationReply {
			continue
		}
		mac := pkt.SenderHardwareAddr.String()
		r := Reply{At: now, IP: pkt.SenderIP, MAC: mac, Node: p.lab.NodeByMAC(mac)}
		p.mu.Lock()
		p.replies = append(p.replies, r)
		p.mu.Unlock()
	}
}

// Request sends one ARP request for ip.
func (p *Prober) Request(ip netip.Addr) error {
	if err := p.c.Request(ip); err != nil {
		return fmt.Errorf("kubelab: send an ARP request for %s: %w", ip, err)
	}
	return nil
}

// Start sends a request for each ip every interval, in the background,
// until the returned stop (or Close) is called.
func (p *Prober) Start(every time.Duration, ips ...netip.Addr) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			for _, ip := range ips {
				_ = p.Request(ip) // a lost request shows as a missing reply
			}
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(quit); <-done }) }
	p.mu.Lock()
	p.stops = append(p.stops, stop)
	p.mu.Unlock()
	return stop
}

// Replies returns the replies for ip that arrived in [from, to); a zero to
// means up to now.
func (p *Prober) Replies(ip netip.Addr, from, to time.Time) []Reply {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Reply
	for _, r := range p.replies {
		if r.IP == ip && !r.At.Before(from) && (to.IsZero() || r.At.Before(to)) {
			out = append(out, r)
		}
	}
	return out
}

// WaitReply waits until a reply for ip that arrived at or after since
// satisfies ok, and returns the first one. The caller sends the requests
// (Start).
func (p *Prober) WaitReply(ip netip.Addr, since time.Time, timeout time.Duration, ok func(Reply) bool) (Reply, error) {
	var got Reply
	err := p.lab.Poll(timeout, func() error {
		if err := p.err(); err != nil {
			return permanent(err)
		}
		rs := p.Replies(ip, since, time.Time{})
		for _, r := range rs {
			if ok(r) {
				got = r
				return nil
			}
		}
		return fmt.Errorf("%d replies since, none wanted (%s)", len(rs), describe(rs))
	})
	if err != nil {
		return Reply{}, fmt.Errorf("kubelab: ARP reply for %s: %w", ip, err)
	}
	return got, nil
}

// Who sends one request for ip and returns the nodes (or MACs, for
// strangers) that answered within window, sorted: every owner, not only
// the first.
func (p *Prober) Who(ip netip.Addr, window time.Duration) ([]string, error) {
	start := time.Now()
	if err := p.Request(ip); err != nil {
		return nil, err
	}
	// The receive window of this one request: a measurement, not a wait
	// for some event.
	select {
	case <-time.After(window):
	case <-p.lab.ctx.Done():
		return nil, p.lab.ctx.Err()
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	var who []string
	for _, r := range p.Replies(ip, start, time.Time{}) {
		name := r.Node
		if name == "" {
			name = r.MAC
		}
		if !slices.Contains(who, name) {
			who = append(who, name)
		}
	}
	slices.Sort(who)
	return who, nil
}

// Forget drops the replies recorded before t.
func (p *Prober) Forget(t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.replies = slices.DeleteFunc(p.replies, func(r Reply) bool { return r.At.Before(t) })
}

// err is why the reader ended early, nil while it runs.
func (p *Prober) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readErr
}

// Close stops every Start, closes the socket and waits for the reader.
func (p *Prober) Close() error {
	p.mu.Lock()
	stops := p.stops
	p.stops = nil
	p.mu.Unlock()
	for _, s := range stops {
		s()
	}
	p.closing.Store(true)
	err := p.c.Close()
	<-p.done
	return err
}

// MaxGap returns the longest time without a reply for ip in [from, to),
// counting from from and to the edges: how long the IP went unanswered at
// worst while it was probed.
func (p *Prober) MaxGap(ip netip.Addr, from, to time.Time) time.Duration {
	last, gap := from, time.Duration(0)
	for _, r := range p.Replies(ip, from, to) {
		gap = max(gap, r.At.Sub(last))
		last = r.At
	}
	return max(gap, to.Sub(last))
}

func describe(rs []Reply) string {
	var b strings.Builder
	seen := map[string]int{}
	var order []string
	for _, r := range rs {
		k := r.Node
		if k == "" {
			k = r.MAC
		}
		if seen[k] == 0 {
			order = append(order, k)
		}
		seen[k]++
	}
	for i, k := range order {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s×%d", k, seen[k])
	}
	return b.String()
}
