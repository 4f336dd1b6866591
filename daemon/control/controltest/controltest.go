// Package controltest is a control socket for tests: the real control
// Server on a unix socket in a temporary directory, serving a fake daemon
// whose State is fixed. hostlbctl's golden tests run against it, so they
// render exactly what the daemon's server sends.
package controltest

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/bgp"
	"github.com/hostlb/hostlb/daemon/control"
	"github.com/hostlb/hostlb/daemon/control/api"
	"github.com/hostlb/hostlb/netif"
)

// Now is the fake daemon's clock: every answer carries it, and the
// fixtures' times are before it.
var Now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Build is the fake daemon's build.
var Build = api.Build{Version: "1.2.3", Commit: "0123456789ab"}

// Source is a fake daemon: its State is St, and reloads and checks return
// the results set. Safe for concurrent use.
type Source struct {
	mu sync.Mutex // guards every field
	St daemon.State
	// ReloadResult and ReloadErr are what ReloadNow returns; Reloads
	// counts its calls.
	ReloadResult daemon.ReloadResult
	ReloadErr    error
	Reloads      int
	// CheckResult and CheckErr are what CheckReload returns.
	CheckResult daemon.ReloadResult
	CheckErr    error
}

// State implements control.Source.
func (s *Source) State() daemon.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.St
}

// ReloadNow implements control.Source.
func (s *Source) ReloadNow() (daemon.ReloadResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Reloads++
	return s.ReloadResult, s.ReloadErr
}

// CheckReload implements control.Source.
func (s *Source) CheckReload() (daemon.ReloadResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.CheckResult, s.CheckErr
}

// Set changes the fake under its lock.
func (s *Source) Set(f func(s *Source)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// Serve runs the real control server for src on a socket in a fresh
// temporary directory (short enough for a unix socket path) and returns
// the socket's path; tb's cleanup stops the server and removes it.
func Serve(tb testing.TB, src control.Source) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "hlbctl")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	path := filepath.Join(dir, "hostlb.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		tb.Fatal(err)
	}
	b := Build
	srv, err := control.New(control.Options{Source: src, Log: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return Now }, Build: &b})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("control server: %v", err)
		}
	})
	return path
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func ago(d time.Duration) time.Time { return Now.Add(-d) }

// Cluster is the State of node n1 in a three-node ring with trouble to
// show: n3 is dead, one Service IP has two announcers, one IP has no
// owner, a VIP's node_selector leaves n1 out, a foreign host answers for
// one of n1's IPs, and one of two BGP sessions is down.
func Cluster() daemon.State {
	standby := func(owner string) string { return "standby: one node announces an L2 IP, " + owner + " does" }
	mac := func(s string) net.HardwareAddr {
		m, err := net.ParseMAC(s)
		if err != nil {
			panic(err)
		}
		return m
	}
	return daemon.State{
		Node: "n1", Started: ago(26 * time.Hour), Ready: true, Joined: true, LastPass: ago(2 * time.Second),
		Reloads: 3, ReloadFailures: 1, LastReload: ago(10 * time.Minute),
		Members: []daemon.MemberState{
			{Name: "n1", Addr: netip.MustParseAddrPort("192.0.2.11:7947"), State: "alive", Since: ago(26 * time.Hour), Health: "ok",
				Self: true, Labels: map[string]string{"rack": "r0"},
				Announced: []netip.Addr{addr("192.0.2.100"), addr("192.0.2.102"), addr("2001:db8::100")}},
			{Name: "n2", Addr: netip.MustParseAddrPort("192.0.2.12:7947"), State: "alive", Since: ago(3 * time.Hour), Health: "ok",
				Labels:    map[string]string{"rack": "r1"},
				Announced: []netip.Addr{addr("192.0.2.101"), addr("192.0.2.102"), addr("192.0.2.110")},
				Cannot:    []netip.Addr{addr("203.0.113.5")}},
			{Name: "n3", Addr: netip.MustParseAddrPort("192.0.2.13:7947"), State: "dead", Since: ago(3 * time.Minute), Health: "ok",
				Labels: map[string]string{"rack": "r0"}, Unhealthy: []string{"default/api"}},
		},
		IPs: []daemon.IPState{
			{Addr: addr("192.0.2.100"), Name: "web", Source: "static", Mode: "l2", Owners: []string{"n1"}, Announcers: []string{"n1"},
				Preferred: "n3", Since: ago(3 * time.Minute), PrevOwners: []string{"n3"}, Here: true, Interfaces: []string{"eth0"}, Local: true,
				NotHere: []daemon.NodeReason{{Node: "n2", Reason: standby("n1")}, {Node: "n3", Reason: "dead"}}},
			{Addr: addr("192.0.2.101"), Name: "web", Source: "static", Mode: "l2", Owners: []string{"n2"}, Announcers: []string{"n2"},
				Preferred: "n2", Since: ago(3 * time.Hour),
				NotHere: []daemon.NodeReason{{Node: "n1", Reason: standby("n2")}, {Node: "n3", Reason: "dead"}}},
			{Addr: addr("192.0.2.102"), Name: "default/frontend", Source: "kubernetes", Mode: "l2", Owners: []string{"n2"},
				Announcers: []string{"n1", "n2"}, Preferred: "n2", Since: ago(8 * time.Second), PrevOwners: []string{"n1"},
				NotHere: []daemon.NodeReason{{Node: "n1", Reason: standby("n2")}, {Node: "n3", Reason: "dead"}}},
			{Addr: addr("192.0.2.110"), Name: "rack1", Source: "static", Mode: "l2", Owners: []string{"n2"}, Announcers: []string{"n2"},
				Preferred: "n2", Since: ago(3 * time.Hour),
				NotHere: []daemon.NodeReason{
					{Node: "n1", Reason: "not eligible: labels do not match the node_selector {rack=r1}"},
					{Node: "n3", Reason: "dead"}}},
			{Addr: addr("198.51.100.10"), Name: "dns", Source: "static", Mode: "bgp", Owners: []string{"n1", "n2"},
				Since: ago(3 * time.Minute), PrevOwners: []string{"n1", "n2", "n3"}, Here: true,
				NotHere: []daemon.NodeReason{{Node: "n3", Reason: "dead"}}},
			{Addr: addr("203.0.113.5"), Name: "default/api", Source: "kubernetes", Mode: "l2", Since: ago(3 * time.Minute),
				PrevOwners: []string{"n3"},
				NotHere: []daemon.NodeReason{
					{Node: "n1", Reason: "no ready endpoint on the node (externalTrafficPolicy Local)"},
					{Node: "n2", Reason: "cannot announce (see that node's log)"},
					{Node: "n3", Reason: "dead"}}},
			{Addr: addr("2001:db8::100"), Name: "web", Source: "static", Mode: "l2", Owners: []string{"n1"}, Announcers: []string{"n1"},
				Preferred: "n1", Since: ago(26 * time.Hour), Here: true, Interfaces: []string{"eth0"}, Local: true,
				NotHere: []daemon.NodeReason{{Node: "n2", Reason: standby("n1")}, {Node: "n3", Reason: "dead"}}},
		},
		Wire: []daemon.WireEvent{
			{At: ago(40 * time.Minute), ConflictEvent: netif.ConflictEvent{Action: netif.ConflictDefending, Iface: "eth0",
				Addr: addr("192.0.2.100"), OurMAC: mac("02:00:00:00:00:01"), TheirMAC: mac("02:00:00:00:00:03"), Node: "n3", VIP: "web"}},
			{At: ago(39 * time.Minute), ConflictEvent: netif.ConflictEvent{Action: netif.ConflictPeerYielded, Iface: "eth0",
				Addr: addr("192.0.2.100"), OurMAC: mac("02:00:00:00:00:01"), TheirMAC: mac("02:00:00:00:00:03"), Node: "n3", VIP: "web"}},
			{At: ago(20 * time.Second), ConflictEvent: netif.ConflictEvent{Action: netif.ConflictForeign, Iface: "eth0",
				Addr: addr("2001:db8::100"), OurMAC: mac("02:00:00:00:00:01"), TheirMAC: mac("52:54:00:12:34:56"), VIP: "web"}},
		},
		WireCounts: map[netif.ConflictAction]uint64{netif.ConflictDefending: 1, netif.ConflictPeerYielded: 1, netif.ConflictForeign: 1},
		WireNow: map[string][]netif.Conflict{"eth0": {
			{Addr: addr("2001:db8::100"), TheirMAC: mac("52:54:00:12:34:56"), Since: ago(20 * time.Second)},
		}},
		Disagreements: []daemon.Disagreement{
			{Addr: addr("192.0.2.102"), Name: "default/frontend", Announcers: []string{"n1", "n2"}, Since: ago(5 * time.Second)},
		},
		BGP: &bgp.Status{Advertised: 1, Imported: 3, Peers: []bgp.PeerStatus{
			{Address: addr("192.0.2.1"), ASN: 64500, State: "established", Since: ago(time.Hour), Established: 2,
				LastDown: "hold timer expired", BFD: "up", BFDDowns: 1, Received: 4, Accepted: 3},
			{Address: addr("2001:db8::1"), ASN: 64501, State: "active", Since: ago(30 * time.Second)},
		}},
		L2: []netif.L2Status{{Iface: "eth0", Addrs: []netip.Addr{addr("192.0.2.100"), addr("2001:db8::100")}}},
	}
}

// Alone is the State of a node without a ring or BGP that has not
// finished its first pass: no members, no IPs, nothing on the wire.
func Alone() daemon.State {
	return daemon.State{Node: "solo", Started: ago(time.Second)}
}
