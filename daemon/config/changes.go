package config

import (
	"bytes"
	"maps"
	"slices"
)

// change is one key Changes looks at.
type change struct {
	key  string
	live bool
	same func(a, b *Config) bool
}

// changes is every key a reload can touch, in file order.
//
// Live means a running daemon applies it on SIGHUP without dropping anything
// it announces: the log level changes at once; L2 interface rules, GARP timing
// and the static VIP list are just inputs to the next reconcile; BGP peers
// are added, removed or reset one at a time in GoBGP (daemon/bgp: an
// unchanged peer keeps its session); [bgp.import] is re-applied by the next
// import pass (routes move to the new table or metric, or are removed when
// it is turned off); node labels are re-gossiped (memberlist metadata updates);
// join seeds are only used for the next (re)join; the load balancer class is
// a filter on the Service informer's events; a changed gossip key file
// (its path or its keys) gives the running ring the new key set
// (gossip.Ring.SetKeys), which is how a rolling key rotation proceeds
// without a restart (see `hostlbctl keygen`).
//
// Restart is everything that identifies the node or is bound at start:
// log.format picks the handler (journald, JSON, text) once, at start;
// node.name is the gossip identity and the Kubernetes Node name; gossip
// bind/advertise/profile/plaintext/cluster are fixed in memberlist's config
// (switching between a key and insecure_plaintext is reported as
// gossip.insecure_plaintext alone, the key with it); sockets and
// listeners are opened once (and may need privileges the daemon has dropped);
// the BGP speaker's ASN, router ID and listen port are global settings that
// GoBGP cannot change without restarting every session; the Kubernetes
// client and the IPAM Lease are built once at start.
var changes = []change{
	{"node.name", false, func(a, b *Config) bool { return a.Node.Name == b.Node.Name }},
	{"node.labels", true, func(a, b *Config) bool { return maps.Equal(a.Node.Labels, b.Node.Labels) }},
	{"log.level", true, func(a, b *Config) bool { return a.Log.Level == b.Log.Level }},
	{"log.format", false, func(a, b *Config) bool { return a.Log.Format == b.Log.Format }},
	{"gossip.bind", false, func(a, b *Config) bool { return a.Gossip.Bind == b.Gossip.Bind }},
	{"gossip.advertise", false, func(a, b *Config) bool { return a.Gossip.Advertise == b.Gossip.Advertise }},
	{"gossip.join", true, func(a, b *Config) bool { return slices.Equal(a.Gossip.Join, b.Gossip.Join) }},
	{"gossip.secret_key_file", true, func(a, b *Config) bool {
		// The content counts too: a rewritten key file is a rotation step.
		// Turning encryption on or off is gossip.insecure_plaintext's.
		return a.Gossip.InsecurePlaintext != b.Gossip.InsecurePlaintext ||
			a.Gossip.SecretKeyFile == b.Gossip.SecretKeyFile && slices.EqualFunc(a.Gossip.SecretKeys, b.Gossip.SecretKeys, bytes.Equal)
	}},
	{"gossip.insecure_plaintext", false, func(a, b *Config) bool { return a.Gossip.InsecurePlaintext == b.Gossip.InsecurePlaintext }},
	{"gossip.profile", false, func(a, b *Config) bool { return a.Gossip.Profile == b.Gossip.Profile }},
	{"gossip.cluster", false, func(a, b *Config) bool { return a.Gossip.Cluster == b.Gossip.Cluster }},
	{"l2.interfaces", true, func(a, b *Config) bool { return slices.Equal(a.L2.Interfaces, b.L2.Interfaces) }},
	{"l2.exclude", true, func(a, b *Config) bool { return slices.Equal(a.L2.Exclude, b.L2.Exclude) }},
	{"l2.gratuitous_count", true, func(a, b *Config) bool { return a.L2.GratuitousCount == b.L2.GratuitousCount }},
	{"l2.gratuitous_interval", true, func(a, b *Config) bool { return a.L2.GratuitousInterval == b.L2.GratuitousInterval }},
	{"l2.refresh_interval", true, func(a, b *Config) bool { return a.L2.RefreshInterval == b.L2.RefreshInterval }},
	{"bgp.asn", false, func(a, b *Config) bool { return a.BGP.ASN == b.BGP.ASN }},
	{"bgp.router_id", false, func(a, b *Config) bool { return a.BGP.RouterID == b.BGP.RouterID }},
	{"bgp.listen_port", false, func(a, b *Config) bool { return a.BGP.ListenPort == b.BGP.ListenPort }},
	{"bgp.peer", true, func(a, b *Config) bool { return slices.Equal(a.BGP.Peers, b.BGP.Peers) }},
	{"bgp.import", true, func(a, b *Config) bool { return a.BGP.Import == b.BGP.Import }},
	{"kubernetes.enabled", false, func(a, b *Config) bool { return a.Kubernetes.Enabled == b.Kubernetes.Enabled }},
	{"kubernetes.kubeconfig", false, func(a, b *Config) bool { return a.Kubernetes.Kubeconfig == b.Kubernetes.Kubeconfig }},
	{"kubernetes.lease_namespace", false, func(a, b *Config) bool { return a.Kubernetes.LeaseNamespace == b.Kubernetes.LeaseNamespace }},
	{"kubernetes.load_balancer_class", true, func(a, b *Config) bool {
		return a.Kubernetes.LoadBalancerClass == b.Kubernetes.LoadBalancerClass
	}},
	{"metrics.listen", false, func(a, b *Config) bool { return a.Metrics.Listen == b.Metrics.Listen }},
	{"control.socket", false, func(a, b *Config) bool { return a.Control.Socket == b.Control.Socket }},
	{"vip", true, func(a, b *Config) bool { return slices.EqualFunc(a.VIPs, b.VIPs, sameVIP) }},
}

func sameVIP(a, b VIP) bool {
	return a.Name == b.Name && a.Mode == b.Mode && a.Local == b.Local &&
		slices.Equal(a.Addresses, b.Addresses) &&
		maps.Equal(a.NodeSelector, b.NodeSelector) &&
		slices.Equal(a.Interfaces, b.Interfaces) &&
		(a.Health == nil) == (b.Health == nil) && (a.Health == nil || *a.Health == *b.Health)
}

// Changes lists the keys whose values differ between old and next, split into
// those a running daemon applies on reload (live) and those that only take
// effect after a restart. Keys are dotted, as in the file; list-valued
// sections are reported whole ("vip", "bgp.peer"). Nil slices mean no
// change. A nil Config is taken as the zero Config.
func Changes(old, next *Config) (live, restart []string) {
	if old == nil {
		old = &Config{}
	}
	if next == nil {
		next = &Config{}
	}
	for _, c := range changes {
		if c.same(old, next) {
			continue
		}
		if c.live {
			live = append(live, c.key)
		} else {
			restart = append(restart, c.key)
		}
	}
	return live, restart
}
