package server

import (
	"fmt"
	"net"
	"strings"

	"github.com/daemoneye/daemoneye/internal/wire"
)

// ServeConn serves one connection that the caller already trusts as
// identity: typically one end of a socketpair whose other end a child
// process inherited (daemoneye-agent hands each collector its own). The
// client still sends the protocol's magic and hello; whatever credential
// the hello offers is ignored, and the welcome names identity. The
// Authorizer applies as to any connection.
//
// The connection takes no slot of MaxConns, so connections on the
// listeners can never lock it out, and it is counted in Stats like the
// others. ServeConn returns at once: the connection is served by its own
// goroutines until either side closes it, and Shutdown and Close end it
// like the rest. It returns ErrServerClosed (and closes nc) after
// Shutdown or Close. identity must look like "token:NAME" or "uid:N"
// ("kind:name").
func (s *Server) ServeConn(nc net.Conn, identity string) error {
	if kind, name, ok := cutIdentity(identity); !ok || kind == "" || name == "" {
		nc.Close()
		return fmt.Errorf("server: ServeConn: identity %q: write it as kind:name, for example token:procmond", identity)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		nc.Close()
		return ErrServerClosed
	}
	c := newConn(s, nc)
	c.preset = identity
	s.conns[c] = struct{}{}
	s.wg.Go(c.readLoop)
	s.wg.Go(c.writeLoop)
	return nil
}

func cutIdentity(id string) (kind, name string, ok bool) { return strings.Cut(id, ":") }

// authenticate returns the identity of the client that sent h: the one
// ServeConn gave, or what Auth makes of its credential.
func (c *conn) authenticate(h *wire.Hello) (string, error) {
	if c.preset != "" {
		return c.preset, nil
	}
	return c.srv.opts.Auth.authenticate(c.nc, h)
}
