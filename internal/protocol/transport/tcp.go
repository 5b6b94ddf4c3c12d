package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Errors returned by ListenTCP.
var (
	// ErrTLSRequired is returned for a TCP listener without TLS that did
	// not ask for plaintext explicitly.
	ErrTLSRequired = errors.New("transport: TCP requires TLS")
	// ErrNotLoopback is returned for plaintext TCP on an address that is
	// not a loopback address.
	ErrNotLoopback = errors.New("transport: plaintext TCP is allowed only on a loopback address")
)

// DefaultHandshakeTimeout is TCPConfig.HandshakeTimeout's default.
const DefaultHandshakeTimeout = 5 * time.Second

// TCPConfig configures ListenTCP. The zero value is refused: TCP needs
// either TLS or an explicit request for plaintext.
type TCPConfig struct {
	// TLS is the server configuration, usually from ServerTLSConfig. It
	// must present a certificate (Certificates or GetCertificate), require
	// verified client certificates (ClientAuth
	// tls.RequireAndVerifyClientCert with ClientCAs set) and not allow
	// versions below TLS 1.2. ListenTCP keeps a clone, with MinVersion
	// raised to TLS 1.2 if it was unset; later changes to TLS have no
	// effect.
	TLS *tls.Config
	// AllowPlaintext permits TCP without TLS, for tests and local tools,
	// and only on a loopback address (127.0.0.0/8, ::1, localhost).
	// Connections then carry no peer identity: clients must authenticate
	// with a token. It may not be combined with TLS.
	AllowPlaintext bool
	// HandshakeTimeout is the read and write deadline set on every
	// accepted connection (default DefaultHandshakeTimeout, 5 s). It bounds
	// the TLS handshake even if the caller sets no deadline of its own;
	// the caller replaces it once the handshake is done.
	HandshakeTimeout time.Duration
}

// ListenTCP listens on addr ("host:port"; host may be empty to listen on
// every address, which only TLS allows). With cfg.TLS, Accept returns
// *tls.Conn values whose handshake runs on their first Read or Write, or
// in PeerCertOf; without it, *net.TCPConn values. Each accepted connection
// starts with a deadline of cfg.HandshakeTimeout.
//
// Errors wrap ErrTLSRequired (neither TLS nor plaintext requested),
// ErrNotLoopback (plaintext on another address) or ErrTLSConfig (a
// configuration that does not verify client certificates, or allows TLS
// versions below 1.2), and say what to change. The listener is safe for
// concurrent use, as net.Listener requires.
func ListenTCP(addr string, cfg TCPConfig) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("transport: TCP address %q: %w: write host:port, for example 127.0.0.1:7879 or [::1]:7879", addr, err)
	}
	if cfg.HandshakeTimeout < 0 {
		return nil, fmt.Errorf("transport: TCPConfig.HandshakeTimeout is negative (%s)", cfg.HandshakeTimeout)
	}
	timeout := cfg.HandshakeTimeout
	if timeout == 0 {
		timeout = DefaultHandshakeTimeout
	}
	var tlsCfg *tls.Config
	switch {
	case cfg.TLS != nil && cfg.AllowPlaintext:
		return nil, fmt.Errorf("%w: TCPConfig sets both TLS and AllowPlaintext: choose one", ErrTLSConfig)
	case cfg.TLS != nil:
		if tlsCfg, err = checkServerTLS(cfg.TLS); err != nil {
			return nil, err
		}
	case !cfg.AllowPlaintext:
		return nil, fmt.Errorf("%w: configure the CA, certificate and key for %s (mutual TLS), or listen on the UNIX socket instead", ErrTLSRequired, addr)
	case !IsLoopback(host):
		return nil, fmt.Errorf("%w: %s is not one (127.0.0.1, ::1 or localhost are): plaintext would expose every message and token to the network; use TLS for %s",
			ErrNotLoopback, addr, addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", addr, err)
	}
	if tlsCfg == nil {
		// localhost resolved to the address now bound: make sure it is a
		// loopback one.
		if ta, ok := l.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			l.Close()
			return nil, fmt.Errorf("%w: %s is bound to %s", ErrNotLoopback, addr, l.Addr())
		}
	}
	return &tcpListener{Listener: l, tls: tlsCfg, timeout: timeout}, nil
}

// checkServerTLS refuses a server configuration that would not
// authenticate clients, and returns the clone ListenTCP uses.
func checkServerTLS(c *tls.Config) (*tls.Config, error) {
	switch {
	case len(c.Certificates) == 0 && c.GetCertificate == nil:
		return nil, fmt.Errorf("%w: no server certificate: load one with ServerTLSConfig (certificate and key files)", ErrTLSConfig)
	case c.ClientAuth != tls.RequireAndVerifyClientCert || c.ClientCAs == nil:
		return nil, fmt.Errorf("%w: TCP requires client certificates verified against a CA: set ClientAuth to tls.RequireAndVerifyClientCert and ClientCAs to the client CA (ServerTLSConfig does both)", ErrTLSConfig)
	case c.MinVersion != 0 && c.MinVersion < tls.VersionTLS12, c.MaxVersion != 0 && c.MaxVersion < tls.VersionTLS12:
		return nil, fmt.Errorf("%w: TLS versions below 1.2 are not allowed: set MinVersion to tls.VersionTLS12 or leave it unset, and MaxVersion to 1.2 or later", ErrTLSConfig)
	}
	c = c.Clone()
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	return c, nil
}

// IsLoopback reports whether host (an IP address, or a name without a
// port) is a loopback address: an IP in 127.0.0.0/8 or ::1, or the name
// "localhost". Other names are not resolved and report false.
func IsLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// tcpListener sets the handshake deadline on accepted connections and
// wraps them in TLS.
type tcpListener struct {
	net.Listener
	tls     *tls.Config // nil: plaintext
	timeout time.Duration
}

func (l *tcpListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(l.timeout))
	if l.tls != nil {
		return tls.Server(c, l.tls), nil
	}
	return c, nil
}
