package kubelab

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hostlb/hostlb/tests/netlab"
)

// The hostlbctl binary, built once per process like netlab.Hostlbd.
var ctlBuild struct {
	once sync.Once
	dir  string
	err  error
}

// Hostlbctl builds cmd/hostlbctl from this tree (once per process) and
// returns the binary's path. Call RemoveBinaries from TestMain after m.Run.
func Hostlbctl(tb testing.TB) string {
	tb.Helper()
	ctlBuild.once.Do(func() {
		ctlBuild.dir, ctlBuild.err = os.MkdirTemp("", "kubelab-hostlbctl-")
		if ctlBuild.err != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(ctlBuild.dir, "hostlbctl"),
			"github.com/hostlb/hostlb/cmd/hostlbctl").CombinedOutput()
		if err != nil {
			ctlBuild.err = fmt.Errorf("go build hostlbctl: %w\n%s", err, out)
		}
	})
	if ctlBuild.err != nil {
		tb.Fatal(ctlBuild.err)
	}
	return filepath.Join(ctlBuild.dir, "hostlbctl")
}

// RemoveBinaries deletes the binaries Hostlbctl and netlab.Hostlbd built.
func RemoveBinaries() {
	if ctlBuild.dir != "" {
		_ = os.RemoveAll(ctlBuild.dir)
	}
	netlab.RemoveHostlbd()
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	// The end of a log is enough: read at most its last 256 KiB.
	const maxRead = 256 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxRead {
		_, _ = f.Seek(fi.Size()-maxRead, io.SeekStart)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
