package kubeapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Version is the Kubernetes release tools/kube pins; the cache directory is
// named after it. TestVersionMatchesPin keeps it equal to tools/kube/go.mod.
const Version = "v1.37.2"

// EnvBinDir names the environment variable that overrides where the
// binaries are (build-kube.sh builds there too).
const EnvBinDir = "HOSTLB_KUBE_BIN_DIR"

// ErrNoBinaries is wrapped by [Bins] when the binaries are missing or were
// built from another pin than the one in this tree.
var ErrNoBinaries = errors.New("kube control plane binaries missing or stale; run `make kube-bins`")

// The binaries build-kube.sh produces, by file name.
const (
	binAPIServer         = "kube-apiserver"
	binControllerManager = "kube-controller-manager"
	binEtcd              = "etcd"
)

// Bins returns the directory that holds kube-apiserver,
// kube-controller-manager and etcd: $HOSTLB_KUBE_BIN_DIR, else the cache
// directory of tests/scripts/build-kube.sh (see the package doc). The error
// wraps [ErrNoBinaries] and names `make kube-bins` when they are missing, or
// when the cache's stamp does not match tools/kube of the hostlb tree the
// process runs in.
func Bins() (string, error) {
	dir, explicit, err := binDir()
	if err != nil {
		return "", err
	}
	for _, b := range []string{binAPIServer, binControllerManager, binEtcd} {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrNoBinaries, err)
		}
		if fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%w: %s is not executable", ErrNoBinaries, filepath.Join(dir, b))
		}
	}
	if explicit {
		// A directory named on purpose is trusted as it is.
		return dir, nil
	}
	stamp, err := os.ReadFile(filepath.Join(dir, "stamp"))
	if err != nil {
		// build-kube.sh writes the stamp last: no stamp, no finished build.
		return "", fmt.Errorf("%w: %s has no stamp (an unfinished build?): %w", ErrNoBinaries, dir, err)
	}
	if want, where, ok := pinHash(); ok && strings.TrimSpace(string(stamp)) != want {
		return "", fmt.Errorf("%w: %s was built from another pin than %s (stamp %.8s, want %.8s)",
			ErrNoBinaries, dir, where, bytes.TrimSpace(stamp), want)
	}
	return dir, nil
}

// binDir applies the cache convention of build-kube.sh; explicit says the
// directory came from $HOSTLB_KUBE_BIN_DIR.
func binDir() (dir string, explicit bool, err error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		return filepath.Clean(d), true, nil
	}
	if os.Geteuid() == 0 {
		return filepath.Join("/var/cache/hostlb", "kube-"+Version), false, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", false, fmt.Errorf("locate the kube binaries: %w", err)
	}
	return filepath.Join(cache, "hostlb", "kube-"+Version), false, nil
}

// pinHash finds tools/kube of the hostlb tree around the working directory
// (tests run in their package's directory) and returns the hash
// build-kube.sh stamps: sha256 of go.mod followed by go.sum. ok is false
// outside a hostlb tree, where any stamp is accepted.
func pinHash() (hash, where string, ok bool) {
	wd, err := os.Getwd()
	if err != nil {
		return "", "", false
	}
	for d := wd; ; d = filepath.Dir(d) {
		mod := filepath.Join(d, "tools", "kube")
		gomod, err1 := os.ReadFile(filepath.Join(mod, "go.mod"))
		gosum, err2 := os.ReadFile(filepath.Join(mod, "go.sum"))
		if err1 == nil && err2 == nil {
			sum := sha256.Sum256(append(gomod, gosum...))
			return hex.EncodeToString(sum[:]), mod, true
		}
		if filepath.Dir(d) == d {
			return "", "", false
		}
	}
}

// Require skips or fails t unless the control plane can run: it needs root
// (CI runs the tests under tests/ as root) and the binaries of `make
// kube-bins`. Outside CI a missing prerequisite skips with the reason; in CI
// (env CI set) it is a failure, never a skip.
func Require(t testing.TB) {
	t.Helper()
	ci := os.Getenv("CI") != ""
	if os.Geteuid() != 0 {
		if ci {
			t.Fatal("kubeapi: CI must run the tests under tests/ as root")
		}
		t.Skip("kubeapi: skipped, needs root (CI runs as root; try `sudo go test`)")
	}
	if _, err := Bins(); err != nil {
		if ci {
			t.Fatalf("kubeapi: %v", err)
		}
		t.Skipf("kubeapi: skipped: %v", err)
	}
}
