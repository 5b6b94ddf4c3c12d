//go:build linux

package sensor

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
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

// BenchmarkOverhead alternates rounds of the workload with the sensor's
// program detached and attached (the same loaded sensor and maps), so that
// both see the same machine load, and reports the medians and their ratio.
// DAEMONEYE_FS_BENCH_DIR picks the file system (default: a temp dir).
func BenchmarkOverhead(b *testing.B) {
	s := live(b, nil)
	dir := b.TempDir()
	if d := os.Getenv("DAEMONEYE_FS_BENCH_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "fsbench"); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
	}
	attached := true
	set := func(on bool) {
		if on == attached {
			return
		}
		if on {
			l, err := link.AttachTracing(link.TracingOptions{Program: s.objs.SysExit})
			if err != nil {
				b.Fatal(err)
			}
			s.links = append(s.links, l)
		} else {
			for _, l := range s.links {
				l.Close()
			}
			s.links = nil
		}
		attached = on
	}
	var off, on []time.Duration
	for b.Loop() {
		for _, mode := range []bool{false, true} {
			set(mode)
			start := time.Now()
			fileWorkload(b, dir, 500)
			if mode {
				on = append(on, time.Since(start))
			} else {
				off = append(off, time.Since(start))
			}
		}
	}
	set(true)
	med := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	mOff, mOn := med(off), med(on)
	b.ReportMetric(float64(mOff.Microseconds())/500, "µs/file-off")
	b.ReportMetric(float64(mOn.Microseconds())/500, "µs/file-on")
	b.ReportMetric(100*(float64(mOn)/float64(mOff)-1), "%slower")
}
