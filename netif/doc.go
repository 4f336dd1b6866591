// Package netif is hostlb's touchpoint with the host's network stack for L2
// mode: it follows links and addresses, chooses the interfaces each VIP is
// announced on, answers ARP (RFC 826, 5227) and NDP (RFC 4861) for owned
// VIPs from user space, and holds `local = true` VIPs as local addresses.
// It decides nothing about ownership: the daemon's reconcile loop tells it
// which addresses this node owns and applies changes as diffs.
//
// # Links and addresses
//
// Monitor follows one network namespace through rtnetlink subscriptions: a
// full dump, then events; never a periodic rescan. Each change yields a new
// immutable State (links by index with their flags, master and addresses)
// and a call of OnChange, which the daemon wires to its reconcile loop's
// Trigger. A lost subscription (ENOBUFS after an event storm) is replaced
// and followed by a full dump. The translation of netlink messages into
// State changes is pure and tested without root.
//
// Selector and InterfacesFor are pure functions over a State implementing
// `[l2] interfaces` and `exclude` (SPEC §4) and the per-IP interface choice
// (SPEC §7): an IP is announced on the eligible interfaces whose connected
// subnet contains it, else on all eligible interfaces. ParsePattern and
// ParseExclude are the only parser of interface patterns (names, "/regex/"):
// the config checks its lists with them, so what it accepts is what the
// Selector applies.
//
// # ARP and NDP responders
//
// The responders (arp*.go, ndp*.go, responder*.go) answer on raw packet
// sockets, only for owned IPs and only on each IP's chosen interfaces. The
// kernel must therefore never answer for a VIP itself.
//
// # Local VIPs, and keeping the kernel quiet about them
//
// A `local = true` VIP must be accepted by the node's stack (to reach a
// local apiserver, say), so its owner holds it (LocalAddrs): at once as an
// AnyIP route ("local VIP dev lo table local proto hostlb", what makes the
// kernel accept its traffic, cheap at any count), and in the background as
// an address on the hostlb0 link, a dummy link (ifb where the kernel lacks
// the dummy driver), up and NOARP, with the VIP as a /32 or /128, so that
// programs can bind() to it. A non-owner holds nothing, so its kernel has
// nothing to answer for. On the owner (the route changes none of this: the
// kernel answers ARP or NDP only for addresses, below):
//
//   - IPv6: Linux answers a Neighbor Solicitation only when the target is
//     an address of the interface the NS arrived on (ndisc_recv_ns looks
//     the target up strictly on the receiving device; proxy NDP is off by
//     default). hostlb0 never receives frames, so the kernel never answers
//     NDP for a VIP; the user-space responder answers on the chosen
//     interfaces. VIPs are added with nodad, so they are usable at once,
//     and deprecated (preferred_lft 0), so the node never picks them as the
//     source of its own connections.
//
//   - IPv4: Linux answers ARP by default (arp_ignore=0) for any local
//     address on any interface: the weak host model. Giving the address
//     scope host does not change that (tried in the lab), and no routing
//     trick can: arp_process answers when the input route lookup for the
//     target (ip_route_input) says RTN_LOCAL, the very lookup that makes
//     the node accept the traffic. So while it holds an IPv4 VIP,
//     LocalAddrs raises net.ipv4.conf.all.arp_ignore to 1 (answer only for
//     addresses of the receiving interface) and
//     net.ipv4.conf.all.arp_announce to 2 (never put a VIP in the node's
//     own ARP requests), as kube-proxy's strictARP does for the same
//     layout (VIPs on kube-ipvs0). "all" is needed because the kernel uses
//     max(all, interface): it covers every interface, including
//     non-selected ones and ones created later. It only raises; higher
//     values stay. Close restores the old values unless someone changed
//     them meanwhile. The side effect is strict-host ARP for the node's
//     own addresses too, which every IPVS-mode Kubernetes node already
//     runs with. Under systemd's ProtectKernelTunables /proc/sys is
//     read-only, so the values must come from sysctl.d: LocalAddrs then
//     finds them set; otherwise it refuses IPv4 VIPs with an error that
//     says so. IPv4 VIPs get scope host, so the node never picks them as
//     the source of its own connections.
//
// A crashed run can leave VIPs on hostlb0 and routes in the local table;
// the first Add or Sync removes them, so the daemon calls Sync on every reconcile pass, also when it owns
// no local VIP.
//
// The root tests (local_linux_test.go) prove both halves with the kernel
// as the client: ping and ping -6 to the VIPs work, arping and ndisc6 for
// them get no reply, and with arp_ignore put back to 0 the kernel does
// answer the arping, so the sysctl is what keeps it quiet.
package netif
