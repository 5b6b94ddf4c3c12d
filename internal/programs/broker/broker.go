// Package broker is daemoneye-broker: the DaemonEye event bus as a
// standalone broker, on a UNIX socket and optionally on TCP with mutual
// TLS. When its context ends (SIGINT or SIGTERM in the command) it drains
// the clients and removes the socket.
//
// Settings come from flags, then $DAEMONEYE_SOCKET, then the file given
// with --config (YAML; an unknown key is an error), then the defaults.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/programs/command"
	"github.com/daemoneye/daemoneye/internal/programs/config"
	"github.com/daemoneye/daemoneye/server"
)

// Main runs daemoneye-broker with args (without the program name) until
// ctx ends, logging to stderr, and returns the exit code: 0, or 1 with the
// reason on stderr.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	if err := run(ctx, args, stderr); err != nil {
		fmt.Fprintln(stderr, "daemoneye-broker:", err)
		return 1
	}
	return 0
}

// listOf is a repeatable flag.
type listOf []string

func (l *listOf) String() string     { return strings.Join(*l, ",") }
func (l *listOf) Set(v string) error { *l = append(*l, v); return nil }

// settings parses the command line and merges it with the environment,
// the configuration file and the defaults.
func settings(args []string) (cfg config.Broker, verbose bool, err error) {
	fs := flag.NewFlagSet("daemoneye-broker", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML configuration file (flags override it)")
	fs.String("socket", "", "UNIX socket to listen on (env DAEMONEYE_SOCKET; default "+server.DefaultSocketPath()+")")
	fs.Int("max-conns", 1024, "most concurrent authenticated client connections")
	fs.Int("max-preauth", server.DefaultMaxPreAuth, "most connections that have not authenticated yet (root and the broker's user are not counted)")
	fs.Duration("drain-timeout", 5*time.Second, "how long SIGINT/SIGTERM waits for clients to leave")
	fs.Int("max-pending", server.DefaultMaxPending, "bytes buffered for one client connection; beyond, its subscriptions' overflow policy applies")
	fs.Int("max-pending-total", server.DefaultMaxPendingTotal, "bytes buffered for all client connections together; beyond, deliveries are dropped and counted")
	fs.Duration("max-stall", server.DefaultMaxStall, "longest a publisher waits for room at a connection under the block policy; then that connection is closed as a slow consumer")
	fs.Int("max-subscriptions", eventbus.DefaultMaxSubscriptions, "subscriptions in the whole broker")
	fs.Int("max-conn-subscriptions", server.DefaultMaxSubscriptions, "subscriptions of one client connection")
	fs.String("tcp", "", "also listen on TCP HOST:PORT, with TLS (off by default)")
	fs.Bool("tcp-plaintext", false, "allow TCP without TLS: only on a loopback address, clients need a token")
	fs.String("tls-ca", "", "CA certificate (PEM) that signs client certificates")
	fs.String("tls-cert", "", "the broker's TLS certificate (PEM)")
	fs.String("tls-key", "", "the broker's TLS key (PEM)")
	fs.String("token-file", "", `file of "NAME SECRET" lines for token authentication (mode 0600)`)
	var uids, gids, certs, blockers listOf
	fs.Var(&uids, "allow-uid", "admit this uid on the UNIX socket besides root and the broker's user (repeatable)")
	fs.Var(&gids, "allow-gid", "admit this primary gid on the UNIX socket (repeatable)")
	fs.Var(&blockers, "may-block", "let this identity's block subscriptions hold publishers back, as root's and the broker's user's do (repeatable; for example cert:archiver)")
	fs.Var(&certs, "allow-cert", "admit only TLS clients with this certificate name (repeatable; default: any the CA signed)")
	fs.BoolVar(&verbose, "v", false, "log connections")
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	cfg = config.Broker{MaxConns: 1024, DrainTimeout: config.Duration(5 * time.Second),
		MaxPending: server.DefaultMaxPending, MaxPendingTotal: server.DefaultMaxPendingTotal, MaxStall: config.Duration(server.DefaultMaxStall),
		MaxSubscriptions: eventbus.DefaultMaxSubscriptions, MaxConnSubscriptions: server.DefaultMaxSubscriptions}
	if *configPath != "" {
		if err := config.Load(*configPath, &cfg); err != nil {
			return cfg, false, err
		}
	}
	if v := os.Getenv("DAEMONEYE_SOCKET"); v != "" {
		cfg.Socket = v
	}
	var ferr error
	fs.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		switch f.Name {
		case "socket":
			cfg.Socket = v
		case "max-conns":
			cfg.MaxConns, _ = strconv.Atoi(v)
		case "max-preauth":
			cfg.MaxPreAuth, _ = strconv.Atoi(v)
		case "max-pending":
			cfg.MaxPending, _ = strconv.Atoi(v)
		case "max-pending-total":
			cfg.MaxPendingTotal, _ = strconv.Atoi(v)
		case "max-stall":
			d, _ := time.ParseDuration(v)
			cfg.MaxStall = config.Duration(d)
		case "max-subscriptions":
			cfg.MaxSubscriptions, _ = strconv.Atoi(v)
		case "max-conn-subscriptions":
			cfg.MaxConnSubscriptions, _ = strconv.Atoi(v)
		case "drain-timeout":
			d, _ := time.ParseDuration(v)
			cfg.DrainTimeout = config.Duration(d)
		case "tcp":
			cfg.TCP = v
		case "tcp-plaintext":
			cfg.TCPPlaintext = v == "true"
		case "tls-ca":
			cfg.TLSCA = v
		case "tls-cert":
			cfg.TLSCert = v
		case "tls-key":
			cfg.TLSKey = v
		case "token-file":
			cfg.TokenFile = v
		case "allow-cert":
			cfg.AllowCerts = certs
		case "may-block":
			cfg.MayBlock = blockers
		case "allow-uid", "allow-gid":
			ids, err := parseIDs(f.Name, *f.Value.(*listOf))
			if err != nil {
				ferr = err
			} else if f.Name == "allow-uid" {
				cfg.AllowUIDs = ids
			} else {
				cfg.AllowGIDs = ids
			}
		}
	})
	if cfg.Socket == "" {
		cfg.Socket = server.DefaultSocketPath()
	}
	return cfg, verbose, ferr
}

func parseIDs(name string, vs []string) ([]uint32, error) {
	ids := make([]uint32, 0, len(vs))
	for _, v := range vs {
		id, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--%s %q: want a numeric id", name, v)
		}
		ids = append(ids, uint32(id))
	}
	return ids, nil
}

// memoryHeadroom is what the soft memory limit allows beyond
// MaxPendingTotal, in bytes (see run).
const memoryHeadroom = 64 << 20

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, verbose, err := settings(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := command.Logger(stderr, verbose)
	if os.Getenv("GOMEMLIMIT") == "" && cfg.MaxPendingTotal > 0 {
		// Buffered frames are most of what a busy broker holds: collect
		// harder as the heap nears them plus room for everything else,
		// rather than let it grow to twice what is live.
		debug.SetMemoryLimit(int64(cfg.MaxPendingTotal) + memoryHeadroom)
	}

	auth := server.Auth{
		Peers:     server.PeerPolicy{UIDs: cfg.AllowUIDs, GIDs: cfg.AllowGIDs},
		CertNames: cfg.AllowCerts,
	}
	if cfg.TokenFile != "" {
		if auth.Tokens, err = server.LoadTokens(cfg.TokenFile); err != nil {
			return err
		}
	}
	b, err := eventbus.New(eventbus.Options{Logger: log, MaxSubscriptions: cfg.MaxSubscriptions})
	if err != nil {
		return err
	}
	defer b.Close()
	authz, err := aclOf(cfg.ACL)
	if err != nil {
		return err
	}
	srv, err := server.New(server.Options{Broker: b, Logger: log, MaxConns: cfg.MaxConns, MaxPreAuth: cfg.MaxPreAuth, Auth: auth, Authorizer: authz, MayBlock: mayBlock(cfg.MayBlock),
		MaxPending: cfg.MaxPending, MaxPendingTotal: cfg.MaxPendingTotal, MaxStall: time.Duration(cfg.MaxStall),
		MaxSubscriptions: cfg.MaxConnSubscriptions})
	if err != nil {
		return err
	}
	listeners, err := listen(&cfg)
	if err != nil {
		return err
	}
	for _, l := range listeners {
		log.Info("listening", "addr", l.Addr().String(), "network", l.Addr().Network())
	}

	var g errgroup.Group
	for _, l := range listeners {
		g.Go(func() error {
			if err := srv.Serve(l); !errors.Is(err, server.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	served := make(chan error, 1)
	go func() { served <- g.Wait() }()
	select {
	case err := <-served: // a listener failed: stop the others
		srv.Close()
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "drain_timeout", time.Duration(cfg.DrainTimeout))
	dctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.DrainTimeout))
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("clients did not leave in time", "err", err)
	}
	if err := <-served; err != nil { // every listener closed: the socket file is removed
		return err
	}
	return b.Shutdown(dctx)
}

// listen opens the UNIX socket and, if configured, the TCP listener.
func listen(cfg *config.Broker) ([]net.Listener, error) {
	ul, err := server.ListenUnix(cfg.Socket)
	if err != nil {
		return nil, err
	}
	if cfg.TCP == "" {
		return []net.Listener{ul}, nil
	}
	var tl net.Listener
	if cfg.TLSCA != "" || cfg.TLSCert != "" || cfg.TLSKey != "" || !cfg.TCPPlaintext {
		if cfg.TCPPlaintext {
			ul.Close()
			return nil, fmt.Errorf("--tcp %s: %w: --tcp-plaintext and the --tls-* flags exclude each other", cfg.TCP, server.ErrTLSConfig)
		}
		var tlsCfg *tls.Config
		if tlsCfg, err = server.TLSConfig(cfg.TLSCA, cfg.TLSCert, cfg.TLSKey); err != nil {
			ul.Close()
			return nil, fmt.Errorf("--tcp %s: %w (give --tls-ca, --tls-cert and --tls-key, or --tcp-plaintext on a loopback address)", cfg.TCP, err)
		}
		tl, err = server.ListenTLS(cfg.TCP, tlsCfg)
	} else {
		tl, err = server.ListenLoopback(cfg.TCP)
	}
	if err != nil {
		ul.Close()
		return nil, err
	}
	return []net.Listener{ul, tl}, nil
}

// aclOf turns the configuration's acl section into the server's
// Authorizer; nil (every identity may do everything) when there is none.
func aclOf(grants map[string]config.Grant) (server.Authorizer, error) {
	if grants == nil {
		return nil, nil
	}
	acl := &server.ACL{Grants: map[string]server.Grant{}}
	for id, g := range grants {
		sg := server.Grant{Publish: g.Publish, Request: g.Request, Subscribe: g.Subscribe, Respond: g.Respond}
		if id == "*" {
			acl.Default = &sg
			continue
		}
		if !strings.Contains(id, ":") {
			return nil, fmt.Errorf("acl: %q is not an identity: write uid:N, cert:NAME, token:NAME or *", id)
		}
		acl.Grants[id] = sg
	}
	if err := acl.Validate(); err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	return acl, nil
}

// mayBlock admits the listed identities to the block policy; nil when
// there are none (only the local operator may block).
func mayBlock(ids []string) func(string) bool {
	if len(ids) == 0 {
		return nil
	}
	return func(identity string) bool { return slices.Contains(ids, identity) }
}
