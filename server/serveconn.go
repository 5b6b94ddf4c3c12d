package server

import (
	"fmt"
	"net"
	"strings"
)

// ServeConn serves one connection that the caller already trusts as
// identity: typically one end of a socketpair whose other end a child
// process inherited (daemoneye-agent hands each collector its own). The
// client still sends the protocol's magic and hello, within
// HandshakeTimeout; whatever credential the hello offers is ignored, and
// the welcome names identity. The Authorizer applies as to any
// connection.
//
// The connection counts against neither MaxPreAuth nor MaxConns (the
// caller bounds how many it hands over), so connections on the listeners
// can never lock it out, and it is listed in Stats like the others.
// ServeConn returns at once: the server owns nc from then on, serves it
// with its own goroutines until either side closes it, and Shutdown and
// Close end it like the rest. It returns ErrServerClosed (and closes nc)
// after Shutdown or Close. identity must look like "collector:NAME" or
// "uid:N" ("kind:name"). Safe for concurrent use.
func (s *Server) ServeConn(nc net.Conn, identity string) error {
	if kind, name, ok := strings.Cut(identity, ":"); !ok || kind == "" || name == "" {
		nc.Close()
		return fmt.Errorf("server: ServeConn: identity %q: write it as kind:name, for example collector:procmond", identity)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		nc.Close()
		return ErrServerClosed
	}
	c := newConn(s, nc)
	c.class, c.given = classEmbedded, identity
	s.launch(c)
	return nil
}
