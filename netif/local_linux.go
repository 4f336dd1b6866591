package netif

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrLocalAddrsClosed is returned by LocalAddrs used after Close.
var ErrLocalAddrsClosed = errors.New("address manager closed")

// LocalAddrsOptions configure LocalAddrs.
type LocalAddrsOptions struct {
	// Log receives what the manager changes on the host. Default: discard.
	Log *slog.Logger
	// NetNS, when set, is the network namespace to work in instead of the
	// caller's. The caller keeps it open until Close returns.
	NetNS *netns.NsHandle
	// LinkName overrides LocalLinkName (tests).
	LinkName string
}

// arpSysctls are raised (never lowered) while LocalAddrs holds an IPv4
// address; see the package doc. "all" makes them apply to every interface,
// including ones created later: the kernel uses max(all, interface).
var arpSysctls = []struct {
	key  string // under /proc/sys
	want int
}{
	{"net/ipv4/conf/all/arp_ignore", 1},   // reply only for addresses on the receiving interface
	{"net/ipv4/conf/all/arp_announce", 2}, // never use a VIP as the sender of our own ARP requests
}

// LocalAddrs is the real AddrManager: it holds owned VIPs on the hostlb0
// link (a dummy link, or an ifb link where the kernel has no dummy driver;
// both are NOARP and never receive frames).
//
// IPv4 VIPs are added as /32 with scope host, so the kernel never picks
// them as the source of the node's own connections; IPv6 VIPs as /128 with
// nodad (usable at once) and preferred_lft 0 (deprecated: accepted, never
// chosen as a source, RFC 6724 rule 3). Replies to traffic sent to a VIP
// still come from the VIP.
//
// Lifecycle: the first Add or Sync removes every address left on hostlb0 by
// a crashed earlier run (the manager owns hostlb0) and creates the link if
// it is missing. Close removes every address the manager added, deletes
// hostlb0 once it holds no address but link-local ones, and restores the
// ARP sysctls it raised if nobody changed them since.
type LocalAddrs struct {
	opts LocalAddrsOptions
	log  *slog.Logger

	mu      sync.Mutex // guards everything below, and serialises netlink use
	h       *netlink.Handle
	started bool
	closed  bool
	held    map[netip.Addr]bool
	// raised are the sysctls this manager changed: key -> value before.
	raised map[string]string
}

var _ AddrManager = (*LocalAddrs)(nil)

// NewLocalAddrs returns an inert manager: nothing on the host changes until
// the first Add or Sync.
func NewLocalAddrs(opts LocalAddrsOptions) *LocalAddrs {
	if opts.LinkName == "" {
		opts.LinkName = LocalLinkName
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LocalAddrs{opts: opts, log: log, held: map[netip.Addr]bool{}, raised: map[string]string{}}
}

// Add implements AddrManager.
func (l *LocalAddrs) Add(ip netip.Addr) error {
	ip, err := checkVIP(ip)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.start(); err != nil {
		return err
	}
	return l.add(ip)
}

// Remove implements AddrManager.
func (l *LocalAddrs) Remove(ip netip.Addr) error {
	ip, err := checkVIP(ip)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil // Close already removed it
	}
	if !l.started || !l.held[ip] {
		return nil
	}
	link, err := l.h.LinkByName(l.opts.LinkName)
	if err != nil {
		if isNotFound(err) {
			delete(l.held, ip)
			return nil
		}
		return fmt.Errorf("remove local VIP %s: find %s: %w", ip, l.opts.LinkName, err)
	}
	if err := l.h.AddrDel(link, vipAddr(ip)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("remove local VIP %s from %s: %w", ip, l.opts.LinkName, err)
	}
	delete(l.held, ip)
	l.log.Info("removed local VIP", "vip", ip, "iface", l.opts.LinkName)
	return nil
}

// Sync implements AddrManager. The daemon calls it on every reconcile pass,
// with an empty set too: that is what cleans up after a crashed run even
// when this node no longer owns any local VIP.
func (l *LocalAddrs) Sync(want []netip.Addr) error {
	wantSet := make(map[netip.Addr]bool, len(want))
	any4 := false
	for _, ip := range want {
		ip, err := checkVIP(ip)
		if err != nil {
			return err
		}
		wantSet[ip] = true
		any4 = any4 || ip.Is4()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.start(); err != nil {
		return err
	}
	if any4 {
		if err := l.raiseSysctls(); err != nil {
			return fmt.Errorf("sync local VIPs: %w", err)
		}
	}
	var (
		link netlink.Link
		err  error
	)
	if len(wantSet) > 0 {
		link, err = l.ensureLink() // also brings it back up if someone downed it
	} else {
		link, err = l.h.LinkByName(l.opts.LinkName)
		if isNotFound(err) {
			clear(l.held)
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("sync local VIPs: %w", err)
	}
	addrs, err := l.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", l.opts.LinkName, err)
	}
	have := make(map[netip.Addr]bool, len(addrs))
	var errs []error
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap().IsLinkLocalUnicast() {
			continue
		}
		ip = ip.Unmap()
		if wantSet[ip] {
			have[ip] = true
			continue
		}
		if err := l.h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove %s from %s: %w", ip, l.opts.LinkName, err))
			continue
		}
		delete(l.held, ip)
		l.log.Info("removed local VIP", "vip", ip, "iface", l.opts.LinkName)
	}
	for ip := range l.held {
		if !wantSet[ip] {
			delete(l.held, ip) // already gone from the link
		}
	}
	for ip := range wantSet {
		if have[ip] {
			l.held[ip] = true
			continue
		}
		if err := l.h.AddrReplace(link, vipAddr(ip)); err != nil {
			errs = append(errs, fmt.Errorf("add local VIP %s to %s: %w", ip, l.opts.LinkName, err))
			continue
		}
		l.log.Info("added local VIP", "vip", ip, "iface", l.opts.LinkName)
		l.held[ip] = true
	}
	return errors.Join(errs...)
}

// Addrs implements AddrManager.
func (l *LocalAddrs) Addrs() []netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]netip.Addr, 0, len(l.held))
	for ip := range l.held {
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Close implements AddrManager.
func (l *LocalAddrs) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if !l.started {
		return nil
	}
	defer l.h.Close()
	var errs []error
	link, err := l.h.LinkByName(l.opts.LinkName)
	switch {
	case err == nil:
		for ip := range l.held {
			if err := l.h.AddrDel(link, vipAddr(ip)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("remove local VIP %s from %s: %w", ip, l.opts.LinkName, err))
				continue
			}
			l.log.Info("removed local VIP", "vip", ip, "iface", l.opts.LinkName)
		}
		if errs == nil {
			errs = append(errs, l.deleteLinkIfEmpty(link))
		}
	case !isNotFound(err):
		errs = append(errs, fmt.Errorf("find %s: %w", l.opts.LinkName, err))
	}
	clear(l.held)
	errs = append(errs, l.restoreSysctls())
	return errors.Join(errs...)
}

// start opens the netlink handle and removes what a crashed earlier run
// left on the link. Called with mu held.
func (l *LocalAddrs) start() error {
	if l.closed {
		return ErrLocalAddrsClosed
	}
	if l.started {
		return nil
	}
	var err error
	if l.opts.NetNS != nil {
		l.h, err = netlink.NewHandleAt(*l.opts.NetNS)
	} else {
		l.h, err = netlink.NewHandle()
	}
	if err != nil {
		return fmt.Errorf("open netlink handle: %w", err)
	}
	link, err := l.h.LinkByName(l.opts.LinkName)
	if err != nil {
		if isNotFound(err) {
			l.started = true
			return nil
		}
		l.h.Close()
		return fmt.Errorf("find %s: %w", l.opts.LinkName, err)
	}
	addrs, err := l.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		l.h.Close()
		return fmt.Errorf("list addresses of %s: %w", l.opts.LinkName, err)
	}
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		if err := l.h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			l.h.Close()
			return fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, l.opts.LinkName, err)
		}
		l.log.Info("removed stale local VIP left by an earlier run", "vip", a.IP, "iface", l.opts.LinkName)
	}
	l.started = true
	return nil
}

// add holds ip on the link. Called with mu held, after start.
func (l *LocalAddrs) add(ip netip.Addr) error {
	if ip.Is4() {
		if err := l.raiseSysctls(); err != nil {
			return fmt.Errorf("add local VIP %s: %w", ip, err)
		}
	}
	link, err := l.ensureLink()
	if err != nil {
		return fmt.Errorf("add local VIP %s: %w", ip, err)
	}
	// Replace, not add: idempotent, and it resets flags and lifetimes if
	// someone changed them.
	if err := l.h.AddrReplace(link, vipAddr(ip)); err != nil {
		return fmt.Errorf("add local VIP %s to %s: %w", ip, l.opts.LinkName, err)
	}
	if !l.held[ip] {
		l.log.Info("added local VIP", "vip", ip, "iface", l.opts.LinkName)
	}
	l.held[ip] = true
	return nil
}

// ensureLink returns the link, creating it and bringing it up as needed.
func (l *LocalAddrs) ensureLink() (netlink.Link, error) {
	name := l.opts.LinkName
	link, err := l.h.LinkByName(name)
	if isNotFound(err) {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		err = l.h.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
		if errors.Is(err, unix.EOPNOTSUPP) {
			// No dummy driver (a minimal kernel): an ifb link is
			// equally inert without tc redirects.
			err = l.h.LinkAdd(&netlink.Ifb{LinkAttrs: attrs})
		}
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
		link, err = l.h.LinkByName(name)
		if err == nil {
			l.log.Info("created local VIP link", "iface", name, "type", link.Type())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", name, err)
	}
	if t := link.Type(); t != "dummy" && t != "ifb" {
		return nil, fmt.Errorf("%s exists and is a %s link, not a dummy; refusing to use it", name, t)
	}
	a := link.Attrs()
	if a.RawFlags&unix.IFF_NOARP == 0 {
		if err := l.h.LinkSetARPOff(link); err != nil {
			return nil, fmt.Errorf("set %s NOARP: %w", name, err)
		}
	}
	if a.RawFlags&unix.IFF_UP == 0 {
		// Local routes of addresses on a down link are gone: it must be up.
		if err := l.h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	return link, nil
}

// deleteLinkIfEmpty deletes the link when it holds nothing but link-local
// addresses, so a clean exit leaves the host as it found it.
func (l *LocalAddrs) deleteLinkIfEmpty(link netlink.Link) error {
	addrs, err := l.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", l.opts.LinkName, err)
	}
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			l.log.Info("keeping local VIP link: it holds addresses hostlb did not add",
				"iface", l.opts.LinkName, "addr", a.IPNet)
			return nil
		}
	}
	if err := l.h.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", l.opts.LinkName, err)
	}
	l.log.Info("deleted local VIP link", "iface", l.opts.LinkName)
	return nil
}

// raiseSysctls makes sure the kernel answers ARP only for addresses on the
// receiving interface (see the package doc). Called with mu held.
func (l *LocalAddrs) raiseSysctls() error {
	return l.inNetNS(func() error {
		for _, s := range arpSysctls {
			cur, err := readSysctl(s.key)
			if err != nil {
				return err
			}
			if n, err := strconv.Atoi(cur); err == nil && n >= s.want {
				continue
			}
			if err := writeSysctl(s.key, strconv.Itoa(s.want)); err != nil {
				return fmt.Errorf("%w (needed so that the kernel does not answer ARP for local VIPs "+
					"on every interface; if /proc/sys is read-only, set it in sysctl.d)", err)
			}
			if _, ok := l.raised[s.key]; !ok {
				l.raised[s.key] = cur
			}
			l.log.Info("raised sysctl for local VIPs", "key", sysctlName(s.key), "from", cur, "to", s.want)
		}
		return nil
	})
}

// restoreSysctls puts back what raiseSysctls changed, unless someone else
// changed it since. Called with mu held.
func (l *LocalAddrs) restoreSysctls() error {
	if len(l.raised) == 0 {
		return nil
	}
	err := l.inNetNS(func() error {
		var errs []error
		for _, s := range arpSysctls {
			before, ok := l.raised[s.key]
			if !ok {
				continue
			}
			if cur, err := readSysctl(s.key); err != nil || cur != strconv.Itoa(s.want) {
				continue
			}
			if err := writeSysctl(s.key, before); err != nil {
				errs = append(errs, err)
				continue
			}
			l.log.Info("restored sysctl", "key", sysctlName(s.key), "to", before)
		}
		return errors.Join(errs...)
	})
	clear(l.raised)
	return err
}

// inNetNS runs fn on a thread in the manager's namespace: /proc/sys/net
// shows the namespace of the thread that opens it.
func (l *LocalAddrs) inNetNS(fn func() error) error {
	if l.opts.NetNS == nil {
		return fn()
	}
	return doInNetNS(*l.opts.NetNS, fn)
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", key))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", sysctlName(key), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(key, val string) error {
	if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(val), 0o644); err != nil {
		return fmt.Errorf("set %s=%s: %w", sysctlName(key), val, err)
	}
	return nil
}

func sysctlName(key string) string { return strings.ReplaceAll(key, "/", ".") }

// vipAddr is the netlink form of a VIP on the local link.
func vipAddr(ip netip.Addr) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}}
	if ip.Is4() {
		a.Scope = unix.RT_SCOPE_HOST
	} else {
		a.Flags = unix.IFA_F_NODAD
		a.PreferedLft = 0
		a.ValidLft = math.MaxUint32 // forever
	}
	return a
}

func checkVIP(ip netip.Addr) (netip.Addr, error) {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.Zone() != "" || ip.IsUnspecified() || ip.IsLoopback() ||
		ip.IsMulticast() || ip.IsLinkLocalUnicast() {
		return netip.Addr{}, fmt.Errorf("%v cannot be a local VIP", ip)
	}
	return ip, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
