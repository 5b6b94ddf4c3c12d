package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/server"
)

// Tuning of the socket clients.
const (
	// flushBytes is about how much a publisher sends between flushes. A
	// flush waits until the server has handled everything before it, which
	// keeps a publisher within reach of the broker instead of buffering
	// the whole run in its connection.
	flushBytes = 1 << 20
	// maxFlushMsgs bounds the messages between flushes for small payloads.
	maxFlushMsgs = 4096
	// flushTimeout bounds one flush: a broker that does not answer within
	// it has stalled.
	flushTimeout = 30 * time.Second
	// subBufferMsgs is the client-side buffer shared by the subscribers
	// (each gets its share, at least minSubBuffer messages). A message
	// that arrives while a subscriber's buffer is full is dropped by the
	// client, and reported.
	subBufferMsgs = 1 << 16
	minSubBuffer  = 1024
)

// socket runs publishers and subscribers as client.Conns, each with its
// own connection, to a broker over a socket: one it starts (on a UNIX
// socket in a new directory, or plaintext TCP on a loopback port), or
// cfg.Addr.
type socket struct {
	cfg   *Config
	addr  string
	token string // the clients' credential, for a self-started TCP broker

	// Set when the harness started the broker.
	b      *eventbus.Broker
	srv    *server.Server
	served chan error
	dir    string

	mu    sync.Mutex
	conns []*client.Conn
}

func newSocket(cfg *Config) (_ *socket, err error) {
	h := &socket{cfg: cfg, addr: cfg.Addr}
	if cfg.Addr != "" {
		return h, nil
	}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	if h.b, err = eventbus.New(eventbus.Options{}); err != nil {
		return nil, fmt.Errorf("bench: start the broker: %w", err)
	}
	opts := server.Options{Broker: h.b, MaxConns: cfg.Pubs + cfg.Subs + 1}
	var l net.Listener
	if cfg.Transport == TCP {
		// Plaintext TCP on loopback carries no peer identity: the clients
		// authenticate with a token made up for the run.
		var secret [16]byte
		rand.Read(secret[:])
		h.token = hex.EncodeToString(secret[:])
		opts.Auth.Tokens = []server.Token{{Name: "daemoneye-bench", Secret: h.token}}
		if l, err = server.ListenLoopback("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		h.addr = "tcp://" + l.Addr().String()
	} else {
		if h.dir, err = os.MkdirTemp("", "daemoneye-bench-"); err != nil {
			return nil, fmt.Errorf("bench: create a directory for the socket: %w", err)
		}
		path := filepath.Join(h.dir, server.SocketName)
		if l, err = server.ListenUnix(path); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		h.addr = "unix://" + path
	}
	if h.srv, err = server.New(opts); err != nil {
		l.Close()
		return nil, fmt.Errorf("bench: start the server: %w", err)
	}
	h.served = make(chan error, 1)
	go func() { h.served <- h.srv.Serve(l) }()
	return h, nil
}

func (h *socket) dial(ctx context.Context, name string) (*client.Conn, error) {
	opts := client.Options{Name: name, Token: h.token}
	if h.b == nil { // a broker at cfg.Addr
		opts.Token, opts.TLSConfig = h.cfg.Token, h.cfg.TLS
	}
	c, err := client.Dial(ctx, h.addr, opts)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
	return c, nil
}

func (h *socket) subscriber(ctx context.Context, i int, pattern string) (receiver, error) {
	name := fmt.Sprintf("bench-sub-%d", i)
	c, err := h.dial(ctx, name)
	if err != nil {
		return nil, err
	}
	s, err := c.Subscribe(ctx, pattern, max(minSubBuffer, subBufferMsgs/h.cfg.Subs))
	if err != nil {
		return nil, fmt.Errorf("bench: %s: subscribe to %s: %w", name, pattern, err)
	}
	return &socketSub{name: name, c: c, s: s}, nil
}

func (h *socket) publisher(ctx context.Context, i int) (sender, error) {
	c, err := h.dial(ctx, fmt.Sprintf("bench-pub-%d", i))
	if err != nil {
		return nil, err
	}
	return socketPub{c}, nil
}

func (h *socket) brokerDropped() (uint64, bool) {
	if h.b == nil {
		return 0, false
	}
	return h.b.Stats().Dropped.Total(), true
}

// close closes the connections, all at once since each may wait for its
// final flush, then what the harness started.
func (h *socket) close() {
	h.mu.Lock()
	conns := h.conns
	h.conns = nil
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { c.Close() })
	}
	wg.Wait()
	if h.served != nil {
		h.srv.Close()
		<-h.served
	}
	if h.b != nil {
		h.b.Close()
	}
	if h.dir != "" {
		os.RemoveAll(h.dir)
	}
}

type socketSub struct {
	name string
	c    *client.Conn
	s    *client.Subscription
}

func (r *socketSub) receive(ctx context.Context, st *subState, want int64) error {
	defer st.finish(want)
	msgs := r.s.C()
	for st.got < want {
		select {
		case m, ok := <-msgs:
			if !ok {
				why := r.c.Err()
				if why == nil {
					why = errors.New("unsubscribed")
				}
				return fmt.Errorf("bench: %s: the subscription ended after %d of %d messages: %w", r.name, st.got, want, why)
			}
			st.take(m.Payload)
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

func (r *socketSub) dropped() uint64 { return r.s.Dropped() }

type socketPub struct {
	c *client.Conn
}

// send publishes job.n messages from one buffer: Publish copies the
// payload into the connection's buffer, so rewriting its send time is
// safe. It
// flushes every flushBytes or so, and at the end.
func (p socketPub) send(ctx context.Context, job *pubJob) error {
	name := fmt.Sprintf("bench-pub-%d", job.index)
	payload := make([]byte, job.size)
	every := max(1, min(maxFlushMsgs, flushBytes/max(job.size, 1)))
	for i := range job.n {
		if err := job.pace.wait(ctx, i); err != nil {
			return nil // the run is ending; the coordinator reports why
		}
		if job.size >= StampSize {
			job.stamp(payload, i)
		}
		if err := p.c.Publish(job.topic, payload); err != nil {
			return fmt.Errorf("bench: %s, message %d of %d: %w", name, i+1, job.n, err)
		}
		if i%progressEvery == progressEvery-1 {
			job.published.Add(progressEvery)
			if ctx.Err() != nil {
				return nil
			}
		}
		if i%every == every-1 || i == job.n-1 {
			if err := p.flush(ctx, name); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
	}
	job.published.Add(int64(job.n % progressEvery))
	if err := p.c.AsyncErr(); err != nil {
		return fmt.Errorf("bench: %s: the broker refused messages: %w", name, err)
	}
	return nil
}

func (p socketPub) flush(ctx context.Context, name string) error {
	fctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	err := p.c.Flush(fctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return fmt.Errorf("bench: %s: the broker did not answer a flush within %v: %w", name, flushTimeout, err)
	}
	return fmt.Errorf("bench: %s: flush: %w", name, err)
}
