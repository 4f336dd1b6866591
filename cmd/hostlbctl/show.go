package main

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/hostlb/hostlb/daemon/control/api"
)

// The human forms of the daemon's answers. Every table is sorted as the
// daemon sent it (by address or name); times are the daemon's.

func (v *view) status(s *api.Status) {
	st, state := good, "ready"
	switch {
	case s.Refused != "":
		st, state = bad, "REFUSED by the gossip ring: "+s.Refused
	case s.Draining:
		st, state = warn, "draining: stopping, handing its IPs over"
	case !s.Ready:
		st, state = warn, "starting: the first reconcile pass has not finished"
	case !s.Joined:
		st, state = warn, "ready, not settled in the gossip ring yet"
	case s.Members.Ring:
		state = "ready, in the gossip ring"
	}
	pass := cs("none yet", warn)
	if s.LastPass != nil {
		pass = c(v.when(s.LastPass).text + ": ok")
		if s.PassError != "" {
			pass = cs(v.when(s.LastPass).text+": FAILED, retrying: "+s.PassError, bad)
		}
	}
	members := c("no gossip ring: this node announces alone")
	if s.Members.Ring {
		text := fmt.Sprintf("%d: %d alive", s.Members.Total, s.Members.Alive)
		if s.Members.Dead > 0 {
			text += fmt.Sprintf(", %d dead", s.Members.Dead)
		}
		if s.Members.Left > 0 {
			text += fmt.Sprintf(", %d left", s.Members.Left)
		}
		members = c(text)
		if s.Members.Dead > 0 {
			members.st = warn
		}
	}
	ips := c(fmt.Sprintf("%d (%d L2, %d BGP), %d announced here", s.IPs.Total, s.IPs.L2, s.IPs.BGP, s.IPs.Here))
	if s.IPs.Cannot > 0 {
		ips = cs(ips.text+fmt.Sprintf("; %s this node cannot announce (the next node has them; see the journal)",
			plural(s.IPs.Cannot, "IP", "IPs")), warn)
	}
	conflicts := cs("none", good)
	if n := s.Conflicts.Wire + s.Conflicts.Disagreements; n > 0 {
		conflicts = cs(fmt.Sprintf("%s on the wire, %s in the ring (hostlbctl conflicts)",
			plural(s.Conflicts.Wire, "conflict", "conflicts"), plural(s.Conflicts.Disagreements, "disagreement", "disagreements")), bad)
	}
	bgp := cs("off", dim)
	if b := s.BGP; b != nil {
		bgp = c(fmt.Sprintf("%d of %s established; %s advertised, %s imported", b.Established,
			plural(b.Peers, "session", "sessions"), plural(b.Advertised, "prefix", "prefixes"), plural(b.Imported, "route", "routes")))
		if b.Established < b.Peers {
			bgp.st = warn
		}
	}
	reloads := c("none")
	if r := s.Reloads; r.Count > 0 {
		reloads = c(fmt.Sprintf("%d (%d failed); last %s: ", r.Count, r.Failures, v.when(r.Last).text))
		if r.LastError != "" {
			reloads.text += "FAILED, running the previous configuration"
			reloads.st = bad
		} else {
			reloads.text += "ok"
		}
	}
	v.table(nil, [][]cell{
		{c("node"), c(fmt.Sprintf("%s (hostlbd %s, commit %s)", s.Node, s.Daemon.Version, s.Daemon.Commit))},
		{c("state"), cs(state, st)},
		{c("started"), c(v.whenLong(&s.Started))},
		{c("last pass"), pass},
		{c("members"), members},
		{c("IPs"), ips},
		{c("conflicts"), conflicts},
		{c("BGP"), bgp},
		{c("reloads"), reloads},
	})
}

func (v *view) members(m *api.Members) {
	if !m.Ring {
		v.printf("%s has no gossip ring: it announces every VIP it is eligible for, alone.\n", m.Node)
		return
	}
	rows := make([][]cell, 0, len(m.Members))
	for _, x := range m.Members {
		self := c("")
		if x.Self {
			self = c("*")
		}
		state := cs(x.State, good)
		if x.State != "alive" {
			state.st = warn
		}
		health := cs(x.Health, good)
		if x.Leaving {
			health.text += ", leaving"
		}
		if x.Health != "ok" || x.Leaving {
			health.st = warn
		}
		labels := make([]string, 0, len(x.Labels))
		for _, k := range slices.Sorted(maps.Keys(x.Labels)) {
			labels = append(labels, k+"="+x.Labels[k])
		}
		cannot := orDash(join(addrs(x.Cannot), 3))
		if len(x.Cannot) > 0 {
			cannot.st = warn
		}
		unhealthy := orDash(join(x.Unhealthy, 3))
		if len(x.Unhealthy) > 0 {
			unhealthy.st = warn
		}
		rows = append(rows, []cell{self, c(x.Name), c(x.Address.String()), state, v.when(x.Since), health,
			orDash(strings.Join(labels, ",")), orDash(join(addrs(x.Announced), 3)), cannot, unhealthy})
	}
	v.table([]string{"", "NAME", "ADDRESS", "STATE", "SINCE", "HEALTH", "LABELS", "ANNOUNCES", "CANNOT", "UNHEALTHY"}, rows)
	v.printf("%s\n", v.paint("* this node ("+m.Node+"); ANNOUNCES: the L2 IPs each member says it answers for", dim))
}

func addrs(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// owners is the OWNER cell: the owners, marked when the ring disagrees.
func owners(x api.VIP) cell {
	o := cs(strings.Join(x.Owners, ","), plain)
	if len(x.Owners) == 0 {
		o = cs("NONE", bad)
	}
	if x.Mode == "l2" && !slices.Equal(x.Owners, x.Announcers) {
		ann := strings.Join(x.Announcers, ",")
		if ann == "" {
			ann = "nobody"
		}
		o.text += " (announced by " + ann + ")"
		if x.Disagreement != nil {
			o.st = bad
		} else if o.st == plain {
			o.st = warn // a handover in flight
		}
	}
	return o
}

// via is where this node announces x: its interfaces (L2) or BGP peers.
func via(x api.VIP) cell {
	if !x.Here {
		return cs("-", dim)
	}
	var parts []string
	if x.Mode == "bgp" {
		parts = addrs(x.Peers)
		if len(parts) == 0 {
			return cs("no established peer", warn)
		}
	} else {
		parts = x.Interfaces
		if len(parts) == 0 {
			return cs("no interface", warn)
		}
	}
	text := join(parts, 3)
	if x.Local {
		text += " +local"
	}
	return c(text)
}

// shortReason is a reason's head: "standby", "dead", "not eligible",
// "cannot announce", ... ; who-owns prints it whole.
func shortReason(r string) string {
	if i := strings.Index(r, ":"); i >= 0 {
		r = r[:i]
	}
	if i := strings.Index(r, " ("); i >= 0 {
		r = r[:i]
	}
	return r
}

// whyNot sums up NotHere: nodes grouped by their short reason, in order.
func whyNot(x api.VIP) cell {
	if len(x.NotHere) == 0 {
		return cs("-", dim)
	}
	var order []string
	by := map[string][]string{}
	for _, r := range x.NotHere {
		s := shortReason(r.Reason)
		if _, ok := by[s]; !ok {
			order = append(order, s)
		}
		by[s] = append(by[s], r.Node)
	}
	parts := make([]string, len(order))
	for i, s := range order {
		parts[i] = join(by[s], 3) + ": " + s
	}
	return c(strings.Join(parts, "; "))
}

func (v *view) vips(l *api.VIPs) {
	if len(l.VIPs) == 0 {
		v.printf("No IP to serve: no [[vip]] in the configuration and no Service, as %s sees the cluster.\n", l.Node)
		return
	}
	rows := make([][]cell, 0, len(l.VIPs))
	for _, x := range l.VIPs {
		prev := orDash(strings.Join(x.PreviousOwners, ","))
		rows = append(rows, []cell{c(x.Address.String()), c(x.Name), c(x.Mode), owners(x), v.when(x.Since), prev,
			via(x), whyNot(x)})
	}
	v.table([]string{"ADDRESS", "NAME", "MODE", "OWNER", "SINCE", "PREVIOUS", "HERE VIA", "WHY NOT ELSEWHERE"}, rows)
	v.printf("%s\n", v.paint("as "+l.Node+" sees the cluster; hostlbctl who-owns IP explains each node", dim))
}

func (v *view) whoOwns(w *api.WhoOwns) {
	x := w.VIP
	kind := "VIP"
	if x.Source == "kubernetes" {
		kind = "Service"
	}
	v.printf("%s: %s %s (%s, %s), as %s sees the cluster\n", x.Address, kind, x.Name, x.Source, x.Mode, w.Node)
	owner := owners(x)
	if len(x.Owners) == 0 {
		owner.text = "NONE: no node may announce it now (why below)"
	}
	label := "owner"
	if len(x.Owners) > 1 {
		label = "owners"
	}
	rows := [][]cell{
		{c(label), owner},
		{c("since"), c(v.whenLong(x.Since))},
		{c("previous"), orDash(strings.Join(x.PreviousOwners, ", "))},
	}
	if x.Mode == "l2" {
		rows = append(rows, []cell{c("preferred"), orDash(x.Preferred)},
			[]cell{c("announced by"), orDash(strings.Join(x.Announcers, ", "))})
	}
	if x.Disagreement != nil {
		rows = append(rows, []cell{c("disagreement"), cs("since "+v.whenLong(x.Disagreement)+": see hostlbctl conflicts", bad)})
	}
	here := cs("no", plain)
	if x.Here {
		here = via(x)
		switch {
		case x.Mode == "bgp" && len(x.Peers) > 0:
			here.text = "yes, advertised to " + strings.Join(addrs(x.Peers), ", ")
		case x.Mode == "l2" && len(x.Interfaces) > 0:
			here.text = "yes, answering ARP/NDP on " + strings.Join(x.Interfaces, ", ")
		default:
			here.text = "yes, but " + here.text
		}
		if x.Local {
			here.text += "; held on hostlb0"
		}
	}
	rows = append(rows, []cell{c("on " + w.Node), here})
	v.table(nil, rows)
	if len(x.NotHere) == 0 {
		return
	}
	v.printf("\nwhy not the other nodes:\n")
	rs := make([][]cell, 0, len(x.NotHere))
	for _, r := range x.NotHere {
		st := plain
		if strings.HasPrefix(r.Reason, "cannot announce") || r.Reason == "dead" {
			st = warn
		}
		rs = append(rs, []cell{c("  " + r.Node), cs(r.Reason, st)})
	}
	v.table(nil, rs)
}

func (v *view) bgp(b *api.BGP) {
	if !b.Enabled {
		v.printf("BGP is off on %s: [bgp] sets no asn and no peer.\n", b.Node)
		return
	}
	up := 0
	for _, p := range b.Peers {
		if p.State == "established" {
			up++
		}
	}
	v.printf("%d of %s established; %s advertised to each, %s imported into the kernel\n",
		up, plural(len(b.Peers), "session", "sessions"), plural(b.Advertised, "prefix", "prefixes"), plural(b.Imported, "route", "routes"))
	if len(b.Peers) == 0 {
		return
	}
	rows := make([][]cell, 0, len(b.Peers))
	for _, p := range b.Peers {
		state := cs(p.State, good)
		if p.State != "established" {
			state.st = warn
		}
		bfd := orDash(p.BFD)
		switch {
		case p.BFD == "up":
			bfd.st = good
		case p.BFD != "":
			bfd.st = warn
		}
		if p.BFDDowns > 0 {
			bfd.text += fmt.Sprintf(" (%d down)", p.BFDDowns)
		}
		rows = append(rows, []cell{c(p.Address.String()), c(fmt.Sprint(p.ASN)), state, v.when(p.Since), bfd,
			c(fmt.Sprint(p.EstablishedCount)), c(fmt.Sprint(p.Advertised)), c(fmt.Sprintf("%d/%d", p.Received, p.Accepted)),
			orDash(p.LastDown)})
	}
	v.table([]string{"PEER", "ASN", "STATE", "SINCE", "BFD", "UPS", "SENT", "RCVD/ACCEPTED", "LAST DOWN"}, rows)
}

func (v *view) conflicts(x *api.Conflicts) {
	if len(x.Wire) == 0 {
		v.printf("%s\n", v.paint("No conflict on the wire now: no other MAC answers for an IP "+x.Node+" announces.", good))
	} else {
		v.printf("%s\n", v.paint("On the wire now: another MAC answers for an IP "+x.Node+" announces", bad))
		rows := make([][]cell, 0, len(x.Wire))
		for _, w := range x.Wire {
			yielded := c("no, this node keeps answering")
			if w.Yielded {
				yielded = cs("yes, this node stopped answering", warn)
			}
			rows = append(rows, []cell{c(w.Interface), c(w.Address.String()), other(w.Node, w.TheirMAC), yielded, v.when(w.Since)})
		}
		v.table([]string{"INTERFACE", "ADDRESS", "OTHER", "YIELDED", "SINCE"}, rows)
	}
	v.printf("\n")
	if len(x.Disagreements) == 0 {
		v.printf("%s\n", v.paint("No disagreement in the ring: every L2 IP has one announcer.", good))
	} else {
		v.printf("%s\n", v.paint("Ring disagreements: L2 IPs with two announcers, or none", bad))
		rows := make([][]cell, 0, len(x.Disagreements))
		for _, d := range x.Disagreements {
			ann := cs(strings.Join(d.Announcers, ", "), bad)
			if len(d.Announcers) == 0 {
				ann.text = "nobody"
			}
			rows = append(rows, []cell{c(d.Address.String()), c(d.Name), ann, v.when(d.Since)})
		}
		v.table([]string{"ADDRESS", "NAME", "ANNOUNCERS", "SINCE"}, rows)
	}
	v.printf("\n")
	if len(x.Events) == 0 {
		v.printf("No conflict event since the start.\n")
		return
	}
	var counts []string
	for _, a := range slices.Sorted(maps.Keys(x.Counts)) {
		counts = append(counts, fmt.Sprintf("%s %d", a, x.Counts[a]))
	}
	v.printf("Events (the last %d; since the start: %s)\n", len(x.Events), strings.Join(counts, ", "))
	rows := make([][]cell, 0, len(x.Events))
	for i := range x.Events {
		e := x.Events[i]
		act := c(e.Action)
		switch e.Action {
		case "resumed", "ended":
			act.st = good
		case "defending", "peer-yielded":
		default:
			act.st = bad
		}
		rows = append(rows, []cell{v.when(&e.Time), act, c(e.Interface), c(e.Address.String()), orDash(e.VIP), other(e.Node, e.TheirMAC)})
	}
	v.table([]string{"TIME", "ACTION", "INTERFACE", "ADDRESS", "VIP", "OTHER"}, rows)
}

// other names the other answerer: a hostlb node and its MAC, or a MAC
// that is no hostlb node's.
func other(node, mac string) cell {
	if node == "" {
		return cs(mac+" (not hostlb)", bad)
	}
	return c(node + " (" + mac + ")")
}

func (v *view) reload(r *api.Reload) {
	v.printf("hostlbd on %s reloaded its configuration.\n", r.Node)
	v.changes("changed", "needs a restart", r.Changed, r.NeedsRestart)
}

func (v *view) changes(changed, restart string, live, later []string) {
	rows := [][]cell{{c(changed), orDash(strings.Join(live, ", "))}}
	if len(later) > 0 {
		rows = append(rows, []cell{c(restart), cs(strings.Join(later, ", ")+" (systemctl restart hostlb)", warn)})
	}
	v.table(nil, rows)
}

func (v *view) configValid(x *api.ConfigCheck) {
	v.printf("hostlbd on %s: its configuration file is valid; a reload would apply it.\n", x.Node)
	v.changes("would change", "would need a restart", x.Changed, x.NeedsRestart)
}

func (v *view) configProblems(e env, x *api.ConfigCheck) {
	fmt.Fprintf(e.stderr, "hostlbd on %s: a reload would refuse its configuration file and keep the running one:\n", x.Node)
	for _, p := range x.Errors {
		fmt.Fprintln(e.stderr, p)
	}
}
