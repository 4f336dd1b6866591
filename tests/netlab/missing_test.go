package netlab

import (
	"fmt"
	"strings"
	"testing"
)

// endRecorder is a testing.TB that records how a test would have ended.
type endRecorder struct {
	testing.TB
	fatal, skip string
}

func (r *endRecorder) Helper()                           {}
func (r *endRecorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *endRecorder) Skip(args ...any)                  { r.skip = fmt.Sprint(args...) }

func TestMissingFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "true")
	r := &endRecorder{TB: t}
	Missing(r, "needs %s", "arping")
	if !strings.Contains(r.fatal, "needs arping") || !strings.Contains(r.fatal, "CI is set") || r.skip != "" {
		t.Errorf("with CI set: fatal %q, skip %q; want a failure naming the tool", r.fatal, r.skip)
	}

	r = &endRecorder{TB: t}
	RequireTools(r, "apt-get install nothing", "hostlb-no-such-tool", "sh")
	if !strings.Contains(r.fatal, "needs hostlb-no-such-tool, not installed (apt-get install nothing)") {
		t.Errorf("RequireTools with CI set: fatal %q", r.fatal)
	}
}

func TestMissingSkipsOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	r := &endRecorder{TB: t}
	Missing(r, "needs root")
	if r.skip != "skipped: needs root" || r.fatal != "" {
		t.Errorf("without CI: fatal %q, skip %q; want a skip with the reason", r.fatal, r.skip)
	}
	r = &endRecorder{TB: t}
	RequireTools(r, "", "sh")
	if r.skip != "" || r.fatal != "" {
		t.Errorf("RequireTools with every tool present ended the test: %q %q", r.fatal, r.skip)
	}
}
