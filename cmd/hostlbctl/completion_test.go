package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hostlb/hostlb/daemon/control/controltest"
)

// The test binary doubles as hostlbctl, so the completion scripts can run
// the real command for who-owns.
func TestMain(m *testing.M) {
	if os.Getenv("HOSTLBCTL_TEST_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// hostlbctlOnPath puts a hostlbctl that runs this test binary's main first
// on PATH for the shells the test starts.
func hostlbctlOnPath(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\nHOSTLBCTL_TEST_AS_MAIN=1 exec " + exe + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "hostlbctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
}

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	out, stderr, code := runFake(t, []string{"completion", shell}, false, nil)
	if code != exitOK || stderr != "" {
		t.Fatalf("completion %s: exit %d: %s", shell, code, stderr)
	}
	return out
}

// The bash completion completes commands, options, arguments, files and,
// for who-owns, the IPs the daemon at -s serves.
func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no bash, and CI is set")
		}
		t.Skip("no bash")
	}
	script := filepath.Join(t.TempDir(), "hostlbctl.bash")
	if err := os.WriteFile(script, []byte(completionScript(t, "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	socket := controltest.Serve(t, &controltest.Source{St: controltest.Cluster()})
	environ := hostlbctlOnPath(t)
	complete := func(words ...string) string {
		t.Helper()
		// COMP_WORDS as bash splits the line; the last word is the one
		// being completed.
		line := "hostlbctl " + strings.Join(words, " ")
		var quoted []string
		for _, w := range append([]string{"hostlbctl"}, words...) {
			quoted = append(quoted, "'"+w+"'")
		}
		prog := "source " + script + "\n" +
			"COMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" + strconv.Itoa(len(words)) + "; COMP_LINE='" + line + "'\n" +
			"_hostlbctl; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", prog)
		cmd.Env = environ
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("complete %q: %v\n%s", words, err, out)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}
	for _, tt := range []struct {
		words []string
		want  string
	}{
		{[]string{"wh"}, "who-owns"},
		{[]string{"co"}, "conflicts config completion"},
		{[]string{"-o", ""}, "table json"},
		{[]string{"-o", "json", "b"}, "bgp"},
		{[]string{"config", ""}, "check"},
		{[]string{"completion", "f"}, "fish"},
		{[]string{"help", "re"}, "reload"},
		{[]string{"kubeconfig", "--se"}, "--server --secret --service-account"},
		{[]string{"vips", "-"}, "-s -o -h"},
		{[]string{"-s", socket, "who-owns", "192.0.2.1"}, "192.0.2.100 192.0.2.101 192.0.2.102 192.0.2.110"},
		{[]string{"who-owns", "-s", socket, "2001"}, "2001:db8::100"},
	} {
		if got := complete(tt.words...); got != tt.want {
			t.Errorf("hostlbctl %s<TAB>: %q, want %q", strings.Join(tt.words, " "), got, tt.want)
		}
	}
}

// zsh and fish check their scripts' syntax (make deps installs them); the
// tables they are built from are the bash script's.
func TestZshFishCompletionSyntax(t *testing.T) {
	for _, sh := range []string{"zsh", "fish"} {
		script := completionScript(t, sh)
		for _, c := range commands {
			if !strings.Contains(script, c.name) {
				t.Errorf("%s completion lacks %s", sh, c.name)
			}
		}
		if _, err := exec.LookPath(sh); err != nil {
			// make deps installs both; CI must check them.
			if os.Getenv("CI") != "" {
				t.Errorf("%s not installed (tests/scripts/install-deps.sh), and CI is set", sh)
			} else {
				t.Logf("%s not installed: its script's syntax is not checked", sh)
			}
			continue
		}
		path := filepath.Join(t.TempDir(), "hostlbctl."+sh)
		if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sh, "-n", path).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh, err, out)
		}
	}
}

// The fish completion, run by fish itself where installed.
func TestFishCompletion(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("fish not installed (tests/scripts/install-deps.sh), and CI is set")
		}
		t.Skip("fish not installed")
	}
	script := filepath.Join(t.TempDir(), "hostlbctl.fish")
	if err := os.WriteFile(script, []byte(completionScript(t, "fish")), 0o644); err != nil {
		t.Fatal(err)
	}
	socket := controltest.Serve(t, &controltest.Source{St: controltest.Cluster()})
	environ := hostlbctlOnPath(t)
	for _, tt := range []struct{ line, want string }{
		{"hostlbctl wh", "who-owns"},
		{"hostlbctl completion ", "bash fish zsh"},
		{"hostlbctl -o ", "json table"},
		{"hostlbctl -s " + socket + " who-owns 192.0.2.10", "192.0.2.100 192.0.2.101 192.0.2.102"},
	} {
		cmd := exec.Command("fish", "--no-config", "-c", "source "+script+"; complete -C '"+tt.line+"'")
		cmd.Env = append(slices.Clone(environ), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tt.line, err, out)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			got = append(got, strings.SplitN(l, "\t", 2)[0])
		}
		slices.Sort(got)
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("%q<TAB>: %q, want %q", tt.line, g, tt.want)
		}
	}
}
