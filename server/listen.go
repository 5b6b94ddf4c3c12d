package server

import (
	"crypto/tls"
	"net"

	"github.com/daemoneye/daemoneye/internal/protocol/transport"
)

// SocketName is the file name of the broker's socket in its directory.
const SocketName = transport.SocketName

// Errors of the listener constructors. They are the transport's own
// values, so errors.Is matches them however the listener was made.
var (
	// ErrInUse: a live broker already listens on the socket path.
	ErrInUse = transport.ErrInUse
	// ErrUnsafeDir: the socket's directory, or a parent, is owned by
	// another user, writable by others, or a symbolic link.
	ErrUnsafeDir = transport.ErrUnsafeDir
	// ErrTLSConfig: the TLS configuration does not demand verified client
	// certificates, or its files cannot be loaded.
	ErrTLSConfig = transport.ErrTLSConfig
	// ErrTLSRequired: a TCP listener without TLS on an address other than
	// loopback.
	ErrTLSRequired = transport.ErrTLSRequired
	// ErrNotLoopback: plaintext TCP on an address other than loopback.
	ErrNotLoopback = transport.ErrNotLoopback
)

// DefaultSocketPath returns where a broker listens by default:
// /run/daemoneye/eventbus.sock for root, otherwise
// $XDG_RUNTIME_DIR/daemoneye/eventbus.sock, or
// /tmp/daemoneye-$UID/eventbus.sock when XDG_RUNTIME_DIR is unset.
func DefaultSocketPath() string { return transport.DefaultSocketPath() }

// ListenUnix listens on a UNIX stream socket at path for Serve, and makes
// the socket 0600 (closing the listener removes it). Clients are known by
// their peer credentials (uid:N). The socket's directory is created 0700
// if missing; an existing one must be owned by this user and writable by
// nobody else, and every parent must be owned by root or this user and
// not writable by others unless sticky: anything else is refused with
// ErrUnsafeDir. A stale socket nobody answers on is replaced; one a broker
// answers on is refused with ErrInUse.
func ListenUnix(path string) (net.Listener, error) {
	l, err := transport.ListenUnix(path)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ListenTLS listens on addr ("host:port"; port 0 picks one) for TCP with
// mutual TLS, for Serve. cfg must present a certificate and require and
// verify client certificates (as TLSConfig's does); anything weaker is
// refused with ErrTLSConfig. Clients are known by their certificate's name
// (cert:NAME). ListenTLS keeps a clone of cfg, with MinVersion raised to
// TLS 1.2 if unset. Each accepted connection's TLS handshake is bounded by
// 5 s until Serve sets its own deadlines.
func ListenTLS(addr string, cfg *tls.Config) (net.Listener, error) {
	return transport.ListenTCP(addr, transport.TCPConfig{TLS: cfg})
}

// ListenLoopback listens on addr, a loopback address and port
// ("127.0.0.1:7879", "[::1]:0", "localhost:7879"), for plaintext TCP, for
// tests and local tools: a plaintext connection carries no identity, so
// only clients with a token get in (Auth.Tokens). Any other address,
// ":port" and "0.0.0.0" included, is refused with ErrNotLoopback: use
// ListenTLS. Each accepted connection starts with a 5 s deadline until
// Serve sets its own.
func ListenLoopback(addr string) (net.Listener, error) {
	return transport.ListenTCP(addr, transport.TCPConfig{AllowPlaintext: true})
}

// TLSConfig loads a server configuration for ListenTLS from PEM files: the
// CA that signs client certificates, and the server's certificate and
// key. The result requires and verifies client certificates with TLS 1.2
// or later. Errors wrap ErrTLSConfig and name the file at fault.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	return transport.ServerTLSConfig(caFile, certFile, keyFile)
}
