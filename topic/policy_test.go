package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	long := "events." + strings.Repeat("a", MaxLength-len("events."))
	tests := []struct {
		name    string
		wantErr string // substring of the error; "" means valid
	}{
		{"events", ""},
		{"control", ""},
		{"events.process.lifecycle", ""},
		{"control.collector.procmond", ""},
		{"events.a_b-c.9", ""},
		{"events.a.b.c.d.e.f.g", ""},
		{long, ""},
		{long + "a", "257 bytes long; the limit is 256"},
		{"events.a.b.c.d.e.f.g.h", "more than 8 segments"},
		{"", "empty"},
		{"events..process", "segment 2 is empty"},
		{".events", "segment 1 is empty"},
		{"events.", "segment 2 is empty"},
		{"events.Process", "upper-case letter 'P'"},
		{"events.pro cess", "contains ' '"},
		{"events.proc/ess", "contains '/'"},
		{"events.+", "wildcards belong in subscription patterns"},
		{"events.#", "wildcards belong in subscription patterns"},
		{"events.*", "wildcards belong in subscription patterns"},
		{"metrics.cpu", `first segment "metrics" is not a registered domain (events, control)`},
		{"événements", "only a-z"},
	}
	for _, tt := range tests {
		err := Validate(tt.name)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("Validate(%q) = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Validate(%q) = nil, want error containing %q", tt.name, tt.wantErr)
			continue
		}
		if !errors.Is(err, ErrInvalidTopic) || errors.Is(err, ErrInvalidPattern) {
			t.Errorf("Validate(%q) error %v does not wrap ErrInvalidTopic alone", tt.name, err)
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Validate(%q) = %q, want it to contain %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestValidatePattern(t *testing.T) {
	tests := []struct {
		pattern string
		wantErr string
		segment int
	}{
		{"#", "", 0},
		{"+", "", 0},
		{"events", "", 0},
		{"events.#", "", 0},
		{"events.+", "", 0},
		{"events.+.lifecycle", "", 0},
		{"+.process.#", "", 0},
		{"+.+.+.+.+.+.+.+", "", 0},
		{"+.+.+.+.+.+.+.+.+", "more than 8 segments", 9},
		{"+.+.+.+.+.+.+.+.#", "more than 8 segments", 9},
		{"events.#.lifecycle", "'#' but not the last segment", 2},
		{"#.events", "'#' but not the last segment", 1},
		{"events.a+", `segment 2 "a+" mixes a wildcard`, 2},
		{"events.#x", `segment 2 "#x" mixes a wildcard`, 2},
		{"events.##", `segment 2 "##" mixes a wildcard`, 2},
		{"events.+#", `segment 2 "+#" mixes a wildcard`, 2},
		{"events.*", `uses '*': write '+' to match exactly one segment or '#'`, 2},
		{"events.>", `contains '>'`, 2},
		{"events..a", "segment 2 is empty", 2},
		{"", "empty", 0},
		{"metrics.#", `first segment "metrics" is not a registered domain`, 1},
		{"events.Process", "upper-case", 2},
	}
	for _, tt := range tests {
		err := ValidatePattern(tt.pattern)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidatePattern(%q) = %v, want nil", tt.pattern, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("ValidatePattern(%q) = %v, want *Error containing %q", tt.pattern, err, tt.wantErr)
			continue
		}
		if !errors.Is(err, ErrInvalidPattern) {
			t.Errorf("ValidatePattern(%q) error does not wrap ErrInvalidPattern", tt.pattern)
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidatePattern(%q) = %q, want it to contain %q", tt.pattern, err, tt.wantErr)
		}
		if e.Segment != tt.segment {
			t.Errorf("ValidatePattern(%q) names segment %d, want %d", tt.pattern, e.Segment, tt.segment)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"#", "events", true},
		{"#", "control.collector.procmond", true},
		{"events.#", "events", true},
		{"events.#", "events.a.b", true},
		{"events.#", "control.a", false},
		{"events.process.#", "events.processx", false},
		{"events.process.#", "events.process", true},
		{"events.process.#", "events.process.lifecycle", true},
		{"events.+", "events", false},
		{"events.+", "events.a", true},
		{"events.+", "events.a.b", false},
		{"+", "events", true},
		{"+", "events.a", false},
		{"+.process.+", "events.process.lifecycle", true},
		{"+.process.+", "control.process.x", true},
		{"events.+.#", "events", false},
		{"events.+.#", "events.a", true},
		{"events.+.#", "events.a.b.c", true},
		{"events.process", "events.process", true},
		{"events.process", "events.process.lifecycle", false},
		{"events.process.lifecycle", "events.process", false},
		{"events.a", "events.b", false},
		// Invalid input never matches.
		{"events.*", "events.a", false},
		{"events.#", "events..a", false},
		{"events.a", "events.a.", false},
		{"events.#", "events.+", false},
		{"metrics.#", "metrics.a", false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
		if got := naiveMatch(tt.pattern, tt.name); got != tt.want {
			t.Errorf("naiveMatch(%q, %q) = %v, want %v (the oracle is wrong)", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestPolicy(t *testing.T) {
	p := &Policy{Domains: []string{"metrics", "events"}, MaxSegments: 3, MaxLength: 20}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	for name, ok := range map[string]bool{
		"metrics.cpu":           true,
		"events.a.b":            true,
		"control.a":             false,
		"events.a.b.c":          false,
		"events.abcdefghijkl":   true,
		"events.abcdefghijklmn": false,
	} {
		if err := p.Validate(name); (err == nil) != ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", name, err, ok)
		}
	}
	if !p.Match("metrics.#", "metrics.cpu") || p.Match("control.#", "control.a") {
		t.Error("policy Match ignores the policy's domains")
	}
	for _, bad := range []Policy{
		{MaxSegments: SegmentLimit + 1},
		{MaxSegments: -1},
		{MaxLength: LengthLimit + 1},
		{Domains: []string{"Events"}},
		{Domains: []string{""}},
		{Domains: []string{"a.b"}},
	} {
		if bad.Check() == nil {
			t.Errorf("Check(%+v) = nil, want error", bad)
		}
	}
}

func TestSpecificity(t *testing.T) {
	// Each row lists patterns that all match the topic, least specific first.
	tests := []struct {
		name     string
		patterns []string
	}{
		{"events.process.lifecycle", []string{
			"#", "+.#", "+.+.#", "+.+.+", "+.process.#", "+.process.lifecycle", "events.#",
			"events.+.#", "events.+.+", "events.+.lifecycle", "events.process.#",
			"events.process.+.#", "events.process.+", "events.process.lifecycle.#",
			"events.process.lifecycle",
		}},
		{"events", []string{"#", "+.#", "+", "events.#", "events"}},
	}
	for _, tt := range tests {
		for i, p := range tt.patterns {
			if !Match(p, tt.name) {
				t.Fatalf("test bug: %q does not match %q", p, tt.name)
			}
			if i > 0 {
				prev := tt.patterns[i-1]
				if Specificity(prev) >= Specificity(p) {
					t.Errorf("Specificity(%q)=%#x >= Specificity(%q)=%#x, want less", prev, Specificity(prev), p, Specificity(p))
				}
				if naiveMoreSpecific(prev, p) {
					t.Errorf("naive oracle disagrees: %q ranked above %q", prev, p)
				}
			}
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if !Match("events.+.#", "events.process.lifecycle") {
			t.Fatal("no match")
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per call, want 0", allocs)
	}
}
