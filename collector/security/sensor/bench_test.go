//go:build linux

package sensor

import (
	"context"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

var devNull int

// BenchmarkBPFCost measures what the two programs cost in the kernel, from
// the kernel's own statistics (BPF_ENABLE_STATS, enabled for the run
// only): per system call that is not watched (getppid), per write (the
// /proc/<pid>/mem check's gate), and per
// memfd_create that is reported (its sys_exit builds and writes an event).
// Metrics: ns per program run (enter-ns/run, exit-ns/run) and per call.
func BenchmarkBPFCost(b *testing.B) {
	var err error
	if devNull, err = unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0); err != nil {
		b.Fatal(err)
	}
	defer unix.Close(devNull)
	for _, tc := range []struct {
		name string
		call func()
	}{
		{"unwatched", func() { unix.Getppid() }},
		// A write: the gate of the /proc/<pid>/mem write check.
		{"write", func() { unix.Write(devNull, []byte{0}) }},
		{"memfd", func() {
			fd, _ := unix.MemfdCreate("bench", 0)
			unix.Close(fd)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := live(b, Options{})
			// A reader drains the ring buffer meanwhile, as procmond does:
			// a ring left a quarter full makes every event wake the reader.
			ctx, cancel := context.WithCancel(context.Background())
			read := make(chan error, 1)
			go func() { read <- s.Run(ctx, func(*Event) error { return nil }) }()
			defer func() {
				cancel()
				<-read
			}()
			stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
			if err != nil {
				b.Fatalf("enable bpf_stats: %v", err)
			}
			defer stats.Close()
			enter, exit := s.coll.Programs["sys_enter"], s.coll.Programs["sys_exit"]
			st0, _ := enter.Stats()
			sx0, _ := exit.Stats()
			calls := 0
			for b.Loop() {
				tc.call()
				calls++
			}
			st1, _ := enter.Stats()
			sx1, _ := exit.Stats()
			en, xn := st1.RunCount-st0.RunCount, sx1.RunCount-sx0.RunCount
			ed, xd := st1.Runtime-st0.Runtime, sx1.Runtime-sx0.Runtime
			if en > 0 && xn > 0 {
				b.ReportMetric(float64(ed)/float64(en), "enter-ns/run")
				b.ReportMetric(float64(xd)/float64(xn), "exit-ns/run")
			}
			// Every syscall of the machine runs the programs; per call of
			// ours is an upper bound (other processes' calls included).
			b.ReportMetric(float64(ed+xd)/float64(calls), "bpf-ns/call")
			if st := s.Stats(); st.Lost != 0 {
				b.Logf("lost %d", st.Lost)
			}
		})
	}
}

// BenchmarkSyscallOverhead is what an unwatched system call (getppid)
// costs without the sensor and with it attached: with it, every task takes
// the kernel's slow system call path (the raw_syscalls tracepoints) and
// runs both programs. Run it with -count and compare the two.
func BenchmarkSyscallOverhead(b *testing.B) {
	b.Run("off", func(b *testing.B) {
		for b.Loop() {
			unix.Getppid()
		}
	})
	b.Run("on", func(b *testing.B) {
		live(b, Options{})
		for b.Loop() {
			unix.Getppid()
		}
	})
}
