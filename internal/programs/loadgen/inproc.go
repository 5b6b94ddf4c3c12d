package loadgen

import (
	"context"
	"errors"
	"fmt"

	"github.com/daemoneye/daemoneye/eventbus"
)

// inproc runs publishers and subscribers against an eventbus.Broker in
// this process, with the default subscription options (queues of 10,000
// messages, overflow policy block).
type inproc struct {
	b *eventbus.Broker
}

func newInproc() (*inproc, error) {
	b, err := eventbus.New(eventbus.Options{})
	if err != nil {
		return nil, fmt.Errorf("bench: start the broker: %w", err)
	}
	return &inproc{b: b}, nil
}

func (h *inproc) subscriber(_ context.Context, i int, pattern string) (receiver, error) {
	s, err := h.b.Subscribe(pattern, eventbus.SubscribeOptions{Name: fmt.Sprintf("bench-sub-%d", i)})
	if err != nil {
		return nil, fmt.Errorf("bench: subscriber %d: %w", i, err)
	}
	return inprocSub{i, s}, nil
}

func (h *inproc) publisher(context.Context, int) (sender, error) { return h, nil }

func (h *inproc) brokerDropped() (uint64, bool) { return h.b.Stats().Dropped.Total(), true }

func (h *inproc) close() { h.b.Close() }

type inprocSub struct {
	index int
	s     *eventbus.Subscription
}

func (r inprocSub) receive(ctx context.Context, st *subState, want int64) error {
	for st.got < want {
		d, err := r.s.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return fmt.Errorf("bench: subscriber %d, after %d of %d messages: %w", r.index, st.got, want, err)
		}
		st.take(d.Payload)
	}
	st.finish(want)
	return nil
}

func (inprocSub) dropped() uint64 { return 0 } // the broker counts them all

// slabBytes bounds the payload memory a publisher allocates at once.
const slabBytes = 64 << 10

// send publishes job.n messages. The broker never copies a payload, so a
// payload that carries a send time cannot be reused: those are cut from
// slabs of up to slabBytes, which costs one allocation per slab rather
// than one per message. The other messages share one zeroed payload,
// which nobody writes.
func (h *inproc) send(ctx context.Context, job *pubJob) error {
	shared := make([]byte, job.size)
	m := eventbus.Message{Topic: job.topic}
	perSlab := max(1, slabBytes/max(job.size, 1))
	var slab []byte
	for i := range job.n {
		if err := job.pace.wait(ctx, i); err != nil {
			return nil // the run is ending; the coordinator reports why
		}
		m.Payload = shared
		if job.stamped(i) {
			if len(slab) < job.size {
				slab = make([]byte, job.size*min(perSlab, (job.n-i+job.every-1)/job.every))
			}
			m.Payload, slab = slab[:job.size:job.size], slab[job.size:]
			job.stamp(m.Payload, i)
		}
		// A message some subscriber could not take in time is counted by
		// the broker and reported as dropped; it does not end the run.
		if err := h.b.Publish(ctx, m); err != nil && !errors.Is(err, eventbus.ErrSlowConsumer) && !errors.Is(err, eventbus.ErrQueueFull) {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("bench: publisher %d: %w", job.index, err)
		}
		if i%progressEvery == progressEvery-1 {
			job.published.Add(progressEvery)
			if ctx.Err() != nil {
				return nil
			}
		}
	}
	job.published.Add(int64(job.n % progressEvery))
	return nil
}
