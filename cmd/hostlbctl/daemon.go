package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/hostlb/hostlb/daemon/control/api"
)

// reloadTimeout bounds a reload or a check: the daemon reads the config
// and the files it names, and a reload waits behind one in progress.
const reloadTimeout = 30 * time.Second

// daemonCommand runs a command that asks the control socket, and prints
// the answer as tables or as the daemon's JSON.
func daemonCommand(ctx context.Context, e env, o options, cmd string, args []string) int {
	want := map[string]int{"who-owns": 1}[cmd]
	if len(args) != want {
		return usage(e, fmt.Sprintf("%s takes %d argument(s), got %q", cmd, want, args))
	}
	cl := api.NewClient(o.socket)
	var (
		body []byte
		err  error
		out  any
	)
	switch cmd {
	case "status":
		out = new(api.Status)
		body, err = cl.Get(ctx, api.PathStatus, out)
	case "members":
		out = new(api.Members)
		body, err = cl.Get(ctx, api.PathMembers, out)
	case "vips":
		out = new(api.VIPs)
		body, err = cl.Get(ctx, api.PathVIPs, out)
	case "who-owns":
		a, perr := netip.ParseAddr(args[0])
		if perr != nil || a.Zone() != "" {
			return usage(e, fmt.Sprintf("who-owns %q: not an IP address", args[0]))
		}
		out = new(api.WhoOwns)
		body, err = cl.Get(ctx, api.PathVIPs+"/"+a.Unmap().String(), out)
	case "bgp":
		out = new(api.BGP)
		body, err = cl.Get(ctx, api.PathBGP, out)
	case "conflicts":
		out = new(api.Conflicts)
		body, err = cl.Get(ctx, api.PathConflicts, out)
	case "reload":
		cl.Timeout = reloadTimeout
		out = new(api.Reload)
		body, err = cl.Post(ctx, api.PathReload, out)
	case "config check":
		cl.Timeout = reloadTimeout
		out = new(api.ConfigCheck)
		body, err = cl.Post(ctx, api.PathConfigCheck, out)
	default:
		return usage(e, fmt.Sprintf("unknown command %q", cmd))
	}
	if err != nil {
		return failed(e, o, body, err)
	}
	if o.output == "json" {
		if err := printJSON(e, body); err != nil {
			fmt.Fprintf(e.stderr, "hostlbctl: %v\n", err)
			return exitError
		}
		if cc, ok := out.(*api.ConfigCheck); ok && !cc.Valid {
			return exitError
		}
		return exitOK
	}
	return render(e, out)
}

// failed reports err and returns its exit code: 3 when the daemon cannot
// be reached, else 1. With -o json an error the daemon answered is printed
// as its JSON on stdout too, for scripts.
func failed(e env, o options, body []byte, err error) int {
	var ue *api.UnreachableError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "hostlbctl: %v\n", err)
		return exitUnreachable
	}
	var se *api.StatusError
	if errors.As(err, &se) && o.output == "json" && len(body) > 0 {
		_ = printJSON(e, body)
	}
	fmt.Fprintf(e.stderr, "hostlbctl: %v\n", err)
	return exitError
}

// printJSON prints the daemon's JSON indented, its content untouched.
func printJSON(e env, body []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, bytes.TrimSpace(body), "", "  "); err != nil {
		return fmt.Errorf("the daemon's answer is not JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := e.stdout.Write(b.Bytes())
	return err
}

// render prints an answer as tables.
func render(e env, out any) int {
	newView := func(h api.Header) *view {
		return &view{w: e.stdout, color: e.color(), loc: e.loc, now: h.Time}
	}
	switch a := out.(type) {
	case *api.Status:
		newView(a.Header).status(a)
	case *api.Members:
		newView(a.Header).members(a)
	case *api.VIPs:
		newView(a.Header).vips(a)
	case *api.WhoOwns:
		newView(a.Header).whoOwns(a)
	case *api.BGP:
		newView(a.Header).bgp(a)
	case *api.Conflicts:
		newView(a.Header).conflicts(a)
	case *api.Reload:
		newView(a.Header).reload(a)
	case *api.ConfigCheck:
		if !a.Valid {
			newView(a.Header).configProblems(e, a)
			return exitError
		}
		newView(a.Header).configValid(a)
	}
	return exitOK
}
