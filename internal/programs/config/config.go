// Package config loads DaemonEye's configuration files: YAML, decoded
// strictly, so that a key that does not exist (a typo) is an error naming
// the line rather than a setting silently ignored.
//
// Precedence, for every binary: command-line flags, then environment
// variables, then the configuration file, then the built-in defaults. A
// binary applies the file first and then each flag the user set
// explicitly.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid is wrapped by every error about a configuration file's
// content.
var ErrInvalid = errors.New("config: invalid configuration")

// MaxFileSize bounds a configuration file, in bytes (1 MiB); a larger one
// is refused before it is decoded.
const MaxFileSize = 1 << 20

// Load decodes the YAML file at path into v (a pointer to a struct with
// yaml tags). Unknown keys, a second document, and values of the wrong type
// are errors that name the file and line.
func Load(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return fmt.Errorf("%w: %s is larger than %d bytes (1 MiB), the limit for a configuration file: remove what is not needed", ErrInvalid, path, MaxFileSize)
	}
	if err := Decode(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Decode decodes YAML data into v strictly, like Load. Empty data leaves v
// as it is.
func Decode(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: more than one YAML document; put everything in one", ErrInvalid)
	}
	return nil
}

// Duration is a time.Duration written as Go writes durations ("5s",
// "250ms", "2m").
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration: write it like 5s, 250ms or 2m", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Broker is the configuration of a broker: daemoneye-broker's file, and
// the broker section of the agent's.
type Broker struct {
	// Socket is the UNIX socket path; empty means the default path.
	Socket string `yaml:"socket"`
	// MaxConns bounds concurrent authenticated connections.
	MaxConns int `yaml:"max_conns"`
	// MaxPreAuth bounds the connections that have not authenticated yet
	// (0: the server's default, 32); root and the broker's own user are
	// not counted.
	MaxPreAuth int `yaml:"max_preauth"`
	// MaxPending bounds the bytes buffered for one connection (0: the
	// server's default, 4 MiB).
	MaxPending int `yaml:"max_pending"`
	// MaxPendingTotal bounds the bytes buffered for all connections
	// together (0: the server's default, 128 MiB).
	MaxPendingTotal int `yaml:"max_pending_total"`
	// MaxStall bounds how long a publisher waits for room at one
	// connection before it is closed as a slow consumer (0: the server's
	// default, 50 ms).
	MaxStall Duration `yaml:"max_stall"`
	// MaxSubscriptions bounds the subscriptions of the whole broker (0:
	// the broker's default, 65,536); MaxConnSubscriptions those of one
	// connection (0: the server's default, 4,096).
	MaxSubscriptions     int `yaml:"max_subscriptions"`
	MaxConnSubscriptions int `yaml:"max_conn_subscriptions"`
	// DrainTimeout is how long a shutdown waits for clients to leave.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// AllowUIDs and AllowGIDs admit local users beyond root and the
	// broker's own user on the UNIX socket.
	AllowUIDs []uint32 `yaml:"allow_uids"`
	AllowGIDs []uint32 `yaml:"allow_gids"`
	// TokenFile holds "NAME SECRET" lines for token authentication.
	TokenFile string `yaml:"token_file"`
	// TCP, when set, also listens on this host:port; TLS is required
	// unless TCPPlaintext is set and the address is loopback.
	TCP          string   `yaml:"tcp"`
	TCPPlaintext bool     `yaml:"tcp_plaintext"`
	TLSCA        string   `yaml:"tls_ca"`
	TLSCert      string   `yaml:"tls_cert"`
	TLSKey       string   `yaml:"tls_key"`
	AllowCerts   []string `yaml:"allow_certs"`
	// MayBlock lists identities besides root and the broker's own user
	// whose block subscriptions hold publishers back (at most MaxStall
	// each time); anyone else's block is made disconnect.
	MayBlock []string `yaml:"may_block"`
	// ACL, when set, confines every identity to its grant (key: the
	// identity, "uid:N", "cert:NAME", "token:NAME"; "*" for every identity
	// not named, which otherwise may do nothing). Absent: every admitted
	// identity may do everything.
	ACL map[string]Grant `yaml:"acl"`
}

// Grant is what one identity may do under an ACL: topic patterns it may
// publish to, send requests to (a publish with a reply topic), and
// subscribe to, and whether it may answer the requests delivered to it.
type Grant struct {
	Publish   []string `yaml:"publish"`
	Request   []string `yaml:"request"`
	Subscribe []string `yaml:"subscribe"`
	Respond   bool     `yaml:"respond"`
}
