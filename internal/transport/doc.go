// Package transport opens the listeners the broker serves on and tells who
// is on the other end of a connection. It knows nothing of processes or of
// the broker: it hands out net.Conn values with an identity.
//
// The UNIX socket is the default transport: its directory is created 0700,
// the socket is made 0600, a stale socket left by a crashed broker is
// replaced, and a live broker on the same path is never displaced. The
// peer's uid, gid and pid are read with SO_PEERCRED for every connection.
package transport
