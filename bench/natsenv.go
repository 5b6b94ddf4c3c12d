package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// natsEnv is an embedded nats-server: on a random loopback TCP port, or
// with no listener for in-process connections.
type natsEnv struct {
	tr   Transport
	s    *server.Server
	url  string
	opts []nats.Option

	mu    sync.Mutex
	conns []*natsConn
}

func startNATS(_ context.Context, tr Transport, p *pki) (env, error) {
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true}
	e := &natsEnv{tr: tr}
	switch tr {
	case Socket:
	case InProc:
		opts.DontListen = true
	case MTLS:
		opts.TLSConfig, opts.TLSVerify, opts.TLSTimeout = p.server, true, 5
	default:
		return nil, fmt.Errorf("NATS: unknown transport %q", tr)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("NATS: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, errors.New("NATS: the server was not ready within 10s")
	}
	e.s, e.url = s, s.ClientURL()
	switch tr {
	case InProc:
		e.opts = append(e.opts, nats.InProcessServer(s))
	case MTLS:
		e.opts = append(e.opts, nats.Secure(p.client))
	}
	return e, nil
}

func (e *natsEnv) transport() string {
	switch e.tr {
	case InProc:
		return "in-process (net.Pipe)"
	case MTLS:
		return "tls"
	}
	return "tcp"
}

func (e *natsEnv) dial(_ context.Context, name string) (conn, error) {
	c := &natsConn{}
	opts := append([]nats.Option{
		nats.Name(name), nats.NoReconnect(), nats.Timeout(5 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				c.slow.Add(1)
			}
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil && !c.closing.Load() {
				c.disc.Add(1)
			}
		}),
	}, e.opts...)
	nc, err := nats.Connect(e.url, opts...)
	if err != nil {
		return nil, fmt.Errorf("NATS: %s: connect %s: %w", name, e.url, err)
	}
	c.nc = nc
	e.mu.Lock()
	e.conns = append(e.conns, c)
	e.mu.Unlock()
	return c, nil
}

// dropped: the server closes a slow consumer instead of dropping its
// messages; that shows in disconnects.
func (e *natsEnv) dropped() uint64 { return 0 }

func (e *natsEnv) close() {
	e.mu.Lock()
	conns := e.conns
	e.conns = nil
	e.mu.Unlock()
	for _, c := range conns {
		c.closing.Store(true)
		c.nc.Close()
	}
	e.s.Shutdown()
	e.s.WaitForShutdown()
}

type natsConn struct {
	nc      *nats.Conn
	slow    atomic.Uint64 // slow consumer errors reported by the client
	disc    atomic.Uint64
	closing atomic.Bool
}

func (c *natsConn) publish(p []byte) error { return c.nc.Publish(pubSubTopic, p) }

func (c *natsConn) flush(ctx context.Context) error {
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return err
	}
	return c.nc.LastError()
}

// subscribe uses an asynchronous handler, nats.go's usual fast path, with
// the pending limits removed so that the client never drops.
func (c *natsConn) subscribe(_ context.Context, topic string, fn func([]byte)) (sub, error) {
	s, err := c.nc.Subscribe(topic, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("NATS: subscribe %s: %w", topic, err)
	}
	if err := s.SetPendingLimits(-1, -1); err != nil {
		return nil, fmt.Errorf("NATS: pending limits: %w", err)
	}
	if err := c.nc.Flush(); err != nil { // the server has the subscription
		return nil, fmt.Errorf("NATS: subscribe %s: %w", topic, err)
	}
	return natsSub{s, c}, nil
}

func (c *natsConn) respond(_ context.Context, topic string) error {
	s, err := c.nc.Subscribe(topic, func(m *nats.Msg) { m.Respond(m.Data) })
	if err != nil {
		return fmt.Errorf("NATS: subscribe the responder to %s: %w", topic, err)
	}
	if err := s.SetPendingLimits(-1, -1); err != nil {
		return fmt.Errorf("NATS: pending limits: %w", err)
	}
	return c.nc.Flush()
}

func (c *natsConn) request(ctx context.Context, topic string, p []byte) error {
	_, err := c.nc.RequestWithContext(ctx, topic, p)
	return err
}

func (c *natsConn) disconnects() uint64 { return c.disc.Load() }

type natsSub struct {
	s *nats.Subscription
	c *natsConn
}

func (s natsSub) dropped() uint64 {
	n, err := s.s.Dropped()
	if err != nil || n < 0 {
		return s.c.slow.Load()
	}
	return uint64(n)
}
