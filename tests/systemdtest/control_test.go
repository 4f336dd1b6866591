package systemdtest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hostlb/hostlb/tests/nspawn"
)

// checkControlSocket is the permission model of SPEC §8 in the container,
// with the packaged unit running: a member of hostlb-admin (not root, not
// in group hostlb) uses hostlbctl and cannot read the gossip key; a user
// in neither group gets exit 3 with a message that names the group.
func checkControlSocket(ctx context.Context, t *testing.T, m *nspawn.Machine) {
	t.Helper()
	if out, err := m.Sh(ctx, `useradd --no-create-home --shell /bin/sh alice
usermod -aG hostlb-admin alice
useradd --no-create-home --shell /bin/sh mallory
id alice; id mallory`); err != nil {
		t.Fatalf("create users: %v\n%s", err, out)
	}
	// as runs argv as user with that user's groups (no PAM, no login).
	as := func(user string, argv ...string) (string, string, int) {
		out, err := m.Run(ctx, append([]string{"setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--"}, argv...)...)
		var re *nspawn.RunError
		stderr := ""
		if errors.As(err, &re) {
			stderr = re.Stderr
		}
		return out, stderr, nspawn.ExitCode(err)
	}

	if out, err := m.Run(ctx, "stat", "-c", "%U:%G %a %F %n", "/run/hostlb", "/run/hostlb/hostlb.sock"); err != nil ||
		strings.TrimSpace(out) != "hostlb:hostlb-admin 750 directory /run/hostlb\nhostlb:hostlb-admin 660 socket /run/hostlb/hostlb.sock" {
		t.Errorf("the control socket and its directory:\n%s%v", out, err)
	}
	if out, _ := m.Run(ctx, "id", "-nG", "hostlb"); !strings.Contains(out, "hostlb-admin") {
		t.Errorf("user hostlb is not in hostlb-admin: %s", out)
	}

	out, stderr, code := as("alice", "hostlbctl", "status")
	t.Logf("alice$ hostlbctl status (exit %d)\n%s%s", code, out, stderr)
	if code != 0 || !strings.Contains(out, "nspawn-node") || !strings.Contains(out, "state      ready") {
		t.Errorf("hostlbctl status as a member of hostlb-admin: exit %d\n%s%s", code, out, stderr)
	}
	out, stderr, code = as("alice", "hostlbctl", "vips")
	t.Logf("alice$ hostlbctl vips (exit %d)\n%s%s", code, out, stderr)
	if code != 0 || !strings.Contains(out, "192.0.2.10") || !strings.Contains(out, "nspawn-node") {
		t.Errorf("hostlbctl vips as a member of hostlb-admin: exit %d\n%s%s", code, out, stderr)
	}
	// The daemon checks its own file with its rights; alice cannot read
	// the file, and learns only that it is valid.
	if out, stderr, code := as("alice", "hostlbctl", "config", "check"); code != 0 || !strings.Contains(out, "is valid") {
		t.Errorf("hostlbctl config check (the daemon's file) as alice: exit %d\n%s%s", code, out, stderr)
	}
	// ...and no secret.
	for _, secret := range []string{"/etc/hostlb/gossip.key", "/etc/hostlb/hostlb.toml"} {
		if out, stderr, code := as("alice", "cat", secret); code == 0 || !strings.Contains(stderr, "Permission denied") {
			t.Errorf("alice (hostlb-admin) reads %s: exit %d\n%s%s", secret, code, out, stderr)
		}
	}

	out, stderr, code = as("mallory", "hostlbctl", "status")
	t.Logf("mallory$ hostlbctl status (exit %d)\n%s%s", code, out, stderr)
	if code != 3 || !strings.Contains(stderr, "/run/hostlb/hostlb.sock") || !strings.Contains(stderr, "hostlb-admin") ||
		!strings.Contains(stderr, "permission denied") {
		t.Errorf("hostlbctl status as a user in neither group: exit %d, want 3 naming the socket and hostlb-admin\n%s%s", code, out, stderr)
	}
}

// checkControlSocketGone: with the daemon stopped, a member of hostlb-admin
// is told it is not running (exit 3), not that it lacks permission.
func checkControlSocketGone(ctx context.Context, t *testing.T, m *nspawn.Machine) {
	t.Helper()
	out, err := m.Run(ctx, "setpriv", "--reuid=alice", "--regid=alice", "--init-groups", "--", "hostlbctl", "status")
	var re *nspawn.RunError
	if !errors.As(err, &re) || nspawn.ExitCode(err) != 3 || !strings.Contains(re.Stderr, "hostlbd is not running") {
		t.Errorf("hostlbctl status with hostlbd stopped: %v\n%s", err, out)
	}
}
