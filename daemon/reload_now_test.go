package daemon

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/hostlb/hostlb/daemon/config"
)

// ReloadNow (the control socket's reload) says what changed, or why the
// file was refused; CheckReload says what a reload would change and
// applies nothing; both count on the same file as SIGHUP.
func TestReloadNowAndCheckReload(t *testing.T) {
	vipDB := config.VIP{Name: "db", Mode: "l2", Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.7")}}
	var mu sync.Mutex
	next, loadErr := testConfig(vipDB), error(nil)
	d, err := New(Options{
		Config: testConfig(vipWeb),
		Load: func() (*config.Config, error) {
			mu.Lock()
			defer mu.Unlock()
			return next, loadErr
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}

	res, err := d.CheckReload()
	if err != nil || !slices.Equal(res.Changed, []string{"vip"}) || len(res.NeedsRestart) != 0 {
		t.Fatalf("CheckReload: %+v %v, want vip changed", res, err)
	}
	if got := d.config().VIPs; got[0].Name != "web" {
		t.Fatalf("CheckReload applied the file: VIPs %+v", got)
	}

	mu.Lock()
	next = testConfig(vipDB)
	next.Control.Socket = "/run/elsewhere.sock"
	mu.Unlock()
	res, err = d.ReloadNow()
	if err != nil || !slices.Equal(res.Changed, []string{"vip"}) || !slices.Equal(res.NeedsRestart, []string{"control.socket"}) {
		t.Fatalf("ReloadNow: %+v %v, want vip changed and control.socket needing a restart", res, err)
	}
	if got := d.config(); got.VIPs[0].Name != "db" || got.Control.Socket == "/run/elsewhere.sock" {
		t.Fatalf("after ReloadNow: VIPs %+v, socket %q", got.VIPs, got.Control.Socket)
	}

	bad := errors.New("hostlb.toml:3:1: vip[0].addresses: required")
	mu.Lock()
	loadErr = bad
	mu.Unlock()
	if _, err := d.ReloadNow(); !errors.Is(err, bad) {
		t.Errorf("ReloadNow of a bad file: %v", err)
	}
	if _, err := d.CheckReload(); !errors.Is(err, bad) {
		t.Errorf("CheckReload of a bad file: %v", err)
	}
	st := d.State()
	if st.Reloads != 2 || st.ReloadFailures != 1 || st.ReloadError == "" {
		t.Errorf("State after two reloads, one failed: %d reloads, %d failures, error %q", st.Reloads, st.ReloadFailures, st.ReloadError)
	}

	none, err := New(Options{Config: testConfig(vipWeb), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.ReloadNow(); !errors.Is(err, ErrNoConfigFile) {
		t.Errorf("ReloadNow without a file: %v", err)
	}
	if _, err := none.CheckReload(); !errors.Is(err, ErrNoConfigFile) {
		t.Errorf("CheckReload without a file: %v", err)
	}
}
