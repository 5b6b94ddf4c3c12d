package wait

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTB records what Until and For report instead of failing the test
// that runs them. Fatalf ends the calling goroutine as testing.T's does.
type fakeTB struct {
	testing.TB // nil: calling anything not overridden panics
	mu         sync.Mutex
	failed     bool
	msg        string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls fn with a fakeTB on a goroutine of its own (Fatalf ends it)
// and returns whether it failed, with what message, and whether fn
// returned normally.
func run(fn func(testing.TB)) (failed bool, msg string, returned bool) {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
		returned = true
	}()
	<-done
	return f.failed, f.msg, returned
}

// after returns a condition that is false for its first n calls and true
// from then on, and the count of calls.
func after(n int) (func() bool, *int) {
	calls := 0
	return func() bool { calls++; return calls > n }, &calls
}

func TestUntil(t *testing.T) {
	for _, tc := range []struct {
		name     string
		timeout  time.Duration
		falseFor int // calls before cond holds; -1: never
		wantFail bool
	}{
		{"holds at once", time.Second, 0, false},
		{"holds after a few checks", 5 * time.Second, 3, false},
		{"never holds", 30 * time.Millisecond, -1, true},
		{"zero timeout, holds", 0, 0, false},
		{"zero timeout, does not hold", 0, -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cond, calls := after(tc.falseFor)
			if tc.falseFor < 0 {
				cond, calls = after(int(^uint(0) >> 1))
			}
			start := time.Now()
			failed, msg, returned := run(func(tb testing.TB) { Until(tb, tc.timeout, "the answer", cond) })
			took := time.Since(start)
			if failed != tc.wantFail || returned == tc.wantFail {
				t.Fatalf("failed = %v (%q), returned = %v; want failed = %v", failed, msg, returned, tc.wantFail)
			}
			if !tc.wantFail {
				if *calls != tc.falseFor+1 {
					t.Errorf("cond called %d times, want %d", *calls, tc.falseFor+1)
				}
				return
			}
			want := fmt.Sprintf("timed out after %v waiting for the answer", tc.timeout)
			if msg != want {
				t.Errorf("message %q, want %q", msg, want)
			}
			if took < tc.timeout {
				t.Errorf("gave up after %v, before the timeout %v", took, tc.timeout)
			}
			if tc.timeout > 0 && *calls < 2 {
				t.Errorf("cond called %d times in %v, want it polled", *calls, tc.timeout)
			}
		})
	}
}

func TestFor(t *testing.T) {
	errNotYet := errors.New("not yet")
	for _, tc := range []struct {
		name     string
		timeout  time.Duration
		errsFor  int // calls that return an error; -1: all
		wantFail bool
	}{
		{"nil at once", time.Second, 0, false},
		{"nil after a few errors", 5 * time.Second, 3, false},
		{"never nil", 30 * time.Millisecond, -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			check := func() error {
				calls++
				if tc.errsFor < 0 || calls <= tc.errsFor {
					return fmt.Errorf("check %d: %w", calls, errNotYet)
				}
				return nil
			}
			failed, msg, returned := run(func(tb testing.TB) { For(tb, tc.timeout, "the answer", check) })
			if failed != tc.wantFail || returned == tc.wantFail {
				t.Fatalf("failed = %v (%q), returned = %v; want failed = %v", failed, msg, returned, tc.wantFail)
			}
			if !tc.wantFail {
				if calls != tc.errsFor+1 {
					t.Errorf("check called %d times, want %d", calls, tc.errsFor+1)
				}
				return
			}
			// The message carries the last error, not the first.
			want := fmt.Sprintf("timed out after %v waiting for the answer: check %d: not yet", tc.timeout, calls)
			if msg != want {
				t.Errorf("message %q, want %q", msg, want)
			}
			if calls < 2 || strings.Contains(msg, "check 1:") {
				t.Errorf("check called %d times, message %q: want polled, and the last error", calls, msg)
			}
		})
	}
}

// TestPollSeesChangeFromAnotherGoroutine: what the helper is for, a
// condition that another goroutine makes true.
func TestPollSeesChangeFromAnotherGoroutine(t *testing.T) {
	var mu sync.Mutex
	set := false
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-release
		mu.Lock()
		set = true
		mu.Unlock()
	}()
	var once sync.Once
	defer func() { once.Do(func() { close(release) }); <-done }()
	checks := 0
	Until(t, 10*time.Second, "the flag", func() bool {
		checks++
		if checks == 3 {
			once.Do(func() { close(release) })
		}
		mu.Lock()
		defer mu.Unlock()
		return set
	})
	if checks < 3 { // the flag can be set from the third check on
		t.Errorf("Until returned after %d checks, before the flag could be set", checks)
	}
}

// TestPauseBackoff pins the pauses: from firstPause, doubling, at most
// maxPause, so a long timeout does not mean a busy loop.
func TestPauseBackoff(t *testing.T) {
	var pauses []time.Duration
	last := time.Now()
	calls := 0
	poll(400*time.Millisecond, func() bool {
		now := time.Now()
		if calls > 0 {
			pauses = append(pauses, now.Sub(last))
		}
		last = now
		calls++
		return false
	})
	// 1+2+4+8+16+32 ms, then 50 ms steps: about 13 checks in 400 ms,
	// fewer on a slow machine; a busy loop would make thousands.
	if calls > 20 || calls < 3 {
		t.Errorf("%d checks in 400ms, want about 13", calls)
	}
	if len(pauses) > 0 && pauses[0] < firstPause {
		t.Errorf("first pause %v, want at least %v", pauses[0], firstPause)
	}
}
