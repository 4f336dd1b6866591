package kubeapi

import (
	"context"
	"fmt"
	"os"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/hostlb/hostlb/packaging/manifests"
)

// tokenLifetime outlasts any test; the apiserver sets no maximum here.
const tokenLifetime = 24 * 60 * 60 // seconds

// ServiceAccountConfig asks the TokenRequest API for a token of the
// ServiceAccount namespace/name (empty: manifests.Namespace and
// manifests.ServiceAccount, kube-system/hostlb, the one the manifests ship) and returns a client config that authenticates with it
// and trusts the cluster's CA: a client with exactly the RBAC of that
// account, as hostlbd has in production. The ServiceAccount must exist
// (ApplyManifests creates kube-system/hostlb).
func (c *Cluster) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	if namespace == "" {
		namespace = manifests.Namespace
	}
	if name == "" {
		name = manifests.ServiceAccount
	}
	exp := int64(tokenLifetime)
	tr, err := c.admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubeapi: token for ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return &rest.Config{
		Host:            c.URL(),
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.pki.caPEM},
		Dial:            c.dial(), // nil without Netns
	}, nil
}

// WriteKubeconfig writes cfg as a kubeconfig file (mode 0600) at path, with
// the certificates and the token inline where cfg has them as data, so that
// a process (hostlbd, kube-controller-manager, kubectl) can use it.
func WriteKubeconfig(path string, cfg *rest.Config) error {
	const name = "hostlb-test"
	cluster := &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
		InsecureSkipTLSVerify:    cfg.Insecure,
		TLSServerName:            cfg.ServerName,
	}
	user := &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.CertFile,
		ClientCertificateData: cfg.CertData,
		ClientKey:             cfg.KeyFile,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Username:              cfg.Username,
		Password:              cfg.Password,
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = cluster
	kc.AuthInfos[name] = user
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return fmt.Errorf("encode kubeconfig %s: %w", path, err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}
