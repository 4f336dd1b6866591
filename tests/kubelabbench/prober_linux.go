package kubelabbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/hostlb/hostlb/tests/netlab"
)

// proberTick is how often the sender looks at the Schedule: the delay of
// a new address's first request when the rate does not bind.
const proberTick = 5 * time.Millisecond

// proberRcvBuf keeps a burst of gratuitous ARPs and NAs (every node
// announces each new IP) from overflowing the socket.
const proberRcvBuf = 4 << 20

// Prober asks, from the client's interface on a raw packet socket (so the
// client's neighbour table plays no part), who answers for each pending
// IP: ARP requests for IPv4, Neighbor Solicitations to the solicited-node
// group for IPv6, paced by a Schedule. It hands every answer and
// announcement it receives to a Tracker, and stops asking about an IP at
// its first answer.
type Prober struct {
	c          *packet.Conn
	mac        net.HardwareAddr
	src4, src6 netip.Addr
	tr         *Tracker
	rate       float64

	closing    atomic.Bool
	readerDone chan struct{}
	quit       chan struct{}
	senderDone chan struct{}
	writeErrs  atomic.Int64
	badFrames  atomic.Int64 // ARP or NA frames that failed a check

	mu       sync.Mutex // guards sched and firstErr
	sched    Schedule
	firstErr error // the first write or read error
}

// ListenProber opens the socket on ifname inside ns (src4 and src6 are the
// addresses the requests come from) and starts the reader and the sender:
// each pending IP is asked about every `every`, within rate requests per
// second in all. Close it.
func ListenProber(ns *netlab.NS, ifname string, src4, src6 netip.Addr, tr *Tracker, every time.Duration, rate float64) (*Prober, error) {
	// In the kernel: ARP (requests too, for gratuitous ones), and ICMPv6
	// Neighbor Advertisements without extension headers.
	filter, err := bpf.Assemble([]bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: 12, Size: 2},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeARP, SkipTrue: 5},
		/* 2 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv6, SkipTrue: 5},
		/* 3 */ bpf.LoadAbsolute{Off: ipv6NextOff, Size: 1},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},
		/* 5 */ bpf.LoadAbsolute{Off: icmpOff, Size: 1},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmpTypeNA, SkipTrue: 1},
		/* 7 */ bpf.RetConstant{Val: 2048},
		/* 8 */ bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return nil, fmt.Errorf("prober: assemble filter: %w", err)
	}
	var (
		c   *packet.Conn
		mac net.HardwareAddr
	)
	err = ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		c, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, &packet.Config{Filter: filter})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("prober: listen on %s in %s: %w", ifname, ns.Name, err)
	}
	rc, err := c.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) {
			// Our own requests are not answers (PACKET_IGNORE_OUTGOING).
			err = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
			if err == nil {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, proberRcvBuf)
			}
		})
		err = errors.Join(err, cerr)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("prober: socket options on %s: %w", ifname, err)
	}
	p := &Prober{
		c: c, mac: mac, src4: src4, src6: src6, tr: tr, rate: rate,
		readerDone: make(chan struct{}), quit: make(chan struct{}), senderDone: make(chan struct{}),
		sched: Schedule{Every: every, Rate: rate, Burst: max(1, int(rate*float64(proberTick)/float64(time.Second))*4)},
	}
	go p.read()
	go p.send()
	return p, nil
}

// MAC is the client interface's MAC, the destination of answers.
func (p *Prober) MAC() net.HardwareAddr { return p.mac }

func (p *Prober) read() {
	defer close(p.readerDone)
	buf := make([]byte, 2048)
	for {
		n, _, err := p.c.ReadFrom(buf)
		at := time.Now()
		if err != nil {
			if !p.closing.Load() {
				p.fail(fmt.Errorf("prober: read: %w", err))
			}
			return
		}
		h, err := ParseFrame(buf[:n], p.mac)
		if err != nil {
			if errors.Is(err, ErrBadFrame) {
				p.badFrames.Add(1)
			}
			continue
		}
		if p.tr.Heard(h, at) {
			p.mu.Lock()
			p.sched.Remove(h.Target)
			p.mu.Unlock()
		}
	}
}

func (p *Prober) send() {
	defer close(p.senderDone)
	tick := time.NewTicker(proberTick)
	defer tick.Stop()
	var due []netip.Addr
	for {
		select {
		case <-p.quit:
			return
		case <-tick.C:
		}
		p.mu.Lock()
		due = p.sched.Due(time.Now(), due[:0])
		p.mu.Unlock()
		for _, ip := range due {
			if err := p.Request(ip); err != nil {
				p.writeErrs.Add(1)
				p.fail(err)
			}
		}
	}
}

// Request sends one request for ip now.
func (p *Prober) Request(ip netip.Addr) error {
	var (
		f   []byte
		err error
	)
	if ip.Is4() {
		f, err = ARPRequest(p.mac, p.src4, ip)
	} else {
		f, err = NeighborSolicitation(p.mac, p.src6, ip)
	}
	if err != nil {
		return fmt.Errorf("prober: %w", err)
	}
	// A raw packet socket sends the frame's own header; the address only
	// satisfies WriteTo.
	if _, err := p.c.WriteTo(f, &packet.Addr{HardwareAddr: broadcastMAC}); err != nil {
		return fmt.Errorf("prober: send a request for %s: %w", ip, err)
	}
	return nil
}

// Add starts asking about ip until it answers (or Drop).
func (p *Prober) Add(ip netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sched.Add(ip, time.Now())
}

// Drop stops asking about every pending IP and returns how many there
// were.
func (p *Prober) Drop() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.sched.Pending()
	p.sched.Clear()
	return n
}

// Stats returns the schedule's counters and starts them again.
func (p *Prober) Stats() ScheduleStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sched.Stats()
	p.sched.ResetStats()
	return s
}

// Sweep sends one request for each of ips, at the prober's rate, and
// returns when the last one is sent.
func (p *Prober) Sweep(ctx context.Context, ips []netip.Addr) error {
	per := max(1, int(p.rate*float64(proberTick)/float64(time.Second)))
	tick := time.NewTicker(proberTick)
	defer tick.Stop()
	for i := 0; i < len(ips); i += per {
		for _, ip := range ips[i:min(i+per, len(ips))] {
			if err := p.Request(ip); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Problems says how many sends failed and how many received frames failed
// a check, with the first socket error, if any.
type Problems struct {
	WriteErrs, BadFrames int64
	First                error
}

// Problems returns what went wrong so far.
func (p *Prober) Problems() Problems {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Problems{WriteErrs: p.writeErrs.Load(), BadFrames: p.badFrames.Load(), First: p.firstErr}
}

func (p *Prober) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.firstErr == nil {
		p.firstErr = err
	}
}

// Close stops the sender, closes the socket and waits for the reader.
func (p *Prober) Close() error {
	if p.closing.Swap(true) {
		return nil
	}
	close(p.quit)
	<-p.senderDone
	err := p.c.Close()
	<-p.readerDone
	return err
}
