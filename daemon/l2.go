package daemon

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/reconcile"
	"github.com/hostlb/hostlb/netif"
)

// l2Config translates [l2] for the L2 output.
func l2Config(c config.L2) netif.L2Config {
	return netif.L2Config{
		Interfaces:         c.Interfaces,
		Exclude:            c.Exclude,
		GratuitousCount:    c.GratuitousCount,
		GratuitousInterval: c.GratuitousInterval,
		RefreshInterval:    c.RefreshInterval,
	}
}

// l2Wanted picks the L2 announcements of a desired state, ordered by
// address, and the `local = true` addresses of BGP VIPs this node
// advertises: the L2 output holds those on hostlb0 (LocalOnly) and answers
// no ARP/NDP for them, the routers deliver their traffic.
func l2Wanted(d reconcile.Desired) []netif.L2Announcement {
	var out []netif.L2Announcement
	for _, a := range d.Sorted() {
		switch {
		case a.Mode == config.ModeL2:
			out = append(out, netif.L2Announcement{Addr: a.Addr, VIP: a.VIP, Interfaces: a.Interfaces, Local: a.Local, Handover: a.Handover})
		case a.Mode == config.ModeBGP && a.Local:
			out = append(out, netif.L2Announcement{Addr: a.Addr, VIP: a.VIP, Local: true, LocalOnly: true})
		}
	}
	return out
}

// announcedSummary says how many addresses are announced on which
// interfaces, for the STATUS line: "announcing 2 addresses on eth0 (2)".
func announcedSummary(st []netif.L2Status) string {
	if len(st) == 0 {
		return "announcing nothing"
	}
	addrs := map[string]bool{}
	parts := make([]string, 0, len(st))
	for _, s := range st {
		for _, a := range s.Addrs {
			addrs[a.String()] = true
		}
		parts = append(parts, fmt.Sprintf("%s (%d)", s.Iface, len(s.Addrs)))
	}
	return fmt.Sprintf("announcing %d addresses on %s", len(addrs), strings.Join(parts, ", "))
}

// sysctlHint is what an operator must do when hostlbd cannot set the ARP
// sysctls local IPv4 VIPs need (the unit's ProtectKernelTunables=yes makes
// /proc/sys read-only; the package ships them in sysctl.d).
const sysctlHint = "set net.ipv4.conf.all.arp_ignore=1 and net.ipv4.conf.all.arp_announce=2 " +
	"(sysctl.d; hostlbd cannot write /proc/sys under ProtectKernelTunables) " +
	"so the kernel does not answer ARP for local VIPs on every interface"

// reportL2 logs an L2 failure once per distinct error, at error level: the
// reconcile loop retries it with backoff and logs each retry as a warning.
// A failure to set the ARP sysctls gets its own message naming them.
func (d *Daemon) reportL2(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	d.mu.Lock()
	same := msg == d.l2Err
	d.l2Err = msg
	d.mu.Unlock()
	if err == nil || same {
		return
	}
	if strings.Contains(msg, "net.ipv4.conf.all.arp_") {
		d.log.Error("cannot hold IPv4 local VIPs; they are not announced until this is fixed",
			"fix", sysctlHint, "err", err)
		return
	}
	d.log.Error("L2 announcement incomplete; retrying", "err", err)
}

// reports says, for every L2 address this node owns (not those it only
// holds for a handover), the interfaces it answers on, or the L2 error
// when it answers on none.
func reports(next reconcile.Desired, st []netif.L2Status, l2err error) []reconcile.Report {
	ifaces := map[netip.Addr][]string{}
	for _, s := range st {
		for _, a := range s.Addrs {
			ifaces[a] = append(ifaces[a], s.Iface)
		}
	}
	var out []reconcile.Report
	for _, a := range next.Sorted() {
		if a.Mode != config.ModeL2 || a.Handover {
			continue
		}
		r := reconcile.Report{Group: a.VIP, Addr: a.Addr, Ifaces: ifaces[a.Addr]}
		slices.Sort(r.Ifaces)
		if len(r.Ifaces) == 0 {
			r.Err = "no interface to announce it on (none up, or none matches the interfaces asked for)"
			if l2err != nil {
				r.Err = l2err.Error()
			}
		}
		out = append(out, r)
	}
	return out
}
