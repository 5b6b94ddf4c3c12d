//go:build linux

package sensor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fileWorkload writes n small files in dir, reads each back, renames and
// removes it: about eight file system calls per file, the shape of
// extracting and cleaning up an archive.
func fileWorkload(b *testing.B, dir string, n int) {
	data := make([]byte, 512)
	for i := range n {
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		if _, err := os.ReadFile(p); err != nil {
			b.Fatal(err)
		}
		if err := os.Chmod(p, 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(p, p+".x"); err != nil {
			b.Fatal(err)
		}
		if err := os.Remove(p + ".x"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileWorkload runs the workload (1000 files per op) in an
// unwatched directory with the sensor off and on (the default watch sets
// plus nothing of the workload's), in the same run, so that the
// difference is the sensor's cost on file activity it filters out.
func BenchmarkFileWorkload(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "sensor=off"
		if on {
			name = "sensor=on"
		}
		b.Run(name, func(b *testing.B) {
			if on {
				s := live(b, nil)
				before := s.Stats()
				defer func() {
					st := s.Stats()
					b.ReportMetric(float64(st.Calls-before.Calls)/float64(b.N), "calls/op")
				}()
			}
			dir := b.TempDir()
			b.ResetTimer()
			for b.Loop() {
				fileWorkload(b, dir, 1000)
			}
		})
	}
}

// BenchmarkWatchedEvents measures events per second through the sensor:
// files created and removed in a watched directory, read by Run.
func BenchmarkWatchedEvents(b *testing.B) {
	dir := b.TempDir()
	s := live(b, []Watch{{Path: dir, Flags: WatchWrites}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var seen uint64
	wg.Go(func() {
		_ = s.Run(ctx, func(e *Event) error { seen++; return nil })
	})
	before := s.Stats()
	start := time.Now()
	b.ResetTimer()
	for b.Loop() {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// Let the reader drain what the kernel wrote (bounded wait).
	want := s.Stats().Matched - before.Matched
	for deadline := time.Now().Add(2 * time.Second); s.Stats().Events-before.Events < want && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	st := s.Stats()
	b.ReportMetric(float64(st.Events-before.Events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(st.Lost-before.Lost), "lost")
}
