// Command demo shows hostlb at work, as root. Three demos:
//
//   - The cluster demo (the default, `make demo`, cluster.go): three
//     hostlbd nodes in network namespaces on one bridge form a gossip ring
//     and spread a 3-address VIP; a client shows which node answers each
//     address, one node crashes, and the client's failover time is printed.
//   - The Kubernetes demo (-kube, `make demo-kube`, kube.go; `make demo`
//     runs it after the cluster demo): a real control plane (tests/kubelab)
//     with hostlb's manifests, three hostlbd nodes in Kubernetes mode, a
//     MetalLoadBalancerClass and a Service asking for 3 IPs: its status as
//     kubectl shows it, who answers each IP, a crash and its failover time,
//     the Service deleted and its IPs silent and back in the pool.
//   - The package demo (-package, `make demo-package`): hostlb the way an
//     administrator meets it: a fresh Debian with systemd (a
//     systemd-nspawn container), the deb installed with dpkg, a gossip key
//     and a node name configured, the daemon started, and `systemctl
//     status` and the journal of the running hostlbd.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hostlb/hostlb/tests/nspawn"
	"github.com/hostlb/hostlb/tests/systemdtest"
)

func main() {
	pkg := flag.Bool("package", false, "run the package demo (systemd container) instead of the cluster demo")
	deb := flag.String("deb", "", "package demo: the hostlb .deb to install (make packages builds it)")
	rootfsOnly := flag.Bool("rootfs-only", false, "package demo: only build the cached container rootfs, then exit")
	keep := flag.Bool("keep", false, "keep the container (package demo) or the lab (cluster and Kubernetes demos) until Ctrl-C, to look around")
	kube := flag.Bool("kube", false, "run the Kubernetes demo (control plane, 3 nodes in Kubernetes mode) instead of the cluster demo")
	hostlbd := flag.String("hostlbd", "", "cluster demo: the hostlbd binary (default: go build it; the Kubernetes demo always builds its own)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	switch {
	case *pkg || *rootfsOnly:
		err = runPackage(ctx, *deb, *rootfsOnly, *keep)
	case *kube:
		err = runKube(ctx, *keep)
	default:
		err = runCluster(ctx, *hostlbd, *keep)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func runPackage(ctx context.Context, deb string, rootfsOnly, keep bool) error {
	if err := nspawn.Available(); err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }
	if rootfsOnly {
		dir, err := nspawn.Rootfs(ctx, logf)
		if err == nil {
			fmt.Println(dir)
		}
		return err
	}
	if deb == "" {
		return errors.New("-deb is required")
	}
	deb, err := filepath.Abs(deb)
	if err != nil {
		return err
	}

	heading("Booting a fresh Debian " + nspawn.Suite + " with systemd (systemd-nspawn, private network)")
	m, err := nspawn.Boot(ctx, nspawn.Options{
		Name:  nspawn.NamePrefix + "demo-" + fmt.Sprint(os.Getpid()),
		Binds: []nspawn.Bind{{Host: filepath.Dir(deb), Container: "/mnt/dist", ReadOnly: true}},
		Logf:  logf,
	})
	if err != nil {
		return err
	}
	defer func() {
		heading("Tearing the container down")
		if err := m.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
		}
	}()
	sh := func(show, script string) error {
		fmt.Printf("\n# %s\n", show)
		out, err := m.Sh(ctx, script)
		fmt.Print(indent(out))
		if err != nil {
			fmt.Print(indent(err.Error() + "\n"))
		}
		return err
	}

	heading("Installing the package")
	inside := "/mnt/dist/" + filepath.Base(deb)
	if err := sh("dpkg -i "+filepath.Base(deb), "dpkg -i "+inside+" 2>&1"); err != nil {
		return err
	}
	_ = sh("systemctl is-enabled hostlb; systemctl is-active hostlb   # enabled, but not started",
		"systemctl is-enabled hostlb; systemctl is-active hostlb || true")

	heading("Configuring: gossip key and node name")
	if err := sh("hostlbctl keygen > /etc/hostlb/gossip.key",
		"umask 027; hostlbctl keygen > /etc/hostlb/gossip.key; chgrp hostlb /etc/hostlb/gossip.key; ls -l /etc/hostlb"); err != nil {
		return err
	}
	config := systemdtest.Config("demo-node", systemdtest.VIP{Name: "web", Address: "192.0.2.10"})
	if err := systemdtest.WriteFile(ctx, m, "/etc/hostlb/hostlb.toml", config, "root:hostlb", "0640"); err != nil {
		return err
	}
	if err := sh("cat /etc/hostlb/hostlb.toml", "cat /etc/hostlb/hostlb.toml"); err != nil {
		return err
	}
	if err := sh("hostlbd --check-config", "hostlbd --config /etc/hostlb/hostlb.toml --check-config 2>&1"); err != nil {
		return err
	}

	heading("Starting hostlbd")
	startErr := sh("systemctl start hostlb", "systemctl start hostlb")
	_ = sh("systemctl status hostlb", "systemctl status --no-pager --full hostlb || true")
	_ = sh("journalctl -u hostlb", "journalctl --no-pager -u hostlb")
	_ = sh("journalctl -u hostlb -o verbose --grep 'vip configured'   # structured fields",
		"journalctl --no-pager -u hostlb -o verbose --grep 'vip configured' || true")
	if startErr != nil {
		return fmt.Errorf("hostlb did not start: %w", startErr)
	}

	if keep {
		heading("The container keeps running; press Ctrl-C to stop it")
		fmt.Printf("    Run commands in it with:\n      nsenter -t %d -a systemctl status hostlb\n", m.Leader())
		<-ctx.Done()
	}
	return nil
}

func heading(s string) {
	fmt.Printf("\n==> %s  [%s]\n", s, time.Now().Format("15:04:05"))
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
