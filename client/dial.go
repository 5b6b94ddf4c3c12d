package client

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/daemoneye/daemoneye/internal/wire"
)

// session is a connection that has completed the handshake.
type session struct {
	nc      net.Conn
	r       *wire.Reader // reads the frames after the welcome
	welcome wire.Welcome
}

// dial connects to addr and runs the handshake, bounded by ctx and
// opts.DialTimeout.
func dial(ctx context.Context, addr string, opts *Options) (*session, error) {
	network, address, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("client: connect to %s: %w (is the broker running?)", addr, err)
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	hello := wire.AppendHello(append([]byte(nil), wire.Magic[:]...), &wire.Hello{
		Versions: []wire.Version{wire.Current}, ClientName: []byte(opts.Name),
	})
	if _, err := nc.Write(hello); err != nil {
		nc.Close()
		return nil, fmt.Errorf("client: handshake: %w", err)
	}
	r := wire.NewReader(nc, 0)
	f, err := r.ReadFrame()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("client: handshake: %w", err)
	}
	if f.Type == wire.TypeError {
		e, _ := wire.ParseError(f.Type, f.Flags, f.Body)
		nc.Close()
		return nil, fmt.Errorf("%w: %s", ErrRefused, e.Text)
	}
	w, err := wire.ParseWelcome(f.Flags, f.Body)
	if f.Type != wire.TypeWelcome || err != nil {
		nc.Close()
		return nil, fmt.Errorf("client: handshake: expected welcome, got %s (%v)", f.Type, err)
	}
	nc.SetDeadline(time.Time{})
	// Deliver frames carry a payload of up to MaxPayload plus the topic.
	r.SetMaxBody(int(w.MaxPayload) + 4096)
	return &session{nc: nc, r: r, welcome: w}, nil
}

func parseAddr(addr string) (network, address string, err error) {
	if !strings.Contains(addr, "://") {
		return "unix", addr, nil
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", "", fmt.Errorf("client: bad address %q: %w", addr, err)
	}
	if u.Scheme != "unix" {
		return "", "", fmt.Errorf("client: address %q: only unix:// is supported so far", addr)
	}
	return "unix", u.Path, nil
}
