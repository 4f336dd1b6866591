package kubeapi

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// pki is the cluster's throwaway PKI, as files in <dir>/pki (the processes
// read them) and as PEM in memory (the clients use them).
type pki struct {
	caCert, caKey         string // CA: signs the serving and the client certificates
	serverCert, serverKey string // kube-apiserver's serving certificate
	saPub, saKey          string // ServiceAccount token signing pair
	adminCert, adminKey   string // client certificate of CN admin, O system:masters

	caPEM, adminCertPEM, adminKeyPEM []byte
}

// certValidity covers any test run; the PKI lives as long as the cluster.
const certValidity = 7 * 24 * time.Hour

// newPKI writes a CA, a serving certificate for bind, "localhost" and the
// names and first ClusterIPs the in-cluster `kubernetes` Service has, the
// ServiceAccount key pair and the admin client certificate into dir.
func newPKI(dir string, bind netip.Addr, serviceIPs []netip.Addr) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	p := &pki{
		caCert: filepath.Join(dir, "ca.crt"), caKey: filepath.Join(dir, "ca.key"),
		serverCert: filepath.Join(dir, "apiserver.crt"), serverKey: filepath.Join(dir, "apiserver.key"),
		saPub: filepath.Join(dir, "sa.pub"), saKey: filepath.Join(dir, "sa.key"),
		adminCert: filepath.Join(dir, "admin.crt"), adminKey: filepath.Join(dir, "admin.key"),
	}
	now := time.Now().Add(-time.Hour) // valid from an hour ago: a clock step must not void it
	caKey, err := newKey()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "hostlb-test-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caCert, caDER, err := sign(caTmpl, caKey.Public(), nil, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	p.caPEM = pemCert(caDER)

	serverKey, err := newKey()
	if err != nil {
		return nil, err
	}
	ips := []net.IP{net.IP(bind.AsSlice()), net.ParseIP("127.0.0.1")}
	for _, a := range serviceIPs {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	_, serverDER, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:   now,
		NotAfter:    now.Add(certValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: ips,
	}, serverKey.Public(), caCert, caKey)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}

	adminKey, err := newKey()
	if err != nil {
		return nil, err
	}
	_, adminDER, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		NotBefore:   now,
		NotAfter:    now.Add(certValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, adminKey.Public(), caCert, caKey)
	if err != nil {
		return nil, fmt.Errorf("admin certificate: %w", err)
	}
	p.adminCertPEM = pemCert(adminDER)

	saKey, err := newKey()
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, fmt.Errorf("ServiceAccount public key: %w", err)
	}

	files := []struct {
		path string
		data []byte
	}{
		{p.caCert, p.caPEM},
		{p.serverCert, pemCert(serverDER)},
		{p.adminCert, p.adminCertPEM},
		{p.saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER})},
	}
	for _, k := range []struct {
		path string
		key  *ecdsa.PrivateKey
		out  *[]byte
	}{
		{p.caKey, caKey, nil},
		{p.serverKey, serverKey, nil},
		{p.adminKey, adminKey, &p.adminKeyPEM},
		{p.saKey, saKey, nil},
	} {
		der, err := x509.MarshalECPrivateKey(k.key)
		if err != nil {
			return nil, fmt.Errorf("marshal key for %s: %w", k.path, err)
		}
		data := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
		if k.out != nil {
			*k.out = data
		}
		files = append(files, struct {
			path string
			data []byte
		}{k.path, data})
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return p, nil
}

// newKey makes a P-256 key: every consumer here (TLS, ES256 ServiceAccount
// tokens) takes ECDSA, and it is much faster to generate than RSA.
func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

// sign issues tmpl for pub, signed by parent's key (self-signed when parent
// is nil).
func sign(tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, []byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, der, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
