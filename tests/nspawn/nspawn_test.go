package nspawn

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
)

func TestBootRunClose(t *testing.T) {
	if err := Available(); err != nil {
		netlab.Missing(t, "systemd-nspawn container tests: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	m, err := Boot(ctx, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })

	out, err := m.Run(ctx, "cat", "/proc/1/comm")
	if err != nil || strings.TrimSpace(out) != "systemd" {
		t.Fatalf("PID 1 in the container: %q, %v; want systemd", out, err)
	}
	out, err = m.Run(ctx, "hostname")
	if err != nil || strings.TrimSpace(out) != m.Name {
		t.Errorf("hostname = %q, %v; want %q", out, err, m.Name)
	}
	// --private-network: only lo.
	out, err = m.Run(ctx, "ls", "/sys/class/net")
	if err != nil || strings.TrimSpace(out) != "lo" {
		t.Errorf("interfaces in the container: %q, %v; want only lo", out, err)
	}
	_, err = m.Run(ctx, "sh", "-c", "exit 3")
	if got := ExitCode(err); got != 3 {
		t.Errorf("ExitCode = %d (%v), want 3", got, err)
	}
	// Writes stay in the overlay, not in the cached rootfs.
	if _, err := m.Sh(ctx, "echo x > /etc/hostlb-overlay-probe"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(RootfsPath() + "/etc/hostlb-overlay-probe"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write in the container reached the cached rootfs (stat: %v)", err)
	}

	dir := m.dir
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run dir %s still exists after Close (stat: %v)", dir, err)
	}
}
