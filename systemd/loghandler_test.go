package systemd

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
)

// stderrStream returns JOURNAL_STREAM as systemd would set it for the
// test's own stderr.
func stderrStream(t *testing.T) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		t.Skipf("stderr is not usable here: %v", err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func TestUnderJournald(t *testing.T) {
	match := stderrStream(t)
	for _, tc := range []struct {
		env  string
		want bool
	}{
		{"", false},
		{match, true},
		{match + "9", false}, // another inode: stderr was redirected
		{"not:numbers", false},
	} {
		t.Setenv("JOURNAL_STREAM", tc.env)
		if got := UnderJournald(); got != tc.want {
			t.Errorf("JOURNAL_STREAM=%q: UnderJournald() = %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestNewLogHandler(t *testing.T) {
	match := stderrStream(t)
	for _, tc := range []struct {
		format, stream string
		want           string // handler type
	}{
		{"auto", "", "*slog.TextHandler"},
		{"", "", "*slog.TextHandler"},
		{"auto", match, "*systemd.journalHandler"},
		{"journal", "", "*systemd.journalHandler"},
		{"json", match, "*slog.JSONHandler"},
		{"text", match, "*slog.TextHandler"},
	} {
		t.Setenv("JOURNAL_STREAM", tc.stream)
		h, err := NewLogHandler(tc.format, slog.LevelInfo, &strings.Builder{})
		if err != nil {
			t.Errorf("format %q: %v", tc.format, err)
			continue
		}
		if got := fmt.Sprintf("%T", h); got != tc.want {
			t.Errorf("format %q, JOURNAL_STREAM=%q: %s, want %s", tc.format, tc.stream, got, tc.want)
		}
	}

	if _, err := NewLogHandler("syslog", slog.LevelInfo, os.Stderr); err == nil || !strings.Contains(err.Error(), `"syslog"`) {
		t.Errorf("unknown format: err = %v, want one naming it", err)
	}
}

func TestNewLogHandlerLevelAndWriter(t *testing.T) {
	var out strings.Builder
	h, err := NewLogHandler("json", slog.LevelWarn, &out)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(h)
	log.Info("dropped")
	log.Warn("kept", "vip", "web")
	if s := out.String(); strings.Contains(s, "dropped") || !strings.Contains(s, `"vip":"web"`) {
		t.Errorf("json output %q: want only the warning, with vip", s)
	}
}
