package systemdtest

import (
	"context"
	"strings"
	"testing"

	"github.com/hostlb/hostlb/tests/nspawn"
)

// httpGet asks the container's hostlbd for path on [metrics] listen's
// default address with bash's /dev/tcp (the container has no HTTP client)
// and returns the whole response, status line and headers included.
func httpGet(ctx context.Context, m *nspawn.Machine, path string) (string, error) {
	return m.Run(ctx, "bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/9476 && printf 'GET `+path+` HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3 && cat <&3`)
}

// checkMetricsEndpoint: the packaged daemon, under its hardened unit and
// with the shipped default [metrics] listen, serves /healthz, /readyz (ready:
// it started, READY=1 came) and /metrics, process metrics included.
func checkMetricsEndpoint(ctx context.Context, t *testing.T, m *nspawn.Machine) {
	t.Helper()
	for path, want := range map[string][]string{
		"/healthz": {"HTTP/1.0 200 OK", "\r\n\r\nok\n"},
		"/readyz":  {"HTTP/1.0 200 OK", "\r\n\r\nready\n"},
		"/metrics": {"HTTP/1.0 200 OK", "\nhostlb_ready 1\n", "\nhostlb_gossip_joined 1\n", "\nhostlb_ips{mode=\"l2\"} 1\n", "\nprocess_resident_memory_bytes "},
	} {
		out, err := httpGet(ctx, m, path)
		if err != nil {
			t.Errorf("GET %s on 127.0.0.1:9476: %v\n%s", path, err, out)
			continue
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("GET %s lacks %q:\n%.2000s", path, w, out)
			}
		}
	}
}
