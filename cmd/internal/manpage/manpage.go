// Package manpage renders the man pages of hostlbd(8) and hostlbctl(8) as
// roff (man(7) macros) from plain text: the binaries' own usage text and
// a few static sections, kept in their packages' man tests, which compare
// the result with docs/man/*.8 and rewrite it with -update. The packages
// ship docs/man, gzipped by the Makefile.
package manpage

import (
	"bufio"
	"fmt"
	"strings"
)

// Page is one man page.
type Page struct {
	Name    string // hostlbctl
	Section string // 8
	// Title is the NAME line's description: "hostlbctl - <Title>".
	Title string
	// Source and Manual fill .TH's footer and header ("hostlb",
	// "System Administration").
	Source, Manual string
	// Synopsis lines, each starting with the command's name.
	Synopsis []string
	Sections []Section
}

// Section is one section: paragraphs and tagged items, in order.
type Section struct {
	Name  string // DESCRIPTION
	Items []Item
}

// Item is a paragraph (Tag empty) or a tagged paragraph (.TP); with
// Literal, its text is shown line by line as written (.nf/.fi), indented
// when it has no tag.
type Item struct {
	Tag     string
	Text    string
	Literal bool
}

// Render returns p as roff.
func (p Page) Render() string {
	var b strings.Builder
	fmt.Fprintf(&b, ".\\\" Generated from the %s usage text by %s's man test; do not edit.\n", p.Name, p.Name)
	fmt.Fprintf(&b, ".TH %s %s \"\" %q %q\n", strings.ToUpper(escape(p.Name)), p.Section, p.Source, p.Manual)
	b.WriteString(".SH NAME\n")
	fmt.Fprintf(&b, "%s \\- %s\n", escape(p.Name), escape(p.Title))
	b.WriteString(".SH SYNOPSIS\n")
	for i, s := range p.Synopsis {
		if i > 0 {
			b.WriteString(".br\n")
		}
		name, rest, _ := strings.Cut(s, " ")
		fmt.Fprintf(&b, ".B %s\n", escape(name))
		if rest != "" {
			b.WriteString(escape(rest) + "\n")
		}
	}
	for _, sec := range p.Sections {
		fmt.Fprintf(&b, ".SH %s\n", escape(sec.Name))
		prevTagged := false
		for i, it := range sec.Items {
			switch {
			case it.Literal && it.Tag != "":
				fmt.Fprintf(&b, ".TP\n.B %s\n.nf\n", escape(it.Tag))
				b.WriteString(literal(it.Text))
				b.WriteString(".fi\n")
				prevTagged = true
				continue
			case it.Literal:
				b.WriteString(".RS\n.nf\n")
				b.WriteString(literal(it.Text))
				b.WriteString(".fi\n.RE\n")
				prevTagged = false
				continue
			case it.Tag != "":
				b.WriteString(".TP\n")
				fmt.Fprintf(&b, ".B %s\n", escape(it.Tag))
				prevTagged = true
			case i > 0 || prevTagged:
				b.WriteString(".PP\n")
			}
			b.WriteString(fill(it.Text))
		}
	}
	return b.String()
}

// fill is text as filled roff lines: one source line per input line,
// blank lines as paragraph breaks.
func fill(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			b.WriteString(".sp\n")
			continue
		}
		b.WriteString(line(l) + "\n")
	}
	return b.String()
}

// literal is text as no-fill lines.
func literal(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(line(l) + "\n")
	}
	return b.String()
}

// line is one input line escaped, protected against starting a request.
func line(l string) string {
	l = escape(l)
	if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
		l = "\\&" + l
	}
	return l
}

// escape makes text literal in roff: backslashes, and hyphens as \- so
// that options and paths copy and paste as typed.
func escape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// Flag is one flag of a Go flag.FlagSet's usage.
type Flag struct {
	Name string // with its argument: "-config file"
	Help string
}

// ParseFlagUsage reads the flags out of what flag.FlagSet.PrintDefaults
// prints: "  -name arg\n    \thelp (default x)\n" per flag.
func ParseFlagUsage(usage string) []Flag {
	var out []Flag
	sc := bufio.NewScanner(strings.NewReader(usage))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "  -"):
			name, help, _ := strings.Cut(strings.TrimSpace(l), "\t")
			out = append(out, Flag{Name: strings.TrimSpace(name), Help: strings.TrimSpace(help)})
		case strings.HasPrefix(l, "    \t") && len(out) > 0:
			f := &out[len(out)-1]
			f.Help = strings.TrimSpace(f.Help + " " + strings.TrimSpace(l))
		}
	}
	return out
}
