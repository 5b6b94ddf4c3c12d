package agent

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/daemoneye/daemoneye/detect"
	"github.com/daemoneye/daemoneye/internal/programs/command"
	"github.com/daemoneye/daemoneye/internal/programs/config"
	"github.com/daemoneye/daemoneye/server"
)

const usage = `daemoneye-agent watches the processes of this host and raises alerts.

It hosts the event bus on a UNIX socket, starts procmond (and, as root on a
kernel with BTF, netmond and fsmond), runs the detection rules on their
events and prints the alerts. Stop it with Ctrl-C.

Usage:
  daemoneye-agent [flags]
  daemoneye-agent collector KIND [its flags]   (how the agent runs its collectors: procmond, netmond, fsmond)

Flags:
`

// File is the agent's configuration file (YAML, strict: an unknown key is
// an error). Flags override it; $DAEMONEYE_SOCKET overrides socket.
// max_conns, max_preauth, max_subscriptions, handshake_timeout and
// idle_timeout are the limits of the agent's server, named as
// daemoneye-broker names them; zero or absent means the default (64
// authenticated connections, 32 not yet authenticated, 4096 subscriptions
// per connection, 2 s, 2 min).
type File struct {
	Socket       string          `yaml:"socket"`
	Rules        string          `yaml:"rules"`
	BuiltinRules *bool           `yaml:"builtin_rules"`
	RepeatWindow config.Duration `yaml:"repeat_window"`
	AllowUIDs    []uint32        `yaml:"allow_uids"`
	AllowGIDs    []uint32        `yaml:"allow_gids"`
	// ACL replaces the default grants of the identities it names ("*":
	// everyone not named); see Options.ACL.
	ACL ACLFile `yaml:"acl"`
	// ResponseTTL bounds how long a collector may answer a request
	// delivered to it (default 2m).
	ResponseTTL config.Duration `yaml:"response_ttl"`
	// CollectorUID and CollectorGID: the user and group a root agent runs
	// its collectors as (default 65534, nobody).
	CollectorUID uint32 `yaml:"collector_uid"`
	CollectorGID uint32 `yaml:"collector_gid"`
	Alerts       struct {
		Stdout         string `yaml:"stdout"` // text, json or off
		File           string `yaml:"file"`
		Syslog         bool   `yaml:"syslog"`
		Webhook        string `yaml:"webhook"`
		WebhookRetries int    `yaml:"webhook_retries"`
	} `yaml:"alerts"`
	Collectors []struct {
		ID        string          `yaml:"id"`
		Kind      string          `yaml:"kind"`
		Interval  config.Duration `yaml:"interval"`
		Heartbeat config.Duration `yaml:"heartbeat"`
		Args      []string        `yaml:"args"`
	} `yaml:"collectors"`
	Supervision struct {
		RestartBackoff    config.Duration `yaml:"restart_backoff"`
		MaxRestartBackoff config.Duration `yaml:"max_restart_backoff"`
		RestartWindow     config.Duration `yaml:"restart_window"`
		MaxRestarts       int             `yaml:"max_restarts"`
		StopTimeout       config.Duration `yaml:"stop_timeout"`
		StartTimeout      config.Duration `yaml:"start_timeout"`
	} `yaml:"supervision"`

	// The server's limits.
	MaxConns         int             `yaml:"max_conns"`
	MaxPreAuth       int             `yaml:"max_preauth"`
	MaxSubscriptions int             `yaml:"max_subscriptions"`
	HandshakeTimeout config.Duration `yaml:"handshake_timeout"`
	IdleTimeout      config.Duration `yaml:"idle_timeout"`
}

// Main runs daemoneye-agent with args (without the program name) and
// returns the exit code: 0, 1 on failure, 2 on a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) >= 2 && args[0] == "collector" {
		k, ok := kinds[args[1]]
		if !ok {
			fmt.Fprintf(stderr, "daemoneye-agent: unknown collector %q (the kinds are %s)\n", args[1], kindNames())
			return 2
		}
		if err := confineCollector(k.bpf(args[2:])); err != nil {
			fmt.Fprintf(stderr, "daemoneye-agent: collector %s: %v\n", args[1], err)
			return 1
		}
		return k.main(ctx, args[2:], stderr)
	}
	opts, code, ok := parseArgs(args, stdout, stderr)
	if !ok {
		return code
	}
	ready := func(a *Agent) {
		fmt.Fprintf(stderr, "daemoneye-agent: watching the processes of this host with %d rules; alerts appear below.\n"+
			"  Try: cp /bin/sleep /tmp/sleepy && /tmp/sleepy 30\n"+
			"  Inspect: daemoneye-cli --socket %s collectors list\n", len(opts.Rules), a.Socket())
	}
	if err := Run(ctx, opts, ready); err != nil {
		fmt.Fprintf(stderr, "daemoneye-agent: %v\n", err)
		return 1
	}
	return 0
}

// parseArgs parses the agent's command line (without the program name)
// into Options (see settings); on failure, or -h, it returns the exit code.
func parseArgs(args []string, stdout, stderr io.Writer) (opts Options, code int, ok bool) {
	fs := flag.NewFlagSet("daemoneye-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	configPath := fs.String("config", "", "YAML configuration file (flags override it)")
	fs.String("socket", "", "UNIX socket of the bus (env DAEMONEYE_SOCKET; default "+server.DefaultSocketPath()+")")
	fs.String("rules", "", "YAML file of detection rules, added to the built-in ones")
	fs.Bool("no-builtin-rules", false, "do not load the built-in rules")
	fs.String("alerts", "text", "alerts on standard output: text, json or off")
	fs.String("alert-file", "", "also append alerts to this file, as JSON lines")
	fs.Bool("syslog", false, "also send alerts to syslog (facility auth)")
	fs.String("webhook", "", "also POST alerts as JSON to this URL (retried with backoff)")
	fs.Duration("interval", 0, "procmond's scan interval (default 2s)")
	fs.Int("max-conns", DefaultMaxConns, "most concurrent connections to the agent's socket (collectors, CLI, subscribers)")
	fs.Int("max-preauth", server.DefaultMaxPreAuth, "most connections that have not authenticated yet (root and the agent's user are not counted)")
	fs.Int("max-subscriptions", server.DefaultMaxSubscriptions, "most subscriptions of one connection")
	fs.Duration("handshake-timeout", server.DefaultHandshakeTimeout, "how long a new connection may take to say hello")
	verbose := fs.Bool("v", false, "log debug detail")
	if code, ok := command.ParseFlags(fs, args, stderr); !ok {
		return Options{}, code, false
	}
	return settings(fs, *configPath, stdout, stderr, command.Logger(stderr, *verbose))
}

// settings merges the parsed flags of fs with the environment, the
// configuration file at configPath (if not empty) and the defaults into
// the agent's Options; on failure it says why on stderr and returns the
// exit code.
func settings(fs *flag.FlagSet, configPath string, stdout, stderr io.Writer, log *slog.Logger) (opts Options, code int, ok bool) {
	flagValue := func(name string) flag.Getter { return fs.Lookup(name).Value.(flag.Getter) }
	str := func(name string) string { return flagValue(name).Get().(string) }
	var file File
	if configPath != "" {
		if err := config.Load(configPath, &file); err != nil {
			fmt.Fprintf(stderr, "daemoneye-agent: %v\n", err)
			return opts, 2, false
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	pick := func(flagVal string, name, env, fileVal string) string {
		switch {
		case set[name]:
			return flagVal
		case env != "" && os.Getenv(env) != "":
			return os.Getenv(env)
		}
		return fileVal
	}
	intFlag := func(name string, fileVal int) int {
		if set[name] {
			return flagValue(name).Get().(int)
		}
		return fileVal
	}
	durFlag := func(name string, fileVal config.Duration) time.Duration {
		if set[name] {
			return flagValue(name).Get().(time.Duration)
		}
		return time.Duration(fileVal)
	}
	opts = Options{
		Socket:         pick(str("socket"), "socket", "DAEMONEYE_SOCKET", file.Socket),
		AlertFile:      pick(str("alert-file"), "alert-file", "", file.Alerts.File),
		Webhook:        pick(str("webhook"), "webhook", "", file.Alerts.Webhook),
		Syslog:         flagValue("syslog").Get().(bool) || (!set["syslog"] && file.Alerts.Syslog),
		WebhookRetries: file.Alerts.WebhookRetries,
		RepeatWindow:   time.Duration(file.RepeatWindow),
		Peers:          server.PeerPolicy{UIDs: file.AllowUIDs, GIDs: file.AllowGIDs},
		Stderr:         stderr,
		Logger:         log,
		RestartBackoff: time.Duration(file.Supervision.RestartBackoff), MaxRestartBackoff: time.Duration(file.Supervision.MaxRestartBackoff),
		RestartWindow: time.Duration(file.Supervision.RestartWindow), StopTimeout: time.Duration(file.Supervision.StopTimeout),
		StartTimeout: time.Duration(file.Supervision.StartTimeout), MaxRestarts: file.Supervision.MaxRestarts,
		MaxConns: intFlag("max-conns", file.MaxConns), MaxPreAuth: intFlag("max-preauth", file.MaxPreAuth), MaxSubscriptions: intFlag("max-subscriptions", file.MaxSubscriptions),
		HandshakeTimeout: durFlag("handshake-timeout", file.HandshakeTimeout), IdleTimeout: time.Duration(file.IdleTimeout),
		ACL: file.ACL, ResponseTTL: time.Duration(file.ResponseTTL),
		CollectorUID: file.CollectorUID, CollectorGID: file.CollectorGID,
	}
	if opts.MaxConns < 0 || opts.MaxPreAuth < 0 || opts.MaxSubscriptions < 0 || opts.HandshakeTimeout < 0 || opts.IdleTimeout < 0 {
		fmt.Fprintf(stderr, "daemoneye-agent: max_conns, max_preauth, max_subscriptions, handshake_timeout and idle_timeout must not be negative (0 means the default)\n")
		return opts, 2, false
	}
	switch out := pick(str("alerts"), "alerts", "", file.Alerts.Stdout); out {
	case "", "text":
		opts.Stdout = stdout
	case "json":
		opts.Stdout, opts.AlertsJSON = stdout, true
	case "off":
	default:
		fmt.Fprintf(stderr, "daemoneye-agent: --alerts %q: use text, json or off\n", out)
		return opts, 2, false
	}
	for _, c := range file.Collectors {
		opts.Collectors = append(opts.Collectors, CollectorSpec{ID: c.ID, Kind: c.Kind, Interval: time.Duration(c.Interval),
			Heartbeat: time.Duration(c.Heartbeat), Args: c.Args})
	}
	if opts.Collectors == nil {
		opts.Collectors = defaultCollectors()
	}
	if set["interval"] {
		for i := range opts.Collectors {
			if opts.Collectors[i].Kind == "procmond" { // the one that scans
				opts.Collectors[i].Interval = flagValue("interval").Get().(time.Duration)
			}
		}
	}
	builtin := file.BuiltinRules == nil || *file.BuiltinRules
	if set["no-builtin-rules"] {
		builtin = !flagValue("no-builtin-rules").Get().(bool)
	}
	if builtin {
		rules, err := detect.Builtin()
		if err != nil {
			fmt.Fprintf(stderr, "daemoneye-agent: %v\n", err)
			return opts, 1, false
		}
		opts.Rules = rules
	} else {
		opts.Rules = []*detect.Rule{}
	}
	if path := pick(str("rules"), "rules", "", file.Rules); path != "" {
		rules, err := detect.LoadFile(path)
		if err != nil {
			fmt.Fprintf(stderr, "daemoneye-agent: %v\n", err)
			return opts, 2, false
		}
		opts.Rules = append(opts.Rules, rules...)
	}
	return opts, 0, true
}
