package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/internal/protocol/transport"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
)

// ErrAddress is wrapped by Dial's errors about the address itself: an
// unknown scheme, a missing port, or plaintext TCP to a host that is not
// a loopback address.
var ErrAddress = errors.New("client: bad address")

// ErrUntrustedBroker is returned by Dial when the process listening on a
// UNIX socket is neither root nor the expected user (Options.ServerUID):
// another local user may have put their own socket in the broker's place
// to collect tokens and messages. Nothing is sent to it; a reconnect that
// meets such a socket tries again later, as with any failed dial.
var ErrUntrustedBroker = errors.New("client: the socket is not served by a trusted broker")

// LoadTLSConfig builds Options.TLSConfig from PEM files: caFile holds the
// CA certificate(s) that sign the broker's certificate (empty: the
// system's roots); certFile and keyFile the client's certificate and key,
// which the broker requires. The minimum version is TLS 1.2. Errors say
// which file is wrong and how to fix it.
func LoadTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg, err := transport.ClientTLSConfig(caFile, certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return cfg, nil
}

// session is a connection that has completed the handshake.
type session struct {
	nc      net.Conn
	r       *wire.Reader // reads the frames after the welcome
	welcome wire.Welcome
	done    chan struct{} // closed when the session is torn down
	goAway  atomic.Value  // the broker's GoAway text (a string), once it sent one
	closing string        // the text of the error frame the broker closes the session with; the reader's
	// writeArmed is the write deadline currently set; under Conn.writeMu.
	writeArmed time.Time
}

// endpoint is a parsed address.
type endpoint struct {
	network string // "unix" or "tcp"
	address string // socket path or host:port
	host    string // tcp: the host, for TLS's ServerName
	tls     bool
}

// dial connects to addr and runs the handshake, bounded by ctx and
// opts.DialTimeout. The address forms are:
//
//   - "/path/to/socket" or "unix:///path/to/socket": the UNIX socket;
//   - "tls://host:port": TCP with TLS, using opts.TLSConfig (ServerName
//     defaults to host; the minimum version is raised to TLS 1.2);
//   - "tcp://host:port": plaintext TCP, only to a loopback host
//     (127.0.0.1, ::1, localhost), since it exposes every message.
//
// The hello offers opts.Token (auth method token) when it is set;
// otherwise the certificate over TLS, and the peer credentials over the
// UNIX socket.
func dial(ctx context.Context, addr string, opts *Options) (*session, error) {
	ep, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if ep.tls {
		if tlsCfg, err = clientTLS(opts.TLSConfig, ep.host); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, ep.network, ep.address)
	if err != nil {
		return nil, fmt.Errorf("client: connect to %s: %w (is the broker running?)", addr, err)
	}
	if ep.network == "unix" {
		// Before a byte is sent: the hello may carry a token.
		if err := checkBroker(nc, ep.address, opts.ServerUID); err != nil {
			nc.Close()
			return nil, err
		}
	}
	if ep.network == "tcp" && !ep.tls {
		// A name that is "localhost" but resolved elsewhere.
		if ta, ok := nc.RemoteAddr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			nc.Close()
			return nil, fmt.Errorf("%w: %s reached %s, which is not a loopback address: use tls://", ErrAddress, addr, nc.RemoteAddr())
		}
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	if ep.tls {
		tc := tls.Client(nc, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, tlsError(addr, err)
		}
		nc = tc
	}
	return handshake(nc, addr, ep, opts)
}

// handshake sends the hello on nc and reads the welcome, within the
// deadline already set on nc; it closes nc if it fails.
func handshake(nc net.Conn, addr string, ep endpoint, opts *Options) (*session, error) {
	h := wire.Hello{Versions: []wire.Version{wire.Current}, ClientName: []byte(opts.Name)}
	switch {
	case opts.Token != "":
		h.AuthMethod, h.Credential = wire.AuthToken, []byte(opts.Token)
	case ep.tls:
		h.AuthMethod = wire.AuthCertificate
	}
	hello := wire.AppendHello(append([]byte(nil), wire.Magic[:]...), &h)
	if _, err := nc.Write(hello); err != nil {
		nc.Close()
		return nil, handshakeError(addr, ep, err)
	}
	r := wire.NewReader(nc, 0)
	f, err := r.ReadFrame()
	if err != nil {
		nc.Close()
		return nil, handshakeError(addr, ep, err)
	}
	if f.Type == wire.TypeError {
		e, _ := wire.ParseError(f.Type, f.Flags, f.Body)
		nc.Close()
		return nil, newRefusal(&e)
	}
	w, err := wire.ParseWelcome(f.Flags, f.Body)
	if f.Type != wire.TypeWelcome || err != nil {
		nc.Close()
		return nil, fmt.Errorf("client: handshake: expected welcome, got %s (%v)", f.Type, err)
	}
	// The welcome's byte fields alias the reader's buffer, which the next
	// frame overwrites.
	w.SessionID, w.Identity = bytes.Clone(w.SessionID), bytes.Clone(w.Identity)
	nc.SetDeadline(time.Time{})
	// Deliver frames carry a payload of up to MaxPayload plus the topic.
	r.SetMaxBody(int(w.MaxPayload) + 4096)
	return &session{nc: nc, r: r, welcome: w, done: make(chan struct{})}, nil
}

// checkBroker checks the credentials the kernel reports for the process
// listening on a UNIX socket (SO_PEERCRED, as of its listen): root, or
// want (0: this process's own uid).
func checkBroker(nc net.Conn, path string, want uint32) error {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("%w: %s is not a UNIX socket connection", ErrUntrustedBroker, path)
	}
	cred, err := transport.PeerCredOf(uc)
	if err != nil {
		return fmt.Errorf("client: %s: %w", path, err)
	}
	if want == 0 {
		want = uint32(os.Getuid())
	}
	if cred.UID == 0 || cred.UID == want {
		return nil
	}
	return fmt.Errorf("%w: %s is served by uid %d (pid %d), not by root or uid %d, so another user may be impersonating the broker; nothing was sent. Check who runs the process and owns the socket's directory, or, if the broker runs as that user on purpose, name it in Options.ServerUID ($DAEMONEYE_BROKER_UID for daemoneye-cli)",
		ErrUntrustedBroker, path, cred.UID, cred.PID, want)
}

// clientTLS returns the configuration for a tls:// dial to host.
func clientTLS(base *tls.Config, host string) (*tls.Config, error) {
	var cfg *tls.Config
	if base == nil {
		cfg = &tls.Config{}
	} else {
		cfg = base.Clone()
	}
	if cfg.MaxVersion != 0 && cfg.MaxVersion < tls.VersionTLS12 {
		return nil, fmt.Errorf("client: Options.TLSConfig allows only TLS versions below 1.2 (MaxVersion %s); the broker requires TLS 1.2 or newer",
			tls.VersionName(cfg.MaxVersion))
	}
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	return cfg, nil
}

// tlsError explains a failed TLS handshake.
func tlsError(addr string, err error) error {
	var ce *tls.CertificateVerificationError
	if errors.As(err, &ce) {
		return fmt.Errorf("client: TLS handshake with %s: %w (the broker's certificate is not signed by a CA in Options.TLSConfig.RootCAs, or does not name the host dialed)", addr, err)
	}
	if isRemoteAlert(err) {
		return fmt.Errorf("%w: TLS handshake with %s: %w (Options.TLSConfig needs a client certificate signed by the CA the broker trusts)", ErrRefused, addr, err)
	}
	return fmt.Errorf("client: TLS handshake with %s: %w", addr, err)
}

// handshakeError explains a failure to exchange hello and welcome. Over
// TLS 1.3 a refused client certificate shows up here, as an alert read
// after the client's side of the TLS handshake completed.
func handshakeError(addr string, ep endpoint, err error) error {
	if ep.tls && isRemoteAlert(err) {
		return fmt.Errorf("%w: the broker ended the TLS session at %s: %w (Options.TLSConfig needs a client certificate signed by the CA the broker trusts, and not expired)",
			ErrRefused, addr, err)
	}
	return fmt.Errorf("client: handshake: %w", err)
}

// isRemoteAlert reports a TLS alert sent by the peer.
func isRemoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

func parseAddr(addr string) (endpoint, error) {
	if !strings.Contains(addr, "://") {
		return endpoint{network: "unix", address: addr}, nil
	}
	u, err := url.Parse(addr)
	if err != nil {
		return endpoint{}, fmt.Errorf("%w: %q: %w", ErrAddress, addr, err)
	}
	switch u.Scheme {
	case "unix":
		if u.Host != "" || u.Path == "" {
			return endpoint{}, fmt.Errorf("%w: %q: write unix:// and an absolute path, for example unix:///run/daemoneye/eventbus.sock", ErrAddress, addr)
		}
		return endpoint{network: "unix", address: u.Path}, nil
	case "tls", "tcp":
		if u.Hostname() == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return endpoint{}, fmt.Errorf("%w: %q: write %s://host:port, for example %s://127.0.0.1:7879", ErrAddress, addr, u.Scheme, u.Scheme)
		}
		ep := endpoint{network: "tcp", address: u.Host, host: u.Hostname(), tls: u.Scheme == "tls"}
		if !ep.tls && !transport.IsLoopback(ep.host) {
			return endpoint{}, fmt.Errorf("%w: %q: tcp:// sends everything, tokens included, in the clear and is allowed only to a loopback host (127.0.0.1, ::1, localhost): use tls://%s",
				ErrAddress, addr, u.Host)
		}
		return ep, nil
	case "inproc":
		return endpoint{}, fmt.Errorf("%w: %q: Dial reaches a broker in another process; for a broker in this process use client.Connect(broker, opts)", ErrAddress, addr)
	}
	return endpoint{}, fmt.Errorf("%w: %q: unknown scheme %q: use unix:///path, tls://host:port or tcp://127.0.0.1:port", ErrAddress, addr, u.Scheme)
}

// DefaultSocketPath returns the UNIX socket a broker listens on by default
// (server.DefaultSocketPath, the same path): /run/daemoneye/eventbus.sock
// for root, otherwise $XDG_RUNTIME_DIR/daemoneye/eventbus.sock, or
// /tmp/daemoneye-$UID/eventbus.sock when XDG_RUNTIME_DIR is unset.
func DefaultSocketPath() string { return transport.DefaultSocketPath() }
