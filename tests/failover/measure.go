package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Fault is how the owner of the VIP goes away.
type Fault string

// The faults.
const (
	// Crash: the owner's link goes down, then its daemon gets SIGKILL.
	Crash Fault = "crash"
	// Graceful: the owner's daemon gets SIGTERM.
	Graceful Fault = "graceful"
)

// Probing timing.
const (
	// ProbeInterval is how often the client sends an ARP request and
	// starts a TCP connect.
	ProbeInterval = 10 * time.Millisecond
	// ConnectTimeout bounds one TCP connect (and reading the node name):
	// well under the 1 s SYN retransmit, so a SYN sent to a dead MAC is a
	// failed probe rather than a slow success.
	ConnectTimeout = 200 * time.Millisecond
	// baseline is how long the owner must have answered before the fault.
	baseline = 300 * time.Millisecond
	// tail keeps probing after the failover, to see old and new owner
	// both answering if they do.
	tail = 300 * time.Millisecond
)

// Result is one repetition: a fault of the VIP's owner and what the
// client saw.
type Result struct {
	Kind    Kind
	Fault   Fault
	Rep     int
	VIP     netip.Addr
	Old     string // the owner before the fault
	New     string // the first other node that answered ARP
	FaultAt time.Time

	LastOld  time.Time // last ARP reply of Old before New's first
	FirstNew time.Time // New's first ARP reply
	FirstTCP time.Time // end of the first connect New served
	// ARP is FirstNew − LastOld: how long nobody answered ARP.
	ARP time.Duration
	// TCP is FirstTCP − LastOld: how long until a new connect succeeded.
	TCP time.Duration
	// Overlap: Old still answered ARP after New had, for OverlapFor
	// (from New's first reply to Old's last).
	Overlap    bool
	OverlapFor time.Duration
	// Connects and FailedConnects count the TCP probes of the repetition
	// (baseline, failover and tail).
	Connects, FailedConnects int
	ARPSent, ARPReplies      int
	// Err says why the repetition has no failover time ("" when it has).
	Err string

	// For plots: arrival times relative to FaultAt.
	OldReplies, NewReplies []time.Duration
	FailedAt               []time.Duration
	// FailedErrs says, for each failed connect (as FailedAt), when it
	// started and ended relative to the fault and why it failed: a reset
	// is a connection that the old owner accepted and whose next packets
	// reached the new one; a timeout is the outage.
	FailedErrs []string
}

// Probers are the client's two probes, shared by the repetitions of a run.
type Probers struct {
	ARP *ARPProber
	TCP *TCPProber
}

// NewProbers opens both probes against vip. Close them.
func (c *Cluster) NewProbers(vip netip.Addr) (*Probers, error) {
	ap, err := c.NewARPProber()
	if err != nil {
		return nil, err
	}
	return &Probers{ARP: ap, TCP: c.NewTCPProber(vip, ConnectTimeout)}, nil
}

// Close closes both probes.
func (p *Probers) Close() {
	p.TCP.Close()
	_ = p.ARP.Close()
}

// Steady polls until the cluster is in its steady state or ctx is done or
// d passes, and returns the owner of vip. Steady: every daemon runs; each
// VIP address is answered by exactly one node, over as many distinct
// nodes as possible (hostlb), or vip by the highest priority node
// (keepalived); a TCP connect to vip is served by its ARP owner; and all
// of it held on three polls in a row.
func (c *Cluster) Steady(ctx context.Context, p *Probers, vip netip.Addr, d time.Duration) (*Node, error) {
	deadline := time.Now().Add(d)
	var (
		owner *Node
		good  int
		why   string
	)
	for good < 3 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no steady state within %s: %s", d, why)
		}
		o, reason := c.steadyOnce(p, vip)
		switch {
		case o == nil:
			good, why = 0, reason
		case owner != nil && o != owner:
			good, why = 1, "the owner changed"
		default:
			good++
		}
		owner = o
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	return owner, nil
}

func (c *Cluster) steadyOnce(p *Probers, vip netip.Addr) (*Node, string) {
	for _, n := range c.Nodes {
		if !n.Running() {
			return nil, n.Name + " is not running"
		}
	}
	vips := c.opts.VIPs
	if c.opts.Kind.IsKeepalived() {
		vips = vips[:1]
	}
	var owner *Node
	distinct := map[string]bool{}
	for _, v := range vips {
		macs, err := p.ARP.Who(v, 30*time.Millisecond)
		if err != nil {
			return nil, err.Error()
		}
		if len(macs) != 1 {
			return nil, fmt.Sprintf("%s answered by %d MACs %v", v, len(macs), macs)
		}
		n := c.NodeByMAC(parseMAC(macs[0]))
		if n == nil {
			return nil, fmt.Sprintf("%s answered by unknown MAC %s", v, macs[0])
		}
		distinct[n.Name] = true
		if v == vip {
			owner = n
		}
	}
	switch c.opts.Kind {
	case HostLB:
		if want := min(len(vips), len(c.Nodes)); len(distinct) != want {
			return nil, fmt.Sprintf("%d addresses on %d nodes, want %d", len(vips), len(distinct), want)
		}
	case Keepalived, KeepalivedTuned:
		if owner != c.Nodes[0] {
			return nil, fmt.Sprintf("%s owned by %s, want the highest priority %s", vip, owner.Name, c.Nodes[0].Name)
		}
	}
	if owner == nil {
		return nil, vip.String() + " is not one of the VIP's addresses"
	}
	if r := p.TCP.Once(); r.Node != owner.Name {
		return nil, fmt.Sprintf("TCP connect to %s served by %q (%s), ARP owner %s", vip, r.Node, r.Err, owner.Name)
	}
	return owner, ""
}

// Measure runs one repetition on a steady cluster: probe vip every
// ProbeInterval, fault its owner, wait for another node to answer ARP and
// serve a TCP connect (at most failDeadline). The old owner stays down
// (after a graceful stop, its daemon has exited): Restore it.
func (c *Cluster) Measure(ctx context.Context, p *Probers, vip netip.Addr, fault Fault, rep int, failDeadline time.Duration) (Result, error) {
	res := Result{Kind: c.opts.Kind, Fault: fault, Rep: rep, VIP: vip}
	owner, err := c.Steady(ctx, p, vip, 60*time.Second)
	if err != nil {
		return res, err
	}
	res.Old = owner.Name
	start := time.Now()
	p.ARP.Forget(start.Add(-time.Second))
	p.TCP.Forget(start.Add(-time.Second))

	stop := make(chan struct{})
	issued := make(chan int, 1)
	go func(stop <-chan struct{}) {
		t := time.NewTicker(ProbeInterval)
		defer t.Stop()
		n := 0
		for {
			_ = p.ARP.Request(vip)
			p.TCP.Probe()
			n++
			select {
			case <-stop:
				issued <- n
				return
			case <-t.C:
			}
		}
	}(stop)
	var stopOnce sync.Once
	stopProbes := func() int {
		n := 0
		stopOnce.Do(func() {
			close(stop)
			n = <-issued
		})
		return n
	}
	defer stopProbes()

	// Baseline: the owner answers, so the last reply before the fault is
	// a real one.
	if err := poll(ctx, 5*time.Second, func() bool {
		return time.Since(start) >= baseline && len(p.ARP.Replies(vip, start, time.Now())) > 0
	}); err != nil {
		return res, fmt.Errorf("baseline: %s never answered %s: %w", owner.Name, vip, err)
	}

	switch fault {
	case Crash:
		res.FaultAt = owner.Crash()
	case Graceful:
		res.FaultAt = owner.Stop()
	}

	// Wait for a new owner on ARP and on TCP.
	newOwner := func() (string, time.Time) {
		for _, r := range p.ARP.Replies(vip, res.FaultAt, time.Now()) {
			if r.MAC != owner.MAC.String() {
				if n := c.NodeByMAC(parseMAC(r.MAC)); n != nil {
					return n.Name, r.At
				}
				return r.MAC, r.At
			}
		}
		return "", time.Time{}
	}
	firstTCP := func(node string) time.Time {
		var first time.Time
		for _, r := range p.TCP.Results(start, time.Now()) {
			if r.Node == node && r.Node != "" && (first.IsZero() || r.End.Before(first)) {
				first = r.End
			}
		}
		return first
	}
	var done time.Time
	err = poll(ctx, failDeadline, func() bool {
		name, _ := newOwner()
		if name == "" {
			return false
		}
		t := firstTCP(name)
		if t.IsZero() {
			return false
		}
		if done.IsZero() {
			done = time.Now()
		}
		return time.Since(done) >= tail
	})
	if errors.Is(err, context.Canceled) {
		return res, err
	}
	if err != nil {
		res.Err = fmt.Sprintf("no failover within %s", failDeadline)
	}
	issuedN := stopProbes()
	// Let the connects in flight finish (each ends within ConnectTimeout).
	_ = poll(ctx, ConnectTimeout+2*time.Second, func() bool {
		return len(p.TCP.Results(start, time.Now().Add(time.Hour))) >= issuedN
	})
	end := time.Now()

	// Analyse.
	res.New, res.FirstNew = newOwner()
	replies := p.ARP.Replies(vip, start, end)
	res.ARPSent, res.ARPReplies = p.ARP.Sent(start, end), len(replies)
	for _, r := range replies {
		rel := r.At.Sub(res.FaultAt)
		if r.MAC == owner.MAC.String() {
			res.OldReplies = append(res.OldReplies, rel)
			if !res.FirstNew.IsZero() && r.At.After(res.FirstNew) {
				res.Overlap = true
				res.OverlapFor = max(res.OverlapFor, r.At.Sub(res.FirstNew))
			}
			if res.FirstNew.IsZero() || r.At.Before(res.FirstNew) {
				res.LastOld = r.At
			}
		} else {
			res.NewReplies = append(res.NewReplies, rel)
		}
	}
	conns := p.TCP.Results(start, end)
	res.Connects = len(conns)
	for _, r := range conns {
		if !r.OK() {
			res.FailedConnects++
			res.FailedAt = append(res.FailedAt, r.Start.Sub(res.FaultAt))
			res.FailedErrs = append(res.FailedErrs, fmt.Sprintf("%+.1f..%+.1f ms: %s",
				float64(r.Start.Sub(res.FaultAt))/float64(time.Millisecond), float64(r.End.Sub(res.FaultAt))/float64(time.Millisecond), r.Err))
		}
	}
	if res.New != "" {
		res.FirstTCP = firstTCP(res.New)
	}
	if res.Err == "" {
		res.ARP = res.FirstNew.Sub(res.LastOld)
		res.TCP = res.FirstTCP.Sub(res.LastOld)
	}

	if fault == Graceful {
		if err := owner.Wait(30 * time.Second); err != nil {
			res.Err = strings.TrimSpace(res.Err + fmt.Sprintf(" %s exited with %v after SIGTERM", owner.Name, err))
		}
	}
	return res, nil
}

// Restore brings back the node r faulted, without waiting for the cluster
// to be steady again (Steady does).
func (c *Cluster) Restore(r Result) {
	c.tb.Helper()
	if n := c.NodeByName(r.Old); n != nil {
		n.Restore()
	}
}

// poll checks cond every 5 ms until it holds, ctx is done or d passes.
func poll(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", d)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	return nil
}

func parseMAC(s string) net.HardwareAddr {
	m, _ := net.ParseMAC(s)
	return m
}

// Owners asks for every address of the VIP and returns, per address, the
// nodes (or unknown MACs) that answered within window.
func (c *Cluster) Owners(p *ARPProber, window time.Duration) (map[netip.Addr][]string, error) {
	out := map[netip.Addr][]string{}
	for _, v := range c.opts.VIPs {
		macs, err := p.Who(v, window)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, m := range macs {
			if n := c.NodeByMAC(parseMAC(m)); n != nil {
				names = append(names, n.Name)
			} else {
				names = append(names, m)
			}
		}
		slices.Sort(names)
		out[v] = names
	}
	return out, nil
}
