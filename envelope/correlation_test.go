package envelope_test

import (
	"maps"
	"regexp"
	"testing"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/proto"
)

var (
	uuidRE  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	traceRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
	spanRE  = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := envelope.NewID()
		if !uuidRE.MatchString(id) {
			t.Fatalf("NewID() = %q, not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
		if tr := envelope.NewTraceID(); !traceRE.MatchString(tr) {
			t.Fatalf("NewTraceID() = %q", tr)
		}
		if sp := envelope.NewSpanID(); !spanRE.MatchString(sp) {
			t.Fatalf("NewSpanID() = %q", sp)
		}
	}
}

func TestNewRoot(t *testing.T) {
	tests := []struct {
		name     string
		tags     []envelope.Tag
		wantTags map[string]string
	}{
		{"no tags", nil, nil},
		{"one tag", []envelope.Tag{{Key: "collector", Value: "procmond"}}, map[string]string{"collector": "procmond"}},
		{"later tag wins", []envelope.Tag{{Key: "k", Value: "1"}, {Key: "j", Value: "x"}, {Key: "k", Value: "2"}}, map[string]string{"k": "2", "j": "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := envelope.NewRoot(tt.tags...)
			switch {
			case !uuidRE.MatchString(c.CorrelationId):
				t.Errorf("correlation id %q", c.CorrelationId)
			case c.RootCorrelationId != c.CorrelationId:
				t.Errorf("root id %q, want the correlation id %q", c.RootCorrelationId, c.CorrelationId)
			case c.ParentCorrelationId != nil:
				t.Errorf("a root has parent %q", c.GetParentCorrelationId())
			case c.SequenceNumber != 0:
				t.Errorf("sequence %d, want 0", c.SequenceNumber)
			case !traceRE.MatchString(c.GetTraceId()) || !spanRE.MatchString(c.GetSpanId()):
				t.Errorf("trace %q span %q", c.GetTraceId(), c.GetSpanId())
			case c.TraceFlags != envelope.TraceFlagSampled:
				t.Errorf("trace flags %#x, want sampled", c.TraceFlags)
			case !maps.Equal(c.CorrelationTags, tt.wantTags):
				t.Errorf("tags %v, want %v", c.CorrelationTags, tt.wantTags)
			}
		})
	}
	if a, b := envelope.NewRoot(), envelope.NewRoot(); a.CorrelationId == b.CorrelationId || a.GetTraceId() == b.GetTraceId() {
		t.Error("two roots share ids")
	}
}

func TestChild(t *testing.T) {
	str := func(s string) *string { return &s }
	root := envelope.WithStage(envelope.NewRoot(envelope.Tag{Key: "collector", Value: "procmond"}), "collection")
	root.TraceFlags = 0 // not sampled: the child must keep that decision
	tests := []struct {
		name   string
		parent *eventbusv1.CorrelationMetadata
		// wantRoot and wantTrace are "" to mean "a fresh one".
		wantRoot, wantTrace string
		wantSeq             uint64
		wantFlags           uint32
		wantStage           *string
	}{
		{"of a root", root, root.CorrelationId, root.GetTraceId(), 1, 0, str("collection")},
		{"of a child", &eventbusv1.CorrelationMetadata{
			CorrelationId: "c2", RootCorrelationId: "r", ParentCorrelationId: str("c1"),
			TraceId: str("4bf92f3577b34da6a3ce929d0e0e4736"), SpanId: str("00f067aa0ba902b7"),
			SequenceNumber: 7, TraceFlags: 1,
		}, "r", "4bf92f3577b34da6a3ce929d0e0e4736", 8, 1, nil},
		{"of a parent without root or trace", &eventbusv1.CorrelationMetadata{CorrelationId: "lonely", SequenceNumber: 2},
			"lonely", "", 3, envelope.TraceFlagSampled, nil},
		{"of a parent with an invalid trace", &eventbusv1.CorrelationMetadata{CorrelationId: "p", RootCorrelationId: "r", TraceId: str("00000000000000000000000000000000")},
			"r", "", 1, envelope.TraceFlagSampled, nil},
		{"of nil", nil, "", "", 0, envelope.TraceFlagSampled, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := proto.Clone(tt.parent)
			c := envelope.Child(tt.parent)
			if tt.parent != nil && !proto.Equal(before, tt.parent) {
				t.Error("Child modified the parent")
			}
			if !uuidRE.MatchString(c.CorrelationId) || c.CorrelationId == tt.parent.GetCorrelationId() {
				t.Errorf("correlation id %q is not new", c.CorrelationId)
			}
			if tt.parent == nil {
				if c.ParentCorrelationId != nil || c.RootCorrelationId != c.CorrelationId {
					t.Errorf("Child(nil) is not a root: %v", c)
				}
			} else {
				if c.GetParentCorrelationId() != tt.parent.CorrelationId {
					t.Errorf("parent id %q, want %q", c.GetParentCorrelationId(), tt.parent.CorrelationId)
				}
				if c.RootCorrelationId != tt.wantRoot {
					t.Errorf("root id %q, want %q", c.RootCorrelationId, tt.wantRoot)
				}
			}
			if tt.wantTrace != "" && c.GetTraceId() != tt.wantTrace {
				t.Errorf("trace id %q, want %q", c.GetTraceId(), tt.wantTrace)
			}
			if !traceRE.MatchString(c.GetTraceId()) || c.GetTraceId() == "00000000000000000000000000000000" {
				t.Errorf("trace id %q is invalid", c.GetTraceId())
			}
			if !spanRE.MatchString(c.GetSpanId()) || c.GetSpanId() == tt.parent.GetSpanId() {
				t.Errorf("span id %q is not new", c.GetSpanId())
			}
			if c.SequenceNumber != tt.wantSeq {
				t.Errorf("sequence %d, want %d", c.SequenceNumber, tt.wantSeq)
			}
			if c.TraceFlags != tt.wantFlags {
				t.Errorf("trace flags %#x, want %#x", c.TraceFlags, tt.wantFlags)
			}
			wantStage := ""
			if tt.wantStage != nil {
				wantStage = *tt.wantStage
			}
			if (c.WorkflowStage == nil) != (tt.wantStage == nil) || c.GetWorkflowStage() != wantStage {
				t.Errorf("stage %v, want %v", c.WorkflowStage, tt.wantStage)
			}
			if !maps.Equal(c.CorrelationTags, tt.parent.GetCorrelationTags()) {
				t.Errorf("tags %v, want the parent's %v", c.CorrelationTags, tt.parent.GetCorrelationTags())
			}
		})
	}
}

func TestChildCopiesTags(t *testing.T) {
	parent := envelope.NewRoot(envelope.Tag{Key: "a", Value: "1"})
	stage := "s"
	parent.WorkflowStage = &stage
	c := envelope.WithTag(envelope.Child(parent), "b", "2")
	envelope.WithStage(c, "other")
	if len(parent.CorrelationTags) != 1 || parent.GetWorkflowStage() != "s" {
		t.Errorf("changing the child changed the parent: %v", parent)
	}
	if c.CorrelationTags["a"] != "1" || c.CorrelationTags["b"] != "2" || c.GetWorkflowStage() != "other" {
		t.Errorf("child %v", c)
	}
}

func TestTagHelpers(t *testing.T) {
	tests := []struct {
		name  string
		apply func(*eventbusv1.CorrelationMetadata) *eventbusv1.CorrelationMetadata
		want  map[string]string
	}{
		{"WithTag on nil map", func(c *eventbusv1.CorrelationMetadata) *eventbusv1.CorrelationMetadata {
			return envelope.WithTag(c, "k", "v")
		}, map[string]string{"k": "v"}},
		{"WithTag overwrites", func(c *eventbusv1.CorrelationMetadata) *eventbusv1.CorrelationMetadata {
			return envelope.WithTag(envelope.WithTag(c, "k", "v"), "k", "w")
		}, map[string]string{"k": "w"}},
		{"AddTags none", func(c *eventbusv1.CorrelationMetadata) *eventbusv1.CorrelationMetadata {
			return envelope.AddTags(c)
		}, nil},
		{"AddTags several", func(c *eventbusv1.CorrelationMetadata) *eventbusv1.CorrelationMetadata {
			return envelope.AddTags(c, envelope.Tag{Key: "a", Value: "1"}, envelope.Tag{Key: "b", Value: "2"})
		}, map[string]string{"a": "1", "b": "2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &eventbusv1.CorrelationMetadata{}
			if got := tt.apply(c); got != c {
				t.Error("did not return its argument")
			}
			if !maps.Equal(c.CorrelationTags, tt.want) {
				t.Errorf("tags %v, want %v", c.CorrelationTags, tt.want)
			}
		})
	}
}
