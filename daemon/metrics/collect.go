package metrics

import (
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/kube"
	"github.com/hostlb/hostlb/heartbeat"
	"github.com/hostlb/hostlb/netif"
)

// collector computes the state metrics at scrape time, from one State and
// the sources' counters: nothing is kept between scrapes, so no series
// outlives what it describes (an IP removed, a peer gone).
type collector struct {
	src  Sources
	opts Options
	now  func() time.Time
}

func newCollector(opts Options) *collector {
	return &collector{opts: opts, now: time.Now}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The state metrics. docs/metrics.md lists them with the event metrics
// (metrics.go); TestDocsListEveryMetric keeps the two in step.
var (
	buildInfo = desc("hostlb_build_info", "hostlbd's version and commit; always 1.", "version", "commit", "goversion")
	ready     = desc("hostlb_ready", "1 when /readyz answers 200: the Kubernetes caches synced (Kubernetes mode), the node joined the gossip ring (with seeds), the first full reconcile pass ran, and it is not draining.")
	joined    = desc("hostlb_gossip_joined", "1 once this node settled into the gossip ring and takes IPs (1 without a ring).")
	refused   = desc("hostlb_gossip_refused", "1 while the gossip ring refuses this node (another key or cluster, or another member has its name).")
	draining  = desc("hostlb_draining", "1 while the node hands its IPs over before it stops (SIGTERM).")

	passFailing = desc("hostlb_reconcile_failing", "1 when the last reconcile pass failed (it is retried with backoff).")
	lastPass    = desc("hostlb_reconcile_last_pass_timestamp_seconds", "When the last reconcile pass placed the IPs, in Unix seconds; 0 before the first.")

	reloads       = desc("hostlb_config_reloads_total", "Configuration reloads (SIGHUP, hostlbctl reload), by result: success or failure (the running configuration is kept).", "result")
	reloadSuccess = desc("hostlb_config_last_reload_successful", "0 when the last reload failed and the previous configuration still runs; 1 otherwise.")

	ipOwner      = desc("hostlb_ip_owner", "1 for every IP placement gives this node (node is this node): exported by the owner only, so a cluster has one series per IP per owner — L2 IPs one, BGP IPs one per advertising node.", "ip", "vip", "mode", "node")
	ips          = desc("hostlb_ips", "IPs this node's placement knows (every static VIP address and Service IP of the cluster), by mode.", "mode")
	ipsHere      = desc("hostlb_ips_announced", "IPs this node announces now, by mode: answered by ARP/NDP (l2) or advertised (bgp).", "mode")
	ipsNoOwner   = desc("hostlb_ips_without_owner", "IPs placement gives no node: no eligible node is alive, healthy and able to announce them.", "mode")
	ipsCannot    = desc("hostlb_ips_cannot_announce", "IPs this node was asked to announce and its L2 output answers on no interface (no eligible link, socket, local address or sysctls): the next node takes them; hostlbctl vips says why.")
	disagreeN    = desc("hostlb_ip_disagreements", "L2 IPs whose gossiped announcers are not exactly one in this node's view, by kind: conflict (two or more nodes announce it) or unannounced (its owner does not announce it). A failover or handover makes them for about a gossip round.", "kind")
	disagreement = desc("hostlb_ip_disagreement", "1 for each L2 IP in disagreement now, by kind (see hostlb_ip_disagreements): which IPs an alert is about.", "ip", "vip", "kind")

	l2IPs        = desc("hostlb_l2_announced_ips", "IPs answered by ARP/NDP on each interface now.", "iface")
	l2Requests   = desc("hostlb_l2_requests_total", "ARP requests and NDP Neighbor Solicitations received for an IP this node owns, by interface and protocol (arp, ndp).", "iface", "proto")
	l2Replies    = desc("hostlb_l2_replies_total", "ARP replies and solicited Neighbor Advertisements sent.", "iface", "proto")
	l2Gratuitous = desc("hostlb_l2_gratuitous_sent_total", "Gratuitous ARP and unsolicited Neighbor Advertisement frames sent: the takeover bursts and the periodic refresh.", "iface", "proto")
	l2Probes     = desc("hostlb_l2_probes_total", "ARP probes (RFC 5227) and DAD Neighbor Solicitations received for an owned IP: another host checking whether the IP is free (each is answered, defending it).", "iface", "proto")
	l2NS         = desc("hostlb_ndp_solicitations_total", "Neighbor Solicitations for an owned IP by destination: unicast (to the IP itself: a router's or host's reachability check) or multicast (to its solicited-node group).", "iface", "dest")
	l2Drops      = desc("hostlb_l2_drops_total", "Frames the responders did not answer, by reason: malformed, not for an owned IP, this node's own, yielded in a wire conflict, another host's conflicting claim (arp_conflict, ndp_conflict).", "iface", "proto", "reason")
	l2Errors     = desc("hostlb_l2_errors_total", "Responder socket errors by operation: read, write, join (link-layer multicast membership), mld_join (IPv6 group join).", "iface", "proto", "op")
	l2FenceProbe = desc("hostlb_l2_conflict_probes_sent_total", "Probes this node sent of its own IPs to find another answerer (fencing).", "iface", "proto")

	wireTotal  = desc("hostlb_wire_conflicts_total", "Wire conflicts over an IP this node answers, seen on the segment, by what happened: defending, yielding, peer-yielded, foreign (a host that is not hostlb), resumed, ended.", "action")
	wireActive = desc("hostlb_wire_conflicts_active", "Wire conflicts now, by kind: defending (this node keeps the IP), yielded (this node stopped answering it), foreign (a host that is not hostlb answers it too).", "kind")

	members   = desc("hostlb_gossip_members", "Members of the gossip ring in this node's view, itself included, by state: alive (suspects included), dead, left.", "state")
	membersUp = desc("hostlb_gossip_members_up", "Members that may be given IPs: alive, health ok, not leaving.")
	inputErrs = desc("hostlb_gossip_input_errors_total", "Gossip input dropped or rejected, by kind (decrypt: another key; label: another cluster; malformed, …).", "kind")

	hbSent       = desc("hostlb_heartbeat_sent_total", "Heartbeat datagrams sent, by kind: beat (to the heirs of this node's IPs, and to the nodes that asked for it) or watch (a watch request alone, to a node this node is heir to that got no beat that round).", "kind")
	hbSendErrors = desc("hostlb_heartbeat_send_errors_total", "Heartbeat datagrams whose send failed.")
	hbReceived   = desc("hostlb_heartbeat_received_total", "Heartbeat datagrams accepted: each proves its sender alive.")
	hbRejected   = desc("hostlb_heartbeat_rejected_total", "Heartbeat datagrams dropped, by reason: oversized, short, format (unknown), decrypt (no key opens it: another key or cluster, or forged), malformed, replay (seq not above the last), old-boot, stale (read over a second late), self (this node's own name), peers-full.", "reason")
	hbLosses     = desc("hostlb_heartbeat_losses_total", "Watched nodes this node declared lost (silent for 3 heartbeat intervals: 120 ms): as their heir, it takes their IPs over before the ring decides.")
	hbResumes    = desc("hostlb_heartbeat_resumes_total", "Lost nodes heard again (they were stalled, or their datagrams lost): this node gives their IPs back.")
	hbWatched    = desc("hostlb_heartbeat_watched", "Nodes whose heartbeat this node watches (it is heir to some of their IPs), by state: pending (not heard since watched; never declared lost), alive, lost.", "state")
	hbMaxGap     = desc("hostlb_heartbeat_max_gap_seconds", "The longest silence of a watched node while it was alive, since hostlbd started: how close a node came to being declared lost (at 120 ms) and to a false takeover.")

	bgpState      = desc("hostlb_bgp_session_state", "1 for the BGP session's current FSM state (RFC 4271: idle, connect, active, opensent, openconfirm, established), 0 for the others.", "peer", "state")
	bgpUp         = desc("hostlb_bgp_session_up", "1 while the BGP session with the peer is established.", "peer")
	bgpUps        = desc("hostlb_bgp_sessions_established_total", "How often the BGP session with the peer came up.", "peer")
	bfdState      = desc("hostlb_bfd_session_state", "1 for the BFD session's current state (up, down, init, admin-down), 0 for the others; absent while BFD is off for the peer (it runs only while the BGP session is established).", "peer", "state")
	bfdDowns      = desc("hostlb_bfd_session_downs_total", "How often the BFD session with the peer went down from up (each resets the BGP session).", "peer")
	bgpAdvertised = desc("hostlb_bgp_prefixes_advertised", "Prefixes this node advertises to every established BGP peer.")
	bgpReceived   = desc("hostlb_bgp_prefixes_received", "Prefixes received from the peer (its Adj-RIB-In, read every second).", "peer")
	bgpAccepted   = desc("hostlb_bgp_prefixes_accepted", "Prefixes received from the peer that the import policy accepted.", "peer")
	bgpImported   = desc("hostlb_bgp_routes_imported", "Routes learned over BGP that [bgp.import] holds in the kernel.")

	kubeSynced   = desc("hostlb_kube_caches_synced", "1 once every Kubernetes cache holds a full list.")
	kubeRestarts = desc("hostlb_kube_watch_restarts_total", "Kubernetes list or watch calls that failed and client-go retried, by kind (the IPAM Lease's included). A watch the API server ends on its timeout is not counted.", "kind")
	kubeAge      = desc("hostlb_kube_last_sync_age_seconds", "Seconds since the kind's cache was last seen to move: an event, or a new resource version (the API server's bookmarks reach idle watches too).", "kind")
	ipamLeader   = desc("hostlb_ipam_leader", "1 while this node holds the IPAM Lease and allocates Service IPs.")
	poolSize     = desc("hostlb_ipam_pool_addresses", "Usable addresses of the pool, by family (the IPAM leader's; a float: an IPv6 /64 is 2^64).", "pool", "family")
	poolUsed     = desc("hostlb_ipam_pool_used_addresses", "Addresses of the pool held by a Service, whichever pool it was allocated from (pools may overlap).", "pool", "family")
	poolFree     = desc("hostlb_ipam_pool_free_addresses", "Usable addresses of the pool no Service holds.", "pool", "family")
	ipamFailures = desc("hostlb_ipam_allocation_failures_total", "AllocationFailed Events this node emitted as IPAM leader: one per new failure of a Service (exhausted pool, requested IP taken or not in a pool, …), not one per pass.")
	ipamFailing  = desc("hostlb_ipam_services_failing", "Services whose last allocation failed in whole or in part (the IPAM leader's).")
)

// allDescs lists every desc Collect may send.
var allDescs = []*prometheus.Desc{
	buildInfo, ready, joined, refused, draining, passFailing, lastPass, reloads, reloadSuccess,
	ipOwner, ips, ipsHere, ipsNoOwner, ipsCannot, disagreeN, disagreement,
	l2IPs, l2Requests, l2Replies, l2Gratuitous, l2Probes, l2NS, l2Drops, l2Errors, l2FenceProbe,
	wireTotal, wireActive, members, membersUp, inputErrs,
	hbSent, hbSendErrors, hbReceived, hbRejected, hbLosses, hbResumes, hbWatched, hbMaxGap,
	bgpState, bgpUp, bgpUps, bfdState, bfdDowns, bgpAdvertised, bgpReceived, bgpAccepted, bgpImported,
	kubeSynced, kubeRestarts, kubeAge, ipamLeader, poolSize, poolUsed, poolFree, ipamFailures, ipamFailing,
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if c.src.State == nil {
		return // not bound yet
	}
	st := c.src.State()
	gauge(buildInfo, 1, c.opts.Version, c.opts.Commit, runtime.Version())
	notReady := !st.FirstPass
	if c.src.NotReady != nil {
		notReady = len(c.src.NotReady()) > 0
	}
	gauge(ready, b2f(!notReady))
	gauge(joined, b2f(st.Joined))
	gauge(refused, b2f(st.Refused != ""))
	gauge(draining, b2f(st.Draining))
	gauge(passFailing, b2f(st.PassError != ""))
	if st.LastPass.IsZero() {
		gauge(lastPass, 0)
	} else {
		gauge(lastPass, float64(st.LastPass.UnixNano())/1e9)
	}
	counter(reloads, float64(st.Reloads-st.ReloadFailures), "success")
	counter(reloads, float64(st.ReloadFailures), "failure")
	gauge(reloadSuccess, b2f(st.ReloadError == ""))

	c.collectIPs(st, gauge)
	c.collectL2(st, gauge, counter)
	c.collectWire(st, gauge, counter)
	c.collectRing(st, gauge, counter)
	c.collectHeartbeat(gauge, counter)
	c.collectBGP(st, gauge, counter)
	c.collectKube(gauge, counter)
}

type emit func(d *prometheus.Desc, v float64, labels ...string)

// modes are the announcement modes; every mode gets its series.
var modes = []string{"l2", "bgp"}

func (c *collector) collectIPs(st daemon.State, gauge emit) {
	known, here, none := map[string]int{}, map[string]int{}, map[string]int{}
	for _, ip := range st.IPs {
		known[ip.Mode]++
		if ip.Here {
			here[ip.Mode]++
		}
		if len(ip.Owners) == 0 {
			none[ip.Mode]++
		}
		if slices.Contains(ip.Owners, st.Node) {
			gauge(ipOwner, 1, ip.Addr.String(), ip.Name, ip.Mode, st.Node)
		}
	}
	for _, m := range modes {
		gauge(ips, float64(known[m]), m)
		gauge(ipsHere, float64(here[m]), m)
		gauge(ipsNoOwner, float64(none[m]), m)
	}
	gauge(ipsCannot, float64(st.CannotAnnounce))
	n := map[string]int{"conflict": 0, "unannounced": 0}
	for _, d := range st.Disagreements {
		kind := "unannounced"
		if len(d.Announcers) >= 2 {
			kind = "conflict"
		}
		n[kind]++
		gauge(disagreement, 1, d.Addr.String(), d.Name, kind)
	}
	for _, k := range []string{"conflict", "unannounced"} {
		gauge(disagreeN, float64(n[k]), k)
	}
}

// The responder counters that are not drop reasons, and where they go.
var (
	l2Events = map[string]*prometheus.Desc{
		netif.StatRequests: l2Requests, netif.StatReplies: l2Replies, netif.StatAnnounced: l2Gratuitous,
		netif.StatProbes: l2Probes, netif.StatConflictProbes: l2FenceProbe,
	}
	l2Ops = map[string]string{
		netif.StatReadErrors: "read", netif.StatWriteErrors: "write", netif.StatJoinErrors: "join",
		netif.StatMLDJoinErrors: "mld_join",
	}
	l2NSDest = map[string]string{netif.StatUnicastNS: "unicast", netif.StatMulticastNS: "multicast"}
	// The responders' own conflict counters: hostlb_wire_conflicts_total
	// counts the same events once per node, with the VIP.
	l2Skip = map[string]bool{
		netif.StatConflictDefended: true, netif.StatConflictYielded: true, netif.StatConflictForeign: true,
	}
)

func (c *collector) collectL2(st daemon.State, gauge, counter emit) {
	for _, s := range st.L2 {
		gauge(l2IPs, float64(len(s.Addrs)), s.Iface)
	}
	if c.src.L2 == nil {
		return
	}
	for _, rs := range c.src.L2.Stats() {
		for name, v := range rs.Counters {
			switch {
			case l2Skip[name]:
			case l2Events[name] != nil:
				counter(l2Events[name], float64(v), rs.Iface, rs.Proto)
			case l2Ops[name] != "":
				counter(l2Errors, float64(v), rs.Iface, rs.Proto, l2Ops[name])
			case l2NSDest[name] != "":
				if rs.Proto == netif.ProtoNDP {
					counter(l2NS, float64(v), rs.Iface, l2NSDest[name])
				}
			default:
				counter(l2Drops, float64(v), rs.Iface, rs.Proto, name)
			}
		}
	}
}

// wireActions are every netif.ConflictAction, so each has its series.
var wireActions = []netif.ConflictAction{
	netif.ConflictDefending, netif.ConflictYielding, netif.ConflictPeerYielded,
	netif.ConflictForeign, netif.ConflictResumed, netif.ConflictEnded,
}

func (c *collector) collectWire(st daemon.State, gauge, counter emit) {
	for _, a := range wireActions {
		counter(wireTotal, float64(st.WireCounts[a]), string(a))
	}
	n := map[string]int{"defending": 0, "yielded": 0, "foreign": 0}
	for _, cs := range st.WireNow {
		for _, cf := range cs {
			switch {
			case cf.Node == "":
				n["foreign"]++
			case cf.Yielded:
				n["yielded"]++
			default:
				n["defending"]++
			}
		}
	}
	for _, k := range []string{"defending", "yielded", "foreign"} {
		gauge(wireActive, float64(n[k]), k)
	}
}

// memberStates are the states a member is counted in.
var memberStates = []string{"alive", "dead", "left"}

func (c *collector) collectRing(st daemon.State, gauge, counter emit) {
	if c.src.Ring == nil {
		return
	}
	n, up := map[string]int{}, 0
	for _, m := range st.Members {
		n[m.State]++
		if m.State == "alive" && m.Health == "ok" && !m.Leaving {
			up++
		}
	}
	for _, s := range memberStates {
		gauge(members, float64(n[s]), s)
	}
	gauge(membersUp, float64(up))
	for kind, v := range c.src.Ring.InputErrors() {
		counter(inputErrs, float64(v), kind)
	}
}

// hbRejects are the kinds of rejected heartbeat datagrams, each with its
// series. heartbeat.RejectRead is no datagram (a failed socket read) and
// is not exported.
var hbRejects = []string{
	heartbeat.RejectOversized, heartbeat.RejectShort, heartbeat.RejectFormat, heartbeat.RejectDecrypt,
	heartbeat.RejectMalformed, heartbeat.RejectReplay, heartbeat.RejectOldBoot, heartbeat.RejectStale,
	heartbeat.RejectSelf, heartbeat.RejectPeersFull,
}

// hbStates are the states a watched node is counted in.
var hbStates = []heartbeat.State{heartbeat.Pending, heartbeat.Alive, heartbeat.Lost}

func (c *collector) collectHeartbeat(gauge, counter emit) {
	if c.src.Heartbeat == nil {
		return
	}
	s := c.src.Heartbeat.Stats()
	counter(hbSent, float64(s.SentBeats), "beat")
	counter(hbSent, float64(s.SentWatch), "watch")
	counter(hbSendErrors, float64(s.SendErrors))
	counter(hbReceived, float64(s.Received))
	for _, r := range hbRejects {
		counter(hbRejected, float64(s.Rejected[r]), r)
	}
	for r, v := range s.Rejected { // a kind newer than hbRejects
		if r != heartbeat.RejectRead && !slices.Contains(hbRejects, r) {
			counter(hbRejected, float64(v), r)
		}
	}
	counter(hbLosses, float64(s.Losses))
	counter(hbResumes, float64(s.Resumes))
	n := map[heartbeat.State]int{}
	for _, w := range c.src.Heartbeat.Watched() {
		n[w.State]++
	}
	for _, st := range hbStates {
		gauge(hbWatched, float64(n[st]), st.String())
	}
	gauge(hbMaxGap, s.MaxGap.Seconds())
}

// The FSM states of a BGP session and of a BFD session.
var (
	bgpStates = []string{"idle", "connect", "active", "opensent", "openconfirm", "established"}
	bfdStates = []string{"up", "down", "init", "admin-down"}
)

func (c *collector) collectBGP(st daemon.State, gauge, counter emit) {
	if st.BGP == nil {
		return
	}
	for _, p := range st.BGP.Peers {
		peer := p.Address.String()
		for _, s := range bgpStates {
			gauge(bgpState, b2f(p.State == s), peer, s)
		}
		gauge(bgpUp, b2f(p.State == "established"), peer)
		counter(bgpUps, float64(p.Established), peer)
		if p.BFD != "" {
			for _, s := range bfdStates {
				gauge(bfdState, b2f(p.BFD == s), peer, s)
			}
		}
		counter(bfdDowns, float64(p.BFDDowns), peer)
		gauge(bgpReceived, float64(p.Received), peer)
		gauge(bgpAccepted, float64(p.Accepted), peer)
	}
	gauge(bgpAdvertised, float64(st.BGP.Advertised))
	gauge(bgpImported, float64(st.BGP.Imported))
}

func (c *collector) collectKube(gauge, counter emit) {
	if c.src.Kube == nil {
		return
	}
	now := c.now()
	synced := true
	for _, w := range c.src.Kube.Watches() {
		counter(kubeRestarts, float64(w.Restarts), string(w.Kind))
		if w.Kind == kube.KindLease {
			continue
		}
		synced = synced && w.Synced
		if !w.LastSync.IsZero() {
			gauge(kubeAge, max(0, now.Sub(w.LastSync).Seconds()), string(w.Kind))
		}
	}
	gauge(kubeSynced, b2f(synced))
	is := c.src.Kube.IPAMStatus()
	gauge(ipamLeader, b2f(is.Leader))
	counter(ipamFailures, float64(is.AllocationFailures))
	gauge(ipamFailing, float64(is.Failing))
	for _, p := range is.Pools {
		fam := p.Family.String()
		gauge(poolSize, p.Size, p.Pool, fam)
		gauge(poolUsed, p.Used, p.Pool, fam)
		gauge(poolFree, max(0, p.Size-p.Used), p.Pool, fam)
	}
}
