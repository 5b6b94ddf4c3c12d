package detect

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"go.yaml.in/yaml/v3"
)

// ErrInvalidRule: a rule file or a rule is not valid; the message names
// the rule and says what is wrong.
var ErrInvalidRule = errors.New("detect: invalid rule")

// MaxRulesSize bounds a rules file (or what Parse reads), in bytes: 1 MiB
// holds thousands of rules, and a larger file is refused before it is
// decoded rather than held in memory.
const MaxRulesSize = 1 << 20

// Rule is one detection: a CEL expression over a process event, and what
// to say when it holds.
type Rule struct {
	ID          string
	Title       string
	Description string
	Severity    eventbusv1.AlertSeverity
	// Expression is the CEL source; see the package documentation for the
	// variables.
	Expression string

	prg cel.Program
}

// ruleSpec is a rule as written in YAML.
type ruleSpec struct {
	ID          string `yaml:"id"`
	Title       string `yaml:"title"`
	Description string `yaml:"description"`
	Severity    string `yaml:"severity"`
	Expression  string `yaml:"expression"`
	Disabled    bool   `yaml:"disabled"`
}

type ruleFile struct {
	Rules []ruleSpec `yaml:"rules"`
}

//go:embed builtin.yaml
var builtinYAML string

// Builtin returns the rules DaemonEye ships (builtin.yaml): executables
// running from world-writable directories, executables deleted or
// replaced while running, shells started by network services, and
// processes disguised as kernel threads.
func Builtin() ([]*Rule, error) {
	return Parse(strings.NewReader(builtinYAML), "builtin.yaml")
}

// LoadFile reads rules from a YAML file (see Parse) of at most
// MaxRulesSize bytes.
func LoadFile(path string) ([]*Rule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// Parse reads rules from YAML: a "rules" list of {id, title, severity
// (info, low, medium, high, critical), description, expression, disabled}.
// A key that does not exist, a duplicate id, a missing field or an
// expression that does not compile to a boolean is an error wrapping
// ErrInvalidRule that names the rule. Disabled rules are left out. name
// identifies the source in errors. Input longer than MaxRulesSize bytes is
// refused with ErrInvalidRule.
func Parse(r io.Reader, name string) ([]*Rule, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxRulesSize+1))
	if err != nil {
		return nil, fmt.Errorf("detect: read %s: %w", name, err)
	}
	if len(data) > MaxRulesSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes (1 MiB), the limit for a rules file: remove the rules or comments you do not need",
			ErrInvalidRule, name, MaxRulesSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f ruleFile
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidRule, name, err)
	}
	env, err := newEnv()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var rules []*Rule
	for i, s := range f.Rules {
		where := fmt.Sprintf("%s: rule %d", name, i+1)
		if s.ID != "" {
			where = fmt.Sprintf("%s: rule %q", name, s.ID)
		}
		switch {
		case s.ID == "":
			return nil, fmt.Errorf("%w: %s: no id", ErrInvalidRule, where)
		case seen[s.ID]:
			return nil, fmt.Errorf("%w: %s: the id is used twice", ErrInvalidRule, where)
		case s.Title == "":
			return nil, fmt.Errorf("%w: %s: no title", ErrInvalidRule, where)
		case s.Expression == "":
			return nil, fmt.Errorf("%w: %s: no expression", ErrInvalidRule, where)
		}
		seen[s.ID] = true
		sev, err := ParseSeverity(s.Severity)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidRule, where, err)
		}
		if s.Disabled {
			continue
		}
		prg, err := compile(env, s.Expression)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidRule, where, err)
		}
		rules = append(rules, &Rule{ID: s.ID, Title: s.Title, Description: s.Description, Severity: sev, Expression: s.Expression, prg: prg})
	}
	return rules, nil
}

// ParseSeverity parses info, low, medium, high or critical.
func ParseSeverity(s string) (eventbusv1.AlertSeverity, error) {
	v, ok := eventbusv1.AlertSeverity_value["ALERT_SEVERITY_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("severity %q: use info, low, medium, high or critical", s)
	}
	return eventbusv1.AlertSeverity(v), nil
}

// SeverityName is the lower-case name of a severity: "high".
func SeverityName(s eventbusv1.AlertSeverity) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ALERT_SEVERITY_"))
}

// newEnv declares the variables a rule sees.
func newEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(
		cel.Types(&eventbusv1.ProcessRecord{}, &eventbusv1.ProcessTreeContext{}),
		cel.Variable("process", cel.ObjectType("daemoneye.eventbus.v1.ProcessRecord")),
		cel.Variable("parent", cel.ObjectType("daemoneye.eventbus.v1.ProcessTreeContext")),
		cel.Variable("event", cel.StringType),
		cel.Variable("changed", cel.ListType(cel.StringType)),
		// From ProcessEventData: "exec", "exit", "fork" or "" (a scan).
		cel.Variable("kernel_event", cel.StringType),
		cel.Variable("image_replaced", cel.BoolType),
		// -1 when unknown or killed by a signal.
		cel.Variable("exit_code", cel.IntType),
		// 0 when unknown or exited normally.
		cel.Variable("exit_signal", cel.IntType),
		ext.Strings(),
	)
	if err != nil {
		return nil, fmt.Errorf("detect: the CEL environment: %w", err)
	}
	return env, nil
}

func compile(env *cel.Env, expr string) (cel.Program, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("the expression is of type %v; it must be a boolean", ast.OutputType())
	}
	return env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(100_000))
}
