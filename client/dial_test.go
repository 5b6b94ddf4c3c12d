package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/transport"
	"github.com/daemoneye/daemoneye/internal/testutil/testpki"
	"github.com/daemoneye/daemoneye/server"
)

const (
	ciToken  = "ci-token-0123456789abcdef0123456789abcdef"
	badToken = "not-the-token-0123456789"
)

// netBroker is a broker served on the UNIX socket, TLS and plaintext
// loopback TCP, with the PEM files of a CA, a client certificate
// ("procmond") and the CA's certificate on disk.
type netBroker struct {
	unix, tls, tcp            string // addresses for Dial
	ca                        *testpki.CA
	caFile, certFile, keyFile string
}

func startNetBroker(t *testing.T, auth server.Auth) *netBroker {
	t.Helper()
	b, err := eventbus.New(eventbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Broker: b, Logger: testLogger(), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	nb := &netBroker{ca: ca, caFile: ca.Write(t, dir, "ca.pem")}
	nb.certFile, nb.keyFile = ca.Client(t, "procmond").Write(t, dir, "client")
	srvCert, srvKey := ca.Server(t).Write(t, dir, "server")
	tlsCfg, err := transport.ServerTLSConfig(nb.caFile, srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "eventbus.sock")
	ul, err := transport.ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := transport.ListenTCP("127.0.0.1:0", transport.TCPConfig{TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := transport.ListenTCP("127.0.0.1:0", transport.TCPConfig{AllowPlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	listeners := []net.Listener{ul, tl, pl}
	served := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { served <- srv.Serve(l) }()
	}
	t.Cleanup(func() {
		srv.Close()
		for range listeners {
			<-served
		}
		b.Close()
	})
	nb.unix, nb.tls, nb.tcp = "unix://"+path, "tls://"+tl.Addr().String(), "tcp://"+pl.Addr().String()
	return nb
}

// tlsConfig loads the client's configuration from the broker's files.
func (nb *netBroker) tlsConfig(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := LoadTLSConfig(nb.caFile, nb.certFile, nb.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func dialOK(t *testing.T, addr string, opts Options) *Conn {
	t.Helper()
	opts.NoReconnect = true
	c, err := Dial(t.Context(), addr, opts)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestParseAddr(t *testing.T) {
	tests := []struct {
		addr string
		want endpoint // zero: ErrAddress
		text string
	}{
		{"/run/de/eventbus.sock", endpoint{network: "unix", address: "/run/de/eventbus.sock"}, ""},
		{"unix:///run/de/eventbus.sock", endpoint{network: "unix", address: "/run/de/eventbus.sock"}, ""},
		{"tls://127.0.0.1:7879", endpoint{network: "tcp", address: "127.0.0.1:7879", host: "127.0.0.1", tls: true}, ""},
		{"tls://broker.example:7879/", endpoint{network: "tcp", address: "broker.example:7879", host: "broker.example", tls: true}, ""},
		{"tls://[2001:db8::1]:7879", endpoint{network: "tcp", address: "[2001:db8::1]:7879", host: "2001:db8::1", tls: true}, ""},
		{"tcp://127.0.0.1:7879", endpoint{network: "tcp", address: "127.0.0.1:7879", host: "127.0.0.1"}, ""},
		{"tcp://[::1]:7879", endpoint{network: "tcp", address: "[::1]:7879", host: "::1"}, ""},
		{"tcp://localhost:7879", endpoint{network: "tcp", address: "localhost:7879", host: "localhost"}, ""},
		{"unix://relative.sock", endpoint{}, "absolute path"},
		{"tls://broker.example", endpoint{}, "write tls://host:port"},
		{"tls://:7879", endpoint{}, "write tls://host:port"},
		{"tls://broker.example:7879/path", endpoint{}, "write tls://host:port"},
		{"tcp://10.0.0.5:7879", endpoint{}, "allowed only to a loopback host"},
		{"tcp://broker.example:7879", endpoint{}, "use tls://broker.example:7879"},
		{"tcp://0.0.0.0:7879", endpoint{}, "loopback"},
		{"http://127.0.0.1:80", endpoint{}, `unknown scheme "http"`},
		{"inproc://", endpoint{}, "use client.Connect(broker, opts)"},
		{"inproc://agent", endpoint{}, "use client.Connect(broker, opts)"},
	}
	for _, tt := range tests {
		got, err := parseAddr(tt.addr)
		if tt.text != "" {
			if !errors.Is(err, ErrAddress) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("parseAddr(%q) = %+v, %v; want ErrAddress containing %q", tt.addr, got, err, tt.text)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseAddr(%q) = %+v, %v; want %+v", tt.addr, got, err, tt.want)
		}
	}
}

// mTLS with a CA-signed certificate: the identity is the certificate's,
// and messages flow between TLS, plaintext-TCP and UNIX clients.
func TestDialTLS(t *testing.T) {
	nb := startNetBroker(t, server.Auth{Tokens: []server.Token{{Name: "ci", Secret: ciToken}}})
	sub := dialOK(t, nb.tls, Options{Name: "sub", TLSConfig: nb.tlsConfig(t)})
	if id := sub.Identity(); id != "cert:procmond" {
		t.Errorf("identity %q, want cert:procmond", id)
	}
	// The ServerName defaults to the host dialed: localhost is a DNS SAN.
	byName := dialOK(t, strings.Replace(nb.tls, "127.0.0.1", "localhost", 1), Options{TLSConfig: nb.tlsConfig(t)})
	if id := byName.Identity(); id != "cert:procmond" {
		t.Errorf("identity over tls://localhost %q", id)
	}
	s, err := sub.Subscribe(t.Context(), "events.#", 16)
	if err != nil {
		t.Fatal(err)
	}
	pubs := map[string]*Conn{
		"tls":  byName,
		"tcp":  dialOK(t, nb.tcp, Options{Token: ciToken}),
		"unix": dialOK(t, nb.unix, Options{}),
	}
	for name, pub := range pubs {
		if err := pub.Publish("events."+name, []byte(name)); err != nil {
			t.Fatal(err)
		}
		if err := pub.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-s.C():
			if m.Topic != "events."+name || string(m.Payload) != name {
				t.Errorf("got %+v", m)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("no message from the %s publisher", name)
		}
	}
}

func TestDialTLSRefused(t *testing.T) {
	nb := startNetBroker(t, server.Auth{Tokens: []server.Token{{Name: "ci", Secret: ciToken}}})
	other := testpki.NewCA(t, "other CA")
	dir := t.TempDir()
	otherCert, otherKey := other.Client(t, "procmond").Write(t, dir, "other")
	foreignClient, err := LoadTLSConfig(nb.caFile, otherCert, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	foreign := other.Client(t, "procmond")
	forced := nb.ca.ClientConfig(nil)
	forced.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign.TLS, nil }
	noCert, err := LoadTLSConfig(nb.caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	untrusted := nb.tlsConfig(t)
	untrusted.RootCAs = other.Pool()
	old := nb.tlsConfig(t)
	old.MaxVersion = tls.VersionTLS11

	tests := []struct {
		name string
		opts Options
		err  error // nil: any error
		text string
	}{
		{"client certificate from another CA", Options{TLSConfig: foreignClient}, ErrRefused, "client certificate signed by the CA the broker trusts"},
		{"forced certificate from another CA", Options{TLSConfig: forced}, ErrRefused, "client certificate signed by the CA the broker trusts"},
		{"no client certificate", Options{TLSConfig: noCert}, ErrRefused, "client certificate"},
		{"no TLS configuration at all", Options{}, nil, "TLS handshake"},
		{"server certificate from an unknown CA", Options{TLSConfig: untrusted}, nil, "not signed by a CA in Options.TLSConfig.RootCAs"},
		{"TLS 1.1", Options{TLSConfig: old}, nil, "the broker requires TLS 1.2 or newer"},
		{"token over TLS", Options{TLSConfig: nb.tlsConfig(t), Token: ciToken}, ErrRefused, "the client certificate identifies the client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.NoReconnect = true
			c, err := Dial(t.Context(), nb.tls, tt.opts)
			if err == nil {
				c.Close()
				t.Fatalf("Dial succeeded as %s", c.Identity())
			}
			t.Log(err)
			if (tt.err != nil && !errors.Is(err, tt.err)) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Dial = %v; want %v containing %q", err, tt.err, tt.text)
			}
		})
	}
}

func TestDialToken(t *testing.T) {
	nb := startNetBroker(t, server.Auth{Tokens: []server.Token{{Name: "ci", Secret: ciToken}}})
	tests := []struct {
		name     string
		addr     string
		token    string
		identity string // empty: refused with text
		text     string
	}{
		{"tcp with the token", nb.tcp, ciToken, "token:ci", ""},
		{"unix with the token", nb.unix, ciToken, "token:ci", ""},
		{"unix without a token", nb.unix, "", fmt.Sprintf("uid:%d", os.Getuid()), ""},
		{"tcp with a wrong token", nb.tcp, badToken, "", "not one this broker knows"},
		{"tcp without a token", nb.tcp, "", "", "carries no peer identity: send a token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Dial(t.Context(), tt.addr, Options{Token: tt.token, NoReconnect: true})
			if tt.identity == "" {
				if err == nil {
					c.Close()
					t.Fatalf("Dial succeeded as %s", c.Identity())
				}
				t.Log(err)
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.text) || strings.Contains(err.Error(), badToken) {
					t.Errorf("Dial = %v; want ErrRefused containing %q (and no token)", err, tt.text)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if id := c.Identity(); id != tt.identity {
				t.Errorf("identity %q, want %q", id, tt.identity)
			}
		})
	}
}

// Plaintext TCP to anything but loopback is refused before connecting.
func TestDialPlainTCPOnlyToLoopback(t *testing.T) {
	for _, addr := range []string{"tcp://192.0.2.1:7879", "tcp://broker.example:7879", "tcp://[2001:db8::1]:7879"} {
		start := time.Now()
		_, err := Dial(t.Context(), addr, Options{Token: ciToken, DialTimeout: 10 * time.Second})
		if !errors.Is(err, ErrAddress) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("Dial(%s) = %v, want ErrAddress", addr, err)
		}
		if time.Since(start) > time.Second {
			t.Errorf("Dial(%s) tried to connect", addr)
		}
	}
}

func TestLoadTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadTLSConfig(filepath.Join(dir, "missing.pem"), "", ""); !errors.Is(err, transport.ErrTLSConfig) || !strings.Contains(err.Error(), "server CA") {
		t.Errorf("missing CA file: %v", err)
	}
	if _, err := LoadTLSConfig("", filepath.Join(dir, "c.crt"), ""); !errors.Is(err, transport.ErrTLSConfig) || !strings.Contains(err.Error(), "both") {
		t.Errorf("certificate without key: %v", err)
	}
}
