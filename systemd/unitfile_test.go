package systemd

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hostlb/hostlb/tests/netlab"
)

// The files this package ships; tests run in the package directory.
const (
	unitFile     = "hostlb.service"
	sysusersFile = "hostlb.sysusers"
	tmpfilesFile = "hostlb.tmpfiles"
)

// maxExposure is SPEC §8's bound on `systemd-analyze security`.
const maxExposure = 2.0

// requireTool returns the path of a systemd tool, failing (not skipping)
// when it is missing: these checks are the proof the unit is hardened.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (%v): install the Debian package `systemd` (apt-get install systemd); CI installs it", name, err)
	}
	return p
}

func absPath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var exposureRE = regexp.MustCompile(`Overall exposure level for hostlb\.service: (\d+(?:\.\d+)?)`)

func TestUnitSecurityExposure(t *testing.T) {
	sa := requireTool(t, "systemd-analyze")
	out, err := run(t, sa, "security", "--offline=yes", "--threshold=20", "--no-pager", absPath(t, unitFile))
	if err != nil {
		t.Errorf("systemd-analyze security --offline=yes --threshold=20: %v (exposure over 2.0?)", err)
	}
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in output:\n%s", out)
	}
	exposure, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	if exposure > maxExposure {
		t.Errorf("exposure %.1f > %.1f:\n%s", exposure, maxExposure, out)
	}
	t.Logf("systemd-analyze security exposure: %.1f", exposure)
}

// TestUnitVerify runs `systemd-analyze verify`, which also checks that the
// Exec*= binaries exist. hostlbd is not installed where tests run, so it
// verifies a copy of the unit whose commands point at stand-in executables;
// everything else is byte for byte the shipped unit. It works offline: PID 1
// need not be systemd.
func TestUnitVerify(t *testing.T) {
	sa := requireTool(t, "systemd-analyze")
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := strings.NewReplacer(
		"/usr/bin/hostlbd ", standIn(t, dir, "hostlbd")+" ",
		"/bin/kill ", standIn(t, dir, "kill")+" ", // procps, not in minimal CI images
	)
	text := r.Replace(string(unit))
	if strings.Contains(text, "/usr/bin/hostlbd") || strings.Contains(text, "/bin/kill") {
		t.Fatalf("stand-ins did not replace every command:\n%s", text)
	}

	verify := func(body string) string {
		p := filepath.Join(dir, unitFile)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, sa, "verify", "--man=no", "--recursive-errors=no", p)
		if err != nil && out == "" {
			out = err.Error()
		}
		return out
	}
	if out := verify(text); out != "" {
		t.Errorf("systemd-analyze verify %s:\n%s", unitFile, out)
	}
	// The check has teeth: a misspelt directive is reported.
	if out := verify(strings.Replace(text, "NoNewPrivileges=", "NoNewPrivilege=", 1)); !strings.Contains(out, "NoNewPrivilege") {
		t.Errorf("verify did not report a misspelt directive; output:\n%s", out)
	}
}

func standIn(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUnitContract pins the directives SPEC §8 and the daemon depend on,
// which a hardening pass could otherwise quietly change.
func TestUnitContract(t *testing.T) {
	u := parseUnit(t, unitFile)
	want := map[string]string{
		"Unit.Wants":           "network-online.target",
		"Unit.After":           "network-online.target",
		"Service.Type":         "notify",
		"Service.NotifyAccess": "main",
		// "-": a failed check must not count as the start's failure, or
		// Restart=on-failure would retry it (RestartPreventExitStatus=
		// looks only at the main process, which exits 2 on the same file).
		"Service.ExecStartPre": "-/usr/bin/hostlbd --config /etc/hostlb/hostlb.toml --check-config",
		"Service.ExecStart":    "/usr/bin/hostlbd --config /etc/hostlb/hostlb.toml",
		"Service.ExecReload":   "/bin/kill -HUP $MAINPID",
		"Service.Restart":      "on-failure",
		// hostlbd's exit status for a bad config (cmd/hostlbd): not retried.
		"Service.RestartPreventExitStatus": "2",
		// A panic would exit 2 as well; see TestPanicIsRestarted.
		"Service.Environment": "GOTRACEBACK=crash",
		"Service.User":        "hostlb",
		// SPEC §8: the control socket the daemon creates belongs to
		// hostlbctl's group; the secrets are group hostlb's.
		"Service.Group":                "hostlb-admin",
		"Service.SupplementaryGroups":  "hostlb",
		"Service.RuntimeDirectoryMode": "0750",
		"Service.RuntimeDirectory":     "hostlb",
		"Service.UMask":                "0077",
	}
	for k, v := range want {
		if got := u[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want exactly %q", k, got, v)
		}
	}
	for _, k := range []string{"Unit.Documentation", "Service.WatchdogSec", "Service.TimeoutStopSec"} {
		if len(u[k]) == 0 || u[k][0] == "" || u[k][0] == "infinity" {
			t.Errorf("%s = %q, want a bounded value", k, u[k])
		}
	}
	caps := []string{"CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}
	families := []string{"AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_UNIX"}
	for k, want := range map[string][]string{
		"Service.AmbientCapabilities":     caps,
		"Service.CapabilityBoundingSet":   caps,
		"Service.RestrictAddressFamilies": families,
	} {
		if diff := cmp.Diff(want, words(u[k])); diff != "" {
			t.Errorf("%s (-want +got):\n%s", k, diff)
		}
	}
	// Hardening that would break the daemon: it works in the host network
	// namespace, talks to peers anywhere, needs capabilities in the host
	// user namespace and reads /proc/sys/net.
	for k, bad := range map[string]string{
		"Service.PrivateNetwork": "yes", "Service.IPAddressDeny": "",
		"Service.PrivateUsers": "yes", "Service.ProcSubset": "pid",
		"Service.DynamicUser": "yes",
	} {
		if got := u[k]; len(got) > 0 && (bad == "" || slices.Contains(got, bad)) {
			t.Errorf("%s = %q would break hostlbd", k, got)
		}
	}
}

// parseUnit reads a unit file into "Section.Key" → values, in order. It
// knows comments, sections and assignments, which is all ours uses.
func parseUnit(t *testing.T, name string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	u := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s:%d: not an assignment: %q", name, n, line)
			}
			key := section + "." + strings.TrimSpace(k)
			u[key] = append(u[key], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func words(vs []string) []string {
	var w []string
	for _, v := range vs {
		w = append(w, strings.Fields(v)...)
	}
	slices.Sort(w)
	return w
}

var passwdRE = regexp.MustCompile(`(?m)^hostlb:x:(\d+):(\d+):[^:]*:/nonexistent:/usr/sbin/nologin$`)

// TestSysusersTmpfiles applies both files to an empty root with systemd's
// own tools and checks the user, the group and /run/hostlb they create.
func TestSysusersTmpfiles(t *testing.T) {
	sysusers := requireTool(t, "systemd-sysusers")
	tmpfiles := requireTool(t, "systemd-tmpfiles")
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, sysusers, "--root="+root, absPath(t, sysusersFile)); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	m := passwdRE.FindStringSubmatch(string(passwd))
	if m == nil {
		t.Fatalf("no hostlb system user with home /nonexistent and nologin in passwd:\n%s", passwd)
	}
	uid, _ := strconv.Atoi(m[1])
	gid, _ := strconv.Atoi(m[2])
	if uid >= 1000 {
		t.Errorf("hostlb uid %d is not in the system range", uid)
	}
	group, err := os.ReadFile(filepath.Join(root, "etc/group"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^hostlb:x:` + m[2] + `:`).Match(group) {
		t.Errorf("no hostlb group with gid %d:\n%s", gid, group)
	}
	// hostlbctl's group, with the daemon's user in it (SPEC §8): the
	// daemon gives the control socket to it.
	am := regexp.MustCompile(`(?m)^hostlb-admin:x:(\d+):(.*)$`).FindSubmatch(group)
	if am == nil || !slices.Contains(strings.Split(string(am[2]), ","), "hostlb") {
		t.Fatalf("no hostlb-admin group with member hostlb:\n%s", group)
	}
	adminGID, _ := strconv.Atoi(string(am[1]))
	if adminGID >= 1000 || adminGID == gid {
		t.Errorf("hostlb-admin gid %d: want a system group of its own", adminGID)
	}

	if os.Geteuid() != 0 {
		netlab.Missing(t, "the tmpfiles half needs root to chown /run/hostlb; CI runs as root")
	}
	if out, err := run(t, tmpfiles, "--root="+root, "--create", absPath(t, tmpfilesFile)); err != nil {
		t.Fatalf("systemd-tmpfiles --create: %v\n%s", err, out)
	}
	fi, err := os.Stat(filepath.Join(root, "run/hostlb"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o750 || int(st.Uid) != uid || int(st.Gid) != adminGID {
		t.Errorf("/run/hostlb: %v uid %d gid %d, want a 0750 directory of hostlb:hostlb-admin (%d:%d)", fi.Mode(), st.Uid, st.Gid, uid, adminGID)
	}
}

// TestPanicIsRestarted: a Go panic exits with status 2, which the unit's
// RestartPreventExitStatus=2 reserves for a bad config; under the unit's
// GOTRACEBACK=crash it dies of SIGABRT instead, which Restart=on-failure
// restarts.
func TestPanicIsRestarted(t *testing.T) {
	env := parseUnit(t, unitFile)["Service.Environment"]
	crash := func(extra ...string) *exec.ExitError {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(append(os.Environ(), panicEnv+"=1"), extra...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("stand-in did not fail: %v\n%s", err, out)
		}
		return ee
	}
	if ee := crash("GOTRACEBACK=single"); ee.ExitCode() != 2 {
		t.Fatalf("a panic exits %v, want status 2 (the premise of GOTRACEBACK=crash)", ee)
	}
	ws, ok := crash(env...).Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGABRT {
		t.Errorf("with the unit's Environment=%q a panic ends with %v, want SIGABRT (not exit 2, which is never restarted)", env, ws)
	}
}
