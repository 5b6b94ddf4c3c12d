package detect

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestParseRefusesBadRules(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown key", "rules:\n  - id: a\n    title: A\n    severity: low\n    expresion: 'true'\n", "field expresion not found"},
		{"unknown top key", "rule: []\n", "field rule not found"},
		{"no id", "rules:\n  - title: A\n    severity: low\n    expression: 'true'\n", "rule 1: no id"},
		{"duplicate", "rules:\n  - {id: a, title: A, severity: low, expression: 'true'}\n  - {id: a, title: B, severity: low, expression: 'true'}\n", `rule "a": the id is used twice`},
		{"severity", "rules:\n  - {id: a, title: A, severity: severe, expression: 'true'}\n", `rule "a": severity "severe"`},
		{"syntax", "rules:\n  - {id: bad-cel, title: A, severity: low, expression: 'process.name ==' }\n", `rule "bad-cel": ERROR`},
		{"unknown field", "rules:\n  - {id: typo, title: A, severity: low, expression: 'process.nmae == \"x\"' }\n", `rule "typo": ERROR`},
		{"not boolean", "rules:\n  - {id: num, title: A, severity: low, expression: 'process.pid' }\n", `rule "num": the expression is of type uint`},
		{"no expression", "rules:\n  - {id: a, title: A, severity: low}\n", `rule "a": no expression`},
	}
	for _, tc := range cases {
		_, err := Parse(strings.NewReader(tc.yaml), "test.yaml")
		if !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalidRule containing %q", tc.name, err, tc.want)
		}
	}
	rules, err := Parse(strings.NewReader("rules:\n  - {id: a, title: A, severity: low, expression: 'true', disabled: true}\n"), "x")
	if err != nil || len(rules) != 0 {
		t.Errorf("a disabled rule: %v, %v", rules, err)
	}
}

type event struct {
	subtype eventbusv1.ProcessEventSubtype
	proc    *eventbusv1.ProcessRecord
	parent  string
	changed []string
}

func (e event) envelope() *eventbusv1.EventBusMessage {
	d := &eventbusv1.ProcessEventData{Process: e.proc, Subtype: e.subtype, TreeContext: &eventbusv1.ProcessTreeContext{ParentName: e.parent}}
	if e.changed != nil {
		d.ChangedFields = &fieldmaskpb.FieldMask{Paths: e.changed}
	}
	m := envelope.New(topics.ProcessLifecycle, time.Now(), &eventbusv1.CollectionEvent{Event: &eventbusv1.CollectionEvent_Process{Process: d}})
	m.Correlation = envelope.NewRoot()
	return m
}

func proc(pid uint32, name, exe string, cmd ...string) *eventbusv1.ProcessRecord {
	if cmd == nil && exe != "" {
		cmd = []string{exe}
	}
	return &eventbusv1.ProcessRecord{Pid: pid, Name: name, ExecutablePath: exe, CommandLine: cmd, FileExists: exe != "",
		StartTime: timestamppb.New(time.Unix(1_700_000_000+int64(pid), 0))}
}

const (
	created    = eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED
	observed   = eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_OBSERVED
	updated    = eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_UPDATED
	terminated = eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED
)

func TestBuiltinRules(t *testing.T) {
	rules, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	deleted := proc(7, "daemon", "/usr/sbin/daemon")
	deleted.ExecutableDeleted = true
	cases := []struct {
		name string
		ev   event
		want []string
	}{
		{"sleep from /tmp", event{subtype: created, proc: proc(1, "sleepy", "/tmp/sleepy", "/tmp/sleepy", "30")}, []string{"exec-from-world-writable-dir"}},
		{"from /dev/shm, seen at start", event{subtype: observed, proc: proc(2, "x", "/dev/shm/x")}, []string{"exec-from-world-writable-dir"}},
		{"from /tmp, gone", event{subtype: terminated, proc: proc(3, "x", "/tmp/x")}, nil},
		{"a normal binary", event{subtype: created, proc: proc(4, "sleep", "/usr/bin/sleep")}, nil},
		{"/tmpfoo is not /tmp", event{subtype: created, proc: proc(5, "x", "/tmpfoo/x")}, nil},
		{"deleted while running", event{subtype: updated, proc: deleted, changed: []string{"executable_deleted"}}, []string{"executable-deleted-while-running"}},
		{"shell from nginx", event{subtype: created, proc: proc(8, "sh", "/usr/bin/dash", "sh", "-c", "id"), parent: "nginx"}, []string{"shell-from-network-service"}},
		{"shell from sshd", event{subtype: created, proc: proc(9, "bash", "/usr/bin/bash"), parent: "sshd"}, nil},
		{"fake kworker", event{subtype: created, proc: proc(10, "kworker/0:1", "/tmp/.x/kworker", "[kworker/0:1]")}, []string{"exec-from-world-writable-dir", "fake-kernel-thread"}},
		{"bracketed argv", event{subtype: observed, proc: proc(11, "miner", "/usr/local/bin/miner", "[kthreadd]")}, []string{"fake-kernel-thread"}},
		{"a real kernel thread", event{subtype: observed, proc: proc(12, "kworker/1:2", "", nil...)}, nil},
	}
	for _, tc := range cases {
		e := NewEngine(rules, Options{})
		var got []string
		for _, a := range e.Evaluate(tc.ev.envelope(), time.Now()) {
			got = append(got, a.GetRuleId())
			if a.GetProcess().GetPid() != tc.ev.proc.GetPid() || a.GetTriggeringCorrelationId() == "" || a.GetSeverity() == 0 || a.GetTitle() == "" {
				t.Errorf("%s: alert %v", tc.name, a)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: rules %v, want %v", tc.name, got, tc.want)
		}
		if st := e.Stats(); st.Failed != 0 {
			t.Errorf("%s: %d evaluations failed", tc.name, st.Failed)
		}
	}
}

func TestRepeatWindow(t *testing.T) {
	rules, _ := Builtin()
	e := NewEngine(rules, Options{RepeatWindow: time.Minute})
	now := time.Now()
	ev := event{subtype: observed, proc: proc(1, "x", "/tmp/x")}
	count := func(at time.Time, ev event) int { return len(e.Evaluate(ev.envelope(), at)) }
	if n := count(now, ev); n != 1 {
		t.Fatalf("first: %d alerts", n)
	}
	if n := count(now.Add(30*time.Second), ev); n != 0 {
		t.Errorf("again within the window: %d alerts", n)
	}
	other := event{subtype: observed, proc: proc(2, "x", "/tmp/x")}
	if n := count(now.Add(30*time.Second), other); n != 1 {
		t.Errorf("another process: %d alerts", n)
	}
	if n := count(now.Add(61*time.Second), ev); n != 1 {
		t.Errorf("after the window: %d alerts", n)
	}
	if st := e.Stats(); st.Fired != 3 || st.Silenced != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Any input either parses into rules that evaluate without panicking, or
// is refused with ErrInvalidRule.
func FuzzParse(f *testing.F) {
	f.Add(builtinYAML)
	f.Add("rules:\n  - {id: a, title: A, severity: low, expression: 'process.name.matches(\"^a\")'}\n")
	f.Add("rules: [")
	f.Fuzz(func(t *testing.T, src string) {
		rules, err := Parse(strings.NewReader(src), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrInvalidRule) {
				t.Fatalf("error %v does not wrap ErrInvalidRule", err)
			}
			return
		}
		e := NewEngine(rules, Options{})
		e.Evaluate(event{subtype: created, proc: proc(1, "x", "/tmp/x")}.envelope(), time.Now())
	})
}

// A rules file is bounded like the configuration file: one of
// MaxRulesSize bytes loads, one byte more is refused with an error that
// names the limit, before anything is decoded.
func TestLoadFileSizeLimit(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		size int
		err  string // substring; empty: loads
	}{
		{"at the limit", MaxRulesSize, ""},
		{"one byte over", MaxRulesSize + 1, "larger than 1048576 bytes (1 MiB), the limit for a rules file"},
		{"100 MB", 100 << 20, "larger than 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			head := "rules:\n  - {id: a, title: A, severity: low, expression: 'true'}\n#"
			data := append([]byte(head), bytes.Repeat([]byte("x"), tc.size-len(head)-1)...)
			data = append(data, '\n')
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			rules, err := LoadFile(path)
			if tc.err == "" {
				if err != nil || len(rules) != 1 {
					t.Fatalf("LoadFile = %d rules, %v; want 1 rule", len(rules), err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadFile = %v, want ErrInvalidRule naming %s and containing %q", err, path, tc.err)
			}
		})
	}
}

// The kernel's side of an event and the process's context, as rules see
// them; the rule of an existing file keeps working on both sources.
func TestKernelAndContextVariables(t *testing.T) {
	const (
		execK = eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXEC
		exitK = eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT
	)
	i32 := func(v int32) *int32 { return &v }
	u32 := func(v uint32) *uint32 { return &v }
	ctx := proc(20, "sh", "/usr/bin/dash", "sh")
	ctx.Cwd, ctx.Tty, ctx.LoginUid, ctx.ContainerId = "/root", "pts/3", u32(1000), "3f4e"
	ctx.PidNamespace, ctx.NamespacePid, ctx.CgroupPath = 4026531836, u32(1), "/docker/3f4e"
	ctx.CommandLineTruncated, ctx.ExecutableMemfd = true, true
	noLogin := proc(21, "sh", "/usr/bin/dash", "sh")
	for _, tc := range []struct {
		name, expr string
		data       *eventbusv1.ProcessEventData
		want       bool
	}{
		{"existing rule, from the sensor", `event == "created" && process.executable_path.startsWith("/tmp/x/")`,
			&eventbusv1.ProcessEventData{Subtype: created, Process: proc(1, "a", "/tmp/x/a"), KernelEvent: execK}, true},
		{"existing rule, from a scan", `event == "created" && process.executable_path.startsWith("/tmp/x/")`,
			&eventbusv1.ProcessEventData{Subtype: created, Process: proc(1, "a", "/tmp/x/a")}, true},
		{"kernel exec", `kernel_event == "exec" && !image_replaced`,
			&eventbusv1.ProcessEventData{Subtype: created, Process: proc(1, "a", "/a"), KernelEvent: execK}, true},
		{"a scan has no kernel event", `kernel_event == ""`,
			&eventbusv1.ProcessEventData{Subtype: created, Process: proc(1, "a", "/a")}, true},
		{"image replaced", `event == "created" && image_replaced`,
			&eventbusv1.ProcessEventData{Subtype: created, Process: proc(1, "a", "/a"), KernelEvent: execK, ImageReplaced: true}, true},
		{"fork+exec is no replacement", `event == "created" && image_replaced`,
			&eventbusv1.ProcessEventData{Subtype: created, Process: proc(1, "a", "/a"), KernelEvent: execK}, false},
		{"exit code", `kernel_event == "exit" && exit_code == 3 && exit_signal == 0`,
			&eventbusv1.ProcessEventData{Subtype: terminated, Process: proc(1, "a", "/a"), KernelEvent: exitK, ExitCode: i32(3)}, true},
		{"exit 0 is known", `exit_code == 0`,
			&eventbusv1.ProcessEventData{Subtype: terminated, Process: proc(1, "a", "/a"), KernelEvent: exitK, ExitCode: i32(0)}, true},
		{"killed", `event == "terminated" && exit_signal == 9 && exit_code == -1`,
			&eventbusv1.ProcessEventData{Subtype: terminated, Process: proc(1, "a", "/a"), KernelEvent: exitK, ExitSignal: i32(9)}, true},
		{"exit unknown from a scan", `exit_code == -1 && exit_signal == 0`,
			&eventbusv1.ProcessEventData{Subtype: terminated, Process: proc(1, "a", "/a")}, true},
		{"context", `process.cwd == "/root" && process.tty == "pts/3" && has(process.login_uid) && process.login_uid == 1000u &&
			process.container_id != "" && process.cgroup_path.startsWith("/docker/") && process.namespace_pid == 1u &&
			process.pid_namespace == 4026531836u && process.command_line_truncated && process.executable_memfd`,
			&eventbusv1.ProcessEventData{Subtype: created, Process: ctx, KernelEvent: execK}, true},
		{"no login uid", `has(process.login_uid)`, &eventbusv1.ProcessEventData{Subtype: created, Process: noLogin}, false},
		{"no container", `process.container_id != "" || process.tty != ""`, &eventbusv1.ProcessEventData{Subtype: created, Process: noLogin}, false},
	} {
		rules, err := Parse(strings.NewReader("rules:\n  - id: r\n    title: R\n    severity: low\n    expression: '"+tc.expr+"'\n"), "test.yaml")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		e := NewEngine(rules, Options{})
		m := envelope.New(topics.ProcessLifecycle, time.Now(), &eventbusv1.CollectionEvent{Event: &eventbusv1.CollectionEvent_Process{Process: tc.data}})
		got := len(e.Evaluate(m, time.Now())) == 1
		if got != tc.want || e.Stats().Failed != 0 {
			t.Errorf("%s: %s fired %v, want %v (%d failed)", tc.name, tc.expr, got, tc.want, e.Stats().Failed)
		}
	}
}

// The rules files shown in docs/detection.md parse (the first shows a
// disabled rule whose title is "...").
func TestDocumentedRulesParse(t *testing.T) {
	doc, err := os.ReadFile("../docs/detection.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := 0
	for _, part := range strings.Split(string(doc), "```yaml\n")[1:] {
		src, _, _ := strings.Cut(part, "```")
		if !strings.HasPrefix(src, "rules:") {
			continue
		}
		blocks++
		if _, err := Parse(strings.NewReader(src), "docs/detection.md"); err != nil {
			t.Errorf("block %d: %v", blocks, err)
		}
	}
	if blocks < 2 {
		t.Errorf("%d rules blocks in docs/detection.md, want at least 2", blocks)
	}
}
