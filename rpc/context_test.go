package rpc

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestHandlerContext(t *testing.T) {
	// In a synctest bubble time.Sleep moves the fake clock: the sleeps
	// below are the deadline under test, not a wait for other goroutines
	// (synctest.Wait is that).
	bubble := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) { synctest.Test(t, f) })
	}
	bubble("deadline with Done", func(t *testing.T) {
		c := newHandlerContext(t.Context(), time.Now().Add(time.Second), nil)
		defer c.release()
		if d, ok := c.Deadline(); !ok || !d.Equal(time.Now().Add(time.Second)) {
			t.Errorf("Deadline = %v, %v", d, ok)
		}
		done := c.Done()
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("done before the deadline")
		default:
		}
		if c.Err() != nil {
			t.Fatal("Err before the deadline")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("not done at the deadline")
		}
		if !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Errorf("Err = %v", c.Err())
		}
	})
	bubble("deadline without Done", func(t *testing.T) {
		c := newHandlerContext(t.Context(), time.Now().Add(time.Second), nil)
		defer c.release()
		time.Sleep(time.Second)
		if !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Errorf("Err = %v", c.Err())
		}
		select {
		case <-c.Done(): // closed from the start
		default:
			t.Error("Done after the deadline is not closed")
		}
	})
	bubble("parent cancelled", func(t *testing.T) {
		parent, cancel := context.WithCancel(t.Context())
		c := newHandlerContext(parent, time.Time{}, nil)
		defer c.release()
		if _, ok := c.Deadline(); ok {
			t.Error("a deadline without one")
		}
		done := c.Done()
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("not done when the parent was cancelled")
		}
		if !errors.Is(c.Err(), context.Canceled) {
			t.Errorf("Err = %v", c.Err())
		}
	})
	bubble("parent deadline earlier", func(t *testing.T) {
		parent, cancel := context.WithTimeout(t.Context(), time.Millisecond)
		defer cancel()
		c := newHandlerContext(parent, time.Now().Add(time.Hour), nil)
		defer c.release()
		if d, _ := c.Deadline(); !d.Equal(time.Now().Add(time.Millisecond)) {
			t.Errorf("Deadline = %v, want the parent's", d)
		}
		<-c.Done()
		if !errors.Is(c.Err(), context.DeadlineExceeded) {
			t.Errorf("Err = %v", c.Err())
		}
	})
	bubble("release", func(t *testing.T) {
		c := newHandlerContext(t.Context(), time.Now().Add(time.Hour), nil)
		child, cancel := context.WithCancel(c) // a handler's own child
		defer cancel()
		c.release()
		<-child.Done()
		if !errors.Is(c.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) {
			t.Errorf("after release: %v, child %v", c.Err(), child.Err())
		}
		if c.Value(correlationKey{}) != nil {
			t.Error("a value from nowhere")
		}
	})
}
