package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hostlb/hostlb/cmd/internal/manpage"
)

// manPath is the rendered page in the checkout; the packages ship it.
var manPath = filepath.Join("..", "..", "docs", "man", "hostlbctl.8")

// optionItems turns a usage block of options ("  -s SOCKET   text" with
// indented continuation lines) into tagged items.
func optionItems(block string) []manpage.Item {
	var out []manpage.Item
	for _, l := range strings.Split(block, "\n") {
		switch {
		case strings.HasPrefix(l, "  -"):
			tag, text, _ := strings.Cut(strings.TrimSpace(l), "  ")
			out = append(out, manpage.Item{Tag: tag, Text: strings.TrimSpace(text)})
		case strings.HasPrefix(l, "    ") && len(out) > 0:
			out[len(out)-1].Text += " " + strings.TrimSpace(l)
		}
	}
	return out
}

// manPage is hostlbctl(8): the command table and the options of the
// usage, with the sections an operator looks for.
func manPage() manpage.Page {
	var cmds []manpage.Item
	for _, c := range commands {
		cmds = append(cmds, manpage.Item{Tag: c.synopsis(), Text: c.help, Literal: true})
	}
	return manpage.Page{
		Name: "hostlbctl", Section: "8", Title: "inspect and control the hostlb daemon",
		Source: "hostlb", Manual: "System Administration",
		Synopsis: []string{"hostlbctl [-s SOCKET] [-o table|json] COMMAND [ARGS]"},
		Sections: []manpage.Section{
			{Name: "DESCRIPTION", Items: []manpage.Item{
				{Text: `hostlbctl asks hostlbd(8), the hostlb node daemon, what it sees and does: which node of the
gossip ring announces which IP, since when, who had it before and why every other node does
not; the ring's members and their health; BGP sessions; two owners on the wire. It also reloads
the daemon, checks configuration files, writes the daemon's kubeconfig and makes gossip keys.`},
				{Text: `The commands that ask the daemon talk HTTP to its control socket ([control] socket in
/etc/hostlb/hostlb.toml). The answer is the daemon's view as of its last reconcile pass: each
node answers for itself, so two nodes that disagree show it.`},
			}},
			{Name: "COMMANDS", Items: cmds},
			{Name: "OPTIONS", Items: optionItems(globalOptions)},
			{Name: "OUTPUT", Items: []manpage.Item{
				{Text: `Tables are aligned for people: times are shown in the local time zone with their age, measured
against the daemon's clock. Colour is used only when standard output is a terminal, and never
when NO_COLOR is set or TERM is dumb.`},
				{Text: `-o json prints the daemon's answer as it sent it (indented): one JSON object whose "version"
field is the schema version (1), "node" the answering node and "time" its clock. Field names
are stable within a version, arrays are never null, and unknown times are null. The README's
"Control socket API" section documents every field.`},
			}},
			{Name: "EXIT STATUS", Items: []manpage.Item{
				{Tag: "0", Text: "success"},
				{Tag: "1", Text: "an error: the daemon refused the request (an IP it does not serve, a configuration file a reload or check refuses), or a file is invalid"},
				{Tag: "2", Text: "bad usage"},
				{Tag: "3", Text: "the daemon cannot be reached: the message names the socket and the likely cause (no such file: hostlbd is not running or listens elsewhere; permission denied: join group hostlb-admin; connection refused: a socket left by a crashed run)"},
			}},
			{Name: "ENVIRONMENT", Items: []manpage.Item{
				{Tag: "HOSTLB_SOCKET", Text: "the control socket when -s is not given"},
				{Tag: "NO_COLOR", Text: "when set (to anything), no colour"},
			}},
			{Name: "FILES", Items: []manpage.Item{
				{Tag: "/run/hostlb/hostlb.sock", Text: "the control socket: mode 0660, group hostlb-admin"},
				{Tag: "/etc/hostlb/hostlb.toml", Text: "the daemon's configuration"},
				{Tag: "/etc/hostlb/gossip.key", Text: "the gossip keys (root:hostlb 0640)"},
			}},
			{Name: "PERMISSIONS", Items: []manpage.Item{
				{Text: `The control socket belongs to group hostlb-admin; root and its members may use every command
that asks the daemon (reload included). Membership grants no access to the daemon's secrets
(the gossip key, BGP password files, the kubeconfig), which belong to group hostlb. Add an
operator with:`},
				{Text: "usermod -aG hostlb-admin NAME", Literal: true},
			}},
			{Name: "EXAMPLES", Items: []manpage.Item{
				{Text: "Who owns 192.0.2.100, since when, and why not the other nodes:"},
				{Text: "hostlbctl who-owns 192.0.2.100", Literal: true},
				{Text: "Every IP's owner, for a script:"},
				{Text: "hostlbctl -o json vips | jq -r '.vips[] | [.address, (.owners | join(\",\"))] | @tsv'", Literal: true},
				{Text: "Check a draft with your own rights, then the daemon's file as a reload would read it:"},
				{Text: "hostlbctl config check /tmp/hostlb.toml\nhostlbctl config check", Literal: true},
			}},
			{Name: "SEE ALSO", Items: []manpage.Item{
				{Text: "hostlbd(8), systemctl(1), journalctl(1)"},
			}},
		},
	}
}

// TestManPage keeps docs/man/hostlbctl.8 equal to what the command table
// renders (go generate, or go test -run TestManPage -update, rewrites it),
// and man(1) reads it without a warning.
func TestManPage(t *testing.T) {
	got := manPage().Render()
	if *update {
		if err := os.WriteFile(manPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(manPath)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s is stale (go generate ./cmd/hostlbctl rewrites it):\n%s", manPath, diff)
	}
	checkMan(t, manPath)
}

// checkMan renders path with man(1) and fails on its warnings (what
// lintian's groff-message reports).
func checkMan(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath("man"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no man(1) to render the page with (man-db, tests/scripts/install-deps.sh), and CI is set")
		}
		t.Skip("no man(1) to render the page with")
	}
	cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", path)
	cmd.Env = append(os.Environ(), "MANROFFSEQ=", "MANWIDTH=80")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("man -l %s: %v\n%s", path, err, out)
	}
	if strings.Contains(string(out), "warning") || strings.Contains(string(out), "troff:") {
		t.Errorf("man warns about %s:\n%s", path, out)
	}
}
