package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hostlb/hostlb/daemon"
	"github.com/hostlb/hostlb/daemon/config"
	"github.com/hostlb/hostlb/daemon/control/api"
	"github.com/hostlb/hostlb/daemon/control/controltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// raw sends one request over the socket and returns the status, the Allow
// header and the body decoded as generic JSON.
func raw(t *testing.T, socket, method, path string, body io.Reader) (int, string, map[string]any) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://hostlbd"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s %s: not JSON: %v\n%s", method, path, err, b)
	}
	if v["version"] != float64(api.Version) {
		t.Errorf("%s %s: version %v, want %d", method, path, v["version"], api.Version)
	}
	return resp.StatusCode, resp.Header.Get("Allow"), v
}

// Every endpoint answers with the schema version, the node and the
// daemon's clock, and never a JSON null where the schema promises an
// array.
func TestEndpointsCarryVersionAndNoNullArrays(t *testing.T) {
	for _, st := range []daemon.State{controltest.Cluster(), controltest.Alone()} {
		socket := controltest.Serve(t, &controltest.Source{St: st})
		for _, p := range []string{api.PathStatus, api.PathMembers, api.PathVIPs, api.PathBGP, api.PathConflicts} {
			code, _, v := raw(t, socket, http.MethodGet, p, nil)
			if code != http.StatusOK {
				t.Errorf("%s: GET %s: %d %v", st.Node, p, code, v)
				continue
			}
			if v["node"] != st.Node || v["time"] != controltest.Now.Format(time.RFC3339) {
				t.Errorf("%s: GET %s: node %v time %v", st.Node, p, v["node"], v["time"])
			}
			checkNoNullArrays(t, p, v)
		}
	}
}

// checkNoNullArrays fails on a null under a key whose schema type is an
// array (every such key is plural or one of the known lists).
func checkNoNullArrays(t *testing.T, where string, v any) {
	t.Helper()
	arrays := []string{"members", "announced", "cannot", "unhealthy", "vips", "owners", "announcers", "previous_owners",
		"interfaces", "peers", "not_here", "wire", "events", "disagreements", "changed", "needs_restart", "errors"}
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if x == nil && slices.Contains(arrays, k) {
				t.Errorf("%s: %q is null, want []", where, k)
			}
			checkNoNullArrays(t, where+"."+k, x)
		}
	case []any:
		for _, x := range v {
			checkNoNullArrays(t, where, x)
		}
	}
}

func TestStatusCounts(t *testing.T) {
	socket := controltest.Serve(t, &controltest.Source{St: controltest.Cluster()})
	var s api.Status
	if _, err := api.NewClient(socket).Get(t.Context(), api.PathStatus, &s); err != nil {
		t.Fatal(err)
	}
	want := api.Status{
		Header: api.Header{Version: 1, Node: "n1", Time: controltest.Now},
		Daemon: controltest.Build, Ready: true, Joined: true,
		Members:   api.Counts{Ring: true, Total: 3, Alive: 2, Dead: 1},
		IPs:       api.IPCounts{Total: 7, Here: 3, L2: 6, BGP: 1},
		Conflicts: api.ConflictCounts{Wire: 1, Disagreements: 1},
		BGP:       &api.BGPCounts{Peers: 2, Established: 1, Advertised: 1, Imported: 3},
	}
	s.Started, s.LastPass, s.Reloads = time.Time{}, nil, api.Reloads{}
	s.Header.Time = s.Header.Time.UTC()
	if s.Header != want.Header || s.Daemon != want.Daemon || s.Members != want.Members || s.IPs != want.IPs ||
		s.Conflicts != want.Conflicts || *s.BGP != *want.BGP || !s.Ready || !s.Joined {
		t.Errorf("status\n got %+v\nwant %+v", s, want)
	}
}

func TestWhoOwns(t *testing.T) {
	socket := controltest.Serve(t, &controltest.Source{St: controltest.Cluster()})
	c := api.NewClient(socket)
	for _, ip := range []string{"192.0.2.110", "::ffff:192.0.2.110"} {
		var w api.WhoOwns
		if _, err := c.Get(t.Context(), api.PathVIPs+"/"+ip, &w); err != nil {
			t.Fatalf("%s: %v", ip, err)
		}
		if w.VIP.Address.String() != "192.0.2.110" || !slices.Equal(w.VIP.Owners, []string{"n2"}) || len(w.VIP.NotHere) != 2 ||
			w.VIP.NotHere[0].Node != "n1" || !strings.Contains(w.VIP.NotHere[0].Reason, "node_selector {rack=r1}") {
			t.Errorf("%s: %+v", ip, w.VIP)
		}
	}
	// A BGP IP announced here lists the established sessions; an IP the
	// ring gives two announcers says since when.
	var w api.WhoOwns
	if _, err := c.Get(t.Context(), api.PathVIPs+"/198.51.100.10", &w); err != nil {
		t.Fatal(err)
	}
	if len(w.VIP.Peers) != 1 || w.VIP.Peers[0].String() != "192.0.2.1" {
		t.Errorf("BGP IP peers %v, want the one established session", w.VIP.Peers)
	}
	if _, err := c.Get(t.Context(), api.PathVIPs+"/192.0.2.102", &w); err != nil {
		t.Fatal(err)
	}
	if w.VIP.Disagreement == nil || !w.VIP.Disagreement.Equal(controltest.Now.Add(-5*time.Second)) {
		t.Errorf("disagreement since %v", w.VIP.Disagreement)
	}
}

// Bad requests get a JSON error with the right status, and never reach
// the daemon.
func TestBadRequests(t *testing.T) {
	src := &controltest.Source{St: controltest.Cluster()}
	socket := controltest.Serve(t, src)
	for _, tt := range []struct {
		method, path string
		body         string
		status       int
		allow, want  string
	}{
		{"GET", "/", "", 404, "", "control API version 1, under /v1/"},
		{"GET", "/v2/status", "", 404, "", "control API version 1"},
		{"GET", "/v1/nodes", "", 404, "", "no such endpoint /v1/nodes"},
		{"GET", "/v1/vips/", "", 404, "", "no such endpoint"},
		{"GET", "/v1/vips/192.0.2.1/x", "", 404, "", "no such endpoint"},
		{"POST", "/v1/status", "", 405, "GET", "/v1/status takes GET, not POST"},
		{"DELETE", "/v1/vips", "", 405, "GET", "takes GET"},
		{"GET", "/v1/reload", "", 405, "POST", "/v1/reload takes POST, not GET"},
		{"GET", "/v1/vips?node=n2", "", 400, "", "takes no query parameters"},
		{"POST", "/v1/reload", "x", 400, "", "takes no request body"},
		{"POST", "/v1/config/check", "[node]\nname = \"x\"\n", 400, "", "takes no request body"},
		{"GET", "/v1/vips/192.0.2.300", "", 400, "", `"192.0.2.300" is not an IP address`},
		{"GET", "/v1/vips/fe80::1%25eth0", "", 400, "", "is not an IP address"},
		{"GET", "/v1/vips/192.0.2.9", "", 404, "", "192.0.2.9 is not an IP hostlb serves"},
	} {
		var body io.Reader
		if tt.body != "" {
			body = strings.NewReader(tt.body)
		}
		code, allow, v := raw(t, socket, tt.method, tt.path, body)
		msg, _ := v["error"].(string)
		if code != tt.status || allow != tt.allow || !strings.Contains(msg, tt.want) || v["node"] != "n1" {
			t.Errorf("%s %s: %d Allow %q %v; want %d Allow %q and %q", tt.method, tt.path, code, allow, v, tt.status, tt.allow, tt.want)
		}
	}
	if src.Reloads != 0 {
		t.Errorf("bad requests reloaded the daemon %d times", src.Reloads)
	}
}

func TestReload(t *testing.T) {
	src := &controltest.Source{St: controltest.Cluster(),
		ReloadResult: daemon.ReloadResult{Changed: []string{"vip"}, NeedsRestart: []string{"control.socket"}}}
	socket := controltest.Serve(t, src)
	c := api.NewClient(socket)
	var r api.Reload
	if _, err := c.Post(t.Context(), api.PathReload, &r); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Changed, []string{"vip"}) || !slices.Equal(r.NeedsRestart, []string{"control.socket"}) || src.Reloads != 1 {
		t.Errorf("reload: %+v after %d reloads", r, src.Reloads)
	}

	// A refused file: 422, every problem named, the old config kept.
	_, bad := config.Parse("/etc/hostlb/hostlb.toml", []byte(badConfig))
	src.Set(func(s *controltest.Source) { s.ReloadErr = bad })
	_, err := c.Post(t.Context(), api.PathReload, nil)
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnprocessableEntity ||
		!strings.Contains(se.Message, "keeps running the previous configuration") ||
		!strings.Contains(se.Message, "hostlb.toml:2") || !strings.Contains(se.Message, "hostlb.toml:3") {
		t.Errorf("refused reload: %v", err)
	}
	// No file to re-read: 409.
	src.Set(func(s *controltest.Source) { s.ReloadErr = daemon.ErrNoConfigFile })
	if _, err := c.Post(t.Context(), api.PathReload, nil); !errors.As(err, &se) || se.Status != http.StatusConflict {
		t.Errorf("reload without a file: %v", err)
	}
}

// badConfig has two problems, on lines 2 and 3; it reads no file.
const badConfig = "[gossip]\nprofile = \"sometimes\"\nbind = 3\ninsecure_plaintext = true\n[kubernetes]\nenabled = false\n"

func TestConfigCheck(t *testing.T) {
	src := &controltest.Source{St: controltest.Cluster(), CheckResult: daemon.ReloadResult{Changed: []string{"vip"}}}
	socket := controltest.Serve(t, src)
	c := api.NewClient(socket)
	var r api.ConfigCheck
	if _, err := c.Post(t.Context(), api.PathConfigCheck, &r); err != nil {
		t.Fatal(err)
	}
	if !r.Valid || len(r.Errors) != 0 || !slices.Equal(r.Changed, []string{"vip"}) {
		t.Errorf("valid file: %+v", r)
	}
	_, bad := config.Parse("/etc/hostlb/hostlb.toml", []byte(badConfig))
	src.Set(func(s *controltest.Source) { s.CheckErr = bad })
	r = api.ConfigCheck{}
	if _, err := c.Post(t.Context(), api.PathConfigCheck, &r); err != nil {
		t.Fatal(err)
	}
	if r.Valid || len(r.Errors) != 2 || !strings.HasPrefix(r.Errors[0], "/etc/hostlb/hostlb.toml:2") {
		t.Errorf("invalid file: %+v", r)
	}
	if src.Reloads != 0 {
		t.Error("a check reloaded the daemon")
	}
}

// The client names the cause of an unreachable socket, and the group an
// operator must join.
func TestClientUnreachable(t *testing.T) {
	dir := t.TempDir()
	_, err := api.NewClient(dir+"/missing.sock").Get(t.Context(), api.PathStatus, nil)
	var ue *api.UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), dir+"/missing.sock") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing socket: %v", err)
	}
	// A socket nobody accepts on: refused.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/s", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	_ = ln.Close()
	_, err = api.NewClient(dir+"/s").Get(t.Context(), api.PathStatus, nil)
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "connection refused: hostlbd is not running") {
		t.Errorf("stale socket: %v", err)
	}
	// EACCES cannot be provoked as root; the message is what matters.
	e := &api.UnreachableError{Socket: "/run/hostlb/hostlb.sock", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EACCES)}}
	if !strings.Contains(e.Error(), "add yourself to the hostlb-admin group") {
		t.Errorf("permission denied: %v", e)
	}
	// A server that speaks another version.
	other := serveRaw(t, `{"version":2,"node":"n1"}`)
	if _, err := api.NewClient(other).Get(t.Context(), api.PathStatus, nil); !errors.As(err, new(*api.VersionError)) {
		t.Errorf("version 2: %v", err)
	}
	junk := serveRaw(t, `<html>`)
	if _, err := api.NewClient(junk).Get(t.Context(), api.PathStatus, nil); err == nil || !strings.Contains(err.Error(), "not hostlbd's JSON") {
		t.Errorf("junk: %v", err)
	}
}

// serveRaw answers every request with body on a socket it returns.
func serveRaw(t *testing.T, body string) string {
	t.Helper()
	path := t.TempDir() + "/raw.sock"
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.Copy(w, bytes.NewBufferString(body))
	}), ReadHeaderTimeout: time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return path
}
