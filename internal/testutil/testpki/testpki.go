// Package testpki issues throwaway certificates for tests: a certificate
// authority, server certificates for the loopback addresses, and client
// certificates with a chosen common name and subject alternative names.
//
// Keys are ECDSA P-256 and live in memory; certificates are valid from one
// minute ago for one hour unless LeafOptions says otherwise. Write puts the
// PEM files in a directory of the caller's choice (a t.TempDir()), for code
// that loads them by path. Nothing here is fit for production.
//
// Every function stops the test with t.Fatal on failure. The values are
// immutable once issued and safe for concurrent use.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Validity is how long certificates are valid by default, from one minute
// before they are issued.
const Validity = time.Hour

// CA is a certificate authority that signs server and client certificates.
type CA struct {
	Name    string            // the CA's common name
	Cert    *x509.Certificate // the self-signed CA certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte // Cert, PEM-encoded
}

// NewCA returns a fresh CA whose common name is name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"DaemonEye tests"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testpki: create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testpki: parse CA certificate: %v", err)
	}
	return &CA{Name: name, Cert: cert, Key: key, CertPEM: pemCert(der)}
}

// Pool returns a new pool holding only the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Write writes the CA certificate to dir/name and returns the path.
func (ca *CA) Write(t testing.TB, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, ca.CertPEM, 0o600); err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return path
}

// LeafOptions describes a certificate for Issue. The zero value is a client
// certificate with no names, valid for Validity.
type LeafOptions struct {
	CommonName string
	DNSNames   []string
	URIs       []string // parsed with url.Parse; a bad one fails the test
	IPs        []net.IP
	// Server makes a server certificate (extended key usage serverAuth)
	// instead of a client certificate (clientAuth).
	Server bool
	// NotBefore and NotAfter default to one minute ago and Validity from
	// now.
	NotBefore, NotAfter time.Time
}

// Leaf is an issued certificate with its key.
type Leaf struct {
	Cert    *x509.Certificate
	TLS     tls.Certificate // the chain (leaf only) and key, for a tls.Config
	CertPEM []byte
	KeyPEM  []byte // PKCS #8
}

// Issue signs a certificate described by o.
func (ca *CA) Issue(t testing.TB, o LeafOptions) *Leaf {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: o.CommonName},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              o.DNSNames,
		IPAddresses:           o.IPs,
	}
	if o.Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	if !o.NotBefore.IsZero() {
		tmpl.NotBefore = o.NotBefore
	}
	if !o.NotAfter.IsZero() {
		tmpl.NotAfter = o.NotAfter
	}
	for _, s := range o.URIs {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("testpki: URI SAN %q: %v", s, err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("testpki: create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testpki: parse certificate: %v", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testpki: marshal key: %v", err)
	}
	return &Leaf{
		Cert:    cert,
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
		CertPEM: pemCert(der),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
	}
}

// Server issues a server certificate for 127.0.0.1, ::1 and localhost,
// with common name "daemoneye-broker".
func (ca *CA) Server(t testing.TB) *Leaf {
	t.Helper()
	return ca.Issue(t, LeafOptions{
		CommonName: "daemoneye-broker", Server: true,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	})
}

// Client issues a client certificate with common name cn and the given
// URI SANs.
func (ca *CA) Client(t testing.TB, cn string, uris ...string) *Leaf {
	t.Helper()
	return ca.Issue(t, LeafOptions{CommonName: cn, URIs: uris})
}

// Write writes the certificate and key to dir/name.crt and dir/name.key
// (mode 0600) and returns their paths.
func (l *Leaf) Write(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, l.CertPEM, 0o600); err != nil {
		t.Fatalf("testpki: %v", err)
	}
	if err := os.WriteFile(keyFile, l.KeyPEM, 0o600); err != nil {
		t.Fatalf("testpki: %v", err)
	}
	return certFile, keyFile
}

// ServerConfig returns a server configuration presenting srv and requiring
// client certificates signed by ca: what transport.ServerTLSConfig builds
// from files.
func (ca *CA) ServerConfig(srv *Leaf) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{srv.TLS},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	}
}

// ClientConfig returns a client configuration trusting ca for the server
// and presenting client, or no certificate when client is nil.
func (ca *CA) ClientConfig(client *Leaf) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: ca.Pool()}
	if client != nil {
		c.Certificates = []tls.Certificate{client.TLS}
	}
	return c
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testpki: generate key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("testpki: serial number: %v", err)
	}
	return n
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
