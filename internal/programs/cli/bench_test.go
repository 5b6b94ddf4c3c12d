package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/daemoneye/daemoneye/internal/programs/loadgen"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/server"
)

func TestBenchFlags(t *testing.T) {
	def := loadgen.Config{Transport: loadgen.Inproc, Pubs: 1, Subs: 1, Size: 128, Msgs: 1_000_000}
	tests := []struct {
		name        string
		socket, url string
		args        []string
		want        loadgen.Config // when err is ""
		json        bool
		err         string
		usage       bool // the error is a usage error (exit 2)
	}{
		{name: "defaults", want: def},
		{name: "all flags", args: []string{"--transport", "unix", "--pub", "3", "--sub", "0", "--size", "8", "--msgs", "10", "--rate", "100", "--sample", "2", "--json"},
			want: loadgen.Config{Transport: loadgen.Unix, Pubs: 3, Subs: 0, Size: 8, Msgs: 10, Rate: 100, SampleEvery: 2}, json: true},
		{name: "--socket implies unix", socket: "/tmp/b.sock", want: loadgen.Config{Transport: loadgen.Unix, Addr: "/tmp/b.sock", Pubs: 1, Subs: 1, Size: 128, Msgs: 1_000_000}},
		{name: "--url implies unix", url: "unix:///tmp/b.sock", args: []string{"--transport", "unix"},
			want: loadgen.Config{Transport: loadgen.Unix, Addr: "unix:///tmp/b.sock", Pubs: 1, Subs: 1, Size: 128, Msgs: 1_000_000}},
		{name: "--url over --socket", socket: "/a", url: "unix:///b", want: loadgen.Config{Transport: loadgen.Unix, Addr: "unix:///b", Pubs: 1, Subs: 1, Size: 128, Msgs: 1_000_000}},
		{name: "bad transport", args: []string{"--transport", "carrier-pigeon"}, err: `unknown transport "carrier-pigeon": use inproc, unix, tcp`, usage: true},
		{name: "tcp", args: []string{"--transport", "tcp"}, want: loadgen.Config{Transport: loadgen.TCP, Pubs: 1, Subs: 1, Size: 128, Msgs: 1_000_000}},
		{name: "tcp URL", url: "tcp://127.0.0.1:7879", want: loadgen.Config{Transport: loadgen.TCP, Addr: "tcp://127.0.0.1:7879", Pubs: 1, Subs: 1, Size: 128, Msgs: 1_000_000}},
		{name: "inproc with --socket", socket: "/tmp/b.sock", args: []string{"--transport", "inproc"}, err: "takes no broker address", usage: true},
		{name: "transport against the URL", url: "tcp://127.0.0.1:4222", args: []string{"--transport", "unix"}, err: "does not match the broker address", usage: true},
		{name: "no publisher", args: []string{"--pub", "0"}, err: "--pub 0: at least 1 publisher", usage: true},
		{name: "negative sub", args: []string{"--sub", "-1"}, err: "--sub -1", usage: true},
		{name: "negative size", args: []string{"--size", "-1"}, err: "--size -1: the payload size must be 0 or more bytes", usage: true},
		{name: "oversize", args: []string{"--size", "2000000"}, err: "at most 1048576 bytes", usage: true},
		{name: "negative msgs", args: []string{"--msgs", "-5"}, err: "--msgs -5: at least 1 message", usage: true},
		{name: "negative rate", args: []string{"--rate", "-1"}, err: "--rate -1", usage: true},
		{name: "not a number", args: []string{"--msgs", "lots"}, err: `invalid value "lots"`, usage: true},
		{name: "unknown flag", args: []string{"--nope"}, err: "flag provided but not defined: -nope", usage: true},
		{name: "argument", args: []string{"extra"}, err: `unexpected argument "extra"`, usage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFlagSet("bench", io.Discard, "")
			cfg, asJSON, err := parseBench(fs, &global{socket: tt.socket, url: tt.url}, tt.args)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Progress != nil {
					t.Error("progress set by parseBench")
				}
				if !reflect.DeepEqual(cfg, tt.want) || asJSON != tt.json {
					t.Errorf("config %+v json %v, want %+v %v", cfg, asJSON, tt.want, tt.json)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
			if errors.Is(err, errUsage) != tt.usage {
				t.Errorf("%v: usage error %v, want %v", err, errors.Is(err, errUsage), tt.usage)
			}
		})
	}
}

// The exit code and message a user sees for a bad bench command.
func TestBenchUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", "--transport", "carrier-pigeon"}, 2, `daemoneye-cli bench: invalid configuration: unknown transport "carrier-pigeon"`},
		{[]string{"bench", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"bench", "--msgs", "-5"}, 2, "--msgs -5: at least 1 message is needed"},
		{[]string{"bench", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--socket", "/nonexistent/eventbus.sock", "bench", "--msgs", "1"}, 1, "is the broker running?"},
		{[]string{"bench", "-h"}, 0, "Latency: a payload starts with its send time"},
	}
	for _, tt := range tests {
		code, out, errOut := run(t, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d containing %q", tt.args, code, out, errOut, tt.code, tt.want)
		}
	}
}

// benchJSON runs bench with args and decodes the one JSON object it prints.
func benchJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	code, out, errOut := run(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errOut)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var r map[string]any
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("output is not a JSON object: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value:\n%s", out)
	}
	if errOut != "" {
		t.Errorf("stderr %q, want nothing: no terminal, no progress", errOut)
	}
	return r
}

func TestBenchJSON(t *testing.T) {
	path := startBenchBroker(t)
	tests := []struct {
		args      []string
		transport string
		broker    string
		delivered float64
	}{
		{[]string{"bench", "--msgs", "20000", "--size", "64", "--pub", "2", "--sub", "2"}, "inproc", "self-started", 40000},
		{[]string{"bench", "--transport", "unix", "--msgs", "10000", "--pub", "2", "--sub", "3"}, "unix", "self-started", 30000},
		{[]string{"bench", "--transport", "tcp", "--msgs", "10000", "--sub", "2"}, "tcp", "self-started", 20000},
		{[]string{"--socket", path, "bench", "--msgs", "5000"}, "unix", path, 5000},
	}
	for _, tt := range tests {
		r := benchJSON(t, tt.args...)
		for _, k := range []string{"msgs_per_sec", "deliveries_per_sec", "pub_msgs_per_sec", "elapsed_s", "p50_us", "p90_us", "p99_us"} {
			if v, ok := r[k].(float64); !ok || v <= 0 {
				t.Errorf("%v: %s = %v, want a positive number", tt.args, k, r[k])
			}
		}
		if r["transport"] != tt.transport || r["broker"] != tt.broker || r["delivered"] != tt.delivered || r["dropped"] != 0.0 {
			t.Errorf("%v: result %v", tt.args, r)
		}
		if !(r["p50_us"].(float64) <= r["p90_us"].(float64) && r["p90_us"].(float64) <= r["p99_us"].(float64)) {
			t.Errorf("%v: percentiles out of order: %v", tt.args, r)
		}
	}
	// Too small for a send time: latency is null, not 0.
	r := benchJSON(t, "bench", "--msgs", "1000", "--size", "4")
	if v, ok := r["p50_us"]; !ok || v != nil || r["latency_samples"] != 0.0 {
		t.Errorf("4-byte payloads: p50_us %v, %v samples; want null and 0", r["p50_us"], r["latency_samples"])
	}
}

func TestBenchTable(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"bench", "--msgs", "5000"}, []string{"transport inproc: 1 pub -> 1 sub, 5000 msgs of 128 B in", "msgs/s", "deliveries/s", "publish", "p50", "p99", "dropped     0\n"}},
		{[]string{"bench", "--transport", "unix", "--msgs", "2000", "--rate", "100000"}, []string{"transport unix:", "100000 msgs/s per pub", "p99"}},
		{[]string{"bench", "--msgs", "100", "--size", "0"}, []string{"latency     unavailable: payloads under 8 bytes carry no send time"}},
		{[]string{"bench", "--msgs", "100", "--sub", "0"}, []string{"0 sub", "latency     unavailable: no subscribers"}},
	}
	for _, tt := range tests {
		code, out, errOut := run(t, tt.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tt.args, code, errOut)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", tt.args, w, out)
			}
		}
	}
}

func TestFormatBench(t *testing.T) {
	us := func(v float64) *float64 { return &v }
	dropped := uint64(7)
	r := loadgen.Result{Transport: loadgen.Unix, Broker: "/run/x.sock", Pubs: 2, Subs: 1, Size: 64, Msgs: 100,
		Delivered: 90, Dropped: 10, BrokerDropped: &dropped, ClientDropped: 3, ElapsedS: 0.5, PublishS: 0.25,
		MsgsPerSec: 200, DeliveriesPerSec: 180, PubMsgsPerSec: 400, MBPerSec: 0.0128,
		LatencySamples: 90, P50us: us(12.34), P90us: us(999.9), P99us: us(1500), MaxUs: us(2.5e6)}
	got := formatBench(&r)
	want := `transport unix: 2 pub -> 1 sub, 100 msgs of 64 B in 0.500s (broker /run/x.sock)
  throughput           200 msgs/s           180 deliveries/s       0.0 MB/s
  publish              400 msgs/s  (the publishers finished in 0.250s)
  latency     p50 12.3 µs  p90 999.9 µs  p99 1.50 ms  max 2.50 s  (90 samples)
  dropped     10 of 100 deliveries (counted by the broker 7, by full client buffers 3)
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine(loadgen.Progress{Published: 50, Msgs: 100, Delivered: 25, Deliveries: 200})
	if want := "  0.0s  published  50.0%  delivered  12.5% (25/200)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if isTerminal(&bytes.Buffer{}) || isTerminal(&lockedWriter{w: io.Discard}) {
		t.Error("a buffer is not a terminal")
	}
}

// startBenchBroker starts a broker on a socket, as daemoneye-broker would.
func startBenchBroker(t *testing.T) string {
	path, _, _ := testbroker.Start(t, server.Options{})
	return path
}
