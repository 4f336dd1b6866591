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

// RemoveHostlbd deletes the binary Hostlbd built, if any.
func RemoveHostlbd() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}
