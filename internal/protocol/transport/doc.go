// Package transport opens the listeners the broker serves on and tells who
// is on the other end of a connection. It knows nothing of processes or of
// the broker: it hands out net.Conn values with an identity.
//
// The UNIX socket is the default transport: its directory is created 0700,
// the socket is made 0600, a stale socket left by a crashed broker is
// replaced, and a live broker on the same path is never displaced. A
// socket directory another user could control (not ours, writable by
// group or others, a symbolic link, or under such a parent) is refused
// with ErrUnsafeDir. The
// peer's uid, gid and pid are read with SO_PEERCRED for every connection.
//
// TCP is opt-in (ListenTCP) and requires mutual TLS: TLS 1.2 or 1.3 with
// client certificates verified against a configured CA, whose name
// (CertName) identifies the client. Plaintext TCP exists only for loopback
// addresses, when asked for explicitly; it identifies nobody.
package transport
