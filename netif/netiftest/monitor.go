package netiftest

import (
	"context"
	"net/netip"
	"slices"
	"sync"

	"github.com/hostlb/hostlb/netif"
)

// Monitor is a fake netif.Monitor: the test sets links and addresses, and
// every change replaces the snapshot and calls the OnChange callback, as
// the real Monitor does on a netlink event. It is safe for concurrent use.
type Monitor struct {
	mu       sync.Mutex // guards st and onChange
	st       netif.State
	onChange func(reason string)
}

// NewMonitor returns a Monitor whose snapshot holds links.
func NewMonitor(links ...netif.Link) *Monitor {
	return &Monitor{st: netif.NewState(links...)}
}

// SetOnChange sets the callback called (outside any lock) after every change.
func (m *Monitor) SetOnChange(f func(reason string)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onChange = f
}

// Snapshot returns the current State.
func (m *Monitor) Snapshot() netif.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Ready is always closed: the fake has its "dump" from the start.
func (m *Monitor) Ready() <-chan struct{} { return closed }

// Run blocks until ctx is cancelled, like the real Monitor.
func (m *Monitor) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Set replaces every link.
func (m *Monitor) Set(links ...netif.Link) {
	m.update("links replaced", func([]netif.Link) []netif.Link { return links })
}

// SetLink adds l, or replaces the link with its index (addresses included).
func (m *Monitor) SetLink(l netif.Link) {
	m.update("link "+l.Name, func(ls []netif.Link) []netif.Link {
		ls = slices.DeleteFunc(ls, func(o netif.Link) bool { return o.Index == l.Index })
		return append(ls, l)
	})
}

// DelLink removes the link called name.
func (m *Monitor) DelLink(name string) {
	m.update("link deleted "+name, func(ls []netif.Link) []netif.Link {
		return slices.DeleteFunc(ls, func(o netif.Link) bool { return o.Name == name })
	})
}

// SetUp sets the Up (and Running) flag of the link called name.
func (m *Monitor) SetUp(name string, up bool) {
	m.edit(name, "link "+name, func(l *netif.Link) { l.Up, l.Running = up, up })
}

// SetMaster enslaves the link called name to master (0: none).
func (m *Monitor) SetMaster(name string, master int) {
	m.edit(name, "link "+name, func(l *netif.Link) { l.MasterIndex = master })
}

// AddAddr adds an address with its subnet (192.0.2.10/24) to a link.
func (m *Monitor) AddAddr(name string, p netip.Prefix) {
	m.edit(name, "address added "+p.String(), func(l *netif.Link) {
		l.Addrs = append(slices.DeleteFunc(slices.Clone(l.Addrs),
			func(a netif.Addr) bool { return a.Prefix == p }), netif.Addr{Prefix: p})
	})
}

// DelAddr removes an address from a link.
func (m *Monitor) DelAddr(name string, p netip.Prefix) {
	m.edit(name, "address removed "+p.String(), func(l *netif.Link) {
		l.Addrs = slices.DeleteFunc(slices.Clone(l.Addrs), func(a netif.Addr) bool { return a.Prefix == p })
	})
}

// edit changes the link called name, if there is one.
func (m *Monitor) edit(name, reason string, f func(*netif.Link)) {
	m.update(reason, func(ls []netif.Link) []netif.Link {
		for i := range ls {
			if ls[i].Name == name {
				f(&ls[i])
			}
		}
		return ls
	})
}

func (m *Monitor) update(reason string, f func([]netif.Link) []netif.Link) {
	m.mu.Lock()
	m.st = netif.NewState(f(m.st.Links())...)
	cb := m.onChange
	m.mu.Unlock()
	if cb != nil {
		cb(reason)
	}
}
