package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
	"unicode"
	"unicode/utf8"
)

// Errors about TLS configuration and client certificates.
var (
	// ErrTLSConfig is wrapped by every error about a TLS configuration or
	// the files it is loaded from; the text names the file and the fix.
	ErrTLSConfig = errors.New("transport: bad TLS configuration")
	// ErrNoClientCert is returned by PeerCertOf when the handshake
	// produced no client certificate verified against a CA.
	ErrNoClientCert = errors.New("transport: no verified client certificate")
	// ErrCertName is returned by CertName for a certificate with no
	// usable name.
	ErrCertName = errors.New("transport: no usable name in the certificate")
)

// MaxCertNameLen bounds the name CertName accepts, in bytes.
const MaxCertNameLen = 255

// ServerTLSConfig builds the configuration a TLS listener needs from PEM
// files: caFile holds the CA certificate(s) that sign client certificates
// (every block must be a CA certificate), certFile the server's
// certificate chain (leaf first) and keyFile its private key. All three
// are required. The configuration requires and verifies client
// certificates (tls.RequireAndVerifyClientCert), allows TLS 1.2 and 1.3
// (1.3 is chosen whenever the client speaks it) and disables session
// tickets, so every connection verifies its certificate afresh.
//
// The files are read once; to pick up renewed certificates, build a new
// configuration and a new listener. Errors wrap ErrTLSConfig and say which
// file is wrong and how.
func ServerTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("%w: TLS needs three PEM files: the CA that signs client certificates, the server certificate, and its key; one is not set (CA %q, certificate %q, key %q)",
			ErrTLSConfig, caFile, certFile, keyFile)
	}
	pool, err := loadCAPool(caFile, "client CA")
	if err != nil {
		return nil, err
	}
	cert, err := loadKeyPair(certFile, keyFile, "server")
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS12,
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequireAndVerifyClientCert,
		ClientCAs:              pool,
		SessionTicketsDisabled: true,
	}, nil
}

// ClientTLSConfig builds a client's configuration from PEM files: caFile
// holds the CA certificate(s) that sign the server's certificate (empty:
// the system's roots), certFile and keyFile the client's certificate chain
// and key (both empty: no client certificate, which a DaemonEye broker
// refuses). The minimum version is TLS 1.2. The caller sets ServerName if
// it differs from the host it dials. Errors wrap ErrTLSConfig.
func ClientTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadCAPool(caFile, "server CA")
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := loadKeyPair(certFile, keyFile, "client")
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "" || keyFile != "":
		return nil, fmt.Errorf("%w: a client certificate needs both its certificate file and its key file (certificate %q, key %q)",
			ErrTLSConfig, certFile, keyFile)
	}
	return cfg, nil
}

// loadCAPool reads a PEM file of CA certificates. role names the file in
// errors ("client CA").
func loadCAPool(path, role string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read the %s file: %w", ErrTLSConfig, role, err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue // a key or parameters block beside the certificates
		}
		n++
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s file %s, certificate %d: %w", ErrTLSConfig, role, path, n, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("%w: %s file %s, certificate %d (%s) is not a CA certificate: give the certificate of the CA that signs the %s certificates, not a leaf certificate",
				ErrTLSConfig, role, path, n, c.Subject, peerOf(role))
		}
		pool.AddCert(c)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: %s file %s holds no PEM certificate (a \"-----BEGIN CERTIFICATE-----\" block)", ErrTLSConfig, role, path)
	}
	return pool, nil
}

func peerOf(role string) string {
	if role == "client CA" {
		return "client"
	}
	return "server"
}

// loadKeyPair reads a certificate and its key and checks that the
// certificate is valid now. role names them in errors ("server").
func loadKeyPair(certFile, keyFile, role string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: load the %s certificate %s and key %s: %w (both must be PEM, and the key must belong to the certificate)",
			ErrTLSConfig, role, certFile, keyFile, err)
	}
	leaf := cert.Leaf // parsed by LoadX509KeyPair since Go 1.23
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("%w: %s certificate %s: %w", ErrTLSConfig, role, certFile, err)
		}
	}
	now := time.Now()
	switch {
	case now.After(leaf.NotAfter):
		return tls.Certificate{}, fmt.Errorf("%w: the %s certificate %s expired at %s: renew it",
			ErrTLSConfig, role, certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return tls.Certificate{}, fmt.Errorf("%w: the %s certificate %s is not valid before %s: check this host's clock",
			ErrTLSConfig, role, certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

// PeerCertOf completes the TLS handshake on c, bounded by ctx, and returns
// the client certificate that was verified against the listener's client
// CAs. Over a server connection whose configuration does not verify client
// certificates it returns an error wrapping ErrNoClientCert: an unverified
// certificate proves nothing. If ctx ends first, the handshake fails and
// c is closed (crypto/tls's rule). PeerCertOf is safe to call after the
// handshake has already run: it then only reads the connection state.
func PeerCertOf(ctx context.Context, c *tls.Conn) (*x509.Certificate, error) {
	if err := c.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("transport: TLS handshake: %w", err)
	}
	st := c.ConnectionState()
	if len(st.PeerCertificates) == 0 || len(st.VerifiedChains) == 0 {
		return nil, fmt.Errorf("%w: the connection has no client certificate verified against a CA: listen with ListenTCP and a configuration that requires verified client certificates",
			ErrNoClientCert)
	}
	return st.PeerCertificates[0], nil
}

// CertName returns the name a certificate identifies: its first URI SAN
// (for example spiffe://example.org/procmond), else its first DNS SAN,
// else its subject common name. Later SANs are ignored, and a lower-ranked
// field is never consulted when a higher-ranked one is present. The name
// must be valid UTF-8, printable (no control characters) and at most
// MaxCertNameLen bytes; otherwise, or when the certificate has none of
// the three, the error wraps ErrCertName.
func CertName(cert *x509.Certificate) (string, error) {
	var name, field string
	switch {
	case len(cert.URIs) > 0:
		name, field = cert.URIs[0].String(), "URI SAN"
	case len(cert.DNSNames) > 0:
		name, field = cert.DNSNames[0], "DNS SAN"
	case cert.Subject.CommonName != "":
		name, field = cert.Subject.CommonName, "common name"
	default:
		return "", fmt.Errorf("%w: the certificate (subject %q, serial %s) has no URI SAN, DNS SAN or common name: issue it with one, for example CN=procmond",
			ErrCertName, cert.Subject.String(), cert.SerialNumber)
	}
	if !printable(name) || len(name) > MaxCertNameLen {
		return "", fmt.Errorf("%w: the certificate's %s %q is not printable UTF-8 of at most %d bytes: reissue it with a plain name",
			ErrCertName, field, name, MaxCertNameLen)
	}
	return name, nil
}

func printable(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
