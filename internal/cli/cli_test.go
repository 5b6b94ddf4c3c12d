package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = Main(t.Context(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestBenchJSON(t *testing.T) {
	code, out, errOut := run(t, "bench", "--msgs", "20000", "--size", "64", "--pub", "2", "--sub", "2", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"msgs_per_sec", "p50_us", "p99_us"} {
		if v, ok := r[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, r[k])
		}
	}
	if r["msgs"].(float64) != 20000 || r["dropped"].(float64) != 0 {
		t.Errorf("result %v", r)
	}
}

func TestBenchTable(t *testing.T) {
	code, out, _ := run(t, "bench", "--msgs", "5000")
	if code != 0 || !strings.Contains(out, "msgs/s") || !strings.Contains(out, "p99") {
		t.Errorf("exit %d, output:\n%s", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Usage"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"bench", "--transport", "carrier-pigeon"}, 2, "only inproc"},
		{[]string{"bench", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"bench", "--msgs", "-5"}, 1, "must not be negative"},
		{[]string{"bench", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"help"}, 0, "Usage"},
	}
	for _, tt := range tests {
		code, _, errOut := run(t, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d containing %q", tt.args, code, errOut, tt.code, tt.want)
		}
	}
}

// The real binary, as a user runs it.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := filepath.Join(t.TempDir(), "daemoneye-cli")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/daemoneye-cli")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(t.Context(), bin, "bench", "--msgs", "10000", "--json")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"msgs_per_sec"`)) {
		t.Errorf("output %s", out)
	}
}
