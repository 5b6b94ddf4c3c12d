package sensor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
)

// BenchmarkExecRate spawns a program as fast as this machine can, with
// the sensor open at its defaults (256 KiB ring, 20 ms wakeup) and read in
// this process (sensor=on), or without it (sensor=off: the machine's own
// rate). The spawners are either goroutines of this process that fork,
// exec and wait for one process at a time each (spawner=go, one process
// per iteration; Go's fork lock serialises their forks), or shells that
// run the program in a loop (spawner=sh, 200 processes per iteration
// split between them; the highest rate). It reports:
//   - execs/s: the spawn rate reached, from the first spawn to the end of
//     the last process;
//   - lost-execs (sensor=on): spawned execs the sensor did not deliver
//     (the target is 0), found by path once the sensor has caught up;
//   - ring-lost (sensor=on): the kernel's count of events of any process
//     that did not fit in the ring while this ran.
//
// The program is either the tiny static ELF of testproc.TinyELF (amd64), the
// cheapest exec there is, or a copy of /bin/true (dynamically linked: the
// loader maps libc).
func BenchmarkExecRate(b *testing.B) {
	progs := []struct{ name, src string }{{"tiny", ""}, {"true", "/bin/true"}}
	for _, p := range progs {
		for _, sp := range []struct {
			kind string
			n    int
		}{{"go", 1}, {"go", 4}, {"sh", 4}} {
			for _, on := range []bool{true, false} {
				name := fmt.Sprintf("prog=%s/spawner=%s/n=%d/sensor=%s", p.name, sp.kind, sp.n, map[bool]string{true: "on", false: "off"}[on])
				b.Run(name, func(b *testing.B) {
					var data []byte
					if p.src == "" {
						if data = testproc.TinyELF(); data == nil {
							b.Skip("the tiny program is for amd64")
						}
					} else {
						var err error
						if data, err = os.ReadFile(p.src); err != nil {
							b.Skipf("no %s", p.src)
						}
					}
					bin := filepath.Join(b.TempDir(), "prog")
					err := os.WriteFile(bin, data, 0o755)
					if err != nil {
						b.Fatal(err)
					}
					if bin, err = filepath.EvalSymlinks(bin); err != nil {
						b.Fatal(err)
					}
					benchExecRate(b, bin, sp.kind, sp.n, on)
				})
			}
		}
	}
}

// shellBatch is how many processes one iteration of spawner=sh runs.
const shellBatch = 200

func benchExecRate(b *testing.B, bin, kind string, spawners int, on bool) {
	var s *Sensor
	if on {
		s = live(b, Options{})
	} else if os.Geteuid() != 0 {
		b.Skip("compared with sensor=on, which needs root")
	}
	var seen atomic.Int64
	progress := make(chan struct{}, 1)
	if on {
		ctx, cancel := context.WithCancel(context.Background())
		read := make(chan error, 1)
		go func() {
			read <- s.Run(ctx, func(e *Event) error {
				if e.Kind == KindExec && e.Exec.Path == bin {
					seen.Add(1)
					select {
					case progress <- struct{}{}:
					default:
					}
				}
				return nil
			})
		}()
		defer func() {
			cancel()
			if err := <-read; err != nil && !errors.Is(err, context.Canceled) {
				b.Errorf("Run: %v", err)
			}
		}()
	}
	if err := testproc.Spawn(bin); err != nil { // warm the page cache
		b.Fatal(err)
	}
	var lostBefore uint64
	if on {
		lostBefore = s.Stats().Lost
	}

	spawned := int64(1)
	b.ReportAllocs()
	var elapsed time.Duration
	switch kind {
	case "go":
		jobs := make(chan struct{})
		errs := make(chan error, spawners)
		var wg sync.WaitGroup
		for range spawners {
			wg.Go(func() {
				for range jobs {
					if err := testproc.Spawn(bin); err != nil {
						errs <- err
						for range jobs {
						}
						return
					}
				}
			})
		}
		start := time.Now()
		for b.Loop() {
			jobs <- struct{}{}
		}
		close(jobs)
		wg.Wait()
		elapsed = time.Since(start) // the last processes included
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		spawned += int64(b.N)
	case "sh":
		loop := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do %s; i=$((i+1)); done`, shellBatch/spawners, bin)
		for b.Loop() {
			var wg sync.WaitGroup
			errs := make(chan error, spawners)
			for range spawners {
				wg.Go(func() {
					if out, err := exec.Command("/bin/sh", "-c", loop).CombinedOutput(); err != nil {
						errs <- fmt.Errorf("%s: %w\n%s", loop, err, out)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
		}
		elapsed = b.Elapsed()
		spawned += int64(b.N) * int64(shellBatch/spawners*spawners)
	}
	b.ReportMetric(float64(spawned-1)/elapsed.Seconds(), "execs/s")
	if !on {
		return
	}
	// The sensor has caught up when every exec is seen, or when nothing
	// new came for a second (lost ones never come).
	for quiet := time.NewTimer(time.Second); seen.Load() < spawned; {
		select {
		case <-progress:
			quiet.Reset(time.Second)
			continue
		case <-quiet.C:
		}
		break
	}
	b.ReportMetric(float64(spawned-seen.Load()), "lost-execs")
	b.ReportMetric(float64(s.Stats().Lost-lostBefore), "ring-lost")
}
