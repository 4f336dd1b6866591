package main

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// style is a cell's colour on a terminal.
type style int

const (
	plain style = iota
	good        // green: alive, established, ready
	warn        // yellow: dead, suspect, down sessions
	bad         // red: conflicts, no owner, refused
	head        // bold: table headers
	dim         // faint: "-" and footnotes
)

var ansi = map[style]string{good: "32", warn: "33", bad: "31", head: "1", dim: "2"}

// cell is one table cell.
type cell struct {
	text string
	st   style
}

func c(text string) cell            { return cell{text: text} }
func cs(text string, st style) cell { return cell{text: text, st: st} }
func orDash(text string) cell {
	if text == "" {
		return cs("-", dim)
	}
	return c(text)
}

// view renders one answer: where to, whether in colour, and the clock and
// time zone ages and times are shown in.
type view struct {
	w     io.Writer
	color bool
	loc   *time.Location
	now   time.Time // the daemon's clock (api.Header.Time)
}

// paint is text in st's colour when colouring.
func (v *view) paint(text string, st style) string {
	if !v.color || st == plain || text == "" {
		return text
	}
	return "\x1b[" + ansi[st] + "m" + text + "\x1b[0m"
}

func (v *view) printf(format string, args ...any) { fmt.Fprintf(v.w, format, args...) }

// table writes rows aligned in columns two spaces apart, the first row as
// the header. text/tabwriter cannot align coloured text (it counts the
// escape sequences), so widths are counted on the plain text.
func (v *view) table(header []string, rows [][]cell) {
	all := make([][]cell, 0, len(rows)+1)
	if header != nil {
		h := make([]cell, len(header))
		for i, s := range header {
			h[i] = cs(s, head)
		}
		all = append(all, h)
	}
	all = append(all, rows...)
	var widths []int
	for _, r := range all {
		for i, cl := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(cl.text))
		}
	}
	var b strings.Builder
	for _, r := range all {
		// Trailing empty cells would leave trailing spaces.
		n := len(r)
		for n > 0 && r[n-1].text == "" {
			n--
		}
		for i, cl := range r[:n] {
			b.WriteString(v.paint(cl.text, cl.st))
			if i < n-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cl.text)+2))
			}
		}
		b.WriteString("\n")
	}
	_, _ = io.WriteString(v.w, b.String())
}

// ago is how long before the daemon's clock t was, in a short human form.
func (v *view) ago(t time.Time) string {
	return human(v.now.Sub(t))
}

// human is d rounded to its two largest units: 450ms, 12s, 3m05s, 2h03m,
// 3d04h.
func human(d time.Duration) string {
	switch {
	case d < 0:
		return "0s" // the clocks disagree; never a negative age
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// when is t for a table: the time of day if it is the daemon's today,
// else the date too, and how long ago; "-" if unknown.
func (v *view) when(t *time.Time) cell {
	if t == nil {
		return cs("-", dim)
	}
	lt, ln := t.In(v.loc), v.now.In(v.loc)
	layout := "15:04:05"
	if lt.YearDay() != ln.YearDay() || lt.Year() != ln.Year() {
		layout = "2006-01-02 15:04"
	}
	return c(lt.Format(layout) + " (" + v.ago(*t) + " ago)")
}

// whenLong is t in full, and how long ago.
func (v *view) whenLong(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.In(v.loc).Format("2006-01-02 15:04:05 MST") + " (" + v.ago(*t) + " ago)"
}

// join lists items, at most limit of them and how many more.
func join(items []string, limit int) string {
	if len(items) > limit && limit > 0 {
		return strings.Join(items[:limit], ", ") + fmt.Sprintf(" +%d more", len(items)-limit)
	}
	return strings.Join(items, ", ")
}

// plural is "1 thing" or "n things".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
