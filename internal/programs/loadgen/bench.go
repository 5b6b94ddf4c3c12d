package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Result is what a run measured. In JSON, latencies are in microseconds
// and are null when the run measured none (payloads under StampSize bytes,
// or no subscriber).
type Result struct {
	Transport Transport `json:"transport"`
	// Broker is "self-started" when Run started the broker, or the address
	// of the broker measured.
	Broker string `json:"broker"`
	Pubs   int    `json:"pubs"`
	Subs   int    `json:"subs"`
	Size   int    `json:"size"`
	Msgs   int    `json:"msgs"`
	Rate   int    `json:"rate"` // per publisher; 0 means as fast as possible

	Published int64 `json:"published"` // messages the publishers sent
	Delivered int64 `json:"delivered"` // messages the subscribers received, in all
	// Dropped is the number of deliveries that did not arrive: Msgs × Subs
	// − Delivered, wherever they were lost.
	Dropped int64 `json:"dropped"`
	// BrokerDropped is what the broker counted as dropped (null when Run
	// did not start the broker and cannot ask it); ClientDropped is what
	// the subscribers' connections dropped because their buffer was full.
	BrokerDropped *uint64 `json:"broker_dropped"`
	ClientDropped uint64  `json:"client_dropped"`

	// ElapsedS runs from the first publish to the last delivery (to the
	// end of publishing if nothing was delivered), in seconds. When some
	// deliveries are missing, the last one measured is the last that
	// carried a send time.
	ElapsedS float64 `json:"elapsed_s"`
	// PublishS runs from the first publish until every publisher has
	// finished, including its final flush, in seconds.
	PublishS float64 `json:"publish_s"`
	// MsgsPerSec is Msgs / ElapsedS: the rate at which messages went
	// through the bus, end to end.
	MsgsPerSec float64 `json:"msgs_per_sec"`
	// PubMsgsPerSec is Published / PublishS: the rate at which the
	// publishers could hand messages over. It exceeds MsgsPerSec when the
	// broker or a connection buffers what the subscribers have not taken.
	PubMsgsPerSec float64 `json:"pub_msgs_per_sec"`
	// DeliveriesPerSec is Delivered / ElapsedS, over all subscribers.
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	// MBPerSec is Msgs × Size / ElapsedS, in 10^6 bytes per second.
	MBPerSec float64 `json:"mb_per_sec"`

	// SampleEvery is how many messages apart a publisher put a send time
	// into a payload; LatencySamples is the number of deliveries whose
	// latency was measured.
	SampleEvery    int      `json:"sample_every"`
	LatencySamples uint64   `json:"latency_samples"`
	P50us          *float64 `json:"p50_us"`
	P90us          *float64 `json:"p90_us"`
	P99us          *float64 `json:"p99_us"`
	MaxUs          *float64 `json:"max_us"`
	MeanUs         *float64 `json:"mean_us"`
}

// harness is the broker side of a transport: it makes the run's
// publishers and subscribers, and releases everything when closed.
type harness interface {
	subscriber(ctx context.Context, i int, pattern string) (receiver, error)
	publisher(ctx context.Context, i int) (sender, error)
	// brokerDropped returns the drops the broker counted, if it can.
	brokerDropped() (uint64, bool)
	close()
}

// receiver takes messages until want have arrived or ctx ends, recording
// each in st. It returns nil when ctx ends.
type receiver interface {
	receive(ctx context.Context, st *subState, want int64) error
	// dropped returns what the subscriber's side dropped.
	dropped() uint64
}

// sender publishes job.n messages to job.topic.
type sender interface {
	send(ctx context.Context, job *pubJob) error
}

// progressEvery is how many messages a publisher or subscriber handles
// between updates of its shared progress counter.
const progressEvery = 64

// subState is what one subscriber measured. Only its goroutine writes it,
// except progress, which the coordinator reads while the run lasts.
type subState struct {
	start    time.Time
	hist     Histogram
	got      int64
	last     time.Duration // since start, when the last message arrived
	progress atomic.Int64  // got, every progressEvery messages
}

// take records a message that has just arrived. It reads the clock only
// for a message that carries a send time.
func (s *subState) take(payload []byte) {
	if len(payload) >= StampSize {
		if sent := binary.LittleEndian.Uint64(payload); sent != 0 {
			now := time.Since(s.start)
			s.hist.Record(now - time.Duration(sent))
			s.last = now
		}
	}
	if s.got++; s.got%progressEvery == 0 {
		s.progress.Store(s.got)
	}
}

// finish ends the subscriber's receive loop. If every message arrived, the
// last one arrived just now.
func (s *subState) finish(want int64) {
	if s.got == want {
		s.last = time.Since(s.start)
	}
	s.progress.Store(s.got)
}

// pubJob is one publisher's share of the run.
type pubJob struct {
	index     int
	topic     string
	n         int
	size      int
	every     int // a send time goes into every every-th message
	start     time.Time
	pace      pacer
	published *atomic.Int64 // shared by all publishers
}

// stamped reports whether message i carries a send time.
func (j *pubJob) stamped(i int) bool { return j.size >= StampSize && i%j.every == 0 }

// stamp writes the send time of message i into p: the time since the run's
// start (at least 1 ns), or 0 when i is not to carry one.
func (j *pubJob) stamp(p []byte, i int) {
	var t uint64
	if j.stamped(i) {
		t = uint64(max(time.Since(j.start), 1))
	}
	binary.LittleEndian.PutUint64(p, t)
}

// pacer spaces a publisher's messages at a fixed rate.
type pacer struct {
	start    time.Time
	interval time.Duration // 0: no pacing
	offset   time.Duration // staggers the publishers within an interval
	timer    *time.Timer
}

// wait returns when message i is due, or with ctx's error.
func (p *pacer) wait(ctx context.Context, i int) error {
	if p.interval == 0 {
		return nil
	}
	due := p.offset + time.Duration(float64(i)*float64(p.interval))
	d := due - time.Since(p.start)
	if d <= 0 {
		return nil // behind schedule: catch up
	}
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-p.timer.C:
		return nil
	case <-ctx.Done():
		p.timer.Stop()
		return ctx.Err()
	}
}

// Run measures cfg: it starts the broker unless cfg.Addr names one,
// subscribes every subscriber, then runs the publishers and waits until
// every subscriber has every message, or until nothing has arrived for
// cfg.IdleTimeout after the publishers finished. Messages that never
// arrived are reported as dropped, not as an error. Every wait is bounded:
// by ctx, by the idle timeout, or by the client's dial and flush timeouts.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.SampleEvery == 0 {
		cfg.SampleEvery = DefaultSampleEvery(cfg.Transport, cfg.Rate)
	}
	var (
		h   harness
		err error
	)
	if cfg.Transport == Inproc {
		h, err = newInproc()
	} else {
		h, err = newSocket(&cfg)
	}
	if err != nil {
		return Result{}, err
	}
	defer h.close()

	prefix := "events.bench." + runID()
	recvs := make([]receiver, cfg.Subs)
	for i := range recvs {
		if recvs[i], err = h.subscriber(ctx, i, prefix+".#"); err != nil {
			return Result{}, err
		}
	}
	sends := make([]sender, cfg.Pubs)
	for i := range sends {
		if sends[i], err = h.publisher(ctx, i); err != nil {
			return Result{}, err
		}
	}
	return measure(ctx, &cfg, prefix, recvs, sends, h)
}

// measure runs the publishers and subscribers and collects the result.
func measure(ctx context.Context, cfg *Config, prefix string, recvs []receiver, sends []sender, h harness) (Result, error) {
	runCtx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	recvCtx, stopRecv := context.WithCancel(runCtx)
	defer stopRecv()

	want := int64(cfg.Msgs)
	deliveries := want * int64(cfg.Subs)
	start := time.Now()
	states := make([]subState, cfg.Subs)
	var subsWG, pubsWG sync.WaitGroup
	for i, r := range recvs {
		states[i].start = start
		subsWG.Go(func() {
			if err := r.receive(recvCtx, &states[i], want); err != nil {
				fail(err)
			}
		})
	}
	var published atomic.Int64
	for i, s := range sends {
		job := &pubJob{
			index: i, topic: fmt.Sprintf("%s.p%d", prefix, i), n: cfg.share(i), size: cfg.Size, every: cfg.SampleEvery,
			start: start, published: &published, pace: pacer{start: start},
		}
		if cfg.Rate > 0 {
			job.pace.interval = time.Second / time.Duration(cfg.Rate)
			job.pace.offset = job.pace.interval * time.Duration(i) / time.Duration(cfg.Pubs)
		}
		pubsWG.Go(func() {
			if err := s.send(runCtx, job); err != nil {
				fail(err)
			}
		})
	}
	pubsDone, subsDone := done(&pubsWG), done(&subsWG)

	delivered := func() (n int64) {
		for i := range states {
			n += states[i].progress.Load()
		}
		return n
	}
	report := func() {
		if cfg.Progress != nil {
			cfg.Progress(Progress{Elapsed: time.Since(start), Published: published.Load(), Msgs: want,
				Delivered: delivered(), Deliveries: deliveries})
		}
	}
	tick := time.NewTicker(max(time.Millisecond, min(200*time.Millisecond, cfg.IdleTimeout/4)))
	defer tick.Stop()
	var publishTime time.Duration
	pubsRunning, subsRunning := true, true
	lastSeen, lastChange := int64(-1), time.Now()
	for pubsRunning || subsRunning {
		select {
		case <-pubsDone:
			publishTime, pubsRunning, pubsDone = time.Since(start), false, nil
			lastChange = time.Now()
		case <-subsDone:
			subsRunning, subsDone = false, nil
		case <-runCtx.Done():
			stopRecv()
			pubsWG.Wait()
			subsWG.Wait()
			return Result{}, runErr(ctx, runCtx, start)
		case <-tick.C:
			report()
			if n := delivered(); n != lastSeen {
				lastSeen, lastChange = n, time.Now()
			} else if !pubsRunning && time.Since(lastChange) >= cfg.IdleTimeout {
				stopRecv() // give up on the missing messages
			}
		}
	}

	if runCtx.Err() != nil { // a publisher or subscriber failed as the run ended
		return Result{}, runErr(ctx, runCtx, start)
	}
	r := Result{
		Transport: cfg.Transport, Broker: "self-started", Pubs: cfg.Pubs, Subs: cfg.Subs, Size: cfg.Size,
		Msgs: cfg.Msgs, Rate: cfg.Rate, SampleEvery: cfg.SampleEvery, Published: published.Load(),
	}
	if cfg.Addr != "" {
		r.Broker = cfg.Addr
	}
	var hist Histogram
	var last time.Duration
	for i := range states {
		st := &states[i]
		hist.Merge(&st.hist)
		r.Delivered += st.got
		last = max(last, st.last)
		r.ClientDropped += recvs[i].dropped()
	}
	if cfg.Progress != nil {
		cfg.Progress(Progress{Elapsed: time.Since(start), Published: r.Published, Msgs: want,
			Delivered: r.Delivered, Deliveries: deliveries})
	}
	r.Dropped = deliveries - r.Delivered
	if n, ok := h.brokerDropped(); ok {
		r.BrokerDropped = &n
	}
	elapsed := last
	if last == 0 { // nothing delivered, or no send time among what was
		elapsed = publishTime
	}
	sec, pubSec := max(elapsed.Seconds(), 1e-9), max(publishTime.Seconds(), 1e-9)
	r.ElapsedS, r.PublishS = elapsed.Seconds(), publishTime.Seconds()
	r.MsgsPerSec = float64(cfg.Msgs) / sec
	r.PubMsgsPerSec = float64(r.Published) / pubSec
	r.DeliveriesPerSec = float64(r.Delivered) / sec
	r.MBPerSec = float64(cfg.Msgs) * float64(cfg.Size) / sec / 1e6
	if r.LatencySamples = hist.Count(); r.LatencySamples > 0 {
		r.P50us = micros(hist.Quantile(0.50))
		r.P90us = micros(hist.Quantile(0.90))
		r.P99us = micros(hist.Quantile(0.99))
		r.MaxUs = micros(hist.Max())
		r.MeanUs = micros(hist.Mean())
	}
	return r, nil
}

// runErr returns why the run ended early: ctx was cancelled (the user
// interrupted it), or a publisher or subscriber failed.
func runErr(ctx, runCtx context.Context, start time.Time) error {
	if ctx.Err() != nil {
		return fmt.Errorf("bench: interrupted after %v: %w", time.Since(start).Round(time.Millisecond), context.Cause(ctx))
	}
	return context.Cause(runCtx)
}

// done returns a channel closed when wg's goroutines have all returned.
func done(wg *sync.WaitGroup) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		wg.Wait()
		close(c)
	}()
	return c
}

func micros(d time.Duration) *float64 {
	us := float64(d) / float64(time.Microsecond)
	return &us
}

// runID returns a random topic segment, so that runs against one broker
// do not receive each other's messages.
func runID() string {
	var b [4]byte
	rand.Read(b[:])
	return "r" + hex.EncodeToString(b[:])
}
