package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Magic opens every connection, sent by the client before its hello frame.
// A server that reads anything else answers with a protocol error and
// closes, so a stray HTTP client or an old peer fails fast and clearly.
var Magic = [8]byte{'D', 'E', 'Y', 'E', 'B', 'U', 'S', '\n'}

// ErrBadMagic is returned by CheckMagic for a connection that did not open
// with Magic.
var ErrBadMagic = errors.New("wire: not a DaemonEye bus connection (bad magic bytes)")

// CheckMagic reports whether b (at least 8 bytes) opens with Magic.
func CheckMagic(b []byte) error {
	if len(b) < len(Magic) || !bytes.Equal(b[:len(Magic)], Magic[:]) {
		return fmt.Errorf("%w: got %q", ErrBadMagic, b[:min(len(b), len(Magic))])
	}
	return nil
}

// Version is a protocol version. A new major version may break the wire
// format; a new minor version only adds (frame types, flags, fields at the
// end of bodies) and is understood by peers of the same major version.
type Version struct {
	Major, Minor uint16
}

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// Current is the protocol version this build speaks.
var Current = Version{Major: 1, Minor: 0}

// ErrNoCommonVersion is returned by Negotiate when client and server share
// no major version.
var ErrNoCommonVersion = errors.New("wire: no common protocol version")

// Negotiate picks the version a server speaks with a client: the highest
// major version both list, at the lower of the two minors. Each side lists,
// per major version it speaks, the highest minor it knows.
func Negotiate(client, server []Version) (Version, error) {
	best, found := Version{}, false
	for _, c := range client {
		for _, s := range server {
			if c.Major != s.Major || (found && c.Major <= best.Major) {
				continue
			}
			best, found = Version{c.Major, min(c.Minor, s.Minor)}, true
		}
	}
	if !found {
		return Version{}, fmt.Errorf("%w: the client speaks %s, this server speaks %s: upgrade the older side",
			ErrNoCommonVersion, versionList(client), versionList(server))
	}
	return best, nil
}

func versionList(vs []Version) string {
	if len(vs) == 0 {
		return "nothing"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.String()
	}
	return strings.Join(s, ", ")
}

// Auth methods a client may offer in its hello frame. Values are stable:
// never renumbered or reused. Which method a server accepts depends on the
// transport: see docs/security.md.
const (
	// AuthPeer: the transport identifies the peer (UNIX peer credentials;
	// over TLS, the client certificate, as with AuthCertificate).
	AuthPeer uint8 = 0
	// AuthToken: a bearer token in Credential.
	AuthToken uint8 = 1
	// AuthCertificate: the verified TLS client certificate identifies the
	// peer; only over TLS. Credential is empty.
	AuthCertificate uint8 = 2
)

// Hello is the body of the client's first frame.
type Hello struct {
	Versions     []Version // at most 255
	Capabilities uint32    // bit set of optional features the client supports
	AuthMethod   uint8     // AuthPeer, AuthToken or AuthCertificate
	Credential   []byte    // the token for AuthToken; empty otherwise
	ClientName   []byte    // for logs and stats
}

// AppendHello appends a hello frame to dst.
func AppendHello(dst []byte, h *Hello) []byte {
	start := len(dst)
	dst = appendHeader(dst, TypeHello, 0, 0)
	n := min(len(h.Versions), 255)
	dst = append(dst, byte(n))
	for _, v := range h.Versions[:n] {
		dst = binary.BigEndian.AppendUint16(dst, v.Major)
		dst = binary.BigEndian.AppendUint16(dst, v.Minor)
	}
	dst = binary.BigEndian.AppendUint32(dst, h.Capabilities)
	dst = append(dst, h.AuthMethod)
	dst = appendBytes16(dst, h.Credential)
	dst = appendBytes16(dst, h.ClientName)
	return sealFrame(dst, start)
}

// ParseHello decodes a hello body. Fields a later minor version appends are
// ignored, as the compatibility rule requires.
func ParseHello(flags uint8, body []byte) (Hello, error) {
	if err := checkFlags("hello", flags, 0); err != nil {
		return Hello{}, err
	}
	c := cursor{b: body}
	n := int(c.u8())
	var h Hello
	for range n {
		if c.short {
			break
		}
		h.Versions = append(h.Versions, Version{c.u16(), c.u16()})
	}
	h.Capabilities = c.u32()
	h.AuthMethod = c.u8()
	h.Credential = c.bytes16()
	h.ClientName = c.bytes16()
	if c.short {
		return Hello{}, fmt.Errorf("%w: hello: body is truncated", ErrMalformed)
	}
	if n == 0 {
		return Hello{}, fmt.Errorf("%w: hello lists no protocol version", ErrMalformed)
	}
	return h, nil
}

// Welcome is the body of the server's answer to a hello it accepts. A hello
// it refuses is answered with an error frame (CodeVersion or CodeAuth).
type Welcome struct {
	Version        Version
	Capabilities   uint32 // the features both sides support
	SessionID      []byte
	Identity       []byte // who the server authenticated the client as
	MaxPayload     uint32 // bytes
	MaxPending     uint32 // bytes the server buffers for the connection before its overflow policies apply
	PingIntervalMs uint32 // the client should ping at least this often when idle
}

// AppendWelcome appends a welcome frame to dst.
func AppendWelcome(dst []byte, w *Welcome) []byte {
	start := len(dst)
	dst = appendHeader(dst, TypeWelcome, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, w.Version.Major)
	dst = binary.BigEndian.AppendUint16(dst, w.Version.Minor)
	dst = binary.BigEndian.AppendUint32(dst, w.Capabilities)
	dst = appendBytes16(dst, w.SessionID)
	dst = appendBytes16(dst, w.Identity)
	dst = binary.BigEndian.AppendUint32(dst, w.MaxPayload)
	dst = binary.BigEndian.AppendUint32(dst, w.MaxPending)
	dst = binary.BigEndian.AppendUint32(dst, w.PingIntervalMs)
	return sealFrame(dst, start)
}

// ParseWelcome decodes a welcome body, ignoring fields a later minor
// version appends.
func ParseWelcome(flags uint8, body []byte) (Welcome, error) {
	if err := checkFlags("welcome", flags, 0); err != nil {
		return Welcome{}, err
	}
	c := cursor{b: body}
	w := Welcome{
		Version:      Version{c.u16(), c.u16()},
		Capabilities: c.u32(),
		SessionID:    c.bytes16(),
		Identity:     c.bytes16(),
		MaxPayload:   c.u32(),
		MaxPending:   c.u32(),
	}
	w.PingIntervalMs = c.u32()
	if c.short {
		return Welcome{}, fmt.Errorf("%w: welcome: body is truncated", ErrMalformed)
	}
	return w, nil
}
