package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const testServer = "https://192.0.2.10:6443"

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newCluster is a fake API server holding the ServiceAccount
// kube-system/hostlb, whose TokenRequests return "tok-<seconds>" valid for
// the requested time, or for at most maxLifetime when that is set (as an
// API server with --service-account-max-token-expiration does).
func newCluster(t *testing.T, maxLifetime time.Duration) *fake.Clientset {
	t.Helper()
	cs := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "hostlb", Namespace: "kube-system"}})
	cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		req := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest)
		if req.Spec.ExpirationSeconds == nil {
			t.Error("TokenRequest without expirationSeconds")
			return true, nil, errors.New("no expirationSeconds")
		}
		life := time.Duration(*req.Spec.ExpirationSeconds) * time.Second
		if maxLifetime > 0 && life > maxLifetime {
			life = maxLifetime
		}
		return true, &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{
			Token:               "tok-" + strconv.FormatInt(*req.Spec.ExpirationSeconds, 10),
			ExpirationTimestamp: metav1.NewTime(testNow.Add(life)),
		}}, nil
	})
	return cs
}

func testOptions(t *testing.T, args ...string) kubeconfigOptions {
	t.Helper()
	o, err := parseKubeconfigFlags(append([]string{"--server", testServer, "--out", filepath.Join(t.TempDir(), "kubeconfig")}, args...))
	if err != nil {
		t.Fatal(err)
	}
	o.now = func() time.Time { return testNow }
	o.group = ""
	o.pollInterval = time.Millisecond
	return o
}

func TestKubeconfigTokenRequest(t *testing.T) {
	cs := newCluster(t, 0)
	adminCA := testCA(t, "admin-ca")
	o := testOptions(t, "--duration", "24h")
	// A stale file is replaced whole.
	if err := os.WriteFile(o.out, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := writeKubeconfig(t.Context(), cs, adminCA, o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}

	cfg, err := clientcmd.LoadFromFile(o.out)
	if err != nil {
		t.Fatalf("the written kubeconfig does not load: %v", err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		t.Fatalf("current-context %q names no context", cfg.CurrentContext)
	}
	cluster, auth := cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo]
	if cluster == nil || auth == nil {
		t.Fatalf("context %+v: cluster %v user %v", ctx, cluster, auth)
	}
	if cluster.Server != testServer {
		t.Errorf("server %q, want %q", cluster.Server, testServer)
	}
	if !bytes.Equal(cluster.CertificateAuthorityData, adminCA) {
		t.Errorf("CA data is not the admin kubeconfig's CA")
	}
	if want := "tok-86400"; auth.Token != want {
		t.Errorf("token %q, want %q (24h requested)", auth.Token, want)
	}
	if ctx.Namespace != "kube-system" {
		t.Errorf("context namespace %q", ctx.Namespace)
	}
	// A client can be built from it, as hostlbd will.
	rc, err := clientcmd.BuildConfigFromFlags("", o.out)
	if err != nil || rc.Host != testServer || rc.BearerToken != "tok-86400" {
		t.Errorf("BuildConfigFromFlags: host %q token %q err %v", rc.Host, rc.BearerToken, err)
	}

	st, err := os.Stat(o.out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(o.out))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the kubeconfig (no temporary file left)", len(entries))
	}

	if !strings.Contains(stdout.String(), "token expires 2026-03-02T12:00:00Z (in 24h0m0s)") {
		t.Errorf("stdout lacks the expiry:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "TokenRequest tokens expire") || !strings.Contains(stderr.String(), "hostlbctl kubeconfig") {
		t.Errorf("stderr lacks the warning that the token expires:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "shortened") {
		t.Errorf("warned of a shortened lifetime that was not:\n%s", stderr.String())
	}
}

func TestKubeconfigCappedLifetime(t *testing.T) {
	cs := newCluster(t, 48*time.Hour)
	o := testOptions(t) // 8760h by default
	var stdout, stderr bytes.Buffer
	if err := writeKubeconfig(t.Context(), cs, testCA(t, "ca"), o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "shortened the token's lifetime to 48h0m0s (asked for 8760h0m0s)") {
		t.Errorf("no warning that the API server capped the lifetime:\n%s", stderr.String())
	}
}

func TestKubeconfigCAFile(t *testing.T) {
	cs := newCluster(t, 0)
	ca := testCA(t, "file-ca")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, "--ca-file", caFile)
	var stdout, stderr bytes.Buffer
	if err := writeKubeconfig(t.Context(), cs, testCA(t, "admin-ca"), o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(o.out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].CertificateAuthorityData, ca) {
		t.Error("--ca-file did not win over the admin kubeconfig's CA")
	}

	// A file that is not a PEM certificate is refused, and nothing is written.
	bad := filepath.Join(t.TempDir(), "ca.key")
	if err := os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o = testOptions(t, "--ca-file", bad)
	err = writeKubeconfig(t.Context(), cs, nil, o, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "want CERTIFICATE") {
		t.Errorf("a key as --ca-file: err %v", err)
	}
	if _, err := os.Stat(o.out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a kubeconfig was written despite the error (%v)", err)
	}

	// No CA anywhere: written, with a warning.
	o = testOptions(t)
	stderr.Reset()
	if err := writeKubeconfig(t.Context(), cs, nil, o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "no CA certificate") {
		t.Errorf("no warning about the missing CA:\n%s", stderr.String())
	}
}

func TestKubeconfigErrors(t *testing.T) {
	t.Run("no ServiceAccount", func(t *testing.T) {
		cs := fake.NewClientset()
		err := writeKubeconfig(t.Context(), cs, nil, testOptions(t), new(bytes.Buffer), new(bytes.Buffer))
		want := "ServiceAccount kube-system/hostlb not found: apply /usr/share/hostlb/manifests/rbac.yaml first"
		if err == nil || err.Error() != want {
			t.Errorf("err %v, want %q", err, want)
		}
	})
	t.Run("token forbidden", func(t *testing.T) {
		cs := newCluster(t, 0)
		cs.PrependReactor("create", "serviceaccounts", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts/token"}, "hostlb", errors.New("RBAC: access denied"))
		})
		err := writeKubeconfig(t.Context(), cs, nil, testOptions(t), new(bytes.Buffer), new(bytes.Buffer))
		if err == nil || !strings.Contains(err.Error(), "request a token for ServiceAccount kube-system/hostlb") ||
			!strings.Contains(err.Error(), "--admin-kubeconfig") || !apierrors.IsForbidden(err) {
			t.Errorf("err %v: want the failed step, the cause and the fix", err)
		}
	})
	t.Run("no directory", func(t *testing.T) {
		o := testOptions(t)
		o.out = filepath.Join(t.TempDir(), "missing", "kubeconfig")
		err := writeKubeconfig(t.Context(), newCluster(t, 0), nil, o, new(bytes.Buffer), new(bytes.Buffer))
		if err == nil || !strings.Contains(err.Error(), "--out") || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err %v", err)
		}
	})
}

// tokenController fills a token Secret after it has been read `after`
// times, as kube-controller-manager does a little after its creation; after
// < 0 never fills it.
func tokenController(t *testing.T, cs *fake.Clientset, after int) {
	t.Helper()
	var reads atomic.Int32
	cs.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if after < 0 || int(reads.Add(1)) <= after {
			return false, nil, nil
		}
		gvr := corev1.SchemeGroupVersion.WithResource("secrets")
		obj, err := cs.Tracker().Get(gvr, a.GetNamespace(), a.(k8stesting.GetAction).GetName())
		if err != nil {
			return false, nil, nil //nolint:nilerr // not created yet: let the tracker answer NotFound
		}
		s := obj.(*corev1.Secret).DeepCopy()
		if len(s.Data["token"]) == 0 && s.Type == corev1.SecretTypeServiceAccountToken {
			s.Data = map[string][]byte{"token": []byte("long-lived"), "ca.crt": testCA(t, "secret-ca"), "namespace": []byte(s.Namespace)}
			if err := cs.Tracker().Update(gvr, s, s.Namespace); err != nil {
				t.Error(err)
			}
		}
		return false, nil, nil
	})
}

func TestKubeconfigSecret(t *testing.T) {
	cs := newCluster(t, 0)
	tokenController(t, cs, 3)
	o := testOptions(t, "--secret")
	var stdout, stderr bytes.Buffer
	if err := writeKubeconfig(t.Context(), cs, testCA(t, "admin-ca"), o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	s, err := cs.CoreV1().Secrets("kube-system").Get(t.Context(), "hostlb-token", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != corev1.SecretTypeServiceAccountToken || s.Annotations["kubernetes.io/service-account.name"] != "hostlb" {
		t.Errorf("Secret type %q annotations %v", s.Type, s.Annotations)
	}
	cfg, err := clientcmd.LoadFromFile(o.out)
	if err != nil {
		t.Fatal(err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if got := cfg.AuthInfos[ctx.AuthInfo].Token; got != "long-lived" {
		t.Errorf("token %q, want the Secret's", got)
	}
	if !bytes.Equal(cfg.Clusters[ctx.Cluster].CertificateAuthorityData, s.Data["ca.crt"]) {
		t.Error("CA is not the Secret's ca.crt")
	}
	if !strings.Contains(stdout.String(), "does not expire") || strings.Contains(stderr.String(), "TokenRequest tokens expire") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}

	// Run again: the Secret is reused, not re-created.
	cs.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		t.Error("the existing Secret was not reused")
		return true, nil, errors.New("create")
	})
	if err := writeKubeconfig(t.Context(), cs, nil, o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
}

func TestKubeconfigSecretErrors(t *testing.T) {
	t.Run("never filled", func(t *testing.T) {
		cs := newCluster(t, 0)
		o := testOptions(t, "--secret")
		o.secretWait = 50 * time.Millisecond
		err := writeKubeconfig(t.Context(), cs, nil, o, new(bytes.Buffer), new(bytes.Buffer))
		if err == nil || !strings.Contains(err.Error(), "has no token after 50ms") || !strings.Contains(err.Error(), "kube-controller-manager") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("not a token Secret", func(t *testing.T) {
		cs := newCluster(t, 0)
		_, err := cs.CoreV1().Secrets("kube-system").Create(t.Context(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "hostlb-token", Namespace: "kube-system"},
			Type:       corev1.SecretTypeOpaque,
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		err = writeKubeconfig(t.Context(), cs, nil, testOptions(t, "--secret"), new(bytes.Buffer), new(bytes.Buffer))
		if err == nil || !strings.Contains(err.Error(), "exists but is not a kubernetes.io/service-account-token") ||
			!strings.Contains(err.Error(), "delete secret hostlb-token") {
			t.Errorf("err %v", err)
		}
	})
}

func TestKubeconfigGroup(t *testing.T) {
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		t.Skipf("the current group has no name: %v", err)
	}
	o := testOptions(t)
	o.group = g.Name
	var stderr bytes.Buffer
	if err := writeKubeconfig(t.Context(), newCluster(t, 0), testCA(t, "ca"), o, new(bytes.Buffer), &stderr); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(o.out)
	if err != nil {
		t.Fatal(err)
	}
	if gid := st.Sys().(*syscall.Stat_t).Gid; strconv.Itoa(int(gid)) != g.Gid {
		t.Errorf("gid %d, want %s (%s)", gid, g.Gid, g.Name)
	}
	if strings.Contains(stderr.String(), "group") {
		t.Errorf("unexpected warning: %s", stderr.String())
	}

	// A group that does not exist is a warning: the file is still written.
	o = testOptions(t)
	o.group = "hostlb-no-such-group"
	stderr.Reset()
	if err := writeKubeconfig(t.Context(), newCluster(t, 0), testCA(t, "ca"), o, new(bytes.Buffer), &stderr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(o.out); err != nil {
		t.Error(err)
	}
	if !strings.Contains(stderr.String(), "warning: group hostlb-no-such-group does not exist") {
		t.Errorf("no warning about the group:\n%s", stderr.String())
	}
}

func TestKubeconfigCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "kubeconfig")
	var gotPath string
	connect := func(path string) (kubernetes.Interface, []byte, error) {
		gotPath = path
		return newCluster(t, 0), testCA(t, "admin-ca"), nil
	}
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"kubeconfig", "--server", testServer, "--out", out, "--admin-kubeconfig", "/etc/kubernetes/admin.conf"}, &stdout, &stderr, connect)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if gotPath != "/etc/kubernetes/admin.conf" {
		t.Errorf("connected with %q", gotPath)
	}
	if _, err := clientcmd.LoadFromFile(out); err != nil {
		t.Error(err)
	}

	failing := func(string) (kubernetes.Interface, []byte, error) {
		return nil, nil, errors.New("load the admin kubeconfig: no configuration")
	}
	stderr.Reset()
	if code := run(t.Context(), []string{"kubeconfig", "--server", testServer, "--out", out}, &stdout, &stderr, failing); code != exitError {
		t.Errorf("admin kubeconfig fails: exit %d, want %d", code, exitError)
	}
	if !strings.Contains(stderr.String(), "no configuration") {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func TestKubeconfigUsage(t *testing.T) {
	never := func(string) (kubernetes.Interface, []byte, error) {
		t.Error("connected despite bad usage")
		return nil, nil, errors.New("no")
	}
	tests := []struct {
		args []string
		want string
	}{
		{nil, "--server is required"},
		{[]string{"--server", "192.0.2.10:6443"}, "want an http(s) URL"},
		{[]string{"--server", "https://"}, "want an http(s) URL"},
		{[]string{"--server", testServer, "--duration", "5m"}, "at least 10m0s"},
		{[]string{"--server", testServer, "--duration", "soon"}, `invalid value "soon" for flag -duration`},
		{[]string{"--server", testServer, "--secret", "--duration", "1h"}, "--duration has no effect with --secret"},
		{[]string{"--server", testServer, "--namespace", "Kube_System"}, `--namespace "Kube_System"`},
		{[]string{"--server", testServer, "--service-account", ""}, "--service-account"},
		{[]string{"--server", testServer, "--out", ""}, "--out is empty"},
		{[]string{"--server", testServer, "--frobnicate"}, "flag provided but not defined: -frobnicate"},
		{[]string{"--server", testServer, "extra"}, `unexpected arguments ["extra"]`},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), append([]string{"kubeconfig"}, tt.args...), &stdout, &stderr, never)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d", tt.args, code, exitUsage)
		}
		if !strings.Contains(stderr.String(), tt.want) || !strings.Contains(stderr.String(), "usage: hostlbctl kubeconfig") {
			t.Errorf("%q: stderr lacks %q and the usage:\n%s", tt.args, tt.want, stderr.String())
		}
	}

	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"kubeconfig", "-h"}, &stdout, &stderr, never); code != exitOK {
		t.Errorf("-h: exit %d", code)
	}
	if !strings.Contains(stdout.String(), "--secret") {
		t.Errorf("-h prints no flags:\n%s", stdout.String())
	}
	stdout.Reset()
	run(t.Context(), []string{"help"}, &stdout, &stderr, never)
	if !strings.Contains(stdout.String(), "kubeconfig --server URL") {
		t.Errorf("hostlbctl help does not list kubeconfig:\n%s", stdout.String())
	}
}

// testCA returns a fresh self-signed CA certificate, PEM-encoded.
func testCA(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             testNow.Add(-time.Hour),
		NotAfter:              testNow.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestKubeconfigRealClient runs the command against an HTTPS server that
// answers like an API server, through the real client main builds: the
// admin kubeconfig is loaded, its CA file read, and the requests are the
// ones a real API server receives.
func TestKubeconfigRealClient(t *testing.T) {
	var gotToken atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if auth := r.Header.Get("Authorization"); auth != "Bearer admin-token" {
			t.Errorf("%s %s: Authorization %q", r.Method, r.URL.Path, auth)
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces/kube-system/serviceaccounts/hostlb":
			_ = json.NewEncoder(w).Encode(&corev1.ServiceAccount{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
				ObjectMeta: metav1.ObjectMeta{Name: "hostlb", Namespace: "kube-system"},
			})
		case r.Method == http.MethodPost && r.URL.Path == "/api/v1/namespaces/kube-system/serviceaccounts/hostlb/token":
			// Whatever the client encodes it in (JSON or protobuf).
			body, _ := io.ReadAll(r.Body)
			var req authenticationv1.TokenRequest
			if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, &req); err != nil {
				t.Errorf("decode TokenRequest (%s): %v", r.Header.Get("Content-Type"), err)
			}
			gotToken.Store(req)
			req.TypeMeta = metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenRequest"}
			req.Status = authenticationv1.TokenRequestStatus{Token: "wire-token", ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Hour))}
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(&req)
		default:
			t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	admin := clientcmdapi.NewConfig()
	admin.Clusters["c"] = &clientcmdapi.Cluster{Server: srv.URL, CertificateAuthority: caFile}
	admin.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "admin-token"}
	admin.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	admin.CurrentContext = "x"
	adminPath := filepath.Join(dir, "admin.conf")
	if err := clientcmd.WriteToFile(*admin, adminPath); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "kubeconfig")
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"kubeconfig", "--server", "https://192.0.2.10:6443", "--out", out,
		"--admin-kubeconfig", adminPath, "--duration", "2h"}, &stdout, &stderr, connectAdmin)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	req, _ := gotToken.Load().(authenticationv1.TokenRequest)
	if req.Spec.ExpirationSeconds == nil || *req.Spec.ExpirationSeconds != 7200 {
		t.Errorf("TokenRequest spec %+v, want expirationSeconds 7200", req.Spec)
	}
	cfg, err := clientcmd.LoadFromFile(out)
	if err != nil {
		t.Fatal(err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if got := cfg.AuthInfos[ctx.AuthInfo].Token; got != "wire-token" {
		t.Errorf("token %q", got)
	}
	if !bytes.Equal(cfg.Clusters[ctx.Cluster].CertificateAuthorityData, ca) {
		t.Error("CA is not the admin kubeconfig's CA file")
	}

	// A missing admin kubeconfig is an error (exit 1) that says what to pass.
	stderr.Reset()
	code = run(t.Context(), []string{"kubeconfig", "--server", srv.URL, "--out", out,
		"--admin-kubeconfig", filepath.Join(dir, "nope.conf")}, &stdout, &stderr, connectAdmin)
	if code != exitError || !strings.Contains(stderr.String(), "--admin-kubeconfig") {
		t.Errorf("missing admin kubeconfig: exit %d: %s", code, stderr.String())
	}
}
