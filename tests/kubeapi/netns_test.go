package kubeapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/hostlb/hostlb/tests/kubeapi"
	"github.com/hostlb/hostlb/tests/netlab"
)

// TestClusterInNetns runs the control plane inside a network namespace
// (Options.Netns): its processes are the binaries themselves (`ip netns
// exec` execs them, so a stop by PID ends the real process) in that
// namespace, and the harness's clients, the ServiceAccount's and one built
// on DialContext reach it from the test's own namespace.
func TestClusterInNetns(t *testing.T) {
	kubeapi.Require(t)
	lab := netlab.New(t)
	api := lab.Namespace("api")
	lab.Connect(api, lab.Bridge("br0"), "eth0", []string{"192.0.2.10/24"})

	c, err := kubeapi.New(kubeapi.Options{
		Netns: api.Name, Bind: netip.MustParseAddr("192.0.2.10"),
		ApplyManifests: true, Log: t.Output(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, comp := range []string{"kube-apiserver", "etcd"} {
				t.Logf("%s log, last lines:\n%s", comp, c.LogTail(comp, 40))
			}
		}
		c.Stop()
	})
	ctx := t.Context()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := c.URL(), "https://192.0.2.10:"; !strings.HasPrefix(got, want) {
		t.Errorf("URL %s, want %s...", got, want)
	}

	// etcd, then kube-apiserver: each PID is the binary's, inside api.
	pids := c.PIDs()
	if len(pids) != 2 {
		t.Fatalf("started %d processes, want 2: %v", len(pids), pids)
	}
	for i, want := range []string{"etcd", "kube-apiserver"} {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pids[i]))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(comm)); got != want {
			t.Errorf("pid %d is %q, want %q (not the `ip netns exec` wrapper)", pids[i], got, want)
		}
		if !sameFile(t, fmt.Sprintf("/proc/%d/ns/net", pids[i]), "/run/netns/"+api.Name) {
			t.Errorf("%s (pid %d) is not in network namespace %s", want, pids[i], api.Name)
		}
	}

	if _, err := c.Admin().CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("admin client: %v", err)
	}
	cfg, err := c.ServiceAccountConfig(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Services("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("ServiceAccount client: %v", err)
	}
	// A client of the test's own, on DialContext: anonymous /livez is
	// allowed (system:public-info-viewer).
	rt, err := rest.TransportFor(&rest.Config{
		Host:            c.URL(),
		TLSClientConfig: rest.TLSClientConfig{CAData: c.AdminConfig().CAData},
		Dial:            c.DialContext,
	})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(c.URL() + "/livez")
	if err != nil {
		t.Fatalf("GET /livez with DialContext: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /livez: %s", resp.Status)
	}

	// A stop by PID ends the binary itself, and a new start works there.
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pids[1], 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kube-apiserver pid %d still exists after StopAPIServer (kill 0: %v)", pids[1], err)
	}
	down, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = c.Admin().CoreV1().Namespaces().Get(down, "kube-system", metav1.GetOptions{})
	cancel()
	if err == nil {
		t.Error("the API answered with kube-apiserver stopped")
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Admin().CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("admin client after the restart: %v", err)
	}

	pids = c.PIDs()
	c.Stop()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Stop (kill 0: %v)", pid, err)
		}
	}
}

// sameFile reports whether the two paths name one inode (for namespaces:
// one namespace).
func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(fa, fb)
}
