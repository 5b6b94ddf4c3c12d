package server

import (
	"context"
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
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/internal/testutil/testpki"
)

// Secrets of the tokens in testTokens.
const (
	ciSecret      = "ci-0123456789abcdef0123456789abcdef-old"
	ciRotated     = "ci-0123456789abcdef0123456789abcdef-new"
	opsSecret     = "ops-fedcba9876543210fedcba9876543210"
	unknownSecret = "nobody-00112233445566778899aabbccddeeff"
)

var testTokens = []Token{{"ci", ciSecret}, {"ci", ciRotated}, {"ops", opsSecret}}

// endpoints is one server listening on the UNIX socket, TLS and plaintext
// loopback TCP, with a CA whose client certificates it accepts.
type endpoints struct {
	unix, tls, tcp string
	ca             *testpki.CA
	srv            *Server
}

// startAll runs a broker and one server on three listeners. The TLS
// configuration is loaded from files, as the broker does.
func startAll(t *testing.T, opts Options) *endpoints {
	t.Helper()
	b, err := eventbus.New(eventbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts.Broker = b
	if err := opts.Auth.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	certFile, keyFile := ca.Server(t).Write(t, dir, "server")
	tlsCfg, err := transport.ServerTLSConfig(ca.Write(t, dir, "ca.pem"), certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, transport.SocketName)
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
			if err := <-served; !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve = %v, want ErrServerClosed", err)
			}
		}
		b.Close()
	})
	return &endpoints{unix: path, tls: tl.Addr().String(), tcp: pl.Addr().String(), ca: ca, srv: srv}
}

// rawDialTCP connects over plaintext TCP.
func rawDialTCP(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: wire.NewReader(nc, 0)}
}

// rawDialTLS connects over TLS and completes the client's side of the
// TLS handshake (under TLS 1.3 the server may still refuse the
// certificate: the client reads that as an alert).
func rawDialTLS(t *testing.T, addr string, cfg *tls.Config) *client {
	t.Helper()
	cfg.ServerName = "127.0.0.1"
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	nc, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: wire.NewReader(nc, 0)}
}

func (c *client) hello(method uint8, cred string) {
	c.t.Helper()
	c.send(wire.Magic[:])
	c.send(wire.AppendHello(nil, &wire.Hello{
		Versions: []wire.Version{wire.Current}, AuthMethod: method, Credential: []byte(cred), ClientName: []byte("auth-test"),
	}))
}

// expectWelcome reads the welcome and returns the identity in it.
func (c *client) expectWelcome() string {
	c.t.Helper()
	f := c.frame()
	if f.Type != wire.TypeWelcome {
		e, _ := wire.ParseError(f.Type, f.Flags, f.Body)
		c.t.Fatalf("got %s %q, want welcome", f.Type, e.Text)
	}
	w, err := wire.ParseWelcome(f.Flags, f.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(w.Identity)
}

// Every transport with every auth method: the identity it yields, or the
// refusal and what it tells the client.
func TestAuthMethodsByTransport(t *testing.T) {
	ep := startAll(t, Options{Auth: Auth{Tokens: testTokens}})
	procmond := ep.ca.ClientConfig(ep.ca.Client(t, "procmond"))
	agent := ep.ca.ClientConfig(ep.ca.Client(t, "agent", "spiffe://daemoneye.test/agent"))
	me := fmt.Sprintf("uid:%d", os.Getuid())
	tests := []struct {
		name      string
		transport string      // unix, tls, tcp
		tls       *tls.Config // for tls
		method    uint8
		cred      string
		identity  string // empty: refused with text
		text      string
	}{
		{"unix peer", "unix", nil, wire.AuthPeer, "", me, ""},
		{"unix token", "unix", nil, wire.AuthToken, ciSecret, "token:ci", ""},
		{"unix rotated token", "unix", nil, wire.AuthToken, ciRotated, "token:ci", ""},
		{"unix second token", "unix", nil, wire.AuthToken, opsSecret, "token:ops", ""},
		{"unix unknown token", "unix", nil, wire.AuthToken, unknownSecret, "", "not one this broker knows"},
		{"unix token prefix", "unix", nil, wire.AuthToken, ciSecret[:len(ciSecret)-1], "", "not one this broker knows"},
		{"unix empty token", "unix", nil, wire.AuthToken, "", "", "empty token"},
		{"unix certificate", "unix", nil, wire.AuthCertificate, "", "", "needs a TLS connection"},
		{"unix unknown method", "unix", nil, 7, "", "", "unknown auth method 7"},
		{"tls certificate", "tls", procmond, wire.AuthCertificate, "", "cert:procmond", ""},
		{"tls peer means certificate", "tls", procmond, wire.AuthPeer, "", "cert:procmond", ""},
		{"tls URI SAN", "tls", agent, wire.AuthCertificate, "", "cert:spiffe://daemoneye.test/agent", ""},
		{"tls token", "tls", procmond, wire.AuthToken, ciSecret, "", "the client certificate identifies the client"},
		{"tls unknown method", "tls", procmond, 9, "", "", "unknown auth method 9"},
		{"tcp token", "tcp", nil, wire.AuthToken, opsSecret, "token:ops", ""},
		{"tcp unknown token", "tcp", nil, wire.AuthToken, unknownSecret, "", "not one this broker knows"},
		{"tcp peer", "tcp", nil, wire.AuthPeer, "", "", "carries no peer identity: send a token"},
		{"tcp certificate", "tcp", nil, wire.AuthCertificate, "", "", "auth method 2 (certificate) needs a UNIX socket or TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *client
			switch tt.transport {
			case "unix":
				c = rawDial(t, ep.unix)
			case "tls":
				c = rawDialTLS(t, ep.tls, tt.tls.Clone())
			case "tcp":
				c = rawDialTCP(t, ep.tcp)
			}
			c.hello(tt.method, tt.cred)
			if tt.identity == "" {
				c.expectError(wire.CodeAuth, tt.text)
				c.expectClosed()
				return
			}
			if got := c.expectWelcome(); got != tt.identity {
				t.Errorf("identity %q, want %q", got, tt.identity)
			}
		})
	}
}

// A refusal never echoes the token the client sent.
func TestRefusalHidesToken(t *testing.T) {
	ep := startAll(t, Options{Auth: Auth{Tokens: testTokens}})
	c := rawDialTCP(t, ep.tcp)
	c.hello(wire.AuthToken, unknownSecret)
	f := c.frame()
	if f.Type != wire.TypeError || strings.Contains(string(f.Body), unknownSecret) || strings.Contains(string(f.Body), "0000") {
		t.Errorf("refusal %s %q", f.Type, f.Body)
	}
}

// Token auth over plaintext TCP needs configured tokens.
func TestPlainTCPWithoutTokens(t *testing.T) {
	ep := startAll(t, Options{})
	c := rawDialTCP(t, ep.tcp)
	c.hello(wire.AuthToken, ciSecret)
	c.expectError(wire.CodeAuth, "(token) is not enabled on this server")
	c.expectClosed()
}

// Publish and subscribe work end to end over TLS, and across transports.
func TestPubSubOverTLS(t *testing.T) {
	ep := startAll(t, Options{Auth: Auth{Tokens: testTokens}})
	sub := rawDialTLS(t, ep.tls, ep.ca.ClientConfig(ep.ca.Client(t, "agent")))
	sub.hello(wire.AuthCertificate, "")
	if id := sub.expectWelcome(); id != "cert:agent" {
		t.Fatalf("identity %q", id)
	}
	sub.send(subscribeFrame(3, "events.#"))
	sub.send(wire.AppendU64(nil, wire.TypePing, 1))
	if f := sub.frame(); f.Type != wire.TypePong {
		t.Fatalf("got %s, want pong", f.Type)
	}
	for _, pub := range []*client{
		rawDialTLS(t, ep.tls, ep.ca.ClientConfig(ep.ca.Client(t, "procmond"))),
		rawDialTCP(t, ep.tcp),
		rawDial(t, ep.unix),
	} {
		method, cred := wire.AuthCertificate, ""
		if _, plain := pub.nc.(*net.TCPConn); plain {
			method, cred = wire.AuthToken, ciSecret
		} else if _, unix := pub.nc.(*net.UnixConn); unix {
			method = wire.AuthPeer
		}
		pub.hello(method, cred)
		pub.expectWelcome()
		pub.send(publishFrame("events.process.lifecycle", "pid=4242"))
		f := sub.frame()
		d, err := wire.ParseDeliver(f.Flags, f.Body)
		if f.Type != wire.TypeDeliver || err != nil || d.SID != 3 || string(d.Payload) != "pid=4242" {
			t.Fatalf("from %T: got %s %+v, %v", pub.nc, f.Type, d, err)
		}
	}
}

// The TLS handshake refuses bad clients before any frame, and the server
// carries on serving the others.
func TestTLSRefusals(t *testing.T) {
	ep := startAll(t, Options{})
	other := testpki.NewCA(t, "other CA")
	foreign := other.Client(t, "procmond")
	forced := ep.ca.ClientConfig(nil)
	forced.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign.TLS, nil }
	old := ep.ca.ClientConfig(ep.ca.Client(t, "procmond"))
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	tests := []struct {
		name string
		cfg  *tls.Config
	}{
		{"no client certificate", ep.ca.ClientConfig(nil)},
		{"certificate from another CA", forced},
		{"TLS 1.1", old},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.ServerName = "127.0.0.1"
			nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", ep.tls, tt.cfg)
			if err == nil { // TLS 1.3: the refusal comes after the client's side of the handshake
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(3 * time.Second))
				nc.Write(append(wire.Magic[:], wire.AppendHello(nil, &wire.Hello{Versions: []wire.Version{wire.Current}, AuthMethod: wire.AuthCertificate})...))
				_, err = wire.NewReader(nc, 0).ReadFrame()
			}
			if err == nil {
				t.Fatal("the server accepted the client")
			}
			// Whoever comes next is served.
			c := rawDialTLS(t, ep.tls, ep.ca.ClientConfig(ep.ca.Client(t, "next")))
			c.hello(wire.AuthCertificate, "")
			if id := c.expectWelcome(); id != "cert:next" {
				t.Errorf("identity %q", id)
			}
		})
	}
}

// A client that opens a TCP connection to the TLS port and says nothing
// is dropped after HandshakeTimeout, and holds up nobody meanwhile.
func TestTLSHandshakeTimeout(t *testing.T) {
	ep := startAll(t, Options{HandshakeTimeout: 200 * time.Millisecond})
	silent := rawDialTCP(t, ep.tls)
	c := rawDialTLS(t, ep.tls, ep.ca.ClientConfig(ep.ca.Client(t, "procmond")))
	c.hello(wire.AuthCertificate, "")
	c.expectWelcome()
	start := time.Now()
	silent.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := silent.nc.Read(make([]byte, 1)); isTimeout(err) {
		t.Fatal("the silent connection was kept open")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %s", d)
	}
}

// CertNames narrows the certificates admitted.
func TestCertNames(t *testing.T) {
	ep := startAll(t, Options{Auth: Auth{CertNames: []string{"procmond", "spiffe://daemoneye.test/agent"}}})
	tests := []struct {
		leaf     *testpki.Leaf
		identity string
	}{
		{ep.ca.Client(t, "procmond"), "cert:procmond"},
		{ep.ca.Client(t, "whatever", "spiffe://daemoneye.test/agent"), "cert:spiffe://daemoneye.test/agent"},
		{ep.ca.Client(t, "intruder"), ""},
		// The URI SAN is the name, not the common name.
		{ep.ca.Client(t, "procmond", "spiffe://daemoneye.test/other"), ""},
	}
	for _, tt := range tests {
		c := rawDialTLS(t, ep.tls, ep.ca.ClientConfig(tt.leaf))
		c.hello(wire.AuthCertificate, "")
		if tt.identity == "" {
			c.expectError(wire.CodeAuth, "not among the broker's allowed certificate names")
			c.expectClosed()
			continue
		}
		if id := c.expectWelcome(); id != tt.identity {
			t.Errorf("identity %q, want %q", id, tt.identity)
		}
	}
}

// authenticate on a connection with no peer identity (not UNIX, not TLS,
// not TCP) accepts only a token.
func TestAuthenticateOtherConn(t *testing.T) {
	a := &Auth{Tokens: testTokens}
	server, peer := net.Pipe()
	defer server.Close()
	defer peer.Close()
	if id, err := a.authenticate(server, &wire.Hello{AuthMethod: wire.AuthToken, Credential: []byte(opsSecret)}); err != nil || id != "token:ops" {
		t.Errorf("token over a pipe: %q, %v", id, err)
	}
	if _, err := a.authenticate(server, &wire.Hello{AuthMethod: wire.AuthPeer}); !errors.Is(err, ErrAuth) {
		t.Errorf("peer over a pipe: %v, want ErrAuth", err)
	}
}

func TestAuthValidate(t *testing.T) {
	long := "0123456789abcdef0123456789abcdeX"
	tests := []struct {
		name string
		auth Auth
		text string // empty: valid
	}{
		{"zero value", Auth{}, ""},
		{"tokens", Auth{Tokens: testTokens}, ""},
		{"rotation: two secrets, one name", Auth{Tokens: []Token{{"ci", long + "1"}, {"ci", long + "2"}}}, ""},
		{"short secret", Auth{Tokens: []Token{{"ci", "short"}}}, "the secret is 5 bytes; at least 32 are required (128 bits as hex), which is too easy to guess: generate one with: openssl rand -hex 32"},
		{"16 characters", Auth{Tokens: []Token{{"ci", "0123456789abcdef"}}}, "is 16 bytes; at least 32"},
		{"few characters", Auth{Tokens: []Token{{"ci", strings.Repeat("ab", 10) + strings.Repeat("c", 20)}}}, "only 3 different characters"},
		{"pattern", Auth{Tokens: []Token{{"ci", strings.Repeat("0123456789abcdef", 2)}}}, "repeats a 16-byte pattern"},
		{"hex of 16 bytes", Auth{Tokens: []Token{{"ci", "9f86d081884c7d659a2feaa0c55ad015"}}}, ""},
		{"empty name", Auth{Tokens: []Token{{"", long}}}, "token 1: name"},
		{"name with a space", Auth{Tokens: []Token{{"c i", long}}}, `name "c i"`},
		{"name too long", Auth{Tokens: []Token{{strings.Repeat("n", 65), long}}}, "name"},
		{"shared secret", Auth{Tokens: []Token{{"a", long}, {"b", long}}}, "tokens a and b have the same secret"},
		{"empty certificate name", Auth{CertNames: []string{"procmond", ""}}, "certificate name 2 is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.auth.Validate()
			if tt.text == "" {
				if err != nil {
					t.Errorf("Validate = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrAuthConfig) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Validate = %v, want ErrAuthConfig containing %q", err, tt.text)
			}
			if strings.Contains(err.Error(), long) {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return path
	}
	good := write("good", "# name secret\n\nci "+ciSecret+"\n  ops\t"+opsSecret+"  \n", 0o600)
	tokens, err := LoadTokens(good)
	if err != nil || len(tokens) != 2 || tokens[0] != (Token{"ci", ciSecret}) || tokens[1] != (Token{"ops", opsSecret}) {
		t.Fatalf("LoadTokens = %v, %v", tokens, err)
	}
	tests := []struct {
		name, path, text string
	}{
		{"readable by others", write("open", "ci "+ciSecret+"\n", 0o644), "chmod 600"},
		{"one field", write("one", "ci "+ciSecret+"\n"+ciRotated+"\n", 0o600), "line 2: want NAME SECRET, two fields, got 1"},
		{"three fields", write("three", "ci "+ciSecret+" extra\n", 0o600), "line 1"},
		{"short secret", write("short", "ci tiny\n", 0o600), "openssl rand -hex 32"},
		{"empty", write("empty", "# nothing\n", 0o600), "holds no token"},
		{"missing", filepath.Join(dir, "missing"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadTokens(tt.path)
			if !errors.Is(err, ErrAuthConfig) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("LoadTokens = %v, want ErrAuthConfig containing %q", err, tt.text)
			}
			for _, s := range []string{ciSecret, ciRotated, "tiny"} {
				if err != nil && strings.Contains(err.Error(), s) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
}

// Printing an Auth, as a debugging log line might, never shows a secret.
func TestTokensNeverPrinted(t *testing.T) {
	a := Auth{Tokens: testTokens}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(format, a)
		if strings.Contains(s, ciSecret) || strings.Contains(s, opsSecret) {
			t.Errorf("%s shows a secret: %s", format, s)
		}
	}
}
