//go:build linux && (amd64 || arm64)

package agent

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The filter is well formed: every jump lands inside the program, and it
// ends in a return.
func TestSeccompProgram(t *testing.T) {
	for _, allowBPF := range []bool{false, true} {
		checkSeccompProgram(t, seccompProgram(allowBPF))
	}
}

func checkSeccompProgram(t *testing.T, p []unix.SockFilter) {
	t.Helper()
	if len(p) > 4096 {
		t.Fatalf("%d instructions, over BPF_MAXINSNS", len(p))
	}
	for i, ins := range p {
		if ins.Code&0x07 == unix.BPF_JMP && (i+1+int(ins.Jt) >= len(p) || i+1+int(ins.Jf) >= len(p)) {
			t.Errorf("instruction %d jumps past the end", i)
		}
	}
	if last := p[len(p)-1]; last.Code != unix.BPF_RET|unix.BPF_K || last.K != unix.SECCOMP_RET_ALLOW {
		t.Errorf("the program ends with %+v, want allow", last)
	}
}
