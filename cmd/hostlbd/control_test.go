package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostlb/hostlb/daemon/control/api"
)

// TestControlSocket runs hostlbd with a control socket where a crashed run
// left one: the daemon replaces it, serves the API with mode 0660, reloads
// on POST /v1/reload, and removes the socket when it stops.
func TestControlSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "hlbd") // short: a socket path has 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "hostlb.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	_ = stale.Close()

	cfgPath := filepath.Join(t.TempDir(), "hostlb.toml")
	cfgText := strings.Replace(goodConfig(t), `socket = ""`, fmt.Sprintf("socket = %q", socket), 1)
	writeFile(t, cfgPath, cfgText)
	cmd, notify, logs := startChild(t, cfgPath)
	notify.expect(t, "READY=1")
	logs.waitFor(t, "removed the socket file a previous run left")

	fi, err := os.Stat(socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want socket 0660", fi.Mode())
	}

	c := api.NewClient(socket)
	var st api.Status
	if _, err := c.Get(t.Context(), api.PathStatus, &st); err != nil {
		t.Fatal(err)
	}
	if st.Version != api.Version || st.Node != "n1" || !st.Ready || st.IPs.Total != 1 {
		t.Errorf("status: %+v", st)
	}
	var vips api.VIPs
	if _, err := c.Get(t.Context(), api.PathVIPs, &vips); err != nil {
		t.Fatal(err)
	}
	if len(vips.VIPs) != 1 || vips.VIPs[0].Address.String() != "192.0.2.10" || vips.VIPs[0].Name != "web" {
		t.Errorf("vips: %+v", vips.VIPs)
	}

	// A reload over the socket applies the file like SIGHUP.
	writeFile(t, cfgPath, strings.Replace(cfgText, "192.0.2.10", "192.0.2.11", 1))
	var r api.Reload
	if _, err := c.Post(t.Context(), api.PathReload, &r); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Changed, []string{"vip"}) {
		t.Errorf("reload changed %v, want [vip]", r.Changed)
	}
	logs.waitFor(t, `"msg":"reload requested over the control socket"`)
	logs.waitFor(t, `"msg":"config reloaded"`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.Get(t.Context(), api.PathVIPs, &vips); err != nil {
			t.Fatal(err)
		}
		if len(vips.VIPs) == 1 && vips.VIPs[0].Address.String() == "192.0.2.11" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the reload, vips still %+v", vips.VIPs)
		}
		time.Sleep(20 * time.Millisecond) // polling the next reconcile pass
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("hostlbd did not exit within 15s of SIGTERM")
	}
	if _, err := os.Lstat(socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the control socket outlives the daemon: %v", err)
	}
}

// A control socket that cannot be created fails the start at once, with
// the path in the message: a daemon nobody can query must not run
// unnoticed.
func TestControlSocketBusyFailsStart(t *testing.T) {
	dir, err := os.MkdirTemp("", "hlbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "hostlb.sock")
	busy, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfgPath := filepath.Join(dir, "hostlb.toml")
	writeFile(t, cfgPath, strings.Replace(goodConfig(t), `socket = ""`, fmt.Sprintf("socket = %q", socket), 1))
	expectStartFailure(t, cfgPath, socket, "already accepts connections")
}
