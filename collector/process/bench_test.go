package process

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// startSleepers brings the number of processes on this host to at least n
// by starting sleep processes, which the benchmark's cleanup kills.
func startSleepers(b *testing.B, n int) {
	b.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Skip("no /proc")
	}
	have := 0
	for _, e := range entries {
		if e.Name()[0] >= '0' && e.Name()[0] <= '9' {
			have++
		}
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		b.Skip("no sleep binary")
	}
	var cmds []*exec.Cmd
	b.Cleanup(func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	})
	for ; have < n; have++ {
		c := exec.Command(sleep, "600")
		if err := c.Start(); err != nil {
			b.Fatalf("start the %dth sleeper: %v", len(cmds)+1, err)
		}
		cmds = append(cmds, c)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScan measures one procmond scan (read /proc, build the records,
// diff against the previous scan) with at least 1,000 processes running
// and the executables' hashes cached, as in steady state. It reports the
// CPU time (user + system, this process) per 1,000 processes; the target
// is 20 ms.
func BenchmarkScan(b *testing.B) {
	startSleepers(b, 1000)
	s, err := NewScanner(ScannerOptions{Hashes: &HashCache{}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	prev, err := s.Scan(time.Now()) // hashes every executable once
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	procs := 0
	var cpu time.Duration
	for b.Loop() {
		start := cpuTime()
		cur, err := s.Scan(time.Now())
		if err != nil {
			b.Fatal(err)
		}
		Diff(prev, cur)
		cpu += cpuTime() - start
		prev = cur
		procs += len(cur)
	}
	b.ReportMetric(float64(procs)/float64(b.N), "procs/scan")
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(procs)*1000, "cpu-ms/1000procs")
}
