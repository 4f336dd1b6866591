// Package systemdtest installs the hostlb deb in a container that boots a
// real systemd (tests/nspawn) and checks what an administrator sees:
// maintainer scripts, systemctl, the journal. The helpers here are shared
// with the demo (tests/cmd/demo).
package systemdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hostlb/hostlb/tests/nspawn"
)

// RepoRoot finds the checkout's root from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/hostlb/hostlb\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the hostlb checkout (no go.mod of github.com/hostlb/hostlb above the working directory)")
		}
		dir = parent
	}
}

// PackageVersion is the version `make packages` gives the checkout.
func PackageVersion(ctx context.Context, root string) (string, error) {
	out, err := Make(ctx, root, "-s", "print-version")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "PKG_VERSION="); ok && v != "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("make print-version printed no PKG_VERSION:\n%s", out)
}

// BuildDeb runs `make deb` with the given package version into dir and
// returns the path of the .deb. Binaries are built in dir too, so that tests
// running in parallel do not write the same files.
func BuildDeb(ctx context.Context, root, dir, version string) (string, error) {
	if _, err := Make(ctx, root, "deb", "DIST="+dir, "BIN="+filepath.Join(dir, "bin"), "PKG_VERSION="+version); err != nil {
		return "", err
	}
	deb := filepath.Join(dir, "hostlb_"+version+"_amd64.deb")
	if _, err := os.Stat(deb); err != nil {
		return "", fmt.Errorf("make deb did not produce %s: %w", deb, err)
	}
	return deb, nil
}

// Make runs make in the checkout root and returns its output.
func Make(ctx context.Context, root string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "make", append([]string{"-C", root}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("make %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// VersionGreater reports whether dpkg orders a after b.
func VersionGreater(a, b string) bool {
	return exec.Command("dpkg", "--compare-versions", a, "gt", b).Run() == nil
}

// VIP is a static [[vip]] for Config.
type VIP struct {
	Name    string
	Address string
}

// Config is a hostlb.toml for a node alone in a container: static VIPs, no
// Kubernetes, gossip on loopback (the container's only interface).
func Config(node string, vips ...VIP) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# A node alone in a test container: static VIPs, no Kubernetes.
[node]
name = %q

[gossip]
bind = "127.0.0.1:7947"

[kubernetes]
enabled = false
`, node)
	for _, v := range vips {
		fmt.Fprintf(&b, `
[[vip]]
name = %q
mode = "l2"
addresses = [%q]
`, v.Name, v.Address)
	}
	return b.String()
}

// WriteFile writes content to path in the container, with owner and mode.
func WriteFile(ctx context.Context, m *nspawn.Machine, path, content, owner, mode string) error {
	script := fmt.Sprintf("cat > %s && chown %s %s && chmod %s %s", path, owner, path, mode, path)
	_, err := m.RunInput(ctx, strings.NewReader(content), "sh", "-ec", script)
	return err
}

// Configure makes an installed hostlb startable: a gossip key from
// `hostlbctl keygen` and the given config.
func Configure(ctx context.Context, m *nspawn.Machine, config string) error {
	if _, err := m.Sh(ctx, `umask 027
hostlbctl keygen > /etc/hostlb/gossip.key
chgrp hostlb /etc/hostlb/gossip.key`); err != nil {
		return fmt.Errorf("create gossip key: %w", err)
	}
	if err := WriteFile(ctx, m, "/etc/hostlb/hostlb.toml", config, "root:hostlb", "0640"); err != nil {
		return fmt.Errorf("write hostlb.toml: %w", err)
	}
	if out, err := m.Run(ctx, "hostlbd", "--config", "/etc/hostlb/hostlb.toml", "--check-config"); err != nil {
		return fmt.Errorf("hostlbd --check-config: %w\n%s", err, out)
	}
	return nil
}

// Show returns systemctl show properties of a unit.
func Show(ctx context.Context, m *nspawn.Machine, unit string, props ...string) (map[string]string, error) {
	out, err := m.Run(ctx, "systemctl", "show", unit, "--property="+strings.Join(props, ","))
	if err != nil {
		return nil, err
	}
	res := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			res[k] = v
		}
	}
	return res, nil
}

// Entry is one journal entry: its fields with string values (binary fields
// are left out).
type Entry map[string]string

// Text is every field of the entry as KEY=value lines, for searching and
// for error messages.
func (e Entry) Text() string {
	var b strings.Builder
	for k, v := range e {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return b.String()
}

// Journal returns the unit's journal entries after cursor ("" = all).
func Journal(ctx context.Context, m *nspawn.Machine, unit, cursor string) ([]Entry, error) {
	args := []string{"journalctl", "--unit=" + unit, "--output=json", "--no-pager"}
	if cursor != "" {
		args = append(args, "--after-cursor="+cursor)
	}
	out, err := m.Run(ctx, args...)
	if err != nil {
		return nil, err
	}
	var entries []Entry
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			return nil, fmt.Errorf("parse journal entry %q: %w", line, err)
		}
		e := Entry{}
		for k, v := range raw {
			var s string
			if json.Unmarshal(v, &s) == nil {
				e[k] = s
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// Cursor is the position after the unit's last journal entry so far.
func Cursor(ctx context.Context, m *nspawn.Machine, unit string) (string, error) {
	entries, err := Journal(ctx, m, unit, "")
	if err != nil || len(entries) == 0 {
		return "", err
	}
	return entries[len(entries)-1]["__CURSOR"], nil
}

// WaitJournal polls the unit's journal after cursor until an entry matches,
// or the timeout passes (journald writes asynchronously).
func WaitJournal(ctx context.Context, m *nspawn.Machine, unit, cursor string, timeout time.Duration, match func(Entry) bool) (Entry, error) {
	deadline := time.Now().Add(timeout)
	for {
		entries, err := Journal(ctx, m, unit, cursor)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if match(e) {
				return e, nil
			}
		}
		if time.Now().After(deadline) {
			var msgs []string
			for _, e := range entries {
				msgs = append(msgs, e["MESSAGE"])
			}
			return nil, fmt.Errorf("no matching journal entry for %s within %s; messages since the cursor:\n  %s",
				unit, timeout, strings.Join(msgs, "\n  "))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Message matches entries whose MESSAGE contains substr.
func Message(substr string) func(Entry) bool {
	return func(e Entry) bool { return strings.Contains(e["MESSAGE"], substr) }
}
