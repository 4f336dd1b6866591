// Command hostlbctl is the operator's tool for hostlbd: the daemon's live
// state over its control socket (status, members, vips, who-owns, bgp,
// conflicts, reload), configuration checks, key generation, the daemon's
// kubeconfig, shell completions.
//
// The man page docs/man/hostlbctl.8 is rendered from the command table
// (commands.go); regenerate it with go generate.
//
//go:generate go test -run ^TestManPage$ -update .
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/control/api"
	"github.com/hostlb/hostlb/daemon/version"
)

// Exit codes (SPEC §3): 0 ok, 1 error, 2 bad usage, 3 daemon not reachable.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitUnreachable = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, connectAdmin)
	stop()
	os.Exit(code)
}

// env is what a command may know of its surroundings; tests set it.
type env struct {
	stdout, stderr io.Writer
	connect        adminConnector
	getenv         func(string) string
	// tty: stdout is a terminal (colour, unless NO_COLOR is set).
	tty bool
	// loc is the time zone times are shown in.
	loc *time.Location
}

// run executes one command and returns its exit code. connect builds the
// Kubernetes client of `kubeconfig`; tests pass a fake.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, connect adminConnector) int {
	return runEnv(ctx, args, env{stdout: stdout, stderr: stderr, connect: connect, getenv: os.Getenv,
		tty: isTerminal(stdout), loc: time.Local})
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// color says whether to colour: on a terminal, never with NO_COLOR set
// (https://no-color.org) or TERM=dumb.
func (e env) color() bool {
	return e.tty && e.getenv("NO_COLOR") == "" && e.getenv("TERM") != "dumb"
}

// options are the parsed global options.
type options struct {
	socket string
	output string // "table" or "json"
}

// usageError is a command line hostlbctl cannot run (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// parseGlobal takes the global options out of args, wherever they are
// (up to "--"), and returns the rest in order.
func parseGlobal(args []string, o *options) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		switch name {
		case "-s", "--socket", "-o", "--output":
		case "--":
			return append(rest, args[i+1:]...), nil
		default:
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, &usageError{fmt.Sprintf("%s needs a value", name)}
			}
			i++
			val = args[i]
		}
		switch name {
		case "-s", "--socket":
			if val == "" {
				return nil, &usageError{"-s needs a socket path"}
			}
			o.socket = val
		default:
			if val != "table" && val != "json" {
				return nil, &usageError{fmt.Sprintf("-o %q: want table or json", val)}
			}
			o.output = val
		}
	}
	return rest, nil
}

func runEnv(ctx context.Context, args []string, e env) int {
	o := options{socket: api.DefaultSocket, output: "table"}
	if s := e.getenv("HOSTLB_SOCKET"); s != "" {
		o.socket = s
	}
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usageText())
		return exitUsage
	}
	// Global options may come before the command; a command's own
	// arguments (kubeconfig's flags) follow it untouched.
	i := 0
	for i < len(args) {
		name, _, hasVal := strings.Cut(args[i], "=")
		if name != "-s" && name != "--socket" && name != "-o" && name != "--output" {
			break
		}
		n := 2
		if hasVal {
			n = 1
		}
		if _, err := parseGlobal(args[i:min(i+n, len(args))], &o); err != nil {
			return usage(e, err.Error())
		}
		i += n
	}
	if i >= len(args) {
		return usage(e, "no command")
	}
	cmd, rest := args[i], args[i+1:]
	if c := findCommand(cmd); c != nil && cmd != "kubeconfig" && (slices.Contains(rest, "-h") || slices.Contains(rest, "--help")) {
		cmd, rest = "help", []string{cmd} // `hostlbctl vips -h`
	}
	switch cmd {
	case "version", "--version":
		if len(rest) != 0 {
			break
		}
		fmt.Fprintln(e.stdout, version.String("hostlbctl"))
		return exitOK
	case "keygen":
		if len(rest) != 0 {
			break
		}
		return keygen(e.stdout, e.stderr)
	case "kubeconfig":
		return kubeconfigMain(ctx, rest, e.stdout, e.stderr, e.connect)
	case "completion":
		if len(rest) == 1 {
			return completion(e, rest[0])
		}
	case "help", "-h", "--help":
		switch {
		case len(rest) == 0:
			fmt.Fprint(e.stdout, usageText())
			return exitOK
		case len(rest) == 1 && findCommand(rest[0]) != nil:
			c := findCommand(rest[0])
			fmt.Fprint(e.stdout, "usage: hostlbctl "+c.synopsis()+"\n\n"+commandHelp(*c))
			if c.daemon {
				fmt.Fprint(e.stdout, "\n"+globalOptions)
			}
			return exitOK
		}
	case "config":
		rest, err := parseGlobal(rest, &o)
		if err != nil {
			return usage(e, err.Error())
		}
		switch {
		case len(rest) == 2 && rest[0] == "check":
			return configCheck(rest[1], e.stdout, e.stderr)
		case len(rest) == 1 && rest[0] == "check":
			return daemonCommand(ctx, e, o, "config check", nil)
		}
	default:
		c := findCommand(cmd)
		switch {
		case c == nil && strings.HasPrefix(cmd, "-"):
			return usage(e, fmt.Sprintf("unknown option %s", cmd))
		case c == nil || !c.daemon:
			return usage(e, fmt.Sprintf("unknown command %q", cmd))
		}
		rest, err := parseGlobal(rest, &o)
		if err != nil {
			return usage(e, err.Error())
		}
		for _, a := range rest {
			if strings.HasPrefix(a, "-") {
				return usage(e, fmt.Sprintf("unknown option %s", a))
			}
		}
		return daemonCommand(ctx, e, o, cmd, rest)
	}
	return usage(e, fmt.Sprintf("%q", args))
}

// usage reports a bad command line (exit 2).
func usage(e env, msg string) int {
	fmt.Fprintf(e.stderr, "hostlbctl: bad usage: %s\n\n%s", msg, usageText())
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
