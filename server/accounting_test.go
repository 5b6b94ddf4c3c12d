package server

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
)

// Every message the broker accepts is delivered, dropped (by reason) or
// unrouted, even when the connections close while a publisher runs at full
// speed: through a graceful Shutdown, and when the subscriber goes away
// mid-stream. The broker's final stats must add up exactly, and what it
// counts as delivered is what reached the subscriber's socket: a subscriber
// that reads to the end of the stream receives exactly that many; one that
// closes early receives at most that many (the rest was in its kernel
// socket buffer, written by the server, when it closed).
func TestNoUncountedLossOnClose(t *testing.T) {
	for _, tc := range []struct {
		name      string
		subCloses bool // the subscriber closes after some deliveries; else it reads to the end
	}{
		{"shutdown", false},
		{"subscriber closes", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 20 {
				accountingRound(t, i, tc.subCloses)
			}
		})
	}
}

func accountingRound(t *testing.T, round int, subCloses bool) {
	path, srv, b := start(t, Options{MaxPending: 256 << 10})
	sub, pub := dial(t, path), dial(t, path)
	sub.send(subscribeFrame(1, "events.#"))
	sub.sync()

	frame := wire.AppendPublish(nil, &wire.Publish{Topic: []byte("events.a"), Payload: make([]byte, 100)})
	var burst []byte
	for range 64 {
		burst = append(burst, frame...)
	}
	pubDone := make(chan struct{})
	go func() { // the publisher's reader: stop at goaway or the end
		defer close(pubDone)
		pub.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		for {
			f, err := pub.r.ReadFrame()
			if err != nil || f.Type == wire.TypeGoAway {
				pub.nc.Close()
				return
			}
		}
	}()
	pubWrote := make(chan struct{})
	go func() {
		defer close(pubWrote)
		for {
			pub.nc.SetWriteDeadline(time.Now().Add(60 * time.Second))
			if _, err := pub.nc.Write(burst); err != nil {
				return
			}
		}
	}()

	const closeAfter = 3000
	got := 0
	for {
		sub.nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		f, err := sub.r.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("round %d: subscriber: %v", round, err)
			}
			break
		}
		if f.Type == wire.TypeDeliver {
			got++
		}
		if got == closeAfter {
			if subCloses {
				sub.nc.Close()
				break
			}
			go func() { // shut down with the subscriber still reading
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				defer cancel()
				srv.Shutdown(ctx) // the subscriber never leaves by itself: forced after ctx
			}()
		}
	}
	if subCloses {
		wait.Until(t, 20*time.Second, "the subscriber's connection to end", func() bool { return len(srv.liveConns()) <= 1 })
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := srv.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: shutdown: %v", round, err)
		}
	}
	<-pubDone
	<-pubWrote
	srv.Close() // waits for every connection's goroutines
	st := b.Stats()
	if sum := st.Delivered + st.Dropped.Total() + st.Unrouted; sum != st.Published {
		t.Errorf("round %d: published %d, but delivered %d + dropped %d %+v + unrouted %d = %d: %d uncounted",
			round, st.Published, st.Delivered, st.Dropped.Total(), st.Dropped, st.Unrouted, sum, int64(st.Published)-int64(sum))
	}
	if subCloses {
		if uint64(got) > st.Delivered {
			t.Errorf("round %d: the subscriber received %d, more than the %d the broker counts delivered", round, got, st.Delivered)
		}
	} else if uint64(got) != st.Delivered {
		t.Errorf("round %d: the subscriber received %d, the broker counts %d delivered (dropped %+v)", round, got, st.Delivered, st.Dropped)
	}
}
