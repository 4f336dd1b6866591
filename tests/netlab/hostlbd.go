package netlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The hostlbd binary the lab tests run, built once per test process.
var build struct {
	once sync.Once
	dir  string
	err  error
}

// Hostlbd builds cmd/hostlbd from this tree (once per process) and returns
// the binary's path. Call RemoveHostlbd from TestMain after m.Run.
func Hostlbd(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "netlab-hostlbd-")
		if build.err != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(build.dir, "hostlbd"),
			"github.com/hostlb/hostlb/cmd/hostlbd").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build hostlbd: %w\n%s", err, out)
		}
	})
	if build.err != nil {
		tb.Fatal(build.err)
	}
	return filepath.Join(build.dir, "hostlbd")
}

// The hostlbctl binary the lab tests run, built once per test process
// beside hostlbd.
var buildCtl struct {
	once sync.Once
	err  error
}

// Hostlbctl builds cmd/hostlbctl from this tree (once per process, in
// Hostlbd's directory) and returns the binary's path. RemoveHostlbd
// removes it too.
func Hostlbctl(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Dir(Hostlbd(tb))
	buildCtl.once.Do(func() {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "hostlbctl"),
			"github.com/hostlb/hostlb/cmd/hostlbctl").CombinedOutput()
		if err != nil {
			buildCtl.err = fmt.Errorf("go build hostlbctl: %w\n%s", err, out)
		}
	})
	if buildCtl.err != nil {
		tb.Fatal(buildCtl.err)
	}
	return filepath.Join(dir, "hostlbctl")
}

// RemoveHostlbd deletes the binaries Hostlbd and Hostlbctl built, if any.
func RemoveHostlbd() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}
