package netif

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// Why an address the L2 output was asked to announce is answered on no
// interface. L2Cannot.Err wraps one of them (errors.Is) with the details.
var (
	// ErrNoInterface: no link is eligible for the address (its interface
	// is down, gone, renamed or moved to another namespace, or none
	// matches the interfaces asked for).
	ErrNoInterface = errors.New("no eligible interface")
	// ErrNoResponder: the packet socket of every interface chosen for the
	// address failed to open.
	ErrNoResponder = errors.New("no responder on any chosen interface")
	// ErrNotHeld: a `local = true` address that the node does not hold
	// (the AddrManager failed to add it); answering for it would only
	// black-hole its traffic.
	ErrNotHeld = errors.New("local address not held")
	// ErrSysctls: an IPv4 local address is not held because the ARP
	// sysctls it needs cannot be set (read-only /proc/sys).
	ErrSysctls = errors.New("ARP sysctls not set")
)

// L2Cannot is an address the L2 output was asked to announce and answers
// on no interface, and why.
type L2Cannot struct {
	Addr netip.Addr
	VIP  string
	Err  error // wraps ErrNoInterface, ErrNoResponder, ErrNotHeld or ErrSysctls
}

// Cannot returns the addresses that the last Sync was asked to announce
// and that are answered on no interface, sorted by address: every address
// of the last Sync's want is either in Status or here — except one yielded
// to another node in a wire conflict (fence.go), which is in neither: it
// can be announced, another node outside the ring answers it for now. It waits for a
// running Sync to finish; the caller owns the result.
func (l *L2) Cannot() []L2Cannot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.cannot)
}

// Check returns which of want Sync would find no eligible interface for
// over st and cfg (Err wraps ErrNoInterface), by the same rule as Sync,
// without opening or changing anything: a caller that gave an address up
// for that reason learns when a link change makes it worth a new try. It
// waits for a running Sync to finish.
func (l *L2) Check(st State, cfg L2Config, want []L2Announcement) []L2Cannot {
	l.mu.Lock()
	defer l.mu.Unlock()
	eligible := map[string][]Link{}
	var out []L2Cannot
	for _, a := range want {
		a.Addr = a.Addr.Unmap().WithZone("")
		cands, err := l.candidates(st, cfg, a, eligible)
		switch {
		case err != nil:
			out = append(out, L2Cannot{Addr: a.Addr, VIP: a.VIP, Err: fmt.Errorf("%w: %w", ErrNoInterface, err)})
		case len(InterfacesFor(a.Addr, cands)) == 0:
			out = append(out, L2Cannot{Addr: a.Addr, VIP: a.VIP, Err: noInterface(a, cfg)})
		}
	}
	slices.SortFunc(out, func(a, b L2Cannot) int { return a.Addr.Compare(b.Addr) })
	return out
}

// candidates returns the links eligible for a's interface list over st,
// memoised in eligible (by selector key) for one pass. Called with l.mu
// held.
func (l *L2) candidates(st State, cfg L2Config, a L2Announcement, eligible map[string][]Link) ([]Link, error) {
	key := selectorKey(a.Interfaces, cfg)
	if cands, ok := eligible[key]; ok {
		return cands, nil
	}
	sel, err := l.selector(key, a.Interfaces, cfg)
	if err != nil {
		return nil, err
	}
	cands := sel.Eligible(st)
	eligible[key] = cands
	return cands, nil
}

// noInterface says which interfaces an address could have used.
func noInterface(a L2Announcement, cfg L2Config) error {
	allow := cfg.Interfaces
	if len(a.Interfaces) > 0 {
		allow = a.Interfaces
	}
	if len(allow) == 0 {
		return fmt.Errorf("%w: no link is up, broadcast and not excluded", ErrNoInterface)
	}
	return fmt.Errorf("%w: none of the interfaces %q is up and broadcast", ErrNoInterface, allow)
}

// cannotReport collects, during one Sync, why wanted addresses end up
// answered nowhere.
type cannotReport struct {
	localErr error // syncLocal's
	found    map[netip.Addr]L2Cannot
	ifaceErr map[int]error // syncIface's, by link index
}

func newCannotReport(localErr error) *cannotReport {
	return &cannotReport{localErr: localErr, found: map[netip.Addr]L2Cannot{}, ifaceErr: map[int]error{}}
}

func (r *cannotReport) add(a L2Announcement, err error) {
	r.found[a.Addr] = L2Cannot{Addr: a.Addr, VIP: a.VIP, Err: err}
}

// notHeld records a local address the AddrManager does not hold.
func (r *cannotReport) notHeld(a L2Announcement) {
	switch err := r.localErr; {
	case err == nil:
		r.add(a, ErrNotHeld)
	case a.Addr.Is4() && isSysctlDenied(err):
		r.add(a, fmt.Errorf("%w: %w", ErrSysctls, err))
	default:
		r.add(a, fmt.Errorf("%w: %w", ErrNotHeld, err))
	}
}

// finish returns the report: what was found during planning, and every
// planned address that no interface answers now (its responders failed,
// with their errors, or the Sync was cancelled before reaching them).
func (r *cannotReport) finish(plan map[int]map[netip.Addr]L2Announcement, ifaces map[int]*l2Iface, ctxErr error) []L2Cannot {
	answered := map[netip.Addr]bool{}
	for idx, as := range plan {
		if ifc := ifaces[idx]; ifc != nil {
			for addr := range as {
				if ifc.addrs[addr] != nil {
					answered[addr] = true
				}
			}
		}
	}
	why := map[netip.Addr][]error{}
	vips := map[netip.Addr]string{}
	for _, idx := range slices.Sorted(maps.Keys(plan)) {
		for addr, a := range plan[idx] {
			if !answered[addr] {
				why[addr] = append(why[addr], r.ifaceErr[idx])
				vips[addr] = a.VIP
			}
		}
	}
	for addr, errs := range why {
		err := errors.Join(errs...)
		if err == nil {
			err = ctxErr // not reached: Sync was cancelled
		}
		if err == nil {
			err = ErrNoResponder
		} else {
			err = fmt.Errorf("%w: %w", ErrNoResponder, err)
		}
		r.found[addr] = L2Cannot{Addr: addr, VIP: vips[addr], Err: err}
	}
	out := make([]L2Cannot, 0, len(r.found))
	for _, c := range r.found {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b L2Cannot) int { return a.Addr.Compare(b.Addr) })
	return out
}
