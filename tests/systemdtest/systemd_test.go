package systemdtest

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
	"github.com/hostlb/hostlb/tests/nspawn"
)

const unit = "hostlb.service"

// TestDebUnderSystemd installs, configures, runs, reloads, upgrades, stops
// and purges the hostlb deb in a container booted with systemd, and checks
// each step the way an administrator would: systemctl and journalctl.
func TestDebUnderSystemd(t *testing.T) {
	if err := nspawn.Available(); err != nil {
		netlab.Missing(t, "systemd-nspawn package test: %v", err)
	}
	netlab.RequireTools(t, "apt-get install make dpkg", "make", "dpkg")
	testStart := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}

	// Two packages: the checkout's version and a higher one, for the upgrade.
	pkgs := t.TempDir()
	v1, err := PackageVersion(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	v2 := v1 + "+upgradetest1"
	if !VersionGreater(v2, v1) {
		t.Fatalf("dpkg does not order %s after %s", v2, v1)
	}
	start := time.Now()
	deb1, err := BuildDeb(ctx, root, filepath.Join(pkgs, "v1"), v1)
	if err != nil {
		t.Fatal(err)
	}
	deb2, err := BuildDeb(ctx, root, filepath.Join(pkgs, "v2"), v2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s and %s in %s", filepath.Base(deb1), filepath.Base(deb2), time.Since(start).Round(100*time.Millisecond))
	in := func(deb string) string { // the path inside the container
		rel, _ := filepath.Rel(pkgs, deb)
		return "/mnt/pkgs/" + rel
	}

	start = time.Now()
	m, err := nspawn.Boot(ctx, nspawn.Options{
		Binds: []nspawn.Bind{{Host: pkgs, Container: "/mnt/pkgs", ReadOnly: true}},
		Logf:  t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			status, _ := m.Run(context.Background(), "systemctl", "status", "--no-pager", "--full", unit)
			journal, _ := m.Run(context.Background(), "journalctl", "--no-pager", "-n", "60", "-u", unit)
			t.Logf("systemctl status %s:\n%s\njournalctl -u %s:\n%s", unit, status, unit, journal)
		}
		if err := m.Close(); err != nil {
			t.Errorf("tear down container: %v", err)
		}
	})
	t.Logf("container up in %s (rootfs included)", time.Since(start).Round(10*time.Millisecond))

	run := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := m.Run(ctx, args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	show := func(t *testing.T, props ...string) map[string]string {
		t.Helper()
		p, err := Show(ctx, m, unit, props...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cursor := func(t *testing.T) string {
		t.Helper()
		c, err := Cursor(ctx, m, unit)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	wait := func(t *testing.T, after string, match func(Entry) bool) Entry {
		t.Helper()
		e, err := WaitJournal(ctx, m, unit, after, 15*time.Second, match)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	step := func(name string, f func(t *testing.T)) {
		start := time.Now()
		ok := t.Run(name, f)
		t.Logf("step %s: %s", name, time.Since(start).Round(10*time.Millisecond))
		if !ok {
			t.FailNow()
		}
	}

	configured := Config("nspawn-node", VIP{"web", "192.0.2.10"})
	edited := Config("nspawn-node", VIP{"web", "192.0.2.10"}, VIP{"api", "192.0.2.11"})

	step("install unconfigured", func(t *testing.T) {
		out := run(t, "dpkg", "--install", in(deb1))
		if !strings.Contains(out, "hostlbctl keygen") {
			t.Errorf("postinst does not say what to configure; dpkg printed:\n%s", out)
		}
		run(t, "getent", "passwd", "hostlb")
		if got := strings.TrimSpace(run(t, "stat", "-c", "%U:%G %a %n", "/etc/hostlb", "/etc/hostlb/hostlb.toml")); got !=
			"root:hostlb 750 /etc/hostlb\nroot:hostlb 640 /etc/hostlb/hostlb.toml" {
			t.Errorf("ownership and modes:\n%s", got)
		}
		if got := run(t, "dpkg-query", "--show", "--showformat=${Conffiles}", "hostlb"); !strings.Contains(got, "/etc/hostlb/hostlb.toml") {
			t.Errorf("conffiles = %q, want /etc/hostlb/hostlb.toml", got)
		}
		run(t, "test", "-d", "/run/hostlb") // tmpfiles.d applied
		// sysctl.d applied at once: the kernel stays quiet for local VIPs.
		if got := strings.TrimSpace(run(t, "cat", "/proc/sys/net/ipv4/conf/all/arp_ignore",
			"/proc/sys/net/ipv4/conf/all/arp_announce")); got != "1\n2" {
			t.Errorf("arp_ignore, arp_announce after install = %q, want 1 and 2", got)
		}
		if got := strings.TrimSpace(run(t, "systemctl", "is-enabled", unit)); got != "enabled" {
			t.Errorf("is-enabled = %q, want enabled", got)
		}
		if p := show(t, "ActiveState", "NRestarts"); p["ActiveState"] != "inactive" {
			t.Errorf("after install: ActiveState=%s, want inactive (never start unconfigured)", p["ActiveState"])
		}
	})

	step("start unconfigured fails and says why", func(t *testing.T) {
		c := cursor(t)
		if out, err := m.Run(ctx, "systemctl", "start", unit); err == nil {
			t.Fatalf("systemctl start succeeded without a gossip key:\n%s", out)
		}
		e := wait(t, c, Message("hostlbctl keygen"))
		t.Logf("journal: %s", e["MESSAGE"])
		// Whatever Restart= does with a failed ExecStartPre, leave it stopped.
		run(t, "systemctl", "stop", unit)
		run(t, "systemctl", "reset-failed", unit)
	})

	var pid string
	step("configure and start", func(t *testing.T) {
		if err := Configure(ctx, m, configured); err != nil {
			t.Fatal(err)
		}
		run(t, "systemctl", "start", unit)
		// Type=notify: start returns after READY=1, so the unit is already
		// active (not activating) and has a STATUS= text.
		p := show(t, "Type", "ActiveState", "SubState", "MainPID", "StatusText", "User")
		if p["Type"] != "notify" || p["ActiveState"] != "active" || p["SubState"] != "running" {
			t.Errorf("after start: Type=%s ActiveState=%s SubState=%s, want notify active running", p["Type"], p["ActiveState"], p["SubState"])
		}
		if p["StatusText"] == "" {
			t.Errorf("no STATUS= text from the daemon")
		}
		if p["User"] != "hostlb" {
			t.Errorf("User=%q, want hostlb", p["User"])
		}
		pid = p["MainPID"]
		t.Logf("running: MainPID=%s StatusText=%q", pid, p["StatusText"])
	})

	step("hostlbctl as a member of hostlb-admin, not as anyone", func(t *testing.T) {
		checkControlSocket(ctx, t, m) // control_test.go
	})

	step("metrics, health and readiness on the default address", func(t *testing.T) {
		checkMetricsEndpoint(ctx, t, m) // metrics_test.go
	})

	step("journal has structured fields", func(t *testing.T) {
		started := wait(t, "", Message("hostlbd started"))
		if started["NODE"] != "nspawn-node" || started["VERSION"] == "" {
			t.Errorf("start entry lacks NODE=nspawn-node or VERSION:\n%s", started.Text())
		}
		vip := wait(t, "", func(e Entry) bool { return strings.Contains(e["MESSAGE"], "vip configured") && e["VIP"] == "web" })
		if vip["_SYSTEMD_UNIT"] != unit {
			t.Errorf("vip entry not attributed to %s:\n%s", unit, vip.Text())
		}
		verbose := run(t, "journalctl", "-u", unit, "-o", "verbose", "--no-pager", "--grep", "hostlbd started")
		t.Logf("journalctl -u hostlb -o verbose --grep 'hostlbd started':\n%s", verbose)
	})

	step("reload with a changed config", func(t *testing.T) {
		c := cursor(t)
		if err := WriteFile(ctx, m, "/etc/hostlb/hostlb.toml", edited, "root:hostlb", "0640"); err != nil {
			t.Fatal(err)
		}
		run(t, "systemctl", "reload", unit)
		wait(t, c, Message("config reloaded"))
		p := show(t, "ActiveState", "MainPID")
		if p["ActiveState"] != "active" || p["MainPID"] != pid {
			t.Errorf("after reload: ActiveState=%s MainPID=%s, want active %s", p["ActiveState"], p["MainPID"], pid)
		}
	})

	step("reload with a broken config keeps the old one", func(t *testing.T) {
		before := show(t, "StatusText")["StatusText"]
		c := cursor(t)
		// Valid TOML, invalid value: the daemon must name the line. It also
		// drops a VIP, which must not happen either.
		broken := strings.Replace(configured, "[gossip]\n", "[gossip]\nprofile = \"sometimes\"\n", 1)
		if err := WriteFile(ctx, m, "/etc/hostlb/hostlb.toml", broken, "root:hostlb", "0640"); err != nil {
			t.Fatal(err)
		}
		run(t, "systemctl", "reload", unit)
		e := wait(t, c, Message("reload failed"))
		if e["PRIORITY"] != "3" {
			t.Errorf("reload failure logged at PRIORITY=%s, want 3 (error)", e["PRIORITY"])
		}
		if !regexp.MustCompile(`hostlb\.toml:\d+`).MatchString(e.Text()) {
			t.Errorf("reload failure does not name file:line:\n%s", e.Text())
		}
		t.Logf("journal: %s", strings.ReplaceAll(strings.TrimSpace(e.Text()), "\n", " | "))
		p := show(t, "ActiveState", "MainPID", "StatusText")
		if p["ActiveState"] != "active" || p["MainPID"] != pid {
			t.Errorf("after a broken reload: ActiveState=%s MainPID=%s, want active %s", p["ActiveState"], p["MainPID"], pid)
		}
		// The status keeps describing the edited config (2 VIPs), if it
		// counts VIPs at all.
		if vips := regexp.MustCompile(`\d+ static VIPs`).FindString(before); !strings.Contains(p["StatusText"], vips) {
			t.Errorf("a broken reload changed the daemon's status from %q to %q", before, p["StatusText"])
		}
		t.Logf("status after the broken reload: %q", p["StatusText"])
		// Put the edit back; a reload works again.
		c = cursor(t)
		if err := WriteFile(ctx, m, "/etc/hostlb/hostlb.toml", edited, "root:hostlb", "0640"); err != nil {
			t.Fatal(err)
		}
		run(t, "systemctl", "reload", unit)
		wait(t, c, Message("config reloaded"))
	})

	step("upgrade keeps the edited config and restarts", func(t *testing.T) {
		out := run(t, "dpkg", "--install", in(deb2))
		if got := run(t, "cat", "/etc/hostlb/hostlb.toml"); got != edited {
			t.Errorf("upgrade changed the edited hostlb.toml; dpkg said:\n%s\nfile now:\n%s", out, got)
		}
		if got := run(t, "dpkg-query", "--show", "--showformat=${Version}", "hostlb"); got != v2 {
			t.Errorf("installed version %q, want %q", got, v2)
		}
		p := show(t, "ActiveState", "MainPID")
		if p["ActiveState"] != "active" {
			t.Errorf("after upgrade: ActiveState=%s, want active", p["ActiveState"])
		}
		if p["MainPID"] == pid {
			t.Errorf("after upgrade: MainPID still %s; try-restart should have restarted the running daemon", pid)
		}
	})

	step("stop", func(t *testing.T) {
		run(t, "systemctl", "stop", unit)
		p := show(t, "ActiveState", "Result", "ExecMainStatus")
		if p["ActiveState"] != "inactive" || p["Result"] != "success" || p["ExecMainStatus"] != "0" {
			t.Errorf("after stop: ActiveState=%s Result=%s ExecMainStatus=%s, want inactive success 0",
				p["ActiveState"], p["Result"], p["ExecMainStatus"])
		}
		checkControlSocketGone(ctx, t, m)
	})

	step("reinstall while stopped does not start", func(t *testing.T) {
		run(t, "dpkg", "--install", in(deb2))
		if p := show(t, "ActiveState"); p["ActiveState"] != "inactive" {
			t.Errorf("after reinstall of a stopped daemon: ActiveState=%s, want inactive", p["ActiveState"])
		}
	})

	step("purge leaves no unit", func(t *testing.T) {
		run(t, "dpkg", "--purge", "hostlb")
		if out, _ := m.Run(ctx, "systemctl", "list-unit-files", "--no-legend", unit); strings.TrimSpace(out) != "" {
			t.Errorf("unit still known after purge: %s", out)
		}
		if out, err := m.Run(ctx, "systemctl", "cat", unit); err == nil {
			t.Errorf("systemctl cat %s still works after purge:\n%s", unit, out)
		}
		if out, _ := m.Sh(ctx, "find /etc/systemd /usr/lib/systemd /lib/systemd -name 'hostlb*'; ls -d /etc/hostlb 2>/dev/null || true"); strings.TrimSpace(out) != "" {
			t.Errorf("left behind after purge:\n%s", out)
		}
		if _, err := m.Run(ctx, "getent", "passwd", "hostlb"); err == nil {
			t.Logf("user hostlb kept after purge (Debian policy: files it owned may remain)")
		}
	})
	t.Logf("whole test: %s", time.Since(testStart).Round(100*time.Millisecond))
}

// TestDebWithoutRunningSystemd installs and purges the deb where systemd is
// installed but not running (a chroot, a container build): the maintainer
// scripts must still create the user, enable the unit and clean up, and
// must not try to talk to systemd.
func TestDebWithoutRunningSystemd(t *testing.T) {
	if err := nspawn.Available(); err != nil {
		netlab.Missing(t, "systemd-nspawn package test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	version, err := PackageVersion(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	pkgs := t.TempDir()
	deb, err := BuildDeb(ctx, root, pkgs, version)
	if err != nil {
		t.Fatal(err)
	}
	script := `set -e
test ! -d /run/systemd/system
dpkg --install /mnt/pkgs/` + filepath.Base(deb) + `
getent passwd hostlb
stat -c '%U:%G %a %n' /etc/hostlb /etc/hostlb/hostlb.toml
test -L /etc/systemd/system/multi-user.target.wants/hostlb.service
dpkg --purge hostlb
test ! -e /etc/hostlb
test ! -e /etc/systemd/system/multi-user.target.wants/hostlb.service
echo ALL-OK`
	out, err := nspawn.Exec(ctx, nspawn.Options{
		Binds: []nspawn.Bind{{Host: pkgs, Container: "/mnt/pkgs", ReadOnly: true}},
		Logf:  t.Logf,
	}, "sh", "-c", script)
	t.Logf("output:\n%s", out)
	if err != nil || !strings.Contains(out, "ALL-OK") {
		t.Fatalf("install and purge without a running systemd: %v", err)
	}
	if !strings.Contains(out, "root:hostlb 750 /etc/hostlb\nroot:hostlb 640 /etc/hostlb/hostlb.toml") {
		t.Errorf("ownership and modes of /etc/hostlb wrong")
	}
}
