package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hostlb/hostlb/cmd/internal/manpage"
)

var update = flag.Bool("update", false, "rewrite docs/man/hostlbd.8")

var manPath = filepath.Join("..", "..", "docs", "man", "hostlbd.8")

// manPage is hostlbd(8): its flags as -h prints them, and what an
// administrator needs around them.
func manPage(t *testing.T) manpage.Page {
	var out, errb bytes.Buffer
	run([]string{"-h"}, &out, &errb)
	flags := manpage.ParseFlagUsage(errb.String())
	if len(flags) < 3 {
		t.Fatalf("hostlbd -h printed %d flags:\n%s", len(flags), errb.String())
	}
	var opts []manpage.Item
	var syn []string
	for _, f := range flags {
		opts = append(opts, manpage.Item{Tag: "-" + f.Name, Text: f.Help})
		syn = append(syn, "[-"+f.Name+"]")
	}
	return manpage.Page{
		Name: "hostlbd", Section: "8", Title: "announce load-balancer IPs by ARP/NDP or BGP",
		Source: "hostlb", Manual: "System Administration",
		Synopsis: []string{"hostlbd " + strings.Join(syn, " ")},
		Sections: []manpage.Section{
			{Name: "DESCRIPTION", Items: []manpage.Item{
				{Text: `hostlbd is the hostlb node daemon. It gives Kubernetes LoadBalancer Services on bare metal
their IPs, and static VIPs to any set of hosts. One hostlbd runs on every node; the daemons form
an encrypted gossip ring and agree, without a central component, which node announces which IP:
in L2 mode one healthy node answers ARP (IPv4) and NDP (IPv6) for each IP, and a node's loss moves
only its own IPs; in BGP mode every eligible node advertises the IP to its routers, with BFD.`},
				{Text: `It is run by systemd (hostlb.service, Type=notify) as the user hostlb, with only the
capabilities CAP_NET_RAW, CAP_NET_ADMIN and CAP_NET_BIND_SERVICE. It logs to the journal with
structured fields (VIP=, NODE=, PEER=); systemctl status hostlb shows a one-line summary.`},
			}},
			{Name: "OPTIONS", Items: append(opts, manpage.Item{Text: "Options may be given with one dash or two."})},
			{Name: "CONFIGURATION", Items: []manpage.Item{
				{Text: `/etc/hostlb/hostlb.toml, whose every key is documented in the shipped file. Unknown keys,
wrong types and invalid values are errors that name file:line and key, all reported at once.
A node needs only [node] name and a gossip key file (hostlbctl keygen).`},
			}},
			{Name: "SIGNALS", Items: []manpage.Item{
				{Tag: "SIGHUP", Text: "re-read the configuration (systemctl reload hostlb, or hostlbctl reload). A bad file keeps the running configuration and logs why; keys that cannot change live are logged as needing a restart."},
				{Tag: "SIGTERM, SIGINT", Text: "stop gracefully: hand every IP to its next owner, withdraw BGP routes, leave the ring, then exit."},
			}},
			{Name: "CONTROL SOCKET", Items: []manpage.Item{
				{Text: `hostlbd serves its state to hostlbctl(8) on a unix socket ([control] socket, default
/run/hostlb/hostlb.sock; "" turns it off): HTTP with a versioned JSON schema. The socket is
mode 0660 in group hostlb-admin, which grants no access to the daemon's secrets. A socket left
by a crashed run is replaced at start; one another process still serves is an error.`},
			}},
			{Name: "EXIT STATUS", Items: []manpage.Item{
				{Tag: "0", Text: "stopped by a signal after a clean drain, or --version, or a valid --check-config"},
				{Tag: "1", Text: "a runtime failure (a component failed, the control socket could not be created)"},
				{Tag: "2", Text: "bad usage or an invalid configuration; systemd does not restart it (RestartPreventExitStatus=2)"},
			}},
			{Name: "ENVIRONMENT", Items: []manpage.Item{
				{Tag: "NOTIFY_SOCKET", Text: "set by systemd: READY=1 after the first full reconcile, STATUS= lines, STOPPING=1, watchdog pings"},
				{Tag: "GOGC", Text: "the Go garbage collector's target; hostlbd uses 50 unless it is set"},
			}},
			{Name: "FILES", Items: []manpage.Item{
				{Tag: "/etc/hostlb/hostlb.toml", Text: "the configuration (root:hostlb 0640)"},
				{Tag: "/etc/hostlb/gossip.key", Text: "the gossip keys, one base64 key per line (root:hostlb 0640)"},
				{Tag: "/etc/hostlb/kubeconfig", Text: "the Kubernetes credentials (hostlbctl kubeconfig)"},
				{Tag: "/run/hostlb/hostlb.sock", Text: "the control socket"},
				{Tag: "/usr/share/hostlb/manifests/", Text: "the CRDs and RBAC to apply in Kubernetes"},
			}},
			{Name: "SEE ALSO", Items: []manpage.Item{
				{Text: "hostlbctl(8), systemctl(1), journalctl(1), systemd.service(5)"},
			}},
		},
	}
}

// TestManPage keeps docs/man/hostlbd.8 equal to what hostlbd's usage
// renders (go generate, or go test -run TestManPage -update, rewrites it),
// and man(1) reads it without a warning.
func TestManPage(t *testing.T) {
	got := manPage(t).Render()
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
		t.Errorf("%s is stale (go generate ./cmd/hostlbd rewrites it):\n%s", manPath, diff)
	}
	if _, err := exec.LookPath("man"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no man(1) to render the page with (man-db, tests/scripts/install-deps.sh), and CI is set")
		}
		t.Skip("no man(1) to render the page with")
	}
	cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", manPath)
	cmd.Env = append(os.Environ(), "MANWIDTH=80")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "warning") || strings.Contains(string(out), "troff:") {
		t.Errorf("man -l %s: %v\n%s", manPath, err, out)
	}
}
