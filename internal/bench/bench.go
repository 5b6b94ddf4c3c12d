package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
)

// SampleEvery is how often a publisher stamps a message with its send time.
const SampleEvery = 64

// sampleMarker opens a stamped payload; unstamped payloads are all zero.
const sampleMarker = 0xD1

// minStampSize is the smallest payload that can carry a stamp.
const minStampSize = 9

// Config describes one run. The zero value of a field means its default.
type Config struct {
	// Pubs is the number of publishers (default 1).
	Pubs int
	// Subs is the number of subscribers; each receives every message
	// (default 1).
	Subs int
	// Size is the payload size in bytes (default 128). Payloads under 9
	// bytes carry no latency stamp.
	Size int
	// Msgs is the number of messages published in all (default 1,000,000),
	// split evenly across publishers.
	Msgs int
	// Progress, if set, is called about five times a second with the
	// number of messages received so far (by all subscribers) and the
	// number expected. It is called from one goroutine.
	Progress func(received, expected int)
}

func (c *Config) normalize() error {
	if c.Pubs < 0 || c.Subs < 0 || c.Size < 0 || c.Msgs < 0 {
		return errors.New("bench: --pub, --sub, --size and --msgs must not be negative")
	}
	c.Pubs = cmpOr(c.Pubs, 1)
	c.Subs = cmpOr(c.Subs, 1)
	c.Size = cmpOr(c.Size, 128)
	c.Msgs = cmpOr(c.Msgs, 1_000_000)
	if c.Msgs < c.Pubs {
		c.Msgs = c.Pubs
	}
	return nil
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Result is what a run measured. Durations are reported in microseconds
// in JSON.
type Result struct {
	Transport        string  `json:"transport"`
	Pubs             int     `json:"pubs"`
	Subs             int     `json:"subs"`
	Size             int     `json:"size"`
	Msgs             int     `json:"msgs"`
	Seconds          float64 `json:"seconds"`
	MsgsPerSec       float64 `json:"msgs_per_sec"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	MBPerSec         float64 `json:"mb_per_sec"`
	P50us            float64 `json:"p50_us"`
	P90us            float64 `json:"p90_us"`
	P99us            float64 `json:"p99_us"`
	Samples          int     `json:"latency_samples"`
	Dropped          uint64  `json:"dropped"`
}

// Inproc runs cfg against a fresh in-process broker. Subscriptions use the
// default block overflow policy, so the figure is the rate the broker
// sustains without losing messages.
func Inproc(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.normalize(); err != nil {
		return Result{}, err
	}
	b, err := eventbus.New(eventbus.Options{})
	if err != nil {
		return Result{}, err
	}
	defer b.Close()

	var received atomic.Int64
	lat := make([][]time.Duration, cfg.Subs)
	subs := make([]*eventbus.Subscription, cfg.Subs)
	for i := range subs {
		if subs[i], err = b.Subscribe("events.bench.#", eventbus.SubscribeOptions{Name: fmt.Sprintf("bench-sub-%d", i)}); err != nil {
			return Result{}, err
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, cfg.Pubs+cfg.Subs)
	for i, s := range subs {
		wg.Go(func() {
			samples, err := receive(runCtx, s, cfg.Msgs, &received)
			lat[i] = samples
			if err != nil {
				errc <- err
				cancel()
			}
		})
	}
	progressDone := make(chan struct{})
	var progress sync.WaitGroup
	if cfg.Progress != nil {
		progress.Go(func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					cfg.Progress(int(received.Load()), cfg.Msgs*cfg.Subs)
				case <-progressDone:
					return
				}
			}
		})
	}
	start := time.Now()
	var pubs sync.WaitGroup
	for p := range cfg.Pubs {
		n := cfg.Msgs / cfg.Pubs
		if p < cfg.Msgs%cfg.Pubs {
			n++
		}
		pubs.Go(func() {
			if err := publish(runCtx, b, fmt.Sprintf("events.bench.p%d", p), n, cfg.Size); err != nil {
				errc <- err
				cancel()
			}
		})
	}
	pubs.Wait()
	wg.Wait()
	elapsed := time.Since(start)
	close(progressDone)
	progress.Wait()
	if cfg.Progress != nil {
		cfg.Progress(int(received.Load()), cfg.Msgs*cfg.Subs)
	}
	select {
	case err := <-errc:
		return Result{}, err
	default:
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	sec := elapsed.Seconds()
	return Result{
		Transport: "inproc", Pubs: cfg.Pubs, Subs: cfg.Subs, Size: cfg.Size, Msgs: cfg.Msgs,
		Seconds:          sec,
		MsgsPerSec:       float64(cfg.Msgs) / sec,
		DeliveriesPerSec: float64(cfg.Msgs*cfg.Subs) / sec,
		MBPerSec:         float64(cfg.Msgs*cfg.Size) / sec / 1e6,
		P50us:            percentile(all, 0.50),
		P90us:            percentile(all, 0.90),
		P99us:            percentile(all, 0.99),
		Samples:          len(all),
		Dropped:          b.Stats().Dropped.Total(),
	}, nil
}

// publish sends n messages to name. Every SampleEvery-th message gets a
// payload of its own that carries the send time; the others share one
// zeroed payload, which the broker never copies and nobody modifies.
func publish(ctx context.Context, b *eventbus.Broker, name string, n, size int) error {
	shared := make([]byte, size)
	m := eventbus.Message{Topic: name, Payload: shared}
	for i := range n {
		m.Payload = shared
		if size >= minStampSize && i%SampleEvery == 0 {
			p := make([]byte, size)
			p[0] = sampleMarker
			binary.LittleEndian.PutUint64(p[1:], uint64(time.Now().UnixNano()))
			m.Payload = p
		}
		if err := b.Publish(ctx, m); err != nil {
			return fmt.Errorf("bench: publish: %w", err)
		}
	}
	return nil
}

// receive takes want messages from s and returns the sampled latencies.
func receive(ctx context.Context, s *eventbus.Subscription, want int, received *atomic.Int64) ([]time.Duration, error) {
	samples := make([]time.Duration, 0, want/SampleEvery+1)
	for got := 0; got < want; got++ {
		d, err := s.Next(ctx)
		if err != nil {
			return samples, fmt.Errorf("bench: %s received %d of %d: %w", s.Name(), got, want, err)
		}
		if len(d.Payload) >= minStampSize && d.Payload[0] == sampleMarker {
			sent := int64(binary.LittleEndian.Uint64(d.Payload[1:]))
			samples = append(samples, time.Duration(time.Now().UnixNano()-sent))
		}
		if got%1024 == 1023 {
			received.Add(1024)
		}
	}
	received.Add(int64(want % 1024))
	return samples, nil
}

// percentile returns the q-quantile of sorted, in microseconds.
func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, int(q*float64(len(sorted))))
	return float64(sorted[i]) / float64(time.Microsecond)
}
