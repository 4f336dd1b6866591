// Package netlab builds throw-away Ethernet labs out of Linux network
// namespaces, so tests can use the real kernel as ARP/NDP client, router and
// neighbour table.
//
// A [Lab] owns a set of uniquely named namespaces: one hidden "switch"
// namespace holding the bridges, and the ones a test asks for with
// [Lab.Namespace]. [Lab.Connect] plugs a namespace into a bridge with a veth
// pair. Nothing is created in the caller's namespace, so interface names
// inside a namespace can be short and fixed ("eth0"), and deleting the
// namespaces removes everything. Addresses must come from the documentation
// ranges 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32
// (or be IPv6 link-local); anything else fails the test.
//
// Namespace names are "hlbt<pid>-<seq>-<name>"; [New] first removes those
// left behind by test processes that no longer run (a crashed or killed
// earlier run), never those of a live process, so labs of concurrent test
// binaries do not disturb each other.
//
// Commands run inside a namespace with `ip netns exec` ([NS.Run],
// [NS.Command]); Go code runs inside one with [NS.Do], on a locked OS thread
// switched with setns(2). Everything needs root and iproute2; [RequireRoot]
// skips a test with a clear message otherwise.
package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Prefix starts the name of every namespace netlab creates.
const Prefix = "hlbt"

// allowed are the only prefixes a lab may put on an interface (RFC 5737,
// RFC 3849), plus link-local.
var allowed = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("fe80::/10"),
}

// labSeq makes names unique within one process.
var labSeq atomic.Uint64

// RequireRoot skips t unless the process is root and iproute2 is installed
// (fails it when CI is set: see Missing).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "netlab: needs root to create network namespaces (CI runs as root; try `sudo go test`)")
	}
	RequireTools(t, "Debian package iproute2", "ip")
}

// Missing ends t because something it needs is missing (root, a tool, a
// server binary): outside CI it skips with the reason; with the
// environment variable CI set it fails, because CI runs every root test
// and a skip there would pass without testing anything (SPEC §9). Every
// test that needs root or a tool ends through Missing.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI is set, so this is a failure, not a skip", msg)
		return
	}
	t.Skip("skipped: " + msg)
}

// RequireTools calls Missing unless every tool is on PATH; install says
// where they come from ("apt-get install arping ndisc6").
func RequireTools(t testing.TB, install string, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		Missing(t, "needs %s, not installed (%s)", strings.Join(missing, ", "), install)
	}
}

// Lab is a set of namespaces and bridges owned by one test.
type Lab struct {
	t      testing.TB
	prefix string
	sw     *NS

	mu    sync.Mutex // guards nss and ports
	nss   []*NS
	ports int
}

// New removes stale namespaces of dead test processes, then creates an
// empty lab that is torn down when t ends. It skips t when not root.
func New(t testing.TB) *Lab {
	t.Helper()
	RequireRoot(t)
	if err := CleanupStale(); err != nil {
		t.Logf("netlab: cleaning stale namespaces: %v", err)
	}
	l := &Lab{t: t, prefix: fmt.Sprintf("%s%d-%d-", Prefix, os.Getpid(), labSeq.Add(1))}
	t.Cleanup(l.Close)
	l.sw = l.Namespace("sw")
	return l
}

// NS is one network namespace of a lab.
type NS struct {
	Name string // the full name under /run/netns
	lab  *Lab
}

// Namespace creates a namespace with its loopback up. short names it
// within the lab ("node", "client").
func (l *Lab) Namespace(short string) *NS {
	l.t.Helper()
	n := &NS{Name: l.prefix + short, lab: l}
	l.mustIP("netns", "add", n.Name)
	l.mu.Lock()
	l.nss = append(l.nss, n)
	l.mu.Unlock()
	l.mustIP("-n", n.Name, "link", "set", "lo", "up")
	return n
}

// Bridge is a Linux bridge in the lab's switch namespace.
type Bridge struct{ Name string }

// Bridge creates a bridge (name at most 15 bytes) with STP off and
// multicast snooping off, so it floods solicited-node multicast like a
// plain switch without an MLD querier does.
func (l *Lab) Bridge(name string) *Bridge {
	l.t.Helper()
	l.mustIP("-n", l.sw.Name, "link", "add", name, "type", "bridge", "stp_state", "0", "mcast_snooping", "0")
	l.mustIP("-n", l.sw.Name, "link", "set", name, "up")
	return &Bridge{Name: name}
}

// Link is one end of a veth pair inside a namespace.
type Link struct {
	NS    *NS
	Name  string
	Index int
	MAC   net.HardwareAddr
}

// Option changes how Connect sets up an interface before it goes up.
type Option func(l *Lab, ns *NS, ifname string)

// NoIPv6LinkLocal keeps the interface without any IPv6 address, not even
// link-local (addr_gen_mode none).
func NoIPv6LinkLocal() Option {
	return func(l *Lab, ns *NS, ifname string) {
		l.mustIP("-n", ns.Name, "link", "set", ifname, "addrgenmode", "none")
	}
}

// Connect plugs ns into br with a veth pair whose inner end is called
// ifname, gives it addrs (CIDR strings, documentation ranges only; IPv6
// ones without DAD) and brings both ends up.
func (l *Lab) Connect(ns *NS, br *Bridge, ifname string, addrs []string, opts ...Option) *Link {
	l.t.Helper()
	for _, a := range addrs {
		l.checkAddr(a)
	}
	l.mu.Lock()
	l.ports++
	port := fmt.Sprintf("p%d", l.ports)
	l.mu.Unlock()
	l.mustIP("-n", l.sw.Name, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns.Name)
	l.mustIP("-n", l.sw.Name, "link", "set", port, "master", br.Name)
	l.mustIP("-n", l.sw.Name, "link", "set", port, "up")
	for _, o := range opts {
		o(l, ns, ifname)
	}
	for _, a := range addrs {
		args := []string{"-n", ns.Name, "addr", "add", a, "dev", ifname}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		l.mustIP(args...)
	}
	l.mustIP("-n", ns.Name, "link", "set", ifname, "up")
	link := &Link{NS: ns, Name: ifname}
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		link.Index, link.MAC = ifi.Index, ifi.HardwareAddr
		return nil
	}); err != nil {
		l.t.Fatalf("netlab: look up %s in %s: %v", ifname, ns.Name, err)
	}
	return link
}

// AddAddr adds an address (documentation ranges only) to an interface of
// ns, without DAD, and fails the test on error.
func (n *NS) AddAddr(ifname, cidr string) {
	n.lab.t.Helper()
	n.lab.checkAddr(cidr)
	n.lab.mustIP("-n", n.Name, "addr", "add", cidr, "dev", ifname, "nodad")
}

// DelAddr removes an address from an interface of ns.
func (n *NS) DelAddr(ifname, cidr string) {
	n.lab.t.Helper()
	n.lab.mustIP("-n", n.Name, "addr", "del", cidr, "dev", ifname)
}

func (l *Lab) checkAddr(cidr string) {
	l.t.Helper()
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		l.t.Fatalf("netlab: address %q: %v", cidr, err)
	}
	for _, a := range allowed {
		if a.Contains(p.Addr()) {
			return
		}
	}
	l.t.Fatalf("netlab: address %s is outside the documentation ranges a lab may use", cidr)
}

// Command returns a command that runs argv inside n, for callers that need
// a background process or its own output handling.
func (n *NS) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, argv...)...)
}

// Run runs argv inside n and returns its combined output; the error
// includes the output. It gives up after 30 s.
func (n *NS) Run(argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := n.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w\n%s", n.Name, strings.Join(argv, " "), err, out)
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (n *NS) MustRun(argv ...string) string {
	n.lab.t.Helper()
	out, err := n.Run(argv...)
	if err != nil {
		n.lab.t.Fatal(err)
	}
	return out
}

// Sysctl sets a sysctl inside n, e.g. "net.ipv6.neigh.eth0.base_reachable_time_ms".
func (n *NS) Sysctl(key, value string) {
	n.lab.t.Helper()
	n.MustRun("sysctl", "-q", "-w", key+"="+value)
}

// Do runs fn on an OS thread that is inside n, and waits for it. Only fn's
// own goroutine is in n: goroutines it starts are not. Sockets fn opens
// stay in n for their whole life, wherever they are used later.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// A fresh goroutine, so no caller's thread lock is disturbed.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(n.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime then ends it with this
			// goroutine instead of reusing a thread in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("return from netns %s: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Close deletes every namespace of the lab; New registers it with
// t.Cleanup. It is idempotent.
func (l *Lab) Close() {
	l.mu.Lock()
	nss := l.nss
	l.nss = nil
	l.mu.Unlock()
	for i := len(nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", nss[i].Name).CombinedOutput(); err != nil {
			l.t.Errorf("netlab: delete %s: %v: %s", nss[i].Name, err, out)
		}
	}
}

// CleanupStale deletes namespaces named by netlab for a process that no
// longer runs.
func CleanupStale() error {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns list: %w: %s", err, out)
	}
	var errs []error
	for _, name := range staleNames(string(out), processAlive) {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w: %s", name, err, bytes.TrimSpace(out)))
		}
	}
	return errors.Join(errs...)
}

// staleNames picks from `ip netns list` output the netlab namespaces whose
// owning process is not alive.
func staleNames(list string, alive func(pid int) bool) []string {
	var stale []string
	for _, line := range strings.Split(list, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], Prefix) {
			continue
		}
		name := fields[0]
		pidStr, _, ok := strings.Cut(strings.TrimPrefix(name, Prefix), "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 {
			continue
		}
		if !alive(pid) {
			stale = append(stale, name)
		}
	}
	return stale
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (l *Lab) mustIP(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("netlab: ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}
