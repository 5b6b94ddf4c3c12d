package loadgen

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
)

// Transport is how publishers and subscribers reach the broker.
type Transport string

// The transports.
const (
	// Inproc calls an eventbus.Broker in this process directly.
	Inproc Transport = "inproc"
	// Unix connects client.Conns to a broker over a UNIX socket.
	Unix Transport = "unix"
	// TCP connects client.Conns to a broker over TCP: plaintext on a
	// loopback port for a broker Run starts, whose clients authenticate
	// with a token made up for the run.
	TCP Transport = "tcp"
)

// Transports lists the valid transports, for help texts.
var Transports = []Transport{Inproc, Unix, TCP}

// ParseTransport returns the transport named s.
func ParseTransport(s string) (Transport, error) {
	for _, t := range Transports {
		if s == string(t) {
			return t, nil
		}
	}
	names := make([]string, len(Transports))
	for i, t := range Transports {
		names[i] = string(t)
	}
	return "", fmt.Errorf("%w: unknown transport %q: use %s", ErrConfig, s, strings.Join(names, ", "))
}

// ErrConfig wraps the errors of a Config that cannot run; the message
// names the field by its daemoneye-cli flag.
var ErrConfig = errors.New("invalid configuration")

// Defaults for the fields of Config, as daemoneye-cli bench uses them.
const (
	DefaultPubs = 1
	DefaultSubs = 1
	DefaultSize = 128
	DefaultMsgs = 1_000_000
	// DefaultIdleTimeout is how long Run waits, once the publishers have
	// finished, for a message to arrive before it gives up on the ones
	// still missing.
	DefaultIdleTimeout = 2 * time.Second
)

// DefaultSampleEvery returns how many messages apart a publisher puts a
// send time into a payload by default: every message, except in-process
// at full speed (rate 0), where it is one in 64. There, reading the clock
// at both ends (about 30 ns each on a VM) costs as much as the broker's
// own work for a message, and every stamped payload must be a fresh
// buffer because the broker never copies one: stamping every message
// would measure the clock rather than the broker.
func DefaultSampleEvery(t Transport, rate int) int {
	if t == Inproc && rate == 0 {
		return 64
	}
	return 1
}

// StampSize is the size of the send timestamp at the start of every
// payload. Payloads shorter than this carry none, and a run with them
// measures no latency.
const StampSize = 8

// Config describes one run. Unlike most option structs, a zero field is
// not replaced by a default: Pubs must be at least 1 and Msgs at least 1;
// Subs may be 0 for a publish-only run.
type Config struct {
	// Transport is how clients reach the broker.
	Transport Transport
	// Addr is the address of a running broker to measure (a socket path,
	// or a URL such as unix:///path). Empty means that Run starts a broker
	// of its own for the run: an eventbus.Broker for Inproc, and one
	// behind a server for Unix (on a socket in a new temporary directory)
	// and TCP (on a loopback port). Inproc takes no Addr.
	Addr string
	// Token and TLS authenticate the clients to the broker at Addr (see
	// client.Options); a broker Run starts needs neither.
	Token string
	TLS   *tls.Config
	// Pubs is the number of publishers (--pub), each with its own
	// connection over a socket.
	Pubs int
	// Subs is the number of subscribers (--sub), each with its own
	// connection over a socket. Each receives every message.
	Subs int
	// Size is the payload size in bytes (--size). The first StampSize
	// bytes carry the send time; smaller payloads measure no latency.
	Size int
	// Msgs is the number of messages published in all (--msgs), split
	// evenly across the publishers.
	Msgs int
	// Rate is the number of messages each publisher sends per second
	// (--rate); 0 means as fast as it can.
	Rate int
	// SampleEvery makes every SampleEvery-th message of each publisher
	// carry its send time, from which the subscribers measure latency
	// (--sample). Zero means DefaultSampleEvery(Transport, Rate).
	SampleEvery int
	// IdleTimeout is how long to wait, once the publishers have finished,
	// for the next message before counting the missing ones as dropped.
	// Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Progress, if set, is called about five times a second from one
	// goroutine while the run lasts.
	Progress func(Progress)
}

// Progress is how far a run has got.
type Progress struct {
	Elapsed    time.Duration // since the first publish
	Published  int64         // messages published so far
	Msgs       int64         // messages to publish
	Delivered  int64         // messages received so far, by all subscribers
	Deliveries int64         // messages all subscribers are to receive
}

// Validate reports whether c can run, with an error wrapping ErrConfig
// that says what to change.
func (c *Config) Validate() error {
	if _, err := ParseTransport(string(c.Transport)); err != nil {
		return err
	}
	switch {
	case c.Transport == Inproc && c.Addr != "":
		return fmt.Errorf("%w: --transport inproc measures a broker inside this process and takes no broker address (%s); use --transport unix, or leave out --socket/--url", ErrConfig, c.Addr)
	case c.Pubs < 1:
		return fmt.Errorf("%w: --pub %d: at least 1 publisher is needed", ErrConfig, c.Pubs)
	case c.Subs < 0:
		return fmt.Errorf("%w: --sub %d: the number of subscribers must be 0 (publish only) or more", ErrConfig, c.Subs)
	case c.Size < 0:
		return fmt.Errorf("%w: --size %d: the payload size must be 0 or more bytes", ErrConfig, c.Size)
	case c.Addr == "" && c.Size > eventbus.DefaultMaxPayload:
		return fmt.Errorf("%w: --size %d: the broker accepts payloads of at most %d bytes", ErrConfig, c.Size, eventbus.DefaultMaxPayload)
	case c.Msgs < 1:
		return fmt.Errorf("%w: --msgs %d: at least 1 message is needed", ErrConfig, c.Msgs)
	case c.Rate < 0:
		return fmt.Errorf("%w: --rate %d: the rate must be 0 (as fast as possible) or more messages per second", ErrConfig, c.Rate)
	case c.SampleEvery < 0:
		return fmt.Errorf("%w: --sample %d: measure the latency of 1 message in N, N ≥ 1 (0: the transport's default)", ErrConfig, c.SampleEvery)
	case c.IdleTimeout < 0:
		return fmt.Errorf("%w: the idle timeout %v is negative", ErrConfig, c.IdleTimeout)
	}
	return nil
}

// share returns how many of the run's messages publisher p sends.
func (c *Config) share(p int) int {
	n := c.Msgs / c.Pubs
	if p < c.Msgs%c.Pubs {
		n++
	}
	return n
}
