package client

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"
)

// DialConn runs the handshake over nc, a connection to the broker made by
// someone else: typically one end of a socketpair the broker's process
// created and this process inherited (see DialFD). Such a connection
// cannot be dialled again, so the Conn does not reconnect: when nc breaks,
// the Conn ends with an error wrapping ErrDisconnected (Err reports it,
// Options.OnDisconnect is called) and the process that owns it is expected
// to exit and be restarted by whoever handed nc over. Options.NoReconnect
// is implied; Options.Token is sent if set (a broker that trusts the
// connection ignores it). The handshake is bounded by ctx and
// Options.DialTimeout. DialConn takes nc over: it is closed when the Conn
// closes or the handshake fails.
func DialConn(ctx context.Context, nc net.Conn, opts Options) (*Conn, error) {
	opts.NoReconnect = true
	addr := "an inherited connection"
	c := newConn(addr, opts)
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) }) // ctx cancelled early
	sess, err := handshake(nc, addr, endpoint{network: "unix"}, &c.opts)
	stop()
	if err != nil {
		c.cancel()
		return nil, err
	}
	sess.nc.SetDeadline(time.Time{})
	c.sess, c.welcome = sess, sess.welcome
	c.wg.Go(func() { c.run(sess) })
	return c, nil
}

// DialFD is DialConn over the connected socket on the inherited file
// descriptor fd (as "--conn-fd 3" names it). The descriptor is closed
// once the socket is taken over (net.FileConn dups it).
func DialFD(ctx context.Context, fd int, opts Options) (*Conn, error) {
	f := os.NewFile(uintptr(fd), fmt.Sprintf("conn-fd-%d", fd))
	if f == nil {
		return nil, fmt.Errorf("%w: file descriptor %d is not open", ErrAddress, fd)
	}
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: file descriptor %d is not a connected socket: %w", ErrAddress, fd, err)
	}
	return DialConn(ctx, nc, opts)
}
