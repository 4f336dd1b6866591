// Package version holds the build identity of hostlb, stamped at link time
// by the Makefile with -ldflags "-X".
package version

import (
	"fmt"
	"runtime/debug"
)

// Set by the linker; the defaults describe an unstamped development build.
var (
	Version = "0.1.0-dev"
	Commit  = ""
)

// CommitOrUnknown returns the stamped commit, else the VCS revision the Go
// toolchain recorded, else "unknown".
func CommitOrUnknown() string {
	if Commit != "" {
		return Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// String is the one-line identity printed by --version: "<prog> <version> (commit <sha>)".
func String(prog string) string {
	return fmt.Sprintf("%s %s (commit %s)", prog, Version, CommitOrUnknown())
}
