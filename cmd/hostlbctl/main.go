// Command hostlbctl is the operator's tool for hostlbd: configuration checks,
// key generation, the daemon's kubeconfig and (as the control socket grows)
// the daemon's live state.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/version"
)

// Exit codes (SPEC §3): 0 ok, 1 error, 2 bad usage, 3 daemon not reachable.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const usage = `usage: hostlbctl COMMAND

commands:
  version              print version and commit
  config check FILE    validate a hostlb.toml; every problem with file:line (exit 1 if any)
  keygen               print a new base64 32-byte gossip key:
                         (umask 027; hostlbctl keygen > /etc/hostlb/gossip.key)
                         chgrp hostlb /etc/hostlb/gossip.key
                       The key file holds one key per line ('#' comments allowed): the
                       first encrypts, every one decrypts. Rotate without splitting the
                       ring in three passes; finish each pass on every node before the next:
                         1. add the new key as the second line; systemctl reload hostlb
                         2. move it to the first line;          systemctl reload hostlb
                         3. remove the old key;                 systemctl reload hostlb
                       (hostlbctl keygen >> /etc/hostlb/gossip.key appends one for step 1.)
  kubeconfig --server URL [--secret] [flags]
                       write /etc/hostlb/kubeconfig with a token of the ServiceAccount
                         kube-system/hostlb, requested with your admin kubeconfig
                         (apply /usr/share/hostlb/manifests/ first; -h lists the flags)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, connectAdmin)
	stop()
	os.Exit(code)
}

// run executes one command and returns its exit code. connect builds the
// Kubernetes client of `kubeconfig`; tests pass a fake.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, connect adminConnector) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "version", "--version":
		if len(args) != 1 {
			break
		}
		fmt.Fprintln(stdout, version.String("hostlbctl"))
		return exitOK
	case "keygen":
		if len(args) != 1 {
			break
		}
		return keygen(stdout, stderr)
	case "config":
		if len(args) == 3 && args[1] == "check" {
			return configCheck(args[2], stdout, stderr)
		}
	case "kubeconfig":
		return kubeconfigMain(ctx, args[1:], stdout, stderr, connect)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "hostlbctl: bad usage: %q\n\n%s", args, usage)
	return exitUsage
}

func keygen(stdout, stderr io.Writer) int {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		fmt.Fprintf(stderr, "hostlbctl: keygen: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
	return exitOK
}

func configCheck(path string, stdout, stderr io.Writer) int {
	if _, err := config.Load(path); err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	fmt.Fprintf(stdout, "%s: configuration is valid\n", path)
	return exitOK
}

// connectAdmin loads the admin kubeconfig: path, or else the kubectl rules
// ($KUBECONFIG, a list, else ~/.kube/config).
func connectAdmin(path string) (kubernetes.Interface, []byte, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	where := "$KUBECONFIG or ~/.kube/config"
	if path != "" {
		rules.ExplicitPath = path
		where = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("load the admin kubeconfig (%s): %w: pass --admin-kubeconfig, e.g. /etc/kubernetes/admin.conf on a control-plane node", where, err)
	}
	// Bound every request: a wrong address must fail, not hang.
	cfg.Timeout = 30 * time.Second
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			return nil, nil, fmt.Errorf("read the admin kubeconfig's CA: %w", err)
		}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("client for the admin kubeconfig (%s): %w", where, err)
	}
	return cs, ca, nil
}
