package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/transport"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/server"
)

const testSecret = "4f1c0d9e8b7a6f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c3b2a190817263"

// startBroker runs a server on a UNIX socket and a plaintext loopback TCP
// listener, and returns the socket path, the TCP address and the server.
func startBroker(t *testing.T, opts server.Options) (string, string, *server.Server) {
	t.Helper()
	b, err := eventbus.New(eventbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts.Broker = b
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), transport.SocketName)
	ul, err := transport.ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := transport.ListenTCP("127.0.0.1:0", transport.TCPConfig{AllowPlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 2)
	go func() { served <- srv.Serve(ul) }()
	go func() { served <- srv.Serve(tl) }()
	t.Cleanup(func() { srv.Close(); <-served; <-served; b.Close() })
	return path, tl.Addr().String(), srv
}

// A token on the command line is refused, with the way to pass it
// instead.
func TestTokenOnCommandLineRefused(t *testing.T) {
	code, _, errOut := run(t, "--token", testSecret, "stats")
	if code != 2 || !strings.Contains(errOut, "--token-file") || !strings.Contains(errOut, "DAEMONEYE_TOKEN") || strings.Contains(errOut, testSecret) {
		t.Errorf("--token: exit %d, %q; want 2, pointing to --token-file and DAEMONEYE_TOKEN, without the token", code, errOut)
	}
}

// --token-file and $DAEMONEYE_TOKEN authenticate; a token file others can
// read is refused.
func TestTokenFileAndEnvironment(t *testing.T) {
	_, addr, srv := startBroker(t, server.Options{Auth: server.Auth{Tokens: []server.Token{{Name: "ops", Secret: testSecret}}}})
	url := "tcp://" + addr
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	identity := func(args ...string) string {
		t.Helper()
		// The previous command's connection may still be closing: wait
		// until it has gone, so that stats lists only this one.
		wait.Until(t, 10*time.Second, "the previous command's connection to go", func() bool { return len(srv.Stats().Connections) == 0 })
		code, out, errOut := run(t, append(append([]string{"--url", url}, args...), "stats", "--json")...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		var st server.Stats
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Connections) != 1 {
			t.Fatalf("%v: stats %q: %v", args, out, err)
		}
		return st.Connections[0].Identity
	}
	if id := identity("--token-file", file); id != "token:ops" {
		t.Errorf("--token-file: identity %q", id)
	}
	t.Setenv("DAEMONEYE_TOKEN", testSecret)
	if id := identity(); id != "token:ops" {
		t.Errorf("DAEMONEYE_TOKEN: identity %q", id)
	}

	open := filepath.Join(dir, "open")
	if err := os.WriteFile(open, []byte(testSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ file, want string }{
		{open, "chmod 600 " + open},
		{empty, "is empty"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		code, _, errOut := run(t, "--url", url, "--token-file", tt.file, "stats")
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("--token-file %s: exit %d, %q; want 1 containing %q", tt.file, code, errOut, tt.want)
		}
	}
}

// A broker that does not answer stats is named as such, not reported as a
// bare timeout.
func TestStatsServiceOff(t *testing.T) {
	path, _, _ := startBroker(t, server.Options{NoStatsService: true})
	code, _, errOut := run(t, "--socket", path, "stats")
	if code != 1 || !strings.Contains(errOut, "does not answer stats requests") {
		t.Errorf("exit %d, %q", code, errOut)
	}
}

// With 1,100 silent TCP connections held against a broker with a limit of
// 1024 connections, daemoneye-cli stats over the UNIX socket succeeds 5
// times of 5.
func TestStatsWithSilentTCPConnections(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < 4096 {
		if lim.Max < 4096 {
			t.Skipf("RLIMIT_NOFILE hard limit %d is below 4096", lim.Max)
		}
		lim.Cur = 4096
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	path, addr, srv := startBroker(t, server.Options{MaxConns: 1024, HandshakeTimeout: time.Minute,
		Auth: server.Auth{Tokens: []server.Token{{Name: "ops", Secret: testSecret}}}})
	const silent = 1100
	for range silent {
		nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
	}
	wait.For(t, 30*time.Second, fmt.Sprintf("the broker to take the %d silent connections", silent), func() error {
		st := srv.Stats()
		if got := st.Handshaking + int(st.RefusedPreAuth+st.RefusedConns); got < silent {
			return fmt.Errorf("it took %d", got)
		}
		return nil
	})
	for i := range 5 {
		start := time.Now()
		if code, _, errOut := run(t, "--socket", path, "stats"); code != 0 {
			t.Fatalf("stats %d of 5: exit %d: %s", i+1, code, errOut)
		}
		t.Logf("stats %d of 5 in %s", i+1, time.Since(start))
	}
}

// A broker whose payload limit is too small for even the counters says
// so, and the CLI passes it on.
func TestStatsTooLarge(t *testing.T) {
	b, err := eventbus.New(eventbus.Options{MaxPayload: 200})
	if err != nil {
		t.Fatal(err)
	}
	path, _, _ := testbroker.Start(t, server.Options{Broker: b})
	code, _, errOut := run(t, "--socket", path, "stats")
	if code != 1 || !strings.Contains(errOut, "could not send its stats") || !strings.Contains(errOut, "raise the broker's max payload") {
		t.Errorf("exit %d, %q", code, errOut)
	}
}
