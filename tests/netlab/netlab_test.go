package netlab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStaleNames(t *testing.T) {
	list := strings.Join([]string{
		"hlbt100-1-node (id: 3)",
		"hlbt100-1-sw (id: 2)",
		"hlbt200-4-client",
		"hlbtxyz-1-odd",
		"hlbt300",
		"other-ns (id: 0)",
		"",
	}, "\n")
	alive := func(pid int) bool { return pid == 200 }
	got := staleNames(list, alive)
	if diff := cmp.Diff([]string{"hlbt100-1-node", "hlbt100-1-sw"}, got); diff != "" {
		t.Errorf("stale (-want +got):\n%s", diff)
	}
}

func TestLab(t *testing.T) {
	lab := New(t)
	br := lab.Bridge("br0")
	a, b := lab.Namespace("a"), lab.Namespace("b")
	la := lab.Connect(a, br, "eth0", []string{"192.0.2.1/24", "2001:db8::1/64"})
	lb := lab.Connect(b, br, "eth0", []string{"192.0.2.2/24", "2001:db8::2/64"}, NoIPv6LinkLocal())
	if la.Index == 0 || len(la.MAC) != 6 || lb.MAC.String() == la.MAC.String() {
		t.Fatalf("links: %+v %+v", la, lb)
	}
	a.MustRun("ping", "-c", "1", "-W", "5", "192.0.2.2")
	a.MustRun("ping", "-6", "-c", "1", "-W", "5", "2001:db8::2")
	if out := b.MustRun("ip", "-6", "addr", "show", "dev", "eth0"); strings.Contains(out, "fe80") {
		t.Errorf("NoIPv6LinkLocal left a link-local address:\n%s", out)
	}

	// Do runs Go code inside the namespace, and only there.
	var inside []net.Interface
	if err := a.Do(func() error {
		var err error
		inside, err = net.Interfaces()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ifi := range inside {
		names = append(names, ifi.Name)
	}
	if diff := cmp.Diff([]string{"lo", "eth0"}, names); diff != "" {
		t.Errorf("interfaces inside (-want +got):\n%s", diff)
	}
	want := errors.New("boom")
	if err := a.Do(func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do error = %v", err)
	}
	outside, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range outside {
		if ifi.HardwareAddr.String() == la.MAC.String() {
			t.Errorf("lab interface %s visible outside the lab", ifi.Name)
		}
	}
}

func TestCleanupStale(t *testing.T) {
	RequireRoot(t)
	// A process that has exited stands for a crashed earlier run.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("%s%d-1-leftover", Prefix, cmd.Process.Pid)
	live := fmt.Sprintf("%s%d-999-mine", Prefix, os.Getpid())
	for _, n := range []string{dead, live} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", n, err, out)
		}
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", dead).Run()
		_ = exec.Command("ip", "netns", "del", live).Run()
	})
	if err := CleanupStale(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), dead) {
		t.Errorf("%s survived CleanupStale", dead)
	}
	if !strings.Contains(string(out), live) {
		t.Errorf("CleanupStale removed %s of a live process", live)
	}
}
