package eventbus

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The stop message follows the measured ones on the same subscription, and
// in the same priority, so it arrives last.
const stopTopic = "events.bench.stop"

// consume reads s until the stop message and returns how many it got.
func consume(s *Subscription) (n int) {
	for {
		d, err := s.Next(context.Background())
		if err != nil || d.Topic == stopTopic {
			return n
		}
		n++
	}
}

// benchPubSub measures publish->receive end to end: from the first publish
// until every subscriber has taken the stop message that follows the last.
func benchPubSub(b *testing.B, pubs, subs, size int) {
	br, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	var wg sync.WaitGroup
	got := make([]int, subs)
	for i := range subs {
		s, err := br.Subscribe("events.bench.#", SubscribeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { got[i] = consume(s) })
	}
	payload := make([]byte, size)
	ctx := context.Background()
	var published atomic.Int64
	b.ReportAllocs()
	b.SetBytes(int64(size))
	start := time.Now()
	if pubs == 1 {
		m := Message{Topic: "events.bench.p0", Payload: payload}
		n := int64(0)
		for b.Loop() {
			if err := br.Publish(ctx, m); err != nil {
				b.Fatal(err)
			}
			n++
		}
		published.Store(n)
	} else {
		// RunParallel runs GOMAXPROCS*p goroutines; pick p for pubs of them.
		b.SetParallelism(pubs / runtime.GOMAXPROCS(0))
		var ids atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			m := Message{Topic: fmt.Sprintf("events.bench.p%d", ids.Add(1)), Payload: payload}
			n := int64(0)
			for pb.Next() {
				if err := br.Publish(ctx, m); err != nil {
					b.Error(err)
					return
				}
				n++
			}
			published.Add(n)
		})
	}
	if err := br.Publish(ctx, Message{Topic: stopTopic}); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	elapsed := time.Since(start)
	n := int(published.Load())
	for i, g := range got {
		if g != n {
			b.Fatalf("subscriber %d received %d of %d", i, g, n)
		}
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	if subs > 1 {
		b.ReportMetric(float64(n*subs)/elapsed.Seconds(), "deliveries/s")
	}
}

func BenchmarkPubSub(b *testing.B) {
	for _, shape := range []struct {
		name       string
		pubs, subs int
	}{{"1:1", 1, 1}, {"1:10", 1, 10}, {"10:1", 10, 1}} {
		for _, size := range []int{16, 128, 1024} {
			b.Run(fmt.Sprintf("%s/%dB", shape.name, size), func(b *testing.B) {
				benchPubSub(b, shape.pubs, shape.subs, size)
			})
		}
	}
}

// BenchmarkPublishNoSubscribers is the cost of the publish path alone:
// route lookup, sequence, counters.
func BenchmarkPublishNoSubscribers(b *testing.B) {
	br, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	m := Message{Topic: "events.process.lifecycle", Payload: make([]byte, 128)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := br.Publish(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubscriptionMemory reports the heap held by 10,000
// subscriptions: 9,000 literal, 900 with '+', 100 with '#'.
func BenchmarkSubscriptionMemory(b *testing.B) {
	const n = 10000
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var perSub float64
	for b.Loop() {
		b.StopTimer()
		before := heap()
		br, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for i := range n {
			var p string
			switch {
			case i < 9000:
				p = fmt.Sprintf("events.host%d.proc%d.exec", i%100, i)
			case i < 9900:
				p = fmt.Sprintf("events.host%d.+.exec", i)
			default:
				p = fmt.Sprintf("events.host%d.#", i)
			}
			if _, err := br.Subscribe(p, SubscribeOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		held := heap() - before
		perSub = float64(held) / n
		b.ReportMetric(float64(held)/(1<<20), "MiB/10k-subs")
		runtime.KeepAlive(br)
		br.Close()
		b.StartTimer()
	}
	b.ReportMetric(perSub, "B/sub")
}
