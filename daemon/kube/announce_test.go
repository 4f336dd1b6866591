package kube

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/hostlb/hostlb/daemon/reconcile"
)

func TestAnnouncedEmitsEventsOnChangeOnly(t *testing.T) {
	rec := record.NewFakeRecorder(32)
	// The client connects lazily: nothing is sent to this address.
	k, err := New(Options{Log: slog.New(slog.DiscardHandler), Config: &rest.Config{Host: "https://192.0.2.250:1"},
		NodeName: "n1", IPAM: IPAMOptions{Recorder: rec}})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Source.services.GetStore().Add(lbService()); err != nil {
		t.Fatal(err)
	}
	a4, a6 := netip.MustParseAddr("192.0.2.5"), netip.MustParseAddr("2001:db8::5")
	ok := []reconcile.Report{
		{Group: "ns/svc", Addr: a4, Ifaces: []string{"eth0"}},
		{Group: "ns/svc", Addr: a6, Ifaces: []string{"eth0", "eth1"}},
		{Group: "static-vip", Addr: netip.MustParseAddr("192.0.2.9"), Ifaces: []string{"eth0"}},
		{Group: "ns/svc", Addr: netip.MustParseAddr("198.51.100.7"), Mode: "bgp", Ifaces: []string{"198.51.100.0/24"}},
	}
	k.Announced(ok)
	k.Announced(ok) // the same state again: nothing new
	failed := []reconcile.Report{{Group: "ns/svc", Addr: a4, Err: `interface "eth9" not found`}, ok[1], ok[3]}
	k.Announced(failed)
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	want := []string{
		"Normal Announcing node n1 announces 192.0.2.5 on eth0 (ARP)",
		"Normal Announcing node n1 announces 2001:db8::5 on eth0, eth1 (NDP)",
		"Normal Announcing node n1 advertises 198.51.100.7 over BGP as 198.51.100.0/24",
		`Warning AnnounceFailed node n1 cannot announce 192.0.2.5: interface "eth9" not found`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
