package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/testutil/testpki"
)

// pkiFiles writes a CA, a server certificate and a client certificate
// ("procmond") to a temporary directory.
type pkiFiles struct {
	dir                           string
	ca                            *testpki.CA
	caFile, srvCert, srvKey       string
	client                        *testpki.Leaf
	clientCertFile, clientKeyFile string
}

func newPKIFiles(t *testing.T) *pkiFiles {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	p := &pkiFiles{dir: dir, ca: ca, caFile: ca.Write(t, dir, "ca.pem"), client: ca.Client(t, "procmond")}
	p.srvCert, p.srvKey = ca.Server(t).Write(t, dir, "server")
	p.clientCertFile, p.clientKeyFile = p.client.Write(t, dir, "client")
	return p
}

func TestServerTLSConfig(t *testing.T) {
	p := newPKIFiles(t)
	cfg, err := ServerTLSConfig(p.caFile, p.srvCert, p.srvKey)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil || cfg.MinVersion != tls.VersionTLS12 ||
		len(cfg.Certificates) != 1 || !cfg.SessionTicketsDisabled {
		t.Errorf("config %+v", cfg)
	}

	write := func(name string, data []byte) string {
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	_, otherKey := testpki.NewCA(t, "other CA").Server(t).Write(t, p.dir, "other")
	expiredCert, expiredKey := p.ca.Issue(t, testpki.LeafOptions{
		CommonName: "old", Server: true,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
	}).Write(t, p.dir, "expired")
	leafAsCA := write("leaf-as-ca.pem", p.client.CertPEM)
	noPEM := write("no-pem.pem", []byte("not a certificate\n"))
	garbage := write("garbage.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	missing := filepath.Join(p.dir, "missing.pem")

	tests := []struct {
		name          string
		ca, cert, key string
		want          string
	}{
		{"nothing set", "", "", "", "needs three PEM files"},
		{"no key", p.caFile, p.srvCert, "", "one is not set"},
		{"missing CA file", missing, p.srvCert, p.srvKey, "no such file"},
		{"CA file without PEM", noPEM, p.srvCert, p.srvKey, "holds no PEM certificate"},
		{"CA file with a bad certificate", garbage, p.srvCert, p.srvKey, "certificate 1"},
		{"leaf certificate as the CA", leafAsCA, p.srvCert, p.srvKey, "not a CA certificate"},
		{"key of another certificate", p.caFile, p.srvCert, otherKey, "the key must belong to the certificate"},
		{"missing certificate", p.caFile, missing, p.srvKey, "no such file"},
		{"expired server certificate", p.caFile, expiredCert, expiredKey, "expired at"},
		{"swapped certificate and key", p.caFile, p.srvKey, p.srvCert, "load the server certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ServerTLSConfig(tt.ca, tt.cert, tt.key)
			if !errors.Is(err, ErrTLSConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ServerTLSConfig = %v, want ErrTLSConfig containing %q", err, tt.want)
			}
		})
	}
}

func TestClientTLSConfig(t *testing.T) {
	p := newPKIFiles(t)
	cfg, err := ClientTLSConfig(p.caFile, p.clientCertFile, p.clientKeyFile)
	if err != nil || cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("ClientTLSConfig = %+v, %v", cfg, err)
	}
	if cfg, err := ClientTLSConfig("", "", ""); err != nil || cfg.RootCAs != nil || cfg.Certificates != nil {
		t.Errorf("ClientTLSConfig with no files = %+v, %v; want system roots, no certificate", cfg, err)
	}
	if _, err := ClientTLSConfig(p.caFile, p.clientCertFile, ""); !errors.Is(err, ErrTLSConfig) || !strings.Contains(err.Error(), "both") {
		t.Errorf("certificate without key: %v", err)
	}
	if _, err := ClientTLSConfig(p.clientKeyFile, "", ""); !errors.Is(err, ErrTLSConfig) || !strings.Contains(err.Error(), "server CA") {
		t.Errorf("key as the CA: %v", err)
	}
}

func TestCertName(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	tests := []struct {
		name string
		o    testpki.LeafOptions
		want string // empty: ErrCertName
	}{
		{"URI SAN first", testpki.LeafOptions{CommonName: "cn", DNSNames: []string{"dns.example"}, URIs: []string{"spiffe://daemoneye.test/agent", "spiffe://x/y"}}, "spiffe://daemoneye.test/agent"},
		{"DNS SAN before CN", testpki.LeafOptions{CommonName: "cn", DNSNames: []string{"collector.example", "b.example"}}, "collector.example"},
		{"common name", testpki.LeafOptions{CommonName: "procmond"}, "procmond"},
		{"no name at all", testpki.LeafOptions{}, ""},
		{"control character", testpki.LeafOptions{CommonName: "evil\nidentity: root"}, ""},
		{"too long", testpki.LeafOptions{CommonName: strings.Repeat("a", MaxCertNameLen+1)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CertName(ca.Issue(t, tt.o).Cert)
			if tt.want == "" {
				if !errors.Is(err, ErrCertName) {
					t.Errorf("CertName = %q, %v; want ErrCertName", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("CertName = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

type handshakeResult struct {
	name string
	err  error
}

// serveOne serves one connection: it forces the handshake with
// PeerCertOf, reports the certificate's name or the error, and answers
// "ok" to a client it accepted.
func serveOne(ctx context.Context, t *testing.T, accept func() (*tls.Conn, error)) <-chan handshakeResult {
	t.Helper()
	res := make(chan handshakeResult, 1)
	go func() {
		c, err := accept()
		if err != nil {
			res <- handshakeResult{err: err}
			return
		}
		defer c.Close()
		var name string
		cert, err := PeerCertOf(ctx, c)
		if err == nil {
			name, err = CertName(cert)
		}
		if err == nil {
			c.Write([]byte("ok"))
		}
		res <- handshakeResult{name, err}
	}()
	return res
}

func tlsListener(t *testing.T, cfg TCPConfig) (string, func() (*tls.Conn, error)) {
	t.Helper()
	l, err := ListenTCP("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String(), func() (*tls.Conn, error) {
		c, err := l.Accept()
		if err != nil {
			return nil, err
		}
		return c.(*tls.Conn), nil
	}
}

func TestMutualTLS(t *testing.T) {
	p := newPKIFiles(t)
	srvCfg, err := ServerTLSConfig(p.caFile, p.srvCert, p.srvKey)
	if err != nil {
		t.Fatal(err)
	}
	addr, accept := tlsListener(t, TCPConfig{TLS: srvCfg})
	other := testpki.NewCA(t, "other CA")

	forced := p.ca.ClientConfig(nil)
	foreign := other.Client(t, "procmond")
	forced.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign.TLS, nil }
	withVersions := func(c *tls.Config, lo, hi uint16) *tls.Config {
		c.MinVersion, c.MaxVersion = lo, hi
		return c
	}
	tests := []struct {
		name      string
		client    *tls.Config
		want      string // the certificate name the server sees; empty: refused
		serverErr string // what the server's error says when refused
	}{
		{"CA-signed client certificate", p.ca.ClientConfig(p.client), "procmond", ""},
		{"TLS 1.2", withVersions(p.ca.ClientConfig(p.client), tls.VersionTLS12, tls.VersionTLS12), "procmond", ""},
		{"URI SAN", p.ca.ClientConfig(p.ca.Client(t, "cn", "spiffe://daemoneye.test/agent")), "spiffe://daemoneye.test/agent", ""},
		// A Go client offers no certificate the server's CA list rules out...
		{"certificate from another CA", p.ca.ClientConfig(other.Client(t, "procmond")), "", "certificate"},
		// ...so force it, to see the server's verification refuse it.
		{"certificate from another CA, forced", forced, "", "unknown authority"},
		{"no client certificate", p.ca.ClientConfig(nil), "", "certificate"},
		{"no client certificate, TLS 1.2", withVersions(p.ca.ClientConfig(nil), tls.VersionTLS12, tls.VersionTLS12), "", "certificate"},
		{"TLS 1.1", withVersions(p.ca.ClientConfig(p.client), tls.VersionTLS10, tls.VersionTLS11), "", "version"},
		{"expired client certificate", p.ca.ClientConfig(p.ca.Issue(t, testpki.LeafOptions{
			CommonName: "old", NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		})), "", "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := serveOne(t.Context(), t, accept)
			clientErr := dialAndRead(t, addr, tt.client)
			r := <-res
			if tt.want != "" {
				if r.err != nil || r.name != tt.want || clientErr != nil {
					t.Fatalf("server: %q, %v; client: %v; want %q", r.name, r.err, clientErr, tt.want)
				}
				return
			}
			if r.err == nil || !strings.Contains(r.err.Error(), tt.serverErr) {
				t.Errorf("server: %q, %v; want an error containing %q", r.name, r.err, tt.serverErr)
			}
			if clientErr == nil {
				t.Error("the client was not refused")
			}
		})
	}
}

// dialAndRead connects, completes the client's handshake and reads the
// server's "ok": under TLS 1.3 a refused client certificate shows only then.
func dialAndRead(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	cfg.ServerName = "127.0.0.1"
	d := &tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	return nil
}

// The handshake cannot outlast HandshakeTimeout, even if whoever accepts
// the connection sets no deadline, nor the context PeerCertOf is given.
func TestHandshakeIsBounded(t *testing.T) {
	p := newPKIFiles(t)
	srvCfg, err := ServerTLSConfig(p.caFile, p.srvCert, p.srvKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     time.Duration
	}{
		{"listener deadline", 100 * time.Millisecond, time.Minute},
		{"context", time.Minute, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, accept := tlsListener(t, TCPConfig{TLS: srvCfg, HandshakeTimeout: tt.timeout})
			ctx, cancel := context.WithTimeout(t.Context(), tt.ctx)
			defer cancel()
			res := serveOne(ctx, t, accept)
			silent := dialTCP(t, addr) // connects and says nothing
			defer silent.Close()
			select {
			case r := <-res:
				if r.err == nil {
					t.Fatal("a silent client completed the handshake")
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the handshake was not bounded")
			}
		})
	}
}

// PeerCertOf refuses a connection whose certificate nobody verified.
func TestPeerCertOfNeedsVerification(t *testing.T) {
	p := newPKIFiles(t)
	srv := p.ca.ServerConfig(p.ca.Server(t))
	srv.ClientAuth = tls.RequireAnyClientCert // a configuration ListenTCP would refuse
	l, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	res := serveOne(t.Context(), t, func() (*tls.Conn, error) {
		c, err := l.Accept()
		if err != nil {
			return nil, err
		}
		return c.(*tls.Conn), nil
	})
	dialAndRead(t, l.Addr().String(), p.ca.ClientConfig(p.client))
	if r := <-res; !errors.Is(r.err, ErrNoClientCert) {
		t.Errorf("PeerCertOf over an unverified certificate: %q, %v; want ErrNoClientCert", r.name, r.err)
	}
}
