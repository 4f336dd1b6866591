package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a config file.
type Error struct {
	File string
	// Line and Col are 1-based; 0 when the problem has no place in the file
	// (a default that does not work on this host, an unreadable file).
	Line, Col int
	// Key is the dotted path of the offending key, e.g. "gossip.bind" or
	// "vip[1].addresses[0]"; "" for syntax errors.
	Key string
	Msg string

	err error // underlying cause, for errors.Is (e.g. fs.ErrNotExist)
}

// Error formats e as "file:line:col: key: msg", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	loc := e.File
	if e.Line > 0 {
		if loc != "" {
			loc += ":"
		}
		loc += fmt.Sprint(e.Line)
		if e.Col > 0 {
			loc += fmt.Sprintf(":%d", e.Col)
		}
	}
	if loc != "" {
		b.WriteString(loc)
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.err }

// Errors is every problem found in one file, sorted by line. Load and Parse
// return it as their error; both errors.As(err, &errs) with errs of type
// Errors or *Errors work.
type Errors []*Error

// Error lists the problems one per line.
func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, err := range e {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each *Error to errors.Is and errors.As.
func (e Errors) Unwrap() []error {
	out := make([]error, len(e))
	for i, err := range e {
		out[i] = err
	}
	return out
}

// As lets errors.As fill a **Errors target as well as an *Errors one.
func (e Errors) As(target any) bool {
	if p, ok := target.(**Errors); ok {
		c := e
		*p = &c
		return true
	}
	return false
}

// sort orders by position; problems without a position come first, as they
// concern the file as a whole. The sort is stable so that errors found at the
// same place keep the order in which they were found.
func (e Errors) sort() {
	sort.SliceStable(e, func(i, j int) bool {
		if e[i].Line != e[j].Line {
			return e[i].Line < e[j].Line
		}
		return e[i].Col < e[j].Col
	})
}
