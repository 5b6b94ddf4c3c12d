package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/daemoneye/daemoneye/rpc"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/server"
)

// subBuffer is the channel capacity of every DaemonEye subscription: a
// message that arrives over a socket while it is full is dropped (and
// counted) by the client.
const subBuffer = 1 << 16

// deEnv is a DaemonEye broker, with a server on a UNIX socket or a TLS
// listener unless the transport is inproc.
type deEnv struct {
	tr     Transport
	b      *eventbus.Broker
	srv    *server.Server
	served chan error
	dir    string
	addr   string
	tls    *tls.Config // client configuration for MTLS

	mu    sync.Mutex
	conns []*deConn
}

func startDaemonEye(ctx context.Context, tr Transport, p *pki) (_ env, err error) {
	e := &deEnv{tr: tr}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.b, err = eventbus.New(eventbus.Options{}); err != nil {
		return nil, fmt.Errorf("DaemonEye: start the broker: %w", err)
	}
	var l net.Listener
	switch tr {
	case InProc:
		return e, nil // client.Connect: no address
	case Socket:
		if e.dir, err = os.MkdirTemp("", "daemoneye-compare-"); err != nil {
			return nil, fmt.Errorf("DaemonEye: socket directory: %w", err)
		}
		path := filepath.Join(e.dir, server.SocketName)
		if l, err = server.ListenUnix(path); err != nil {
			return nil, fmt.Errorf("DaemonEye: %w", err)
		}
		e.addr = "unix://" + path
	case MTLS:
		if l, err = server.ListenTLS("127.0.0.1:0", p.server); err != nil {
			return nil, fmt.Errorf("DaemonEye: %w", err)
		}
		e.addr, e.tls = "tls://"+l.Addr().String(), p.client
	default:
		return nil, fmt.Errorf("DaemonEye: unknown transport %q", tr)
	}
	// Over mTLS the benchmark's clients are cert: identities, not the
	// local operator: admit them to block, as a deployment lists the
	// subscribers it trusts to keep reading (daemoneye-broker --may-block),
	// so that a publisher faster than the TLS writer is held back instead
	// of its subscriber being closed as a slow consumer.
	if e.srv, err = server.New(server.Options{Broker: e.b, MayBlock: func(string) bool { return true }}); err != nil {
		l.Close()
		return nil, fmt.Errorf("DaemonEye: start the server: %w", err)
	}
	e.served = make(chan error, 1)
	go func() { e.served <- e.srv.Serve(l) }()
	if tr == MTLS {
		// The client may not speak TLS yet: find out before the trial.
		if _, err := e.dial(ctx, "bench-probe"); err != nil {
			return nil, fmt.Errorf("%w: DaemonEye TLS not available (%v)", errSkip, err)
		}
	}
	return e, nil
}

func (e *deEnv) transport() string {
	switch e.tr {
	case InProc:
		return "inproc"
	case MTLS:
		return "tls"
	}
	return "unix"
}

func (e *deEnv) dial(ctx context.Context, name string) (conn, error) {
	c := &deConn{}
	opts := client.Options{Name: name, NoReconnect: true, TLSConfig: e.tls,
		OnDisconnect: func(error) { c.disc.Add(1) }}
	var err error
	if e.tr == InProc {
		if c.c, err = client.Connect(e.b, opts); err != nil {
			return nil, fmt.Errorf("DaemonEye: %s: connect in process: %w", name, err)
		}
	} else if c.c, err = client.Dial(ctx, e.addr, opts); err != nil {
		return nil, fmt.Errorf("DaemonEye: %s: dial %s: %w", name, e.addr, err)
	}
	e.mu.Lock()
	e.conns = append(e.conns, c)
	e.mu.Unlock()
	return c, nil
}

func (e *deEnv) dropped() uint64 {
	if e.b == nil {
		return 0
	}
	return e.b.Stats().Dropped.Total()
}

// close closes the clients (each waits for its goroutines), then the
// server, then the broker.
func (e *deEnv) close() {
	e.mu.Lock()
	conns := e.conns
	e.conns = nil
	e.mu.Unlock()
	for _, c := range conns {
		if c.srv != nil {
			c.srv.Close()
		}
		c.c.Close()
		c.wg.Wait()
	}
	if e.served != nil {
		e.srv.Close()
		<-e.served
	}
	if e.b != nil {
		e.b.Close()
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

type deConn struct {
	c    *client.Conn
	srv  *rpc.Server // serveRPC
	rc   *rpc.Client // call
	disc atomic.Uint64
	wg   sync.WaitGroup // subscriber goroutines
}

func (c *deConn) publish(p []byte) error { return c.c.Publish(pubSubTopic, p) }

func (c *deConn) flush(ctx context.Context) error {
	if err := c.c.Flush(ctx); err != nil {
		return err
	}
	return c.c.AsyncErr()
}

// subscribe reads the subscription's channel, the client's plain API.
// (SubscribeFunc would do the same, with one more allocation per message
// for the *Msg it passes.)
func (c *deConn) subscribe(ctx context.Context, topic string, fn func([]byte)) (sub, error) {
	s, err := c.c.Subscribe(ctx, topic, subBuffer)
	if err != nil {
		return nil, fmt.Errorf("DaemonEye: subscribe %s: %w", topic, err)
	}
	c.wg.Go(func() {
		for m := range s.C() {
			fn(m.Payload)
		}
	})
	return deSub{s}, nil
}

func (c *deConn) respond(ctx context.Context, topic string) error {
	_, err := c.c.SubscribeFunc(ctx, topic, client.SubscribeOptions{Buffer: subBuffer}, func(m *client.Msg) {
		c.c.Respond(m, m.Payload)
	})
	if err != nil {
		return fmt.Errorf("DaemonEye: subscribe the responder to %s: %w", topic, err)
	}
	return nil
}

func (c *deConn) request(ctx context.Context, topic string, p []byte) error {
	_, err := c.c.Request(ctx, topic, p)
	return err
}

func (c *deConn) disconnects() uint64 { return c.disc.Load() }

type deSub struct{ s *client.Subscription }

func (s deSub) dropped() uint64 { return s.s.Dropped() }
