package layers

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/daemoneye/daemoneye"

// imports lists, for every package matched by patterns (run in dir), what
// it imports: directly, or with deps every package it links.
func imports(t *testing.T, dir string, deps bool, patterns ...string) map[string][]string {
	t.Helper()
	format := `{{.ImportPath}} {{join .Imports " "}}`
	args := []string{"list", "-f", format}
	if deps {
		args = []string{"list", "-deps", "-f", `{{.ImportPath}}`}
	}
	cmd := exec.Command("go", append(args, patterns...)...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(cmd.Args[1:], " "), err)
	}
	m := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if deps {
			m[patterns[0]] = append(m[patterns[0]], f[0])
			continue
		}
		m[strings.TrimPrefix(f[0], module+"/")] = f[1:]
	}
	return m
}

// forbidden says, for a package of the module (a path relative to the
// module, matched as a prefix), which imports it must not have (full
// import paths, matched as prefixes).
var forbidden = []struct {
	pkg, why string
	not      []string
}{
	{"topic", "the core imports nothing of the module", []string{module + "/"}},
	{"topics", "topic names import nothing of the module", []string{module + "/"}},
	{"eventbus", "the broker knows nothing of sockets or of what travels on it",
		[]string{"net", "os/exec", module + "/internal", module + "/server", module + "/client", module + "/gen", module + "/envelope"}},
	{"internal/protocol/wire", "frames know nothing of brokers or sockets", []string{"net", module + "/eventbus", module + "/internal/protocol/transport"}},
	{"internal/protocol/sendbuf", "the send buffer knows nothing of frames' contents, sockets or brokers",
		[]string{"net", "syscall", module + "/"}},
	{"internal/protocol/transport", "transports know nothing of processes or brokers", []string{"os/exec", module + "/eventbus", module + "/internal/protocol/wire"}},
	{"server", "the server knows nothing of clients or the monitor",
		[]string{module + "/client", module + "/rpc", module + "/envelope", module + "/collector", module + "/detect", module + "/internal/programs"}},
	{"client", "the client knows nothing of the server's internals or the monitor",
		[]string{module + "/server", module + "/rpc", module + "/envelope", module + "/collector", module + "/detect", module + "/internal/programs"}},
	{"envelope", "envelopes know nothing of connections", []string{module + "/client", module + "/server", module + "/internal"}},
	{"rpc", "rpc knows nothing of the monitor", []string{module + "/server", module + "/collector", module + "/detect", module + "/internal"}},
	{"collector", "collectors know nothing of detection or the programs", []string{module + "/detect", module + "/server", module + "/internal/programs"}},
	{"collector/process/sensor", "the kernel sensor knows nothing of the bus: it hands events to its caller", []string{module + "/"}},
	{"collector/network/sensor", "the kernel sensor knows nothing of the bus: it hands events to its caller", []string{module + "/"}},
	{"collector/security/sensor", "the kernel security sensor knows nothing of the bus: it hands events to its caller", []string{module + "/"}},
	{"collector/filesystem/sensor", "the kernel sensor knows nothing of the bus: it hands events to its caller", []string{module + "/"}},
	{"detect", "detection knows nothing of connections or the programs", []string{module + "/client", module + "/server", module + "/internal/programs"}},
	{"internal/programs", "the programs use the bus through its public packages (server, client), as any program embedding it would",
		[]string{module + "/internal/protocol"}},
	{"internal/programs/cli", "the CLI knows the agent only through its API package",
		[]string{module + "/internal/programs/agent", module + "/detect", module + "/internal/programs/procmond"}},
}

func hasPrefixPath(p, prefix string) bool {
	return p == prefix || strings.HasPrefix(p, prefix+"/") || strings.HasSuffix(prefix, "/") && strings.HasPrefix(p, prefix)
}

func TestImportsPointOneWay(t *testing.T) {
	pkgs := imports(t, "../..", false, "./...")
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	for _, rule := range forbidden {
		found := false
		for p, imps := range pkgs {
			if !hasPrefixPath(p, rule.pkg) {
				continue
			}
			found = true
			for _, imp := range imps {
				for _, bad := range rule.not {
					if hasPrefixPath(imp, bad) {
						t.Errorf("%s imports %s: %s", p, imp, rule.why)
					}
				}
			}
		}
		if !found {
			t.Errorf("no package %s: update the rules", rule.pkg)
		}
	}
}

// TestCLILinksNoRuleEngine: daemoneye-cli talks to the agent over the bus
// (internal/programs/agentapi); it must not link the agent, its rule
// engine (cel-go), procmond's /proc reader or its eBPF sensor.
func TestCLILinksNoRuleEngine(t *testing.T) {
	const cli = "./cmd/daemoneye-cli"
	deps := imports(t, "../..", true, cli)[cli]
	if len(deps) < 10 {
		t.Fatalf("go list -deps %s found %d packages", cli, len(deps))
	}
	for _, d := range deps {
		for _, bad := range []string{"cel.dev/", "github.com/antlr4-go/", "github.com/prometheus/procfs", "github.com/cilium/ebpf",
			module + "/internal/programs/agent", module + "/internal/programs/procmond", module + "/detect", module + "/collector/process"} {
			if hasPrefixPath(d, bad) {
				t.Errorf("daemoneye-cli links %s", d)
			}
		}
	}
}

// TestBenchUsesPublicPackages: the bench/ module embeds the bus as any
// other program would, through public packages only.
func TestBenchUsesPublicPackages(t *testing.T) {
	pkgs := imports(t, filepath.Join("..", "..", "bench"), false, "./...")
	if len(pkgs) == 0 {
		t.Fatal("go list found no package in bench/")
	}
	for p, imps := range pkgs {
		for _, imp := range imps {
			if hasPrefixPath(imp, module+"/internal") {
				t.Errorf("%s imports %s: bench/ may use public packages only", p, imp)
			}
		}
	}
}
