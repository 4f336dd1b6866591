package bgpbench

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RouteCount counts the main-table routes of a namespace whose
// destination is a host route inside a range, from netlink route events,
// and remembers when the count last changed.
type RouteCount struct {
	within netip.Prefix
	done   chan struct{}
	ended  chan struct{}

	mu      sync.Mutex // guards in, changed, err
	in      map[netip.Prefix]struct{}
	changed time.Time
	err     error
	wake    chan struct{} // cap 1: a change happened
}

// WatchRoutes subscribes to the route events of the namespace nsName and
// counts host routes inside within; Close ends it.
func WatchRoutes(nsName string, within netip.Prefix) (*RouteCount, error) {
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", nsName, err)
	}
	defer ns.Close()
	rc := &RouteCount{
		within: within, done: make(chan struct{}), ended: make(chan struct{}),
		in: map[netip.Prefix]struct{}{}, wake: make(chan struct{}, 1),
	}
	ch := make(chan netlink.RouteUpdate, 16384)
	if err := netlink.RouteSubscribeWithOptions(ch, rc.done, netlink.RouteSubscribeOptions{
		Namespace: &ns,
		// 10,000 routes arrive in well under a second: a socket buffer
		// that overflows would lose events (ENOBUFS).
		ReceiveBufferSize:      64 << 20,
		ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) {
			rc.mu.Lock()
			if rc.err == nil {
				rc.err = fmt.Errorf("route events: %w", err)
			}
			rc.mu.Unlock()
			rc.notify()
		},
	}); err != nil {
		return nil, fmt.Errorf("route events in %s: %w", nsName, err)
	}
	go func() {
		defer close(rc.ended)
		for u := range ch {
			rc.apply(u, time.Now())
		}
	}()
	return rc, nil
}

func (rc *RouteCount) notify() {
	select {
	case rc.wake <- struct{}{}:
	default:
	}
}

func (rc *RouteCount) apply(u netlink.RouteUpdate, at time.Time) {
	// u.Type is the message (RTM_NEWROUTE, RTM_DELROUTE); u.Route.Type the
	// route's kind.
	if u.Dst == nil || u.Table != unix.RT_TABLE_MAIN || u.Route.Type != unix.RTN_UNICAST {
		return
	}
	a, ok := netip.AddrFromSlice(u.Dst.IP)
	if !ok {
		return
	}
	ones, bits := u.Dst.Mask.Size()
	p := netip.PrefixFrom(a.Unmap(), ones)
	if ones != bits || !rc.within.Contains(p.Addr()) {
		return
	}
	rc.mu.Lock()
	if u.Type == unix.RTM_DELROUTE {
		delete(rc.in, p)
	} else {
		rc.in[p] = struct{}{}
	}
	rc.changed = at
	rc.mu.Unlock()
	rc.notify()
}

// Wait blocks until exactly want routes are counted, or d passed, and
// returns when the count last changed: the event that made it want.
func (rc *RouteCount) Wait(want int, d time.Duration) (time.Time, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		rc.mu.Lock()
		n, at, err := len(rc.in), rc.changed, rc.err
		rc.mu.Unlock()
		switch {
		case err != nil:
			return at, err
		case n == want:
			return at, nil
		}
		select {
		case <-rc.wake:
		case <-deadline.C:
			return at, fmt.Errorf("%d routes in %s after %v, want %d", n, rc.within, d, want)
		}
	}
}

// Count is how many routes are counted now.
func (rc *RouteCount) Count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.in)
}

// Close ends the subscription and waits.
func (rc *RouteCount) Close() {
	close(rc.done)
	<-rc.ended
}
