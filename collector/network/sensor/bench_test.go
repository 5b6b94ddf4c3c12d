//go:build linux

package sensor

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkEventRate: each op is a new UDP socket's first sendto (one
// event); the sensor's reader counts them. It reports the events read per
// second and the events lost.
func BenchmarkEventRate(b *testing.B) {
	s := live(b, Options{RingBytes: 4 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Uint64
	var wg sync.WaitGroup
	wg.Go(func() {
		s.Run(ctx, func(e *Event) error {
			if e.Kind == KindUDPSend {
				n.Add(1)
			}
			return nil
		})
	})
	dst := &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}}
	msg := []byte("x")
	start := time.Now()
	for b.Loop() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		unix.Sendto(fd, msg, 0, dst)
		unix.Close(fd)
	}
	elapsed := time.Since(start)
	want := uint64(b.N)
	deadline := time.Now().Add(5 * time.Second)
	for n.Load()+s.Stats().LostUDPSend < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling the reader's counter, not synchronising
	}
	cancel()
	wg.Wait()
	b.ReportMetric(float64(n.Load())/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(s.Stats().LostUDPSend), "lost")
}
