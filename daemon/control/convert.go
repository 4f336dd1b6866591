package control

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/control/api"
	"github.com/hostlb/hostlb/daemon/version"
)

// The conversions from the daemon's State to the wire types: the only
// place that knows both, so the schema stays put when State changes.

func header(st *daemon.State, now time.Time) api.Header {
	return api.Header{Version: api.Version, Node: st.Node, Time: now}
}

// ts is t on the wire: null when unknown (zero).
func ts(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// list is s on the wire: [] rather than null.
func list[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return slices.Clone(s)
}

func toStatus(st *daemon.State, now time.Time, b api.Build) api.Status {
	out := api.Status{
		Header: header(st, now), Daemon: b, Started: st.Started, Ready: st.Ready, Joined: st.Joined,
		Draining: st.Draining, Refused: st.Refused, LastPass: ts(st.LastPass), PassError: st.PassError,
		Reloads: api.Reloads{Count: st.Reloads, Failures: st.ReloadFailures, Last: ts(st.LastReload), LastError: st.ReloadError},
	}
	out.Members.Ring = st.Members != nil
	for _, m := range st.Members {
		out.Members.Total++
		switch m.State {
		case "alive":
			out.Members.Alive++
		case "dead":
			out.Members.Dead++
		case "left":
			out.Members.Left++
		}
	}
	out.IPs.Cannot = st.CannotAnnounce
	for _, ip := range st.IPs {
		out.IPs.Total++
		if ip.Here {
			out.IPs.Here++
		}
		switch ip.Mode {
		case "l2":
			out.IPs.L2++
		case "bgp":
			out.IPs.BGP++
		}
	}
	for _, cs := range st.WireNow {
		out.Conflicts.Wire += len(cs)
	}
	out.Conflicts.Disagreements = len(st.Disagreements)
	if st.BGP != nil {
		out.BGP = &api.BGPCounts{Peers: len(st.BGP.Peers), Established: st.BGP.Up(),
			Advertised: st.BGP.Advertised, Imported: st.BGP.Imported}
	}
	return out
}

func toMembers(st *daemon.State, now time.Time) api.Members {
	out := api.Members{Header: header(st, now), Ring: st.Members != nil, Members: []api.Member{}}
	for _, m := range st.Members {
		labels := maps.Clone(m.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		out.Members = append(out.Members, api.Member{
			Name: m.Name, Address: m.Addr, State: m.State, Since: ts(m.Since), Health: m.Health,
			Leaving: m.Leaving, Self: m.Self, Labels: labels,
			Announced: list(m.Announced), Cannot: list(m.Cannot), Unhealthy: list(m.Unhealthy),
		})
	}
	return out
}

// vipConv converts IPs; it indexes what every IP needs from the rest of
// the State once.
type vipConv struct {
	disagree map[netip.Addr]time.Time
	peers    []netip.Addr // the established BGP sessions
}

func newVIPConv(st *daemon.State) vipConv {
	c := vipConv{disagree: make(map[netip.Addr]time.Time, len(st.Disagreements)), peers: []netip.Addr{}}
	for _, d := range st.Disagreements {
		c.disagree[d.Addr] = d.Since
	}
	if st.BGP != nil {
		for _, p := range st.BGP.Peers {
			if p.State == "established" {
				c.peers = append(c.peers, p.Address)
			}
		}
	}
	return c
}

func (c vipConv) vip(ip daemon.IPState) api.VIP {
	v := api.VIP{
		Address: ip.Addr, Name: ip.Name, Source: ip.Source, Mode: ip.Mode,
		Owners: list(ip.Owners), Announcers: list(ip.Announcers), Preferred: ip.Preferred,
		Since: ts(ip.Since), PreviousOwners: list(ip.PrevOwners),
		Here: ip.Here, Interfaces: list(ip.Interfaces), Peers: []netip.Addr{}, Local: ip.Local,
		NotHere: make([]api.NodeReason, 0, len(ip.NotHere)),
	}
	if ip.Here && ip.Mode == "bgp" {
		v.Peers = slices.Clone(c.peers)
	}
	if since, ok := c.disagree[ip.Addr]; ok {
		v.Disagreement = &since
	}
	for _, r := range ip.NotHere {
		v.NotHere = append(v.NotHere, api.NodeReason{Node: r.Node, Reason: r.Reason})
	}
	return v
}

func toVIPs(st *daemon.State, now time.Time) api.VIPs {
	c := newVIPConv(st)
	out := api.VIPs{Header: header(st, now), VIPs: make([]api.VIP, 0, len(st.IPs))}
	for _, ip := range st.IPs {
		out.VIPs = append(out.VIPs, c.vip(ip))
	}
	return out
}

// toWhoOwns returns the IP a, or false if the cluster does not serve it.
func toWhoOwns(st *daemon.State, now time.Time, a netip.Addr) (api.WhoOwns, bool) {
	i, ok := slices.BinarySearchFunc(st.IPs, a, func(ip daemon.IPState, a netip.Addr) int { return ip.Addr.Compare(a) })
	if !ok {
		// State.IPs is sorted; a linear pass costs nothing next to the
		// request and protects against a caller that did not sort.
		i = slices.IndexFunc(st.IPs, func(ip daemon.IPState) bool { return ip.Addr == a })
		if i < 0 {
			return api.WhoOwns{}, false
		}
	}
	return api.WhoOwns{Header: header(st, now), VIP: newVIPConv(st).vip(st.IPs[i])}, true
}

func toBGP(st *daemon.State, now time.Time) api.BGP {
	out := api.BGP{Header: header(st, now), Peers: []api.BGPPeer{}}
	if st.BGP == nil {
		return out
	}
	out.Enabled, out.Advertised, out.Imported = true, st.BGP.Advertised, st.BGP.Imported
	for _, p := range st.BGP.Peers {
		sent := 0
		if p.State == "established" {
			sent = st.BGP.Advertised
		}
		out.Peers = append(out.Peers, api.BGPPeer{Address: p.Address, ASN: p.ASN, State: p.State, Since: ts(p.Since),
			EstablishedCount: p.Established, LastDown: p.LastDown, BFD: p.BFD, BFDDowns: p.BFDDowns,
			Advertised: sent, Received: p.Received, Accepted: p.Accepted})
	}
	return out
}

func toConflicts(st *daemon.State, now time.Time) api.Conflicts {
	out := api.Conflicts{Header: header(st, now), Wire: []api.WireConflict{}, Events: make([]api.WireEvent, 0, len(st.Wire)),
		Counts: make(map[string]uint64, len(st.WireCounts)), Disagreements: make([]api.Disagreement, 0, len(st.Disagreements))}
	for _, iface := range slices.Sorted(maps.Keys(st.WireNow)) {
		for _, c := range st.WireNow[iface] {
			out.Wire = append(out.Wire, api.WireConflict{Interface: iface, Address: c.Addr, TheirMAC: c.TheirMAC.String(),
				Node: c.Node, Yielded: c.Yielded, Since: ts(c.Since)})
		}
	}
	slices.SortStableFunc(out.Wire, func(a, b api.WireConflict) int {
		if c := a.Address.Compare(b.Address); c != 0 {
			return c
		}
		return strings.Compare(a.Interface, b.Interface)
	})
	for _, e := range st.Wire {
		out.Events = append(out.Events, api.WireEvent{Time: e.At, Action: string(e.Action), Interface: e.Iface, Address: e.Addr,
			VIP: e.VIP, OurMAC: e.OurMAC.String(), TheirMAC: e.TheirMAC.String(), Node: e.Node})
	}
	for a, n := range st.WireCounts {
		out.Counts[string(a)] = n
	}
	for _, d := range st.Disagreements {
		out.Disagreements = append(out.Disagreements, api.Disagreement{Address: d.Addr, Name: d.Name,
			Announcers: list(d.Announcers), Since: ts(d.Since)})
	}
	return out
}

// build is hostlbd's own build.
func build() api.Build {
	return api.Build{Version: version.Version, Commit: version.CommitOrUnknown()}
}
