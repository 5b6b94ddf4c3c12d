package server

import (
	"errors"
	"fmt"
	"net"

	"github.com/daemoneye/daemoneye/internal/transport"
	"github.com/daemoneye/daemoneye/internal/wire"
)

// Auth configures how clients authenticate. The zero value admits, over a
// UNIX socket, root and the user the server runs as, identified by uid.
type Auth struct {
	// Peers says which local users may connect over a UNIX socket.
	Peers transport.PeerPolicy
}

// authenticate returns the identity of the client on nc that sent h, or
// why it may not connect.
func (a *Auth) authenticate(nc net.Conn, h *wire.Hello) (string, error) {
	if h.AuthMethod != wire.AuthPeer {
		return "", fmt.Errorf("auth method %d is not enabled on this server: use peer credentials over the UNIX socket", h.AuthMethod)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return "", errors.New("peer authentication needs a UNIX socket")
	}
	cred, err := transport.PeerCredOf(uc)
	if err != nil {
		return "", err
	}
	if err := a.Peers.Check(cred); err != nil {
		return "", err
	}
	return fmt.Sprintf("uid:%d", cred.UID), nil
}
