package process

import (
	"testing"
	"time"
)

// BenchmarkScanFirst measures a scanner's first scan of at least 1,000
// processes: every process is new to it, so it reads everything it reads
// once per process (the context files among them), and hashes nothing.
// It reports the CPU time per 1,000 processes.
func BenchmarkScanFirst(b *testing.B) {
	startSleepers(b, 1000)
	b.ReportAllocs()
	procs := 0
	var cpu time.Duration
	for b.Loop() {
		start := cpuTime()
		s, err := NewScanner(ScannerOptions{})
		if err != nil {
			b.Fatal(err)
		}
		cur, err := s.Scan(time.Now())
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
		cpu += cpuTime() - start
		procs += len(cur)
	}
	b.ReportMetric(float64(procs)/float64(b.N), "procs/scan")
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(procs)*1000, "cpu-ms/1000procs")
}
