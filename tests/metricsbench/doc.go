// Package metricsbench measures what the metrics endpoint costs a node
// (issue 11): the resident memory and CPU of hostlbd with 10,000 VIP
// addresses while Prometheus scrapes its /metrics every second, against the
// same node in the same run while nothing scrapes it — the ratio is the
// result; absolute numbers on a shared machine are noise (STYLE.md).
//
// The lab is tests/failover's three-node static L2 cluster (one namespace
// per node on a bridge, a real gossip ring), its one VIP given 10,000 IPv6
// addresses (2001:db8:1::/64, `local = true`), and [metrics] listen on
// each node's lab address. Each node owns about a third of the addresses
// and places all 10,000, so every scrape of a node computes the whole
// State (10,000 IPs, each with why the two other nodes do not announce
// it) and writes some 3,300 owner series plus the rest.
//
// Windows of equal length alternate: idle, scraped, scraped, idle (drift
// of a shared machine hits both alike). In a scraped window the benchmark
// — a separate process, whose own CPU is not counted — scrapes node1 once
// a second; node2 and node3 are never scraped and are the control. For
// each window and node: CPU seconds used (utime + stime of /proc/PID/stat)
// over the window's length, VmRSS at its end, and for node1 the scrapes'
// size and latency. `make bench` runs it; it needs root.
package metricsbench
