package nspawn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// CacheDir holds the cached root file systems. It is outside any checkout
// so that every clone and every CI run on a machine shares one debootstrap.
const CacheDir = "/var/cache/hostlb"

// Suite is the Debian release the containers run.
const Suite = "bookworm"

// DefaultMirror is used unless HOSTLB_DEBIAN_MIRROR is set.
const DefaultMirror = "http://deb.debian.org/debian"

// Includes are the packages debootstrap adds to --variant=minbase: what is
// needed to boot systemd as PID 1 and talk to it, and procps (priority
// important, on every standard install), which the hostlb deb depends on for
// /bin/kill. The containers have no network, so dpkg -i cannot fetch
// dependencies.
var Includes = []string{"systemd", "systemd-sysv", "dbus", "procps"}

// recipe names everything that decides the content of the rootfs; changing
// any of it (including the customisation in [customise], hence the revision)
// gives a new cache directory instead of reusing a stale one.
func recipe() string {
	return strings.Join([]string{"rev=2", "suite=" + Suite, "variant=minbase",
		"include=" + strings.Join(Includes, ",")}, "\n")
}

// RootfsPath is where the rootfs for the current recipe is cached.
func RootfsPath() string {
	sum := sha256.Sum256([]byte(recipe()))
	return filepath.Join(CacheDir, "rootfs-"+Suite+"-"+hex.EncodeToString(sum[:])[:12])
}

const completeMarker = ".hostlb-rootfs-complete"

// Rootfs returns the cached rootfs directory, building it first if it does
// not exist yet (about 30 s with a nearby mirror). Concurrent callers, also
// in other processes, wait for one build instead of racing.
func Rootfs(ctx context.Context, logf Logf) (string, error) {
	logf = orDiscard(logf)
	dir := RootfsPath()
	if isComplete(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(CacheDir, 0o755); err != nil {
		return "", fmt.Errorf("create rootfs cache: %w", err)
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if isComplete(dir) { // built by whoever held the lock before us
		return dir, nil
	}

	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("remove partial rootfs %s: %w", tmp, err)
	}
	if err := os.RemoveAll(dir); err != nil { // an incomplete leftover
		return "", fmt.Errorf("remove incomplete rootfs %s: %w", dir, err)
	}
	mirror := os.Getenv("HOSTLB_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = DefaultMirror
	}
	logf("nspawn: building rootfs %s (debootstrap %s from %s, once per machine)", dir, Suite, mirror)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(Includes, ","), Suite, tmp, mirror)
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("debootstrap %s: %w\n%s", Suite, err, tail(string(out), 30))
	}
	if err := customise(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, completeMarker), []byte(recipe()+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("mark rootfs complete: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("move rootfs into place: %w", err)
	}
	logf("nspawn: rootfs ready in %s", time.Since(start).Round(100*time.Millisecond))
	return dir, nil
}

// customise turns a fresh debootstrap into a template: no machine identity,
// no downloaded archives.
func customise(root string) error {
	// An empty machine-id makes every boot generate its own, as on first boot
	// of a real machine.
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return fmt.Errorf("reset machine-id: %w", err)
	}
	// debootstrap copied the host's name; without the file the container
	// keeps the machine name nspawn gives it.
	if err := os.Remove(filepath.Join(root, "etc/hostname")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove hostname: %w", err)
	}
	debs, _ := filepath.Glob(filepath.Join(root, "var/cache/apt/archives/*.deb"))
	for _, f := range debs {
		if err := os.Remove(f); err != nil {
			return fmt.Errorf("clean apt cache: %w", err)
		}
	}
	return nil
}

func isComplete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, completeMarker))
	return err == nil
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel
// the wait. The returned function releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
