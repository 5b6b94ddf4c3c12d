package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/daemoneye/daemoneye/client"
)

// global holds the flags that come before the command.
type global struct {
	socket                 string
	url                    string
	token                  string // from --token-file or $DAEMONEYE_TOKEN
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
	return client.DefaultSocketPath()
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

// errMissed is returned by sub when messages it should have printed never
// arrived.
var errMissed = errors.New("messages were missed")

// gaps counts the messages a subscriber missed, from the gaps in each
// topic's sequence numbers (eventbus.Message.Seq), per pattern. A number
// not above the last one seen means the broker restarted or forgot the
// topic and numbers it from 1 again: the messages before it were missed
// (published while this subscriber was reconnecting, for example). Not
// safe for concurrent use.
type gaps struct {
	last   map[gapKey]uint64
	missed uint64
}

type gapKey struct{ pattern, topic string }

// maxGapTopics bounds the topics gaps remembers; later ones are not
// checked.
const maxGapTopics = 1 << 16

// see records m and returns how many messages before it were missed.
func (g *gaps) see(m *client.Msg) uint64 {
	k := gapKey{m.Pattern, m.Topic}
	last, ok := g.last[k]
	if !ok && len(g.last) >= maxGapTopics {
		return 0
	}
	g.last[k] = m.Seq
	var n uint64
	switch {
	case !ok: // the first of the topic: what came before is not ours
		return 0
	case m.Seq <= last: // a new broker, or the topic forgotten: numbered from 1 again
		n = m.Seq - 1
	default:
		n = m.Seq - last - 1
	}
	g.missed += n
	return n
}

// runSub prints messages matching the patterns, one line each. Its
// subscriptions use flow control: when it cannot print as fast as
// messages come, the broker holds them, and drops them only beyond its
// limits, counting them in its stats. Gaps in the topics' sequence
// numbers tell sub what it missed: it says so on stderr as it happens and
// at the end, and then exits with status 1.
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
	msgs := make(chan client.Msg, 1024)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The printer runs while the subscriptions are made: a subscription
	// whose channel is full holds up the Conn, and with it the broker's
	// answer to the next Subscribe.
	printed := make(chan error, 1)
	gp := &gaps{last: make(map[gapKey]uint64)}
	n := 0
	go func() { printed <- printMsgs(ctx, msgs, *count, *asJSON, gp, &n, stdout, stderr) }()
	var wg sync.WaitGroup
	var subs []*client.Subscription
	err = func() error {
		for _, p := range fs.Args() {
			s, err := c.Subscribe(ctx, p, 0)
			if err != nil {
				return err
			}
			subs = append(subs, s)
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
		return nil
	}()
	if err == nil {
		err = <-printed // it ends with ctx too
	} else {
		cancel()
		<-printed
	}
	cancel()
	c.Close() // ends the subscriptions' channels, and so the forwarders
	wg.Wait()
	if err != nil {
		return err
	}
	missed := gp.missed
	for _, s := range subs {
		missed += s.Dropped()
	}
	atLeast := ""
	if c.Stats().Reconnects > 0 { // a new broker may have numbered past the old one's last
		atLeast = "at least "
	}
	if missed > 0 {
		return fmt.Errorf("%w: printed %d and missed %s%d (gaps in the topics' sequence numbers): the broker dropped them for this subscriber, which did not keep up, or they were published while it was reconnecting; 'daemoneye-cli stats' counts them",
			errMissed, n, atLeast, missed)
	}
	return nil
}

// printMsgs prints messages until count (0: no limit) are printed or ctx
// ends, notes gaps in gp (saying so on stderr at most once a second), and
// counts what it printed in *n, which the caller reads once it returned.
func printMsgs(ctx context.Context, msgs <-chan client.Msg, count int, asJSON bool, gp *gaps, n *int, stdout, stderr io.Writer) error {
	enc := json.NewEncoder(stdout)
	var noticed time.Time
	for ; count == 0 || *n < count; *n++ {
		var m client.Msg
		select {
		case m = <-msgs:
		case <-ctx.Done():
			return nil
		}
		if gp.see(&m) > 0 {
			if now := time.Now(); now.Sub(noticed) >= time.Second {
				noticed = now
				fmt.Fprintf(stderr, "daemoneye-cli: missed %d message(s) so far: this subscriber does not keep up, or was reconnecting\n", gp.missed)
			}
		}
		var err error
		if asJSON {
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
	return nil
}
