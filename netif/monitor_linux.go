package netif

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// MonitorOptions configure a Monitor.
type MonitorOptions struct {
	// Log receives subscription losses and resubscriptions. Default: discard.
	Log *slog.Logger
	// NetNS, when set, is the network namespace to follow instead of the
	// caller's. The caller keeps it open for as long as Run runs.
	NetNS *netns.NsHandle
	// OnChange is called after every change of the snapshot (and after the
	// first and every later full dump), with a short reason for logs. It
	// runs on the Monitor's goroutine and must not block: the daemon passes
	// its reconcile loop's Trigger, which coalesces.
	OnChange func(reason string)

	// Test knobs: the receive buffer of the subscription sockets (0: 4 MiB)
	// and the capacity of the channels between socket and Monitor.
	rcvBuf, chanCap int
}

// Monitor follows the links and addresses of a network namespace through
// rtnetlink subscriptions: one full dump, then events. It never rescans
// periodically; a lost subscription (ENOBUFS after an event storm, a
// socket error) is logged and replaced, followed by a new full dump.
type Monitor struct {
	opts  MonitorOptions
	log   *slog.Logger
	state atomic.Pointer[State]
	ready chan struct{}
	once  sync.Once // closes ready

	// resubscribes counts subscriptions lost and replaced, for tests.
	resubscribes atomic.Int64
}

// NewMonitor returns an inert Monitor; Run starts it.
func NewMonitor(opts MonitorOptions) *Monitor {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{opts: opts, log: log, ready: make(chan struct{})}
	m.state.Store(&State{})
	return m
}

// Snapshot returns the current State. It never blocks. Before the first
// dump completes (see Ready) it is empty.
func (m *Monitor) Snapshot() State { return *m.state.Load() }

// Ready is closed once the first full dump is in the snapshot.
func (m *Monitor) Ready() <-chan struct{} { return m.ready }

// Run follows the namespace until ctx is cancelled, then stops every
// goroutine it started and returns nil. It returns an error only when the
// very first subscription or dump fails (no permission, bad namespace);
// later failures are retried with backoff.
func (m *Monitor) Run(ctx context.Context) error {
	const minBackoff, maxBackoff = 50 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for first := true; ; first = false {
		started := time.Now()
		dumped, err := m.session(ctx)
		select {
		case <-ctx.Done(): // asked to stop; whatever err says is the teardown
			return nil
		default:
		}
		if first && !dumped {
			return fmt.Errorf("follow links and addresses: %w", err)
		}
		if time.Since(started) > time.Minute {
			backoff = minBackoff // a long healthy session; not a crash loop
		}
		m.resubscribes.Add(1)
		m.log.Warn("netlink subscription lost; resubscribing and dumping again",
			"err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// session subscribes, dumps, and applies events until ctx ends or a
// subscription fails. It reports whether the dump completed. It returns
// only after both subscription goroutines have exited.
func (m *Monitor) session(ctx context.Context) (dumped bool, err error) {
	chanCap := m.opts.chanCap
	if chanCap == 0 {
		chanCap = 512
	}
	rcvBuf := m.opts.rcvBuf
	if rcvBuf == 0 {
		rcvBuf = 4 << 20
	}
	var (
		done   = make(chan struct{})
		linkCh = make(chan netlink.LinkUpdate, chanCap)
		addrCh = make(chan netlink.AddrUpdate, chanCap)
		// lastErr is the latest error the netlink goroutines reported;
		// they close their channel right after a fatal one.
		lastErr atomic.Pointer[error]
	)
	onErr := func(err error) {
		select {
		case <-done: // our own Close; not worth a word
			return
		default:
		}
		if strings.HasPrefix(err.Error(), "Receive failed") {
			// Fatal: the goroutine closes its channel next, and session
			// returns this error.
			lastErr.Store(&err)
			return
		}
		// A message the library could not parse: that change is missed
		// until the next event for the same link or address.
		m.log.Warn("netlink message skipped", "err", err)
	}
	linkOpen, addrOpen := false, false
	defer func() {
		close(done)
		// The netlink goroutines may be blocked sending to us: drain until
		// they close their channels, so none outlives the session.
		lc, ac := linkCh, addrCh
		if !linkOpen {
			lc = nil
		}
		if !addrOpen {
			ac = nil
		}
		for lc != nil || ac != nil {
			select {
			case _, ok := <-lc:
				if !ok {
					lc = nil
				}
			case _, ok := <-ac:
				if !ok {
					ac = nil
				}
			}
		}
	}()

	// Subscribe before dumping: events that race with the dump queue up
	// and are applied after it. Link updates carry the whole link and
	// address updates are set operations, so replaying them over a newer
	// dump converges on the kernel's state.
	subscribe := func(rcvForce bool) error {
		lo := netlink.LinkSubscribeOptions{Namespace: m.opts.NetNS, ErrorCallback: onErr,
			ReceiveBufferSize: rcvBuf, ReceiveBufferForceSize: rcvForce}
		if !linkOpen {
			if err := netlink.LinkSubscribeWithOptions(linkCh, done, lo); err != nil {
				return fmt.Errorf("subscribe to links: %w", err)
			}
			linkOpen = true
		}
		ao := netlink.AddrSubscribeOptions{Namespace: m.opts.NetNS, ErrorCallback: onErr,
			ReceiveBufferSize: rcvBuf, ReceiveBufferForceSize: rcvForce}
		if err := netlink.AddrSubscribeWithOptions(addrCh, done, ao); err != nil {
			return fmt.Errorf("subscribe to addresses: %w", err)
		}
		addrOpen = true
		return nil
	}
	// SO_RCVBUFFORCE (CAP_NET_ADMIN) lifts the rmem_max cap, so a burst of
	// thousands of address events does not overflow the socket.
	if err := subscribe(true); err != nil {
		if err := subscribe(false); err != nil {
			return false, err
		}
	}

	st, err := m.dump()
	if err != nil {
		return false, err
	}
	m.publish(st, "netlink dump")
	m.once.Do(func() { close(m.ready) })

	for {
		b := newBuilder(*m.state.Load())
		changed, reason := false, ""
		note := func(c bool, r func() string) {
			if c {
				if !changed {
					reason = r()
				}
				changed = true
			}
		}
		onLink := func(u netlink.LinkUpdate, ok bool) error {
			if !ok {
				linkOpen = false
				return subscriptionErr("link", lastErr.Load())
			}
			note(b.applyLink(u), func() string { return linkReason(u) })
			return nil
		}
		onAddr := func(u netlink.AddrUpdate, ok bool) error {
			if !ok {
				addrOpen = false
				return subscriptionErr("address", lastErr.Load())
			}
			note(b.applyAddr(u), func() string { return addrReason(u) })
			return nil
		}
		// Block for one update, then take whatever else is already
		// queued, so a burst becomes one snapshot and one notification.
		var err error
		select {
		case <-ctx.Done():
			return true, nil
		case u, ok := <-linkCh:
			err = onLink(u, ok)
		case u, ok := <-addrCh:
			err = onAddr(u, ok)
		}
	drain:
		for i := 0; err == nil && i < 4*chanCap; i++ {
			select {
			case u, ok := <-linkCh:
				err = onLink(u, ok)
			case u, ok := <-addrCh:
				err = onAddr(u, ok)
			default:
				break drain
			}
		}
		if err != nil {
			return true, err
		}
		if changed {
			m.publish(b.state(), reason)
		}
	}
}

func subscriptionErr(what string, err *error) error {
	if err == nil {
		return fmt.Errorf("%s subscription closed", what)
	}
	return fmt.Errorf("%s subscription: %w", what, *err)
}

func linkReason(u netlink.LinkUpdate) string {
	verb := "link"
	if u.Header.Type == unix.RTM_DELLINK {
		verb = "link deleted"
	}
	return verb + " " + u.Link.Attrs().Name
}

func addrReason(u netlink.AddrUpdate) string {
	verb := "address added "
	if !u.NewAddr {
		verb = "address removed "
	}
	return verb + u.LinkAddress.String()
}

// dump reads every link and address, retrying when the kernel reports that
// the dump was interrupted by a concurrent change.
func (m *Monitor) dump() (State, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if m.opts.NetNS != nil {
		h, err = netlink.NewHandleAt(*m.opts.NetNS)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return State{}, fmt.Errorf("open netlink handle: %w", err)
	}
	defer h.Close()
	for attempt := 0; ; attempt++ {
		links, lerr := h.LinkList()
		addrs, aerr := h.AddrList(nil, netlink.FAMILY_ALL)
		err := errors.Join(lerr, aerr)
		if err == nil {
			return stateFromDump(links, addrs), nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) || attempt == 10 {
			return State{}, fmt.Errorf("dump links and addresses: %w", err)
		}
	}
}

func (m *Monitor) publish(st State, reason string) {
	m.state.Store(&st)
	if m.opts.OnChange != nil {
		m.opts.OnChange(reason)
	}
}
