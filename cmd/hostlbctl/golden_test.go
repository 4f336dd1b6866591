package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/control/controltest"
)

var update = flag.Bool("update", false, "rewrite the golden files (testdata/*.golden, docs/man/hostlbctl.8)")

// runFake runs hostlbctl as the tests see it: UTC, no terminal unless tty.
func runFake(t *testing.T, args []string, tty bool, vars map[string]string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runEnv(t.Context(), args, env{stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] },
		tty: tty, loc: time.UTC})
	return out.String(), errb.String(), code
}

// golden compares got with testdata/name.golden, or rewrites it.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

// TestGolden renders every table and every JSON answer of hostlbctl from
// the real control server over a fake daemon (controltest): a busy
// three-node cluster seen from n1, and a lone node that is starting.
func TestGolden(t *testing.T) {
	_, refused := config.Parse("/etc/hostlb/hostlb.toml",
		[]byte("[gossip]\nprofile = \"sometimes\"\ninsecure_plaintext = true\n[kubernetes]\nenabled = false\n[[vip]]\nname = \"web\"\n"))
	cluster := controltest.Serve(t, &controltest.Source{St: controltest.Cluster(),
		ReloadResult: daemon.ReloadResult{Changed: []string{"node.labels", "vip"}, NeedsRestart: []string{"gossip.bind"}},
		CheckResult:  daemon.ReloadResult{Changed: []string{"vip"}}})
	alone := controltest.Serve(t, &controltest.Source{St: controltest.Alone(), ReloadErr: refused, CheckErr: refused})
	for _, tt := range []struct {
		name   string
		socket string
		args   []string
		code   int
	}{
		{"status", cluster, []string{"status"}, exitOK},
		{"status.json", cluster, []string{"-o", "json", "status"}, exitOK},
		{"members", cluster, []string{"members"}, exitOK},
		{"members.json", cluster, []string{"members", "-o", "json"}, exitOK},
		{"vips", cluster, []string{"vips"}, exitOK},
		{"vips.json", cluster, []string{"vips", "-o=json"}, exitOK},
		{"who-owns-moved", cluster, []string{"who-owns", "192.0.2.100"}, exitOK},
		{"who-owns-not-eligible", cluster, []string{"who-owns", "192.0.2.110"}, exitOK},
		{"who-owns-two-announcers", cluster, []string{"who-owns", "192.0.2.102"}, exitOK},
		{"who-owns-nobody", cluster, []string{"who-owns", "203.0.113.5"}, exitOK},
		{"who-owns-bgp", cluster, []string{"who-owns", "198.51.100.10"}, exitOK},
		{"who-owns.json", cluster, []string{"who-owns", "-o", "json", "192.0.2.110"}, exitOK},
		{"who-owns-unknown", cluster, []string{"who-owns", "192.0.2.99"}, exitError},
		{"who-owns-unknown.json", cluster, []string{"-o", "json", "who-owns", "192.0.2.99"}, exitError},
		{"bgp", cluster, []string{"bgp"}, exitOK},
		{"bgp.json", cluster, []string{"bgp", "-o", "json"}, exitOK},
		{"conflicts", cluster, []string{"conflicts"}, exitOK},
		{"conflicts.json", cluster, []string{"conflicts", "-o", "json"}, exitOK},
		{"reload", cluster, []string{"reload"}, exitOK},
		{"reload.json", cluster, []string{"reload", "-o", "json"}, exitOK},
		{"config-check", cluster, []string{"config", "check"}, exitOK},
		{"config-check.json", cluster, []string{"config", "check", "-o", "json"}, exitOK},
		{"alone-status", alone, []string{"status"}, exitOK},
		{"alone-members", alone, []string{"members"}, exitOK},
		{"alone-vips", alone, []string{"vips"}, exitOK},
		{"alone-bgp", alone, []string{"bgp"}, exitOK},
		{"alone-bgp.json", alone, []string{"bgp", "-o", "json"}, exitOK},
		{"alone-conflicts", alone, []string{"conflicts"}, exitOK},
		{"alone-conflicts.json", alone, []string{"conflicts", "-o", "json"}, exitOK},
		{"alone-reload-refused", alone, []string{"reload"}, exitError},
		{"alone-config-check-invalid", alone, []string{"config", "check"}, exitError},
		{"alone-config-check-invalid.json", alone, []string{"config", "check", "-o", "json"}, exitError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runFake(t, append([]string{"-s", tt.socket}, tt.args...), false, nil)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "$ hostlbctl %s\n%s", strings.Join(tt.args, " "), stdout)
			if stderr != "" {
				fmt.Fprintf(&b, "[stderr]\n%s", stderr)
			}
			fmt.Fprintf(&b, "[exit %d]\n", code)
			golden(t, tt.name, b.String())
		})
	}
}

// Colour only on a terminal, never with NO_COLOR or TERM=dumb; the columns
// stay aligned either way.
func TestColour(t *testing.T) {
	socket := controltest.Serve(t, &controltest.Source{St: controltest.Cluster()})
	plainOut, _, _ := runFake(t, []string{"-s", socket, "vips"}, false, nil)
	coloured, _, code := runFake(t, []string{"-s", socket, "vips"}, true, nil)
	if code != exitOK || !strings.Contains(coloured, "\x1b[") {
		t.Fatalf("no colour on a terminal (exit %d):\n%s", code, coloured)
	}
	golden(t, "vips.color", coloured)
	if stripped := ansiRE(coloured); stripped != plainOut {
		t.Errorf("colour changes the text:\n%s\nvs\n%s", stripped, plainOut)
	}
	for _, vars := range []map[string]string{{"NO_COLOR": "1"}, {"TERM": "dumb"}} {
		if out, _, _ := runFake(t, []string{"-s", socket, "vips"}, true, vars); strings.Contains(out, "\x1b[") {
			t.Errorf("colour with %v", vars)
		}
	}
}

// ansiRE removes SGR escape sequences.
func ansiRE(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "\x1b[")
		if i < 0 {
			return b.String() + s
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], 'm')
		s = s[i+j+1:]
	}
}

// A daemon that cannot be reached is exit 3, with the socket and the likely
// cause; bad usage is exit 2 and never dials.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "hostlb.sock")
	for _, tt := range []struct {
		args []string
		vars map[string]string
		code int
		want []string
	}{
		{[]string{"-s", missing, "status"}, nil, exitUnreachable, []string{missing, "no such file", "hostlbd is not running"}},
		{[]string{"vips"}, map[string]string{"HOSTLB_SOCKET": missing}, exitUnreachable, []string{missing}},
		{[]string{"config", "check", "-s", missing}, nil, exitUnreachable, []string{missing}},
		{[]string{"-s", missing, "who-owns"}, nil, exitUsage, []string{"who-owns takes 1 argument"}},
		{[]string{"-s", missing, "who-owns", "web"}, nil, exitUsage, []string{`"web": not an IP address`}},
		{[]string{"-s", missing, "vips", "extra"}, nil, exitUsage, []string{"vips takes 0 argument"}},
		{[]string{"-s", missing, "vips", "-x"}, nil, exitUsage, []string{"unknown option -x"}},
		{[]string{"-x", "vips"}, nil, exitUsage, []string{"unknown option -x"}},
		{[]string{"-o", "yaml", "vips"}, nil, exitUsage, []string{`-o "yaml": want table or json`}},
		{[]string{"vips", "-s"}, nil, exitUsage, []string{"-s needs a value"}},
		{[]string{"-s"}, nil, exitUsage, []string{"-s needs a value"}},
		{[]string{"-s", missing}, nil, exitUsage, []string{"no command"}},
		{[]string{"frobnicate"}, nil, exitUsage, []string{`unknown command "frobnicate"`}},
		{[]string{"completion", "tcsh"}, nil, exitUsage, []string{"want bash, zsh or fish"}},
		{[]string{"help", "who-owns"}, nil, exitOK, []string{"usage: hostlbctl who-owns IP", "-s SOCKET"}},
		{[]string{"vips", "-h"}, nil, exitOK, []string{"usage: hostlbctl vips", "-s SOCKET"}},
		{[]string{"config", "--help"}, nil, exitOK, []string{"usage: hostlbctl config check [FILE]"}},
	} {
		stdout, stderr, code := runFake(t, tt.args, false, tt.vars)
		if code != tt.code {
			t.Errorf("%q: exit %d, want %d:\n%s%s", tt.args, code, tt.code, stdout, stderr)
		}
		for _, w := range tt.want {
			if !strings.Contains(stdout+stderr, w) {
				t.Errorf("%q: output lacks %q:\n%s%s", tt.args, w, stdout, stderr)
			}
		}
	}
}

func TestMainRunsOnPipes(t *testing.T) {
	// run (what main calls) must not colour a pipe or a file.
	socket := controltest.Serve(t, &controltest.Source{St: controltest.Cluster()})
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var errb bytes.Buffer
	if code := run(t.Context(), []string{"-s", socket, "status"}, f, &errb, nil); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(f.Name())
	if err != nil || bytes.Contains(b, []byte("\x1b[")) || !bytes.Contains(b, []byte("n1 (hostlbd 1.2.3")) {
		t.Errorf("status into a file: %q %v", b, err)
	}
	if errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}
