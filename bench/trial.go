package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"
)

// Subjects used by the trials: valid DaemonEye topics and NATS subjects.
const (
	pubSubTopic = "events.bench.run"
	echoTopic   = "control.bench.echo"
)

// The first payload byte tells warm-up messages from measured ones.
const (
	warmMark     = 'w'
	measuredMark = 'm'
)

// flushTimeout bounds the final flush of a publisher.
const flushTimeout = 30 * time.Second

// env is one system started for one trial: a broker and, for a socket, its
// server. close shuts everything down and waits for it.
type env interface {
	transport() string
	dial(ctx context.Context, name string) (conn, error)
	// dropped returns the messages the broker or server side dropped.
	dropped() uint64
	close()
}

// conn is one client connection. close is done by the env.
type conn interface {
	publish(payload []byte) error
	// flush waits until the server has handled everything published.
	flush(ctx context.Context) error
	// subscribe calls fn for each message on topic, one at a time, on a
	// goroutine of its own; fn must not keep the payload.
	subscribe(ctx context.Context, topic string, fn func(payload []byte)) (sub, error)
	// respond answers every request on topic with its own payload.
	respond(ctx context.Context, topic string) error
	request(ctx context.Context, topic string, payload []byte) error
	// serveRPC answers health-check RPCs on topic, in the DaemonEye
	// envelope; call makes one.
	serveRPC(ctx context.Context, topic string) error
	call(ctx context.Context, topic string) error
	// disconnects counts connections lost other than by close.
	disconnects() uint64
}

type sub interface {
	// dropped counts messages the client dropped for this subscription.
	dropped() uint64
}

// counter counts one subscriber's messages.
type counter struct {
	warm, n        int64
	gotWarm, got   atomic.Int64
	warmDone, done chan struct{}
	lastAt         atomic.Int64 // UnixNano of a recent measured message
}

func newCounter(warm, n int) *counter {
	return &counter{warm: int64(warm), n: int64(n), warmDone: make(chan struct{}), done: make(chan struct{})}
}

// add counts one message; one goroutine calls it per subscriber.
func (c *counter) add(p []byte) {
	if len(p) > 0 && p[0] == warmMark {
		if c.gotWarm.Add(1) == c.warm {
			close(c.warmDone)
		}
		return
	}
	got := c.got.Add(1)
	if got&1023 == 0 || got == c.n {
		c.lastAt.Store(time.Now().UnixNano())
		if got == c.n {
			close(c.done)
		}
	}
}

func warmCount(n int) int { return max(1, min(n/10, 20_000)) }

// pubSubTrial: sc.Subs subscribers on their own connections, one publisher.
func pubSubTrial(ctx context.Context, e env, sc Scenario, cfg *Config) (Trial, error) {
	n, warm := cfg.Msgs, warmCount(cfg.Msgs)
	tr := Trial{Msgs: n, Expected: uint64(n) * uint64(sc.Subs)}
	var conns []conn
	var subs []sub
	counters := make([]*counter, sc.Subs)
	for i := range sc.Subs {
		c, err := e.dial(ctx, fmt.Sprintf("bench-sub-%d", i))
		if err != nil {
			return tr, err
		}
		conns = append(conns, c)
		counters[i] = newCounter(warm, n)
		s, err := c.subscribe(ctx, pubSubTopic, counters[i].add)
		if err != nil {
			return tr, err
		}
		subs = append(subs, s)
	}
	pc, err := e.dial(ctx, "bench-pub")
	if err != nil {
		return tr, err
	}
	conns = append(conns, pc)
	payload := make([]byte, sc.Size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	warmPayload := slices.Clone(payload)
	payload[0], warmPayload[0] = measuredMark, warmMark

	progress := func() int64 {
		var s int64
		for _, c := range counters {
			s += c.gotWarm.Load() + c.got.Load()
		}
		return s
	}
	chans := func(f func(*counter) chan struct{}) []chan struct{} {
		out := make([]chan struct{}, len(counters))
		for i, c := range counters {
			out[i] = f(c)
		}
		return out
	}

	// Warm up: the same connections, topic and sizes.
	for range warm {
		if err := pc.publish(warmPayload); err != nil {
			return tr, fmt.Errorf("warm-up publish: %w", err)
		}
	}
	if err := flushWithin(ctx, pc); err != nil {
		return tr, fmt.Errorf("warm-up flush: %w", err)
	}
	waitAll(ctx, chans(func(c *counter) chan struct{} { return c.warmDone }), progress, cfg.StallTimeout)
	runtime.GC()

	start := time.Now()
	var pubErr error
	for i := range n {
		if pubErr = pc.publish(payload); pubErr != nil {
			pubErr = fmt.Errorf("publish: %w", pubErr)
			break
		}
		if cfg.FlushEvery > 0 && (i+1)%cfg.FlushEvery == 0 {
			if pubErr = flushWithin(ctx, pc); pubErr != nil {
				pubErr = fmt.Errorf("flush: %w", pubErr)
				break
			}
		}
	}
	if pubErr == nil {
		if pubErr = flushWithin(ctx, pc); pubErr != nil {
			pubErr = fmt.Errorf("flush: %w", pubErr)
		}
	}
	pubDone := time.Now()
	tr.Complete = pubErr == nil && waitAll(ctx, chans(func(c *counter) chan struct{} { return c.done }), progress, cfg.StallTimeout)

	// The end is when the last subscriber counted its last message; for a
	// trial cut short, the later of the final flush and the last message
	// seen (counted every 1,024 messages).
	end := start
	if !tr.Complete {
		end = pubDone
	}
	for _, c := range counters {
		tr.Delivered += uint64(c.got.Load())
		end = maxTime(end, time.Unix(0, c.lastAt.Load()))
	}
	end = maxTime(end, start.Add(time.Nanosecond))
	for _, s := range subs {
		tr.Dropped += s.dropped()
	}
	tr.Dropped += e.dropped()
	for _, c := range conns {
		tr.Disconnects += c.disconnects()
	}
	elapsed := end.Sub(start)
	tr.Seconds = elapsed.Seconds()
	tr.PublishSeconds = pubDone.Sub(start).Seconds()
	tr.MsgsPerSec = float64(tr.Delivered) / float64(sc.Subs) / tr.Seconds
	tr.DeliveriesPerSec = float64(tr.Delivered) / tr.Seconds
	return tr, pubErr
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func flushWithin(ctx context.Context, c conn) error {
	ctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	return c.flush(ctx)
}

// waitAll waits until every channel is closed, and reports whether they
// all were. It gives up when ctx ends, or when progress has not changed
// for stall.
func waitAll(ctx context.Context, chans []chan struct{}, progress func() int64, stall time.Duration) bool {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last, lastChange := progress(), time.Now()
	for _, ch := range chans {
		for waiting := true; waiting; {
			select {
			case <-ch:
				waiting = false
			case <-ctx.Done():
				return false
			case <-tick.C:
				if p := progress(); p != last {
					last, lastChange = p, time.Now()
				} else if time.Since(lastChange) > stall {
					return false
				}
			}
		}
	}
	return true
}

// reqReplyTrial: one responder and one caller on separate connections;
// the caller makes sequential requests.
func reqReplyTrial(ctx context.Context, e env, sc Scenario, cfg *Config) (Trial, error) {
	calls := cfg.Requests
	tr := Trial{Calls: calls}
	rc, err := e.dial(ctx, "bench-responder")
	if err != nil {
		return tr, err
	}
	cc, err := e.dial(ctx, "bench-caller")
	if err != nil {
		return tr, err
	}
	serve := func() error { return rc.respond(ctx, echoTopic) }
	payload := make([]byte, sc.Size)
	call := func() error { return cc.request(ctx, echoTopic, payload) }
	if sc.Kind == RPC {
		serve = func() error { return rc.serveRPC(ctx, rpcTopic) }
		call = func() error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return cc.call(cctx, rpcTopic)
		}
	}
	if err := serve(); err != nil {
		return tr, err
	}
	for range max(10, min(calls/10, 1000)) {
		if err := call(); err != nil {
			return tr, fmt.Errorf("warm-up request: %w", err)
		}
	}
	runtime.GC()
	lat := make([]time.Duration, 0, calls)
	start := time.Now()
	var reqErr error
	for range calls {
		t0 := time.Now()
		if reqErr = call(); reqErr != nil {
			reqErr = fmt.Errorf("request %d: %w", len(lat)+1, reqErr)
			break
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	tr.Complete = reqErr == nil
	tr.Seconds = elapsed.Seconds()
	tr.CallsPerSec = float64(len(lat)) / tr.Seconds
	if len(lat) > 0 {
		slices.Sort(lat)
		tr.P50us = quantile(lat, 0.50)
		tr.P99us = quantile(lat, 0.99)
	}
	tr.Dropped = e.dropped()
	tr.Disconnects = rc.disconnects() + cc.disconnects()
	return tr, reqErr
}

// quantile returns the q quantile of sorted durations, in microseconds
// (nearest rank).
func quantile(sorted []time.Duration, q float64) float64 {
	i := int(q*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / float64(time.Microsecond)
}
