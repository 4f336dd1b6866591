package control_test

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/control"
	"github.com/hostlb/hostlb/daemon/control/api"
)

// logBuf collects log lines for assertions.
type logBuf struct{ strings.Builder }

func newLog() (*slog.Logger, *logBuf) {
	b := &logBuf{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func TestDefaultSocketIsTheConfigDefault(t *testing.T) {
	if got := config.Default().Control.Socket; got != api.DefaultSocket {
		t.Errorf("[control] socket defaults to %q; hostlbctl -s to %q", got, api.DefaultSocket)
	}
}

// Listen gives the socket mode 0660 and the admin group, and Close
// removes it.
func TestListenModeAndGroup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "hostlb.sock") // a directory to create
	gid := os.Getgid() + 4242
	if os.Geteuid() != 0 {
		gid = os.Getgid() // a non-root user may chgrp only to its own groups
	}
	log, buf := newLog()
	ln, err := control.Listen(path, log, control.ListenOptions{
		LookupGroup: func(name string) (int, error) {
			if name != api.AdminGroup {
				t.Errorf("looked up group %q, want %s", name, api.AdminGroup)
			}
			return gid, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want socket 0660", fi.Mode())
	}
	if got := int(fi.Sys().(*syscall.Stat_t).Gid); got != gid {
		t.Errorf("socket group %d, want %d", got, gid)
	}
	if di, err := os.Stat(filepath.Dir(path)); err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("created directory: %v %v, want mode 0755", di.Mode(), err)
	}
	if !strings.Contains(buf.String(), "control socket listening") {
		t.Errorf("no listening line in the log:\n%s", buf)
	}
	_ = ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket outlives its listener: %v", err)
	}
}

// Without the admin group the socket keeps the daemon's group, and the log
// says so.
func TestListenWithoutGroup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hostlb.sock")
	log, buf := newLog()
	ln, err := control.Listen(path, log, control.ListenOptions{
		LookupGroup: func(name string) (int, error) { return 0, errors.New("group: unknown group " + name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := int(fi.Sys().(*syscall.Stat_t).Gid); got != os.Getegid() {
		t.Errorf("socket group %d, want the process's %d", got, os.Getegid())
	}
	if !strings.Contains(buf.String(), "group hostlb-admin not found") {
		t.Errorf("the log does not say the group is missing:\n%s", buf)
	}
}

// A socket left by a crashed run is replaced; one that is served is not,
// and neither is a file that is no socket.
func TestListenStaleAndBusy(t *testing.T) {
	dir := t.TempDir()
	noGroup := control.ListenOptions{LookupGroup: func(string) (int, error) { return os.Getgid(), nil }}

	stale := filepath.Join(dir, "stale.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	_ = old.Close() // what kill -9 leaves
	log, buf := newLog()
	ln, err := control.Listen(stale, log, noGroup)
	if err != nil {
		t.Fatalf("a stale socket is not replaced: %v", err)
	}
	if !strings.Contains(buf.String(), "removed the socket file a previous run left") {
		t.Errorf("the log does not mention the stale socket:\n%s", buf)
	}

	// ln serves stale now: a second daemon must not take it over.
	if _, err := control.Listen(stale, log, noGroup); err == nil || !strings.Contains(err.Error(), "already accepts connections") {
		t.Errorf("a second Listen on a served socket: %v", err)
	}
	if _, err := os.Lstat(stale); err != nil {
		t.Errorf("the served socket was removed: %v", err)
	}
	_ = ln.Close()

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := control.Listen(file, log, noGroup); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("Listen on a regular file: %v", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "x" {
		t.Errorf("the regular file was touched: %q %v", b, err)
	}
}
