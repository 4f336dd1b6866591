// Package metrics is hostlbd's Prometheus endpoint ([metrics] listen):
// /metrics, /healthz and /readyz, on a registry of its own (never the
// process-global default one).
//
// Two kinds of series, and docs/metrics.md lists every one:
//
//   - State, computed at scrape time from daemon.State and the components'
//     counters (collector, collect.go): ownership, disagreements, members,
//     BGP and BFD sessions, IPAM pools, the ARP/NDP responders' counters,
//     wire conflicts, the heartbeat's counters and watched nodes. Nothing is kept between scrapes, so a series ends
//     with what it describes (an IP deleted, a peer removed).
//   - Events, which no state shows afterwards (metrics.go): reconcile pass
//     durations and errors and takeovers (daemon.Observer), gossip probe
//     round trips (gossip.Config.OnProbe), and memberlist's suspicions and
//     health score (a go-metrics sink: memberlist reports them only
//     through go-metrics' process-global sink, so main installs it).
//
// The components know nothing of Prometheus: netif, gossip and daemon
// expose counters and callbacks, read here through small interfaces.
//
// Cardinality is bounded by what the cluster has: hostlb_ip_owner is
// exported by an IP's owner only (one series per IP per owner across the
// cluster, not one per node), per-IP disagreement series exist only while
// an IP is in disagreement, and the responder series are per interface.
//
// The Grafana dashboard and the alert rules built on these series are in
// packaging/monitoring/ (shipped in /usr/share/hostlb/monitoring/); the
// tests check every query's metric names against a registry filled by
// these very collectors, and check the rules and a scrape with promtool.
package metrics
