// Package packagetest checks the deb and rpm that `make packages` builds with
// the distributions' own tools: dpkg-deb, lintian and rpm.
package packagetest

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hostlb/hostlb/tests/netlab"
	"github.com/hostlb/hostlb/tests/systemdtest"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	netlab.RequireTools(t, "apt-get install dpkg-dev lintian rpm make", tools...)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPackages(t *testing.T) {
	need(t, "make", "dpkg-deb", "dpkg", "lintian", "rpm")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root, err := systemdtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	version, err := systemdtest.PackageVersion(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	start := time.Now()
	if _, err := systemdtest.Make(ctx, root, "packages", "DIST="+dist, "BIN="+filepath.Join(dist, "bin"), "PKG_VERSION="+version); err != nil {
		t.Fatal(err)
	}
	t.Logf("make packages: %s", time.Since(start).Round(100*time.Millisecond))
	deb := filepath.Join(dist, "hostlb_"+version+"_amd64.deb")
	rpm := filepath.Join(dist, "hostlb-"+version+".x86_64.rpm")

	t.Run("version", func(t *testing.T) {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "--field", deb, "Version")); got != version {
			t.Errorf("deb Version = %q, want %q", got, version)
		}
		if got := run(t, "rpm", "-qp", "--queryformat", "%{VERSION}", rpm); got != version {
			t.Errorf("rpm VERSION = %q, want %q", got, version)
		}
		// A later build (a longer string of the same form) is an upgrade for both.
		later := version + ".1"
		if !systemdtest.VersionGreater(later, version) {
			t.Errorf("dpkg does not order %s after %s", later, version)
		}
		cmp := run(t, "rpm", "--eval", `%{lua: print(rpm.vercmp("`+later+`", "`+version+`"))}`)
		if strings.TrimSpace(cmp) != "1" {
			t.Errorf("rpm does not order %s after %s (vercmp %s)", later, version, cmp)
		}
	})

	t.Run("deb contents", func(t *testing.T) {
		conffiles := strings.Fields(run(t, "dpkg-deb", "--info", deb, "conffiles"))
		slices.Sort(conffiles)
		if want := []string{"/etc/hostlb/hostlb.toml", "/etc/iproute2/rt_protos.d/hostlb.conf"}; !slices.Equal(conffiles, want) {
			t.Errorf("conffiles = %q, want %q", conffiles, want)
		}
		list := run(t, "dpkg-deb", "--contents", deb)
		for _, want := range []string{
			`-rwxr-xr-x root/root .* \./usr/bin/hostlbd$`,
			`-rwxr-xr-x root/root .* \./usr/bin/hostlbctl$`,
			`-rw-r--r-- root/root .* \./usr/lib/systemd/system/hostlb\.service$`,
			`-rw-r--r-- root/root .* \./usr/lib/sysusers\.d/hostlb\.conf$`,
			`-rw-r--r-- root/root .* \./usr/lib/tmpfiles\.d/hostlb\.conf$`,
			`drwxr-x--- root/hostlb .* \./etc/hostlb/$`,
			`-rw-r----- root/hostlb .* \./etc/hostlb/hostlb\.toml$`,
			`-rw-r--r-- root/root .* \./etc/iproute2/rt_protos\.d/hostlb\.conf$`,
			`drwxr-xr-x root/root .* \./usr/share/hostlb/manifests/$`,
			`-rw-r--r-- root/root .* \./usr/share/hostlb/monitoring/grafana-dashboard\.json$`,
			`-rw-r--r-- root/root .* \./usr/share/hostlb/monitoring/prometheus-alerts\.yaml$`,
			`-rw-r--r-- root/root .* \./usr/share/hostlb/monitoring/README\.md$`,
			`-rw-r--r-- root/root .* \./usr/share/doc/hostlb/copyright$`,
			`-rw-r--r-- root/root .* \./usr/share/doc/hostlb/changelog\.gz$`,
			`-rw-r--r-- root/root .* \./usr/share/man/man8/hostlbd\.8\.gz$`,
			`-rw-r--r-- root/root .* \./usr/share/man/man8/hostlbctl\.8\.gz$`,
			`-rw-r--r-- root/root .* \./usr/share/bash-completion/completions/hostlbctl$`,
			`-rw-r--r-- root/root .* \./usr/share/zsh/vendor-completions/_hostlbctl$`,
			`-rw-r--r-- root/root .* \./usr/share/fish/vendor_completions\.d/hostlbctl\.fish$`,
		} {
			if !regexp.MustCompile(`(?m)^` + want).MatchString(list) {
				t.Errorf("deb lacks %s; contents:\n%s", want, list)
			}
		}
		for _, script := range []string{"postinst", "prerm", "postrm"} {
			if !strings.Contains(run(t, "dpkg-deb", "--info", deb), script) {
				t.Errorf("deb has no %s", script)
			}
		}
	})

	t.Run("lintian", func(t *testing.T) {
		// The verdict; --show-overrides would make overridden tags fail too.
		out, err := exec.CommandContext(ctx, "lintian", "--fail-on", "error", deb).CombinedOutput()
		if err != nil || regexp.MustCompile(`(?m)^E: `).Match(out) {
			t.Errorf("lintian reports errors (%v):\n%s", err, out)
		}
		// Both binaries have man pages (docs/man), which man reads
		// without a warning.
		for _, tag := range []string{"no-manual-page", "groff-message", "manpage-has-errors-from-man", "bad-whatis-entry"} {
			if strings.Contains(string(out), tag) {
				t.Errorf("lintian reports %s:\n%s", tag, out)
			}
		}
		// The report, with every override and its reason.
		out, _ = exec.CommandContext(ctx, "lintian", "--show-overrides", deb).CombinedOutput()
		t.Logf("lintian --show-overrides:\n%s", out)
	})

	t.Run("rpm contents", func(t *testing.T) {
		flags := run(t, "rpm", "-qp", "--queryformat", "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]", rpm)
		for _, want := range []string{
			`-rwxr-xr-x root:root  /usr/bin/hostlbd`,
			`-rw-r--r-- root:root  /usr/lib/systemd/system/hostlb.service`,
			`-rw-r--r-- root:root  /usr/lib/sysusers.d/hostlb.conf`,
			`-rw-r--r-- root:root  /usr/lib/tmpfiles.d/hostlb.conf`,
			`drwxr-x--- root:hostlb  /etc/hostlb`,
			`-rw-r----- root:hostlb cn /etc/hostlb/hostlb.toml`, // config(noreplace)
			`-rw-r--r-- root:root cn /etc/iproute2/rt_protos.d/hostlb.conf`,
			`-rw-r--r-- root:root  /usr/share/hostlb/monitoring/grafana-dashboard.json`,
			`-rw-r--r-- root:root  /usr/share/hostlb/monitoring/prometheus-alerts.yaml`,
			`-rw-r--r-- root:root d /usr/share/man/man8/hostlbd.8.gz`,
			`-rw-r--r-- root:root d /usr/share/man/man8/hostlbctl.8.gz`,
			`-rw-r--r-- root:root  /usr/share/bash-completion/completions/hostlbctl`,
			`-rw-r--r-- root:root  /usr/share/zsh/site-functions/_hostlbctl`,
			`-rw-r--r-- root:root  /usr/share/fish/vendor_completions.d/hostlbctl.fish`,
		} {
			if !strings.Contains(flags, want+"\n") {
				t.Errorf("rpm lacks %q; files:\n%s", want, flags)
			}
		}
		scripts := run(t, "rpm", "-qp", "--scripts", rpm)
		for _, s := range []string{"preinstall", "postinstall", "preuninstall", "postuninstall"} {
			if !strings.Contains(scripts, s+" scriptlet") {
				t.Errorf("rpm has no %s scriptlet:\n%s", s, scripts)
			}
		}
	})
}

// TestMaintainerScriptsParse runs sh -n on every maintainer script: a syntax
// error would otherwise only show when a user installs the package.
func TestMaintainerScriptsParse(t *testing.T) {
	need(t, "sh")
	root, err := systemdtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	scripts, _ := filepath.Glob(filepath.Join(root, "packaging", "*", "*"))
	n := 0
	for _, s := range scripts {
		if dir := filepath.Base(filepath.Dir(s)); dir != "deb" && dir != "rpm" {
			continue
		}
		n++
		if out, err := exec.Command("sh", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
		}
	}
	if n < 7 {
		t.Errorf("found %d maintainer scripts, want 7 (3 deb, 4 rpm)", n)
	}
}
