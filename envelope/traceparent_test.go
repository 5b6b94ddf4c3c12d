package envelope_test

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
)

func TestParseTraceparent(t *testing.T) {
	const (
		trace = "4bf92f3577b34da6a3ce929d0e0e4736"
		span  = "00f067aa0ba902b7"
	)
	tests := []struct {
		in        string
		ok        bool
		wantFlags byte
	}{
		// From the W3C Trace Context recommendation.
		{"00-" + trace + "-" + span + "-01", true, 0x01},
		{"00-" + trace + "-" + span + "-00", true, 0x00},
		{"00-" + trace + "-" + span + "-ff", true, 0xff},
		// A higher version may carry more fields after a '-'.
		{"01-" + trace + "-" + span + "-09", true, 0x09},
		{"cc-" + trace + "-" + span + "-01-what-the-future-will-be-like", true, 0x01},
		{"01-" + trace + "-" + span + "-01-", true, 0x01},

		{"", false, 0},
		{"00-" + trace + "-" + span + "-0", false, 0},   // short
		{"00-" + trace + "-" + span + "-01-", false, 0}, // version 00 is exactly 55 bytes
		{"00-" + trace + "-" + span + "-01x", false, 0}, // ditto
		{"01-" + trace + "-" + span + "-01x", false, 0}, // extra data without '-'
		{"ff-" + trace + "-" + span + "-01", false, 0},  // version ff
		{"0g-" + trace + "-" + span + "-01", false, 0},  // bad version
		{"0A-" + trace + "-" + span + "-01", false, 0},  // upper case version
		{"00-" + strings.ToUpper(trace) + "-" + span + "-01", false, 0},
		{"00-" + trace + "-" + strings.ToUpper(span[:15]) + "B-01", false, 0},
		{"00-00000000000000000000000000000000-" + span + "-01", false, 0},
		{"00-" + trace + "-0000000000000000-01", false, 0},
		{"00-" + trace + "-" + span + "-0G", false, 0},
		{"00-" + trace + "-" + span + "-Ab", false, 0},
		{"00_" + trace + "-" + span + "-01", false, 0},
		{"00-" + trace + "_" + span + "-01", false, 0},
		{"00-" + trace + "-" + span + "_01", false, 0},
		{"00-" + trace[:31] + "-" + span + "0-01", false, 0}, // misplaced separator
		{"00-" + trace + "z-" + span[:15] + "-01", false, 0}, // ditto
		{" 00-" + trace + "-" + span + "-01", false, 0},      // leading space
	}
	for _, tt := range tests {
		gotTrace, gotSpan, gotFlags, err := envelope.ParseTraceparent(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseTraceparent(%q): error %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, envelope.ErrInvalidTraceparent) {
				t.Errorf("ParseTraceparent(%q): %v does not wrap ErrInvalidTraceparent", tt.in, err)
			}
			continue
		}
		if gotTrace != trace || gotSpan != span || gotFlags != tt.wantFlags {
			t.Errorf("ParseTraceparent(%q) = %q, %q, %#x", tt.in, gotTrace, gotSpan, gotFlags)
		}
	}
}

func TestTraceparent(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name string
		c    *eventbusv1.CorrelationMetadata
		want string
	}{
		{"sampled", &eventbusv1.CorrelationMetadata{TraceId: str("4bf92f3577b34da6a3ce929d0e0e4736"), SpanId: str("00f067aa0ba902b7"), TraceFlags: 1},
			"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"flags above 8 bits are dropped", &eventbusv1.CorrelationMetadata{TraceId: str("4bf92f3577b34da6a3ce929d0e0e4736"), SpanId: str("00f067aa0ba902b7"), TraceFlags: 0x1a5},
			"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-a5"},
		{"nil", nil, ""},
		{"no trace", &eventbusv1.CorrelationMetadata{SpanId: str("00f067aa0ba902b7")}, ""},
		{"no span", &eventbusv1.CorrelationMetadata{TraceId: str("4bf92f3577b34da6a3ce929d0e0e4736")}, ""},
		{"zero trace", &eventbusv1.CorrelationMetadata{TraceId: str("00000000000000000000000000000000"), SpanId: str("00f067aa0ba902b7")}, ""},
		{"upper-case span", &eventbusv1.CorrelationMetadata{TraceId: str("4bf92f3577b34da6a3ce929d0e0e4736"), SpanId: str("00F067AA0BA902B7")}, ""},
	}
	for _, tt := range tests {
		if got := envelope.Traceparent(tt.c); got != tt.want {
			t.Errorf("%s: Traceparent = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestTraceparentRoundTrip: whatever NewRoot and Child produce formats to a
// traceparent that parses back to the same ids and flags.
func TestTraceparentRoundTrip(t *testing.T) {
	c := envelope.NewRoot()
	for i := range 1000 {
		c.TraceFlags = uint32(i % 256)
		s := envelope.Traceparent(c)
		trace, span, flags, err := envelope.ParseTraceparent(s)
		if err != nil {
			t.Fatalf("ParseTraceparent(Traceparent(%v)) = %v", c, err)
		}
		if trace != c.GetTraceId() || span != c.GetSpanId() || uint32(flags) != c.TraceFlags {
			t.Fatalf("%q parsed to %q %q %#x", s, trace, span, flags)
		}
		if i%10 == 0 {
			c = envelope.NewRoot()
		} else {
			c = envelope.Child(c)
		}
	}
}

// naiveRE and naiveParse are the reference for FuzzParseTraceparent: the
// W3C rules written as directly as possible.
var naiveRE = regexp.MustCompile(`(?s)^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(.*)$`)

func naiveParse(s string) (trace, span string, flags byte, ok bool) {
	m := naiveRE.FindStringSubmatch(s)
	if m == nil {
		return "", "", 0, false
	}
	version, rest := m[1], m[5]
	switch {
	case version == "ff":
		return "", "", 0, false
	case version == "00" && rest != "":
		return "", "", 0, false
	case rest != "" && rest[0] != '-':
		return "", "", 0, false
	case m[2] == strings.Repeat("0", 32), m[3] == strings.Repeat("0", 16):
		return "", "", 0, false
	}
	f, err := strconv.ParseUint(m[4], 16, 8)
	if err != nil {
		return "", "", 0, false
	}
	return m[2], m[3], byte(f), true
}

func FuzzParseTraceparent(f *testing.F) {
	for _, s := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		trace, span, flags, err := envelope.ParseTraceparent(s)
		wTrace, wSpan, wFlags, ok := naiveParse(s)
		if (err == nil) != ok {
			t.Fatalf("ParseTraceparent(%q): err %v, reference ok=%v", s, err, ok)
		}
		if !ok {
			if !errors.Is(err, envelope.ErrInvalidTraceparent) {
				t.Fatalf("ParseTraceparent(%q): %v does not wrap ErrInvalidTraceparent", s, err)
			}
			return
		}
		if trace != wTrace || span != wSpan || flags != wFlags {
			t.Fatalf("ParseTraceparent(%q) = %q %q %#x, reference %q %q %#x", s, trace, span, flags, wTrace, wSpan, wFlags)
		}
		// Round trip through Traceparent: version 00, same ids and flags.
		c := &eventbusv1.CorrelationMetadata{TraceId: &trace, SpanId: &span, TraceFlags: uint32(flags)}
		out := envelope.Traceparent(c)
		if s[:2] == "00" && out != s {
			t.Fatalf("Traceparent = %q, want %q", out, s)
		}
		if out[3:] != s[3:55] {
			t.Fatalf("Traceparent = %q, from %q", out, s)
		}
	})
}

func BenchmarkParseTraceparent(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _, _, errSink = envelope.ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	}
}
