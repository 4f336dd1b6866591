package netiftest

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/hostlb/hostlb/netif"
)

func TestMonitor(t *testing.T) {
	defer goleak.VerifyNone(t)
	m := NewMonitor(netif.Link{Index: 2, Name: "eth0", Type: "device", Up: true, Broadcast: true})
	var reasons []string
	m.SetOnChange(func(r string) { reasons = append(reasons, r) })
	<-m.Ready()

	m.AddAddr("eth0", netip.MustParsePrefix("192.0.2.10/24"))
	m.SetLink(netif.Link{Index: 3, Name: "eth1", Type: "device", Up: true, Broadcast: true})
	m.SetUp("eth1", false)
	sel, _ := netif.NewSelector(nil, netif.DefaultExclude)
	if got := sel.Eligible(m.Snapshot()); len(got) != 1 || got[0].Name != "eth0" {
		t.Errorf("eligible = %+v, want eth0 only", got)
	}
	before := m.Snapshot()
	m.SetUp("eth1", true)
	m.DelAddr("eth0", netip.MustParsePrefix("192.0.2.10/24"))
	if l, _ := before.LinkByName("eth0"); len(l.Addrs) != 1 {
		t.Errorf("an old snapshot changed: %+v", l)
	}
	if got := netif.InterfacesFor(netip.MustParseAddr("192.0.2.1"), sel.Eligible(m.Snapshot())); len(got) != 2 {
		t.Errorf("InterfacesFor after the subnet went = %+v, want both links", got)
	}
	m.SetMaster("eth1", 2)
	m.DelLink("eth0")
	if got := m.Snapshot().Links(); len(got) != 1 || got[0].MasterIndex != 2 {
		t.Errorf("links = %+v", got)
	}
	if len(reasons) != 7 {
		t.Errorf("OnChange called %d times (%q), want 7", len(reasons), reasons)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestAddrManager(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	f := NewAddrManager()
	if err := f.Add(a); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	f.FailAdd(b, boom)
	if err := f.Add(b); !errors.Is(err, boom) {
		t.Errorf("Add with injected failure: %v", err)
	}
	f.FailAdd(b, nil)
	if err := f.Sync([]netip.Addr{b}); err != nil {
		t.Fatal(err)
	}
	if got := f.Addrs(); !slices.Equal(got, []netip.Addr{b}) || f.Holds(a) {
		t.Errorf("after Sync: %v", got)
	}
	if err := f.Remove(b); err != nil || len(f.Addrs()) != 0 {
		t.Errorf("Remove: %v, %v", err, f.Addrs())
	}
	_ = f.Add(a)
	if err := f.Close(); err != nil || !f.Closed() || len(f.Addrs()) != 0 {
		t.Errorf("Close: %v closed=%v addrs=%v", err, f.Closed(), f.Addrs())
	}
	if err := f.Add(a); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
	want := []string{"add 192.0.2.1", "add 2001:db8::1", "sync [2001:db8::1]", "remove 2001:db8::1", "add 192.0.2.1", "close", "add 192.0.2.1"}
	if got := f.Ops(); !slices.Equal(got, want) {
		t.Errorf("ops = %q, want %q", got, want)
	}
}
