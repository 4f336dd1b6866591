package netiftest

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/hostlb/hostlb/netif"
)

// ErrClosed is returned by AddrManager's Add and Sync after Close.
var ErrClosed = errors.New("netiftest: address manager closed")

// AddrManager is a fake netif.AddrManager that holds addresses in memory
// and records every call. It is safe for concurrent use.
type AddrManager struct {
	mu     sync.Mutex // guards everything below
	held   map[netip.Addr]bool
	fail   map[netip.Addr]error
	ops    []string
	closed bool
}

var _ netif.AddrManager = (*AddrManager)(nil)

// NewAddrManager returns an empty AddrManager.
func NewAddrManager() *AddrManager {
	return &AddrManager{held: map[netip.Addr]bool{}, fail: map[netip.Addr]error{}}
}

// FailAdd makes Add (and Sync) of ip fail with err; nil clears it.
func (f *AddrManager) FailAdd(ip netip.Addr, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, ip)
	} else {
		f.fail[ip] = err
	}
}

// Add implements netif.AddrManager.
func (f *AddrManager) Add(ip netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, "add "+ip.String())
	return f.addLocked(ip)
}

func (f *AddrManager) addLocked(ip netip.Addr) error {
	if f.closed {
		return ErrClosed
	}
	if err := f.fail[ip]; err != nil {
		return fmt.Errorf("add local VIP %s: %w", ip, err)
	}
	f.held[ip.Unmap()] = true
	return nil
}

// Remove implements netif.AddrManager.
func (f *AddrManager) Remove(ip netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, "remove "+ip.String())
	delete(f.held, ip.Unmap())
	return nil
}

// Sync implements netif.AddrManager.
func (f *AddrManager) Sync(want []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, fmt.Sprintf("sync %v", want))
	if f.closed {
		return ErrClosed
	}
	wantSet := map[netip.Addr]bool{}
	for _, ip := range want {
		wantSet[ip.Unmap()] = true
	}
	for ip := range f.held {
		if !wantSet[ip] {
			delete(f.held, ip)
		}
	}
	var errs []error
	for ip := range wantSet {
		errs = append(errs, f.addLocked(ip))
	}
	return errors.Join(errs...)
}

// Addrs implements netif.AddrManager.
func (f *AddrManager) Addrs() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]netip.Addr, 0, len(f.held))
	for ip := range f.held {
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Holds reports whether ip is held.
func (f *AddrManager) Holds(ip netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[ip.Unmap()]
}

// Ops returns the calls made so far ("add 192.0.2.1", "remove ...",
// "sync [...]", "close").
func (f *AddrManager) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// Closed reports whether Close was called.
func (f *AddrManager) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// Close implements netif.AddrManager: it drops every address.
func (f *AddrManager) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.ops = append(f.ops, "close")
	}
	f.closed = true
	clear(f.held)
	return nil
}
