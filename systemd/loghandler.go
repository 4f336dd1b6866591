package systemd

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/coreos/go-systemd/v22/journal"
)

// NewLogHandler returns the slog handler for the [log] format setting:
//   - "auto" (or ""): the journal handler when UnderJournald, else text;
//   - "journal": the journal handler, falling back to text on stderr for
//     records journald does not take;
//   - "json", "text": slog's JSON or text handler on stderr.
func NewLogHandler(format string, level slog.Leveler, stderr io.Writer) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "", "auto":
		if UnderJournald() {
			return newJournalHandler(level, stderr, journal.Send), nil
		}
		return slog.NewTextHandler(stderr, opts), nil
	case "journal":
		return newJournalHandler(level, stderr, journal.Send), nil
	case "json":
		return slog.NewJSONHandler(stderr, opts), nil
	case "text":
		return slog.NewTextHandler(stderr, opts), nil
	default:
		return nil, fmt.Errorf("unknown log format %q: want auto, journal, json or text", format)
	}
}

// UnderJournald reports whether stderr is connected to journald, by the
// check systemd documents for upgrading to the native protocol: the
// JOURNAL_STREAM device:inode pair matches stderr's. JOURNAL_STREAM alone
// is not enough: it is inherited by children whose stderr was redirected
// (a shell started from the unit, `hostlbd ... 2>file`), and then the text
// the operator asked for must stay on stderr. A malformed JOURNAL_STREAM or
// an unusable stderr count as "no".
func UnderJournald() bool {
	ok, err := journal.StderrIsJournalStream()
	return err == nil && ok
}
