package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/hostlb/hostlb/packaging/manifests"
)

const kubeconfigUsage = `usage: hostlbctl kubeconfig --server URL [flags]

Writes the kubeconfig hostlbd uses ([kubernetes] kubeconfig): the API server
URL the nodes reach, its CA, and a token of the ServiceAccount the package's
manifests create (apply /usr/share/hostlb/manifests/ first). The token is
requested with the admin kubeconfig of the person running this command.

By default the token comes from the TokenRequest API and EXPIRES (the API
server may cap --duration): run this command again before then and restart
hostlb. --secret instead creates (or reuses) a Secret of type
kubernetes.io/service-account-token whose token does not expire until the
Secret is deleted.

flags:
  --server URL              API server URL as seen from the nodes (required),
                            e.g. https://192.0.2.10:6443
  --namespace NS            namespace of the ServiceAccount (default kube-system)
  --service-account NAME    the ServiceAccount (default hostlb)
  --out PATH                file to write, atomically, mode 0640, group hostlb
                            (default /etc/hostlb/kubeconfig)
  --duration D              requested token lifetime, at least 10m (default 8760h)
  --admin-kubeconfig PATH   credentials allowed to create tokens
                            (default $KUBECONFIG, else ~/.kube/config)
  --ca-file PATH            PEM CA of the API server (default: the Secret's
                            ca.crt with --secret, else the admin kubeconfig's CA)
  --secret                  use a long-lived Secret token, <service-account>-token
`

// Limits of the TokenRequest API: the API server refuses lifetimes below
// 10 minutes.
const minTokenDuration = 10 * time.Minute

// kubeconfigOptions are the flags of `hostlbctl kubeconfig`, plus seams the
// tests set.
type kubeconfigOptions struct {
	server          string
	namespace       string
	serviceAccount  string
	out             string
	duration        time.Duration
	adminKubeconfig string
	caFile          string
	secret          bool

	// group may read the written file; hostlbd runs as a member of it.
	group string
	// secretWait bounds the wait for the token controller to fill the
	// Secret; pollInterval is how often it is read meanwhile.
	secretWait   time.Duration
	pollInterval time.Duration
	// now is the clock the token's lifetime is measured against.
	now func() time.Time
}

// adminConnector returns a client authenticated with the admin kubeconfig at
// path ("" = $KUBECONFIG, else ~/.kube/config) and the CA certificates (PEM)
// that kubeconfig trusts, nil if none. main passes the real one; tests a fake.
type adminConnector func(path string) (kubernetes.Interface, []byte, error)

// kubeconfigMain runs `hostlbctl kubeconfig ARGS` and returns the exit code.
func kubeconfigMain(ctx context.Context, args []string, stdout, stderr io.Writer, connect adminConnector) int {
	o, err := parseKubeconfigFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, kubeconfigUsage)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "hostlbctl kubeconfig: %v\n\n%s", err, kubeconfigUsage)
		return exitUsage
	}
	cs, adminCA, err := connect(o.adminKubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "hostlbctl kubeconfig: %v\n", err)
		return exitError
	}
	if err := writeKubeconfig(ctx, cs, adminCA, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "hostlbctl kubeconfig: %v\n", err)
		return exitError
	}
	return exitOK
}

// parseKubeconfigFlags parses and checks the flags; every error it returns
// is a usage error (exit 2), flag.ErrHelp a request for help.
func parseKubeconfigFlags(args []string) (kubeconfigOptions, error) {
	o := kubeconfigOptions{
		group:        "hostlb",
		secretWait:   30 * time.Second,
		pollInterval: 500 * time.Millisecond,
		now:          time.Now,
	}
	fs := flag.NewFlagSet("hostlbctl kubeconfig", flag.ContinueOnError)
	// The flag package prints parse errors then the usage to its output; we
	// print both ourselves, the usage once.
	var flagErr bytes.Buffer
	fs.SetOutput(&flagErr)
	fs.Usage = func() {}
	fs.StringVar(&o.server, "server", "", "")
	fs.StringVar(&o.namespace, "namespace", manifests.Namespace, "")
	fs.StringVar(&o.serviceAccount, "service-account", manifests.ServiceAccount, "")
	fs.StringVar(&o.out, "out", "/etc/hostlb/kubeconfig", "")
	fs.DurationVar(&o.duration, "duration", 8760*time.Hour, "")
	fs.StringVar(&o.adminKubeconfig, "admin-kubeconfig", "", "")
	fs.StringVar(&o.caFile, "ca-file", "", "")
	fs.BoolVar(&o.secret, "secret", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, errors.New(strings.TrimSpace(strings.SplitN(flagErr.String(), "\n", 2)[0]))
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if o.server == "" {
		return o, errors.New("--server is required: the API server URL as the nodes reach it, e.g. https://192.0.2.10:6443")
	}
	u, err := url.Parse(o.server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return o, fmt.Errorf("--server %q: want an http(s) URL such as https://192.0.2.10:6443", o.server)
	}
	if errs := validation.IsDNS1123Label(o.namespace); len(errs) > 0 {
		return o, fmt.Errorf("--namespace %q: %s", o.namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(o.serviceAccount); len(errs) > 0 {
		return o, fmt.Errorf("--service-account %q: %s", o.serviceAccount, strings.Join(errs, "; "))
	}
	if o.out == "" {
		return o, errors.New("--out is empty")
	}
	if o.secret && set["duration"] {
		return o, errors.New("--duration has no effect with --secret: a Secret's token does not expire")
	}
	if o.duration < minTokenDuration {
		return o, fmt.Errorf("--duration %v: the TokenRequest API needs at least %v", o.duration, minTokenDuration)
	}
	return o, nil
}

// writeKubeconfig gets a token for the ServiceAccount with cs (the admin's
// client), and writes the kubeconfig to o.out. adminCA is the CA the admin
// kubeconfig trusts, the fallback for the written file's CA.
func writeKubeconfig(ctx context.Context, cs kubernetes.Interface, adminCA []byte, o kubeconfigOptions, stdout, stderr io.Writer) error {
	sa := o.namespace + "/" + o.serviceAccount
	if _, err := cs.CoreV1().ServiceAccounts(o.namespace).Get(ctx, o.serviceAccount, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("ServiceAccount %s not found: apply /usr/share/hostlb/manifests/rbac.yaml first", sa)
		}
		return fmt.Errorf("get ServiceAccount %s: %w%s", sa, err, adminHint(err))
	}

	ca, caSource := adminCA, "the admin kubeconfig"
	var (
		token   string
		expires time.Time // zero: does not expire
	)
	if o.secret {
		var secretCA []byte
		var err error
		token, secretCA, err = secretToken(ctx, cs, o)
		if err != nil {
			return err
		}
		if len(secretCA) > 0 {
			ca, caSource = secretCA, "Secret "+o.namespace+"/"+tokenSecretName(o)
		}
	} else {
		var err error
		token, expires, err = requestToken(ctx, cs, o)
		if err != nil {
			return err
		}
	}
	if o.caFile != "" {
		b, err := os.ReadFile(o.caFile)
		if err != nil {
			return fmt.Errorf("read --ca-file: %w", err)
		}
		ca, caSource = b, o.caFile
	}
	if len(ca) > 0 {
		if err := checkPEMCertificates(ca); err != nil {
			return fmt.Errorf("CA from %s: %w", caSource, err)
		}
	} else if strings.HasPrefix(o.server, "https:") {
		fmt.Fprintf(stderr, "warning: no CA certificate (no --ca-file, none in %s): hostlbd will trust the system's root CAs for %s\n", caSource, o.server)
	}
	if strings.HasPrefix(o.server, "http:") {
		fmt.Fprintf(stderr, "warning: %s is plain HTTP: the token crosses the network in clear text\n", o.server)
	}

	const name = "hostlb"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: o.server, CertificateAuthorityData: ca}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: o.namespace}
	cfg.CurrentContext = name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encode the kubeconfig: %w", err)
	}
	warn := func(format string, args ...any) { fmt.Fprintf(stderr, "warning: "+format+"\n", args...) }
	if err := writeFileAtomic(o.out, data, 0o640, o.group, warn); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "wrote %s: ServiceAccount %s at %s\n", o.out, sa, o.server)
	if expires.IsZero() {
		fmt.Fprintf(stdout, "token: from Secret %s/%s, does not expire; deleting the Secret revokes it\n", o.namespace, tokenSecretName(o))
		return nil
	}
	left := expires.Sub(o.now()).Round(time.Minute)
	fmt.Fprintf(stdout, "token expires %s (in %v)\n", expires.UTC().Format(time.RFC3339), left)
	if left < o.duration-time.Minute {
		warn("the API server shortened the token's lifetime to %v (asked for %v): its --service-account-max-token-expiration caps it", left, o.duration)
	}
	warn("TokenRequest tokens expire: before %s run `hostlbctl kubeconfig` again and restart hostlb (systemctl restart hostlb); with an expired token hostlbd loses the cluster (\"unauthorized\"). For a token that does not expire, use --secret.",
		expires.UTC().Format(time.RFC3339))
	return nil
}

// requestToken asks the TokenRequest API for a token of o.duration.
func requestToken(ctx context.Context, cs kubernetes.Interface, o kubeconfigOptions) (string, time.Time, error) {
	secs := int64(o.duration / time.Second)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}
	resp, err := cs.CoreV1().ServiceAccounts(o.namespace).CreateToken(ctx, o.serviceAccount, req, metav1.CreateOptions{})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("request a token for ServiceAccount %s/%s: %w%s", o.namespace, o.serviceAccount, err, adminHint(err))
	}
	if resp.Status.Token == "" {
		return "", time.Time{}, fmt.Errorf("request a token for ServiceAccount %s/%s: the API server returned an empty token", o.namespace, o.serviceAccount)
	}
	return resp.Status.Token, resp.Status.ExpirationTimestamp.Time, nil
}

func tokenSecretName(o kubeconfigOptions) string { return o.serviceAccount + "-token" }

// secretToken creates (or reuses) the ServiceAccount's token Secret and
// waits for the token controller (kube-controller-manager) to fill it. It
// returns the token and the Secret's ca.crt.
func secretToken(ctx context.Context, cs kubernetes.Interface, o kubeconfigOptions) (string, []byte, error) {
	secrets := cs.CoreV1().Secrets(o.namespace)
	name := tokenSecretName(o)
	ref := o.namespace + "/" + name

	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Namespace:   o.namespace,
				Annotations: map[string]string{corev1.ServiceAccountNameKey: o.serviceAccount},
				Labels:      map[string]string{"app.kubernetes.io/part-of": "hostlb"},
			},
			Type: corev1.SecretTypeServiceAccountToken,
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) { // created meanwhile by someone else
			s, err = secrets.Get(ctx, name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return "", nil, fmt.Errorf("create or read Secret %s: %w%s", ref, err, adminHint(err))
	}
	if s.Type != corev1.SecretTypeServiceAccountToken || s.Annotations[corev1.ServiceAccountNameKey] != o.serviceAccount {
		return "", nil, fmt.Errorf("token Secret %s exists but is not a %s for ServiceAccount %s (type %q, for %q): delete it (kubectl -n %s delete secret %s) or pass another --service-account",
			ref, corev1.SecretTypeServiceAccountToken, o.serviceAccount, s.Type, s.Annotations[corev1.ServiceAccountNameKey], o.namespace, name)
	}

	err = wait.PollUntilContextTimeout(ctx, o.pollInterval, o.secretWait, true, func(ctx context.Context) (bool, error) {
		got, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			// The token controller deletes a token Secret whose
			// ServiceAccount does not exist (or was re-created).
			return false, fmt.Errorf("token Secret %s disappeared while waiting for its token: the token controller removed it; check that ServiceAccount %s/%s exists", ref, o.namespace, o.serviceAccount)
		}
		if err != nil {
			return false, fmt.Errorf("read Secret %s: %w", ref, err)
		}
		s = got
		return len(s.Data[corev1.ServiceAccountTokenKey]) > 0, nil
	})
	if err != nil {
		if wait.Interrupted(err) && ctx.Err() == nil {
			return "", nil, fmt.Errorf("token Secret %s has no token after %v: the token controller of kube-controller-manager fills it; is it running (with --service-account-private-key-file)?", ref, o.secretWait)
		}
		return "", nil, err
	}
	return string(s.Data[corev1.ServiceAccountTokenKey]), s.Data[corev1.ServiceAccountRootCAKey], nil
}

// adminHint names the likely fix when the admin's credentials were refused.
func adminHint(err error) string {
	switch {
	case apierrors.IsForbidden(err):
		return ": the admin kubeconfig lacks the rights (it needs get on serviceaccounts, create on serviceaccounts/token, and for --secret get/create on secrets); pass --admin-kubeconfig, e.g. /etc/kubernetes/admin.conf"
	case apierrors.IsUnauthorized(err):
		return ": the admin kubeconfig's credentials were refused; pass --admin-kubeconfig"
	}
	return ""
}

// checkPEMCertificates accepts data holding one or more PEM certificates and
// nothing else: a wrong --ca-file would otherwise surface only as TLS errors
// in hostlbd's log.
func checkPEMCertificates(data []byte) error {
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				return errors.New("not PEM: want one or more -----BEGIN CERTIFICATE----- blocks")
			}
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %q: want CERTIFICATE", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate")
	}
	return nil
}

// writeFileAtomic writes data to path so that a reader sees the old file or
// the new one, never a part: a temporary file in the same directory, with
// its final mode and group, synced, then renamed over path. A group that
// does not exist or cannot be set is a warning: the file is still written,
// but hostlbd may not be able to read it.
func writeFileAtomic(path string, data []byte, mode os.FileMode, group string, warn func(string, ...any)) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w (does the directory exist? choose another with --out)", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	// Explicit, so the umask does not decide who may read a credential.
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if group != "" {
		chgrp(f, group, path, warn)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	// The rename is durable once the directory is synced; a failure here
	// leaves a complete file either way.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func chgrp(f *os.File, group, path string, warn func(string, ...any)) {
	g, err := user.LookupGroup(group)
	var unknown user.UnknownGroupError
	if errors.As(err, &unknown) {
		warn("group %s does not exist: %s keeps your group, and hostlbd (user hostlb) may not read it; is the hostlb package installed?", group, path)
		return
	}
	if err != nil {
		warn("look up group %s: %v: %s keeps your group, and hostlbd (user hostlb) may not read it", group, err, path)
		return
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		warn("group %s has gid %q: %v", group, g.Gid, err)
		return
	}
	if err := f.Chown(-1, gid); err != nil {
		warn("chgrp %s %s: %v: hostlbd may not read it; run as root or `chgrp %s %s`", group, path, err, group, path)
	}
}
