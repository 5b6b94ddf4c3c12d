//go:build linux

package sensor

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
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

// setAttached attaches or detaches s's program (for the benchmarks that
// alternate).
func setAttached(b *testing.B, s *Sensor, on bool) {
	if on == (len(s.links) > 0) {
		return
	}
	if on {
		l, err := link.AttachTracing(link.TracingOptions{Program: s.objs.SysExit})
		if err != nil {
			b.Fatal(err)
		}
		s.links = append(s.links, l)
		return
	}
	for _, l := range s.links {
		l.Close()
	}
	s.links = nil
}

// BenchmarkSyscallCost measures single system calls with the program
// detached and attached, alternating rounds of 20,000 calls: getppid (a
// call the program only classifies), and open+close of an unwatched file
// on the root file system (which it filters by walking the file's parents).
func BenchmarkSyscallCost(b *testing.B) {
	s := live(b, nil)
	f, err := os.CreateTemp("", "fsbench")
	if err != nil {
		b.Fatal(err)
	}
	f.Close()
	defer os.Remove(f.Name())
	for _, tc := range []struct {
		name string
		call func()
	}{
		{"getppid", func() { unix.Getppid() }},
		{"open+close", func() {
			fd, err := unix.Open(f.Name(), unix.O_RDONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			unix.Close(fd)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const n = 20000
			var off, on []time.Duration
			for b.Loop() {
				for _, mode := range []bool{false, true} {
					setAttached(b, s, mode)
					start := time.Now()
					for range n {
						tc.call()
					}
					d := time.Since(start) / n
					if mode {
						on = append(on, d)
					} else {
						off = append(off, d)
					}
				}
			}
			setAttached(b, s, true)
			slices.Sort(off)
			slices.Sort(on)
			b.ReportMetric(float64(off[len(off)/2].Nanoseconds()), "ns/call-off")
			b.ReportMetric(float64(on[len(on)/2].Nanoseconds()), "ns/call-on")
		})
	}
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
	set := func(on bool) { setAttached(b, s, on) }
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

// BenchmarkTarExtract extracts a tar of Go module sources
// (DAEMONEYE_FS_BENCH_TAR, default: golang.org/x modules of the module
// cache, built once) into an unwatched directory, alternating rounds with
// the program detached and attached, and reports the medians.
func BenchmarkTarExtract(b *testing.B) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		b.Skip("no tar")
	}
	archive := os.Getenv("DAEMONEYE_FS_BENCH_TAR")
	if archive == "" {
		mod := filepath.Join(os.Getenv("HOME"), "go/pkg/mod/golang.org/x")
		if _, err := os.Stat(mod); err != nil {
			b.Skip("no module cache to archive; set DAEMONEYE_FS_BENCH_TAR")
		}
		archive = filepath.Join(b.TempDir(), "mods.tar")
		if out, err := exec.Command(tarBin, "-cf", archive, "-C", mod, ".").CombinedOutput(); err != nil {
			b.Fatalf("tar -c: %v: %s", err, out)
		}
	}
	s := live(b, nil)
	var off, on []time.Duration
	for b.Loop() {
		for _, mode := range []bool{false, true} {
			setAttached(b, s, mode)
			dst, err := os.MkdirTemp("", "fsbench-x")
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if out, err := exec.Command(tarBin, "-xf", archive, "-C", dst).CombinedOutput(); err != nil {
				b.Fatalf("tar -x: %v: %s", err, out)
			}
			d := time.Since(start)
			os.RemoveAll(dst)
			if mode {
				on = append(on, d)
			} else {
				off = append(off, d)
			}
		}
	}
	setAttached(b, s, true)
	slices.Sort(off)
	slices.Sort(on)
	mOff, mOn := off[len(off)/2], on[len(on)/2]
	b.ReportMetric(float64(mOff.Milliseconds()), "ms-off")
	b.ReportMetric(float64(mOn.Milliseconds()), "ms-on")
	b.ReportMetric(100*(float64(mOn)/float64(mOff)-1), "%slower")
}
