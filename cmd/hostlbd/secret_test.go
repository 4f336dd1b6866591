package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBadKeyFileExits2 runs the real main in a child process, with
// --check-config and as a daemon, against key files the review found
// accepted or fatal: each is a clear error naming the file and the fix,
// exit 2, within seconds (a FIFO or /dev/zero must not hang or bloat it).
func TestBadKeyFileExits2(t *testing.T) {
	const key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlBQkNERUY=\n"
	for _, tc := range []struct {
		name  string
		root  bool // needs root (chown)
		setup func(t *testing.T, path string)
		want  string // after the key's path
	}{
		{"0666", false, func(t *testing.T, p string) {
			writeFile(t, p, key)
			if err := os.Chmod(p, 0o666); err != nil {
				t.Fatal(err)
			}
		}, " has mode 0666: readable and writable by every user (fix: chmod 0640 "},
		{"FIFO", false, func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, " is a FIFO, not a regular file (fix: "},
		{"symlink to /dev/zero", false, func(t *testing.T, p string) {
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
		}, " is a device, not a regular file (fix: "},
		{"oversized", false, func(t *testing.T, p string) {
			writeFile(t, p, key+strings.Repeat("# padding\n", 7000))
		}, " is 70045 bytes, more than the 64 KiB this file may hold"},
		{"owned by another user", true, func(t *testing.T, p string) {
			writeFile(t, p, key)
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, " is owned by uid 65534, not by root or the daemon's user (fix: chown root:hostlb "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				if os.Getenv("CI") != "" {
					t.Fatal("needs root to chown a file to another uid, and CI is set")
				}
				t.Skip("needs root to chown a file to another uid; run as root (CI does)")
			}
			dir := t.TempDir()
			keyPath := filepath.Join(dir, "gossip.key")
			tc.setup(t, keyPath)
			cfg := filepath.Join(dir, "hostlb.toml")
			writeFile(t, cfg, strings.Replace(goodConfig(t), "insecure_plaintext = true", "secret_key_file = \"gossip.key\"", 1))
			for _, args := range [][]string{{"--config", cfg, "--check-config"}, {"--config", cfg}} {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				cmd := exec.CommandContext(ctx, os.Args[0], args...)
				cmd.Env = append(os.Environ(), "HOSTLBD_TEST_AS_MAIN=1")
				out, err := cmd.CombinedOutput()
				timedOut := ctx.Err() != nil
				cancel()
				if timedOut {
					t.Fatalf("hostlbd %q hangs on the key file (killed after 20 s):\n%s", args, out)
				}
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != exitConfig {
					t.Errorf("hostlbd %q: %v, want exit %d\n%s", args, err, exitConfig, out)
				}
				if want := cfg + ":"; !strings.Contains(string(out), want) || !strings.Contains(string(out), "gossip.secret_key_file") {
					t.Errorf("hostlbd %q: output does not name %s and the key:\n%s", args, want, out)
				}
				if want := keyPath + tc.want; !strings.Contains(string(out), want) {
					t.Errorf("hostlbd %q: output does not say\n%s\n%s", args, want, out)
				}
			}
		})
	}
}
