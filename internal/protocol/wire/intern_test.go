package wire

import (
	"fmt"
	"testing"
)

func TestInterner(t *testing.T) {
	var in Interner
	b := []byte("events.process.lifecycle")
	first := in.String(b)
	if n := testing.AllocsPerRun(100, func() { in.String(b) }); n != 0 {
		t.Errorf("a seen topic allocates %v times", n)
	}
	if in.String(b) != first || first != "events.process.lifecycle" {
		t.Errorf("got %q", in.String(b))
	}
	for i := range 2 * MaxInterned {
		in.String(fmt.Appendf(nil, "events.t%d", i))
	}
	if len(in.m) > MaxInterned {
		t.Errorf("holds %d strings, the bound is %d", len(in.m), MaxInterned)
	}
}
