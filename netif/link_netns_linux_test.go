package netif

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/hostlb/hostlb/tests/netlab"
)

// Minimal network-namespace lab for this package's root tests. Namespaces
// are named nsPrefix-<pid>-<n>, so a later run can delete what a crashed
// run left behind without touching a running one.

const nsPrefix = "hlnetif"

var nsSeq atomic.Int64

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		netlab.Missing(t, "root test: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces; CI runs as root")
	}
	netlab.RequireTools(t, "Debian package iproute2", "ip")
	removeStaleNamespaces(t)
}

// removeStaleNamespaces deletes namespaces of earlier runs whose process
// is gone.
func removeStaleNamespaces(t *testing.T) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, nsPrefix+"-")
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // still running
		}
		t.Logf("removing namespace %s left by an earlier run", name)
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

type testNS struct {
	name string
	h    netns.NsHandle
}

// newNS creates a namespace with lo up, deleted when the test ends.
func newNS(t *testing.T, tag string) testNS {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%d%s", nsPrefix, os.Getpid(), nsSeq.Add(1), tag)
	sh(t, "ip", "netns", "add", name)
	h, err := netns.GetFromName(name)
	if err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.Close()
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns := testNS{name: name, h: h}
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

// ip runs `ip -n ns args...` and fails the test on error.
func (ns testNS) ip(t *testing.T, args ...string) {
	t.Helper()
	sh(t, "ip", append([]string{"-n", ns.name}, args...)...)
}

// exec runs a command inside the namespace and returns its combined output
// and error, without failing the test.
func (ns testNS) exec(name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.name, name}, args...)...).CombinedOutput()
	return string(out), err
}

// sysctl reads a sysctl inside the namespace.
func (ns testNS) sysctl(t *testing.T, key string) string {
	t.Helper()
	out, err := ns.exec("cat", "/proc/sys/"+strings.ReplaceAll(key, ".", "/"))
	if err != nil {
		t.Fatalf("read %s in %s: %v: %s", key, ns.name, err, out)
	}
	return strings.TrimSpace(out)
}

func (ns testNS) setSysctl(t *testing.T, key, val string) {
	t.Helper()
	if out, err := ns.exec("sysctl", "-q", "-w", key+"="+val); err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v: %s", key, val, ns.name, err, out)
	}
}

func sh(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// writeTemp writes s to a file that lives as long as the test.
func writeTemp(t *testing.T, s string) string {
	t.Helper()
	p := t.TempDir() + "/batch"
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
