package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/daemoneye/daemoneye/internal/protocol/transport"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
)

// Errors about authentication.
var (
	// ErrAuth is wrapped by every refusal of a client's credentials. The
	// text (which the client receives) says what to change; it never
	// contains a token.
	ErrAuth = errors.New("server: authentication failed")
	// ErrAuthConfig is wrapped by Auth.Validate and LoadTokens errors.
	ErrAuthConfig = errors.New("server: bad authentication configuration")
)

// MinTokenLen is the shortest token secret Auth.Validate accepts, in
// bytes: 16 random bytes hex-encoded, 128 bits. 32 random bytes,
// hex-encoded (openssl rand -hex 32), is the recommended form.
//
// The server cannot measure a secret's entropy; it requires at least
// MinTokenLen bytes, at least minTokenDistinct different bytes, and no
// repetition of a shorter string ("abcdabcd..."), which rejects typed
// and patterned secrets at no cost while a random hex string passes
// (32 random hex digits have fewer than 8 different ones with
// probability below 1e-7).
const MinTokenLen = 32

// minTokenDistinct is how many different bytes a secret must contain.
const minTokenDistinct = 8

// tokenAdvice is what every refusal of a configured secret suggests.
const tokenAdvice = "generate one with: openssl rand -hex 32"

// maxTokenName bounds a token's name, in bytes.
const maxTokenName = 64

// Token is a shared secret and the name of whoever holds it. A client
// that presents Secret is identified as "token:" + Name.
type Token struct {
	// Name is letters, digits, '.', '_', '-' and '@', at most 64 bytes.
	// Several tokens may share a name, to rotate a secret without a gap.
	Name string
	// Secret is at least MinTokenLen bytes (128 bits as hex), not a
	// repeated pattern (see MinTokenLen). It is compared in constant time
	// and never logged, formatted or sent back.
	Secret string
}

// String returns "token:NAME", so that printing a Token (or an Auth) with
// %v or %+v never shows its secret.
func (t Token) String() string { return "token:" + t.Name }

// GoString is String for %#v.
func (t Token) GoString() string { return t.String() }

// PeerPolicy says which local users may connect over a UNIX socket:
// UIDs and GIDs are admitted in addition to root and the user the server
// runs as (a peer is admitted if its uid or its primary gid is listed).
// The zero value admits only root and the server's user.
type PeerPolicy = transport.PeerPolicy

// Auth configures how clients authenticate. Which credentials count
// depends on the transport a client connected over:
//
//   - UNIX socket: peer credentials (auth method 0 of the wire protocol,
//     docs/protocol.md) checked against Peers, identity "uid:UID"; or a
//     token (method 1), if Tokens are configured.
//   - TLS: the client certificate, verified by the TLS handshake against
//     the listener's client CA (method 2, which the Go client sends;
//     method 0 is accepted as a synonym), identity "cert:NAME", where NAME
//     is the certificate's first URI SAN, else its first DNS SAN, else its
//     common name (printable UTF-8, at most 255 bytes). A token is
//     refused: the certificate is the credential.
//   - Plaintext TCP (loopback only): a token and nothing else, since such
//     a connection carries no peer identity.
//
// The zero value admits, over a UNIX socket, root and the user the server
// runs as; TLS clients with any certificate the client CA signed; and no
// tokens. An Auth is read concurrently by every connection and must not
// be changed while a server uses it.
type Auth struct {
	// Peers says which local users may connect over a UNIX socket.
	Peers PeerPolicy
	// Tokens are the shared secrets clients may authenticate with over
	// the UNIX socket or plaintext TCP. Empty: token auth is off.
	Tokens []Token
	// CertNames, if not empty, admits only TLS clients whose certificate
	// name (see Auth, without the "cert:" prefix) is
	// listed; otherwise every certificate the client CA signed is
	// admitted.
	CertNames []string
}

// Validate checks the configuration: token names, secrets strong enough
// (see MinTokenLen), no secret shared by two names, no empty certificate
// name. Errors wrap
// ErrAuthConfig, name the offending token by its name and position, and
// never contain a secret. Server.New should call it.
func (a *Auth) Validate() error {
	for i, t := range a.Tokens {
		if !validTokenName(t.Name) {
			return fmt.Errorf("%w: token %d: name %q must be 1 to %d letters, digits, '.', '_', '-' or '@'",
				ErrAuthConfig, i+1, t.Name, maxTokenName)
		}
		if why := weakSecret(t.Secret); why != "" {
			return fmt.Errorf("%w: token %d (%s): the secret %s, which is too easy to guess: %s",
				ErrAuthConfig, i+1, t.Name, why, tokenAdvice)
		}
		for _, u := range a.Tokens[:i] {
			if u.Secret == t.Secret && u.Name != t.Name {
				return fmt.Errorf("%w: tokens %s and %s have the same secret: give each holder its own", ErrAuthConfig, u.Name, t.Name)
			}
		}
	}
	for i, n := range a.CertNames {
		if n == "" {
			return fmt.Errorf("%w: certificate name %d is empty", ErrAuthConfig, i+1)
		}
	}
	return nil
}

// weakSecret says what makes secret too weak, or "" if nothing does. The
// answer never contains the secret.
func weakSecret(secret string) string {
	if len(secret) < MinTokenLen {
		return fmt.Sprintf("is %d bytes; at least %d are required (128 bits as hex)", len(secret), MinTokenLen)
	}
	var seen [256]bool
	distinct := 0
	for i := 0; i < len(secret); i++ {
		if !seen[secret[i]] {
			seen[secret[i]] = true
			distinct++
		}
	}
	if distinct < minTokenDistinct {
		return fmt.Sprintf("has only %d different characters; at least %d are required", distinct, minTokenDistinct)
	}
	for p := 1; p <= len(secret)/2; p++ {
		if len(secret)%p == 0 && strings.Repeat(secret[:p], len(secret)/p) == secret {
			return fmt.Sprintf("repeats a %d-byte pattern", p)
		}
	}
	return ""
}

func validTokenName(s string) bool {
	if s == "" || len(s) > maxTokenName {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)
		if !ok {
			return false
		}
	}
	return true
}

// LoadTokens reads tokens from a file with one "NAME SECRET" per line
// (separated by spaces or tabs); blank lines and lines starting with '#'
// are skipped. The file must not be readable or writable by group or
// others (chmod 600), since it holds secrets. The tokens are checked as
// Auth.Validate checks them. Errors wrap ErrAuthConfig, name the file and
// line, and never contain a secret.
func LoadTokens(path string) ([]Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: tokens file: %w", ErrAuthConfig, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: tokens file: %w", ErrAuthConfig, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: tokens file %s has mode %04o, which lets other users read or change the secrets: chmod 600 %s",
			ErrAuthConfig, path, perm, path)
	}
	var tokens []Token
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		fields := strings.Fields(string(line))
		if len(fields) != 2 {
			return nil, fmt.Errorf("%w: tokens file %s, line %d: want NAME SECRET, two fields, got %d", ErrAuthConfig, path, n, len(fields))
		}
		tokens = append(tokens, Token{Name: fields[0], Secret: fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: tokens file %s: %w", ErrAuthConfig, path, err)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%w: tokens file %s holds no token (want lines of NAME SECRET)", ErrAuthConfig, path)
	}
	if err := (&Auth{Tokens: tokens}).Validate(); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return tokens, nil
}

// authenticate returns the identity of the client on nc that sent h, or
// an error wrapping ErrAuth that tells the client why it may not connect.
// Over TLS it completes the handshake first, bounded by
// DefaultHandshakeTimeout (the connection's own read deadline, set by
// serve, normally ends it sooner).
func (a *Auth) authenticate(nc net.Conn, h *wire.Hello) (string, error) {
	switch c := nc.(type) {
	case *net.UnixConn:
		switch h.AuthMethod {
		case wire.AuthPeer:
			return a.peer(c)
		case wire.AuthToken:
			return a.token(h.Credential)
		case wire.AuthCertificate:
			return "", fmt.Errorf("%w: auth method 2 (certificate) needs a TLS connection: over the UNIX socket use peer credentials (method 0) or a token (method 1)", ErrAuth)
		}
	case *tls.Conn:
		switch h.AuthMethod {
		case wire.AuthPeer, wire.AuthCertificate:
			return a.cert(c)
		case wire.AuthToken:
			return "", fmt.Errorf("%w: over TLS the client certificate identifies the client: send auth method 2 (certificate) and no token", ErrAuth)
		}
	default: // plaintext TCP, or any transport without a peer identity
		switch h.AuthMethod {
		case wire.AuthToken:
			if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
				return "", fmt.Errorf("%w: plaintext TCP from %s, which is not a loopback address: connect with TLS", ErrAuth, ta)
			}
			return a.token(h.Credential)
		case wire.AuthPeer, wire.AuthCertificate:
			return "", fmt.Errorf("%w: auth method %d (%s) needs a UNIX socket or TLS; a plaintext TCP connection carries no peer identity: send a token (method 1)",
				ErrAuth, h.AuthMethod, methodName(h.AuthMethod))
		}
	}
	return "", fmt.Errorf("%w: unknown auth method %d: this server knows 0 (peer), 1 (token) and 2 (certificate)", ErrAuth, h.AuthMethod)
}

func methodName(m uint8) string {
	switch m {
	case wire.AuthPeer:
		return "peer"
	case wire.AuthToken:
		return "token"
	case wire.AuthCertificate:
		return "certificate"
	}
	return "unknown"
}

// peer identifies a UNIX socket client by its uid.
func (a *Auth) peer(c *net.UnixConn) (string, error) {
	cred, err := transport.PeerCredOf(c)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrAuth, err)
	}
	if err := a.Peers.Check(cred); err != nil {
		return "", fmt.Errorf("%w: %w", ErrAuth, err)
	}
	return fmt.Sprintf("uid:%d", cred.UID), nil
}

// token identifies a client by the token it sent. Every configured secret
// is compared, in constant time over SHA-256 digests, so that neither the
// time taken nor an early exit tells a caller how close it came or how
// long a secret is.
func (a *Auth) token(cred []byte) (string, error) {
	if len(a.Tokens) == 0 {
		return "", fmt.Errorf("%w: auth method 1 (token) is not enabled on this server: configure tokens on the broker, or use peer credentials over the UNIX socket or a certificate over TLS", ErrAuth)
	}
	if len(cred) == 0 {
		return "", fmt.Errorf("%w: auth method 1 (token) with an empty token: set the client's token", ErrAuth)
	}
	got := sha256.Sum256(cred)
	name := ""
	for i := range a.Tokens {
		t := &a.Tokens[i]
		want := sha256.Sum256([]byte(t.Secret))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 && t.Secret != "" && name == "" {
			name = t.Name
		}
	}
	if name == "" {
		return "", fmt.Errorf("%w: the token is not one this broker knows: check the client's token against the broker's tokens", ErrAuth)
	}
	return "token:" + name, nil
}

// cert identifies a TLS client by its verified certificate.
func (a *Auth) cert(c *tls.Conn) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultHandshakeTimeout)
	defer cancel()
	cert, err := transport.PeerCertOf(ctx, c)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrAuth, err)
	}
	name, err := transport.CertName(cert)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrAuth, err)
	}
	if len(a.CertNames) > 0 && !slices.Contains(a.CertNames, name) {
		return "", fmt.Errorf("%w: certificate name %q is not among the broker's allowed certificate names: add it there, or give the client a certificate with an allowed name",
			ErrAuth, name)
	}
	return "cert:" + name, nil
}
