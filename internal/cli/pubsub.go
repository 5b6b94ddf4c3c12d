package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/internal/transport"
)

// global holds the flags that come before the command.
type global struct {
	socket                 string
	url                    string
	token                  string // --token or $DAEMONEYE_TOKEN
	tlsCA, tlsCert, tlsKey string
	stdin                  io.Reader
	stderr                 io.Writer // for notices from the connection's goroutine; safe for concurrent use
}

func (g *global) addr() string {
	switch {
	case g.url != "":
		return g.url
	case g.socket != "":
		return g.socket
	case os.Getenv("DAEMONEYE_SOCKET") != "":
		return os.Getenv("DAEMONEYE_SOCKET")
	}
	return transport.DefaultSocketPath()
}

// credentials returns the token and TLS configuration the flags give.
func (g *global) credentials() (string, *tls.Config, error) {
	token := g.token
	if token == "" {
		token = os.Getenv("DAEMONEYE_TOKEN")
	}
	if g.tlsCA == "" && g.tlsCert == "" && g.tlsKey == "" {
		return token, nil, nil
	}
	cfg, err := client.LoadTLSConfig(g.tlsCA, g.tlsCert, g.tlsKey)
	return token, cfg, err
}

// brokerUID returns the uid $DAEMONEYE_BROKER_UID names, the user a broker
// on a UNIX socket may run as besides root (0: the CLI's own user).
func brokerUID() (uint32, error) {
	v := os.Getenv("DAEMONEYE_BROKER_UID")
	if v == "" {
		return 0, nil
	}
	uid, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("DAEMONEYE_BROKER_UID=%q is not a uid: set it to the numeric uid the broker runs as, or unset it", v)
	}
	return uint32(uid), nil
}

func (g *global) dial(ctx context.Context) (*client.Conn, error) {
	token, tlsCfg, err := g.credentials()
	if err != nil {
		return nil, err
	}
	serverUID, err := brokerUID()
	if err != nil {
		return nil, err
	}
	return client.Dial(ctx, g.addr(), client.Options{
		Name: "daemoneye-cli", Token: token, TLSConfig: tlsCfg, ServerUID: serverUID,
		OnDisconnect: func(err error) {
			fmt.Fprintf(g.stderr, "daemoneye-cli: lost the broker (%v); reconnecting, and buffering what is published meanwhile\n", err)
		},
		OnReconnect: func() { fmt.Fprintln(g.stderr, "daemoneye-cli: reconnected to the broker; subscriptions restored") },
	})
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// runPub publishes DATA, or one message per line of standard input.
func runPub(ctx context.Context, g *global, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pub", stderr, "pub TOPIC [DATA]: publish DATA, or each line of standard input, to TOPIC")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return fmt.Errorf("%w: pub takes TOPIC and optionally DATA", errUsage)
	}
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	name := fs.Arg(0)
	n := 0
	if fs.NArg() == 2 {
		if err := c.Publish(name, []byte(fs.Arg(1))); err != nil {
			return err
		}
		n = 1
	} else {
		sc := bufio.NewScanner(g.stdin)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			if err := c.Publish(name, append([]byte(nil), sc.Bytes()...)); err != nil {
				return err
			}
			n++
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("reading standard input: %w", err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		return err
	}
	if err := c.AsyncErr(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "published %d message(s) to %s\n", n, name)
	return nil
}

// runSub prints messages matching the patterns, one line each.
func runSub(ctx context.Context, g *global, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sub", stderr, "sub [--count N] [--json] PATTERN...: print messages matching the patterns")
	count := fs.Int("count", 0, "exit after N messages (0: run until interrupted)")
	asJSON := fs.Bool("json", false, "print each message as a JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: sub needs at least one PATTERN", errUsage)
	}
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	msgs := make(chan client.Msg)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, p := range fs.Args() {
		s, err := c.Subscribe(ctx, p, 0)
		if err != nil {
			return err
		}
		wg.Go(func() {
			for {
				var m client.Msg
				var ok bool
				select { // not range: an interrupt must end this without a message
				case m, ok = <-s.C():
					if !ok {
						return
					}
				case <-ctx.Done():
					return
				}
				select {
				case msgs <- m:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	fmt.Fprintf(stderr, "subscribed to %v on %s\n", fs.Args(), g.addr())
	enc := json.NewEncoder(stdout)
	for n := 0; *count == 0 || n < *count; n++ {
		var m client.Msg
		select {
		case m = <-msgs:
		case <-ctx.Done():
			return nil
		}
		if *asJSON {
			err = enc.Encode(struct {
				Topic    string `json:"topic"`
				Seq      uint64 `json:"seq"`
				Priority string `json:"priority"`
				Pattern  string `json:"pattern"`
				Payload  string `json:"payload"`
			}{m.Topic, m.Seq, m.Priority.String(), m.Pattern, string(m.Payload)})
		} else {
			_, err = fmt.Fprintf(stdout, "[#%d] %s: %s\n", m.Seq, m.Topic, m.Payload)
		}
		if err != nil {
			return err
		}
	}
	cancel()
	c.Close() // ends the subscriptions' channels, and so the forwarders
	return nil
}
