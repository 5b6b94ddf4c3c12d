package collectorcmd

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/internal/programs/command"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/server"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pw.WriteString("piped\n")
	pw.Close()
	defer pr.Close()
	for _, c := range []struct {
		name    string
		file    string
		fd      int
		want    string
		wantErr string
	}{
		{"none", "", -1, "", ""},
		{"file", file, -1, "secret", ""},
		{"fd", "", int(pr.Fd()), "piped", ""},
		{"both", file, 3, "", "not both"},
		{"missing file", filepath.Join(dir, "none"), -1, "", "read the token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadToken(c.file, c.fd)
			if got != c.want || (err == nil) != (c.wantErr == "") || err != nil && !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("ReadToken(%q, %d) = %q, %v; want %q, error with %q", c.file, c.fd, got, err, c.want, c.wantErr)
			}
		})
	}
}

// fake is a collector whose Run returns err at once, or waits for its
// context when err is nil.
type fake struct{ err error }

func (f fake) Run(ctx context.Context) error {
	if f.err != nil {
		return f.err
	}
	<-ctx.Done()
	return nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var (
	errShutdown = errors.New("shutdown")
	errUsage    = errors.New("usage")
)

// Run's exit codes and log lines, against a real broker.
func TestRunExitCodes(t *testing.T) {
	sock, _, _ := testbroker.Start(t, server.Options{})
	for _, c := range []struct {
		name    string
		args    []string
		newErr  error
		runErr  error
		cancel  bool
		code    int
		logWant string
	}{
		{"signal", []string{"--socket", sock}, nil, nil, true, 0, "reason=signal"},
		{"shutdown", []string{"--socket", sock}, nil, errShutdown, false, 0, `reason="shutdown requested over RPC"`},
		{"usage error of the source", []string{"--socket", sock}, nil, errors.Join(errUsage, errors.New("x")), false, 2, "usage"},
		{"failure", []string{"--socket", sock}, nil, errors.New("broken"), false, 1, "broken"},
		{"bad configuration", []string{"--socket", sock}, errors.New("bad interval"), nil, false, 2, "bad interval"},
		{"conn-fd excludes dialling", []string{"--conn-fd", "3", "--socket", sock}, nil, nil, false, 2, "excludes"},
		{"bad address", []string{"--url", "ftp://host"}, nil, nil, false, 2, "cannot reach the broker"},
		{"token file and fd", []string{"--token-file", "x", "--token-fd", "3"}, nil, nil, false, 1, "not both"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("testmond", flag.ContinueOnError)
			var f Flags
			f.Register(fs, "testmond", "testmond", time.Second)
			var stderr lockedBuffer
			if code, ok := command.ParseFlags(fs, c.args, &stderr); !ok {
				t.Fatalf("flags: %d %s", code, stderr.String())
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			p := Program{Name: "testmond", Flags: &f, Logger: command.Logger(&stderr, false),
				New: func(*client.Conn) (Collector, error) {
					if c.newErr != nil {
						return nil, c.newErr
					}
					if c.cancel {
						cancel()
					}
					return fake{c.runErr}, nil
				},
				ErrShutdown: errShutdown, UsageErrors: []error{errUsage}}
			if code := Run(ctx, p); code != c.code || !strings.Contains(stderr.String(), c.logWant) {
				t.Errorf("Run = %d, want %d with %q logged:\n%s", code, c.code, c.logWant, stderr.String())
			}
		})
	}
}
