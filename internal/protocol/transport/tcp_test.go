package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/testutil/testpki"
)

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestListenTCPRefuses(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	good := func() *tls.Config { return ca.ServerConfig(ca.Server(t)) }
	with := func(change func(*tls.Config)) *tls.Config {
		c := good()
		change(c)
		return c
	}
	tests := []struct {
		name string
		addr string
		cfg  TCPConfig
		err  error // nil: any error
		text string
	}{
		{"zero config", "127.0.0.1:0", TCPConfig{}, ErrTLSRequired, "mutual TLS"},
		{"plaintext on every address", ":0", TCPConfig{AllowPlaintext: true}, ErrNotLoopback, "use TLS"},
		{"plaintext on 0.0.0.0", "0.0.0.0:0", TCPConfig{AllowPlaintext: true}, ErrNotLoopback, "is not one"},
		{"plaintext on [::]", "[::]:0", TCPConfig{AllowPlaintext: true}, ErrNotLoopback, "is not one"},
		{"plaintext on a LAN address", "192.0.2.10:7879", TCPConfig{AllowPlaintext: true}, ErrNotLoopback, "192.0.2.10:7879"},
		{"plaintext on a host name", "broker.example:7879", TCPConfig{AllowPlaintext: true}, ErrNotLoopback, "is not one"},
		{"TLS and plaintext", "127.0.0.1:0", TCPConfig{TLS: good(), AllowPlaintext: true}, ErrTLSConfig, "choose one"},
		{"no server certificate", "127.0.0.1:0", TCPConfig{TLS: with(func(c *tls.Config) { c.Certificates = nil })}, ErrTLSConfig, "no server certificate"},
		{"client certificates not required", "127.0.0.1:0", TCPConfig{TLS: with(func(c *tls.Config) { c.ClientAuth = tls.NoClientCert })}, ErrTLSConfig, "RequireAndVerifyClientCert"},
		{"client certificates not verified", "127.0.0.1:0", TCPConfig{TLS: with(func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert })}, ErrTLSConfig, "RequireAndVerifyClientCert"},
		{"client certificate optional", "127.0.0.1:0", TCPConfig{TLS: with(func(c *tls.Config) { c.ClientAuth = tls.VerifyClientCertIfGiven })}, ErrTLSConfig, "RequireAndVerifyClientCert"},
		{"no client CA", "127.0.0.1:0", TCPConfig{TLS: with(func(c *tls.Config) { c.ClientCAs = nil })}, ErrTLSConfig, "ClientCAs"},
		{"TLS 1.1 allowed", "127.0.0.1:0", TCPConfig{TLS: with(func(c *tls.Config) { c.MinVersion = tls.VersionTLS11 })}, ErrTLSConfig, "below 1.2"},
		{"TLS 1.1 at most", "127.0.0.1:0", TCPConfig{TLS: with(func(c *tls.Config) { c.MinVersion, c.MaxVersion = 0, tls.VersionTLS11 })}, ErrTLSConfig, "below 1.2"},
		{"no port", "127.0.0.1", TCPConfig{AllowPlaintext: true}, nil, "write host:port"},
		{"negative timeout", "127.0.0.1:0", TCPConfig{AllowPlaintext: true, HandshakeTimeout: -time.Second}, nil, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := ListenTCP(tt.addr, tt.cfg)
			if err == nil {
				l.Close()
				t.Fatal("ListenTCP succeeded")
			}
			if (tt.err != nil && !errors.Is(err, tt.err)) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("ListenTCP = %v; want %v containing %q", err, tt.err, tt.text)
			}
		})
	}
}

// Plaintext on loopback is allowed when asked for, and hands out plain
// TCP connections with the handshake deadline set.
func TestListenTCPPlaintextLoopback(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			l, err := ListenTCP(addr, TCPConfig{AllowPlaintext: true, HandshakeTimeout: 100 * time.Millisecond})
			if addr == "[::1]:0" && err != nil && !errors.Is(err, ErrNotLoopback) {
				t.Skipf("no IPv6 loopback here: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			c := dialTCP(t, l.Addr().String())
			defer c.Close()
			sc, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			if _, ok := sc.(*net.TCPConn); !ok {
				t.Errorf("Accept returned %T, want *net.TCPConn", sc)
			}
			// The deadline set at accept ends a read nobody bounded.
			if _, err := sc.Read(make([]byte, 1)); !isTimeoutErr(err) {
				t.Errorf("read on a silent connection: %v, want a timeout", err)
			}
		})
	}
}

// The configuration is cloned: changing it afterwards changes nothing, and
// an unset MinVersion becomes TLS 1.2.
func TestListenTCPClonesConfig(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	cfg := ca.ServerConfig(ca.Server(t))
	cfg.MinVersion = 0
	l, err := ListenTCP("127.0.0.1:0", TCPConfig{TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg.ClientAuth = tls.NoClientCert
	got := l.(*tcpListener).tls
	if got == cfg || got.ClientAuth != tls.RequireAndVerifyClientCert || got.MinVersion != tls.VersionTLS12 || cfg.MinVersion != 0 {
		t.Errorf("listener config %p (ClientAuth %v, MinVersion %x), caller's %p", got, got.ClientAuth, got.MinVersion, cfg)
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.3.2.1": true, "::1": true, "localhost": true, "LocalHost.": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.1": false, "192.0.2.1": false,
		"localhost.example": false, "example.com": false, "::ffff:10.0.0.1": false,
	} {
		if got := IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
