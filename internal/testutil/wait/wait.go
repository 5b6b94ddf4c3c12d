// Package wait waits, in tests, for a condition that another goroutine or
// another process makes true: the one place where tests poll.
//
// A test that can be told when something happened (a channel, a hook, a
// returned value) should wait for that instead. Until and For are for what
// a test can only observe from the outside: a counter, a connection count,
// a file, a process's output. They check the condition at once, then again
// after a pause that starts at 1ms and doubles up to 50ms, until it holds or
// the timeout passes; the last check is made at the timeout. The pause is
// the helper's polling interval, not a guess at how long the other side
// takes: no test waits longer than it must, and a slow machine only makes it
// wait longer.
//
// Both fail the test with t.Fatalf, so call them from the test's goroutine
// (the rules of testing.T.FailNow). For tests only.
package wait

import (
	"testing"
	"time"
)

const (
	// firstPause is the pause after the first failed check.
	firstPause = time.Millisecond
	// maxPause bounds the pause between two checks.
	maxPause = 50 * time.Millisecond
)

// Until calls cond until it returns true, and fails the test with
// "timed out after <timeout> waiting for <what>" if it has not by timeout.
// cond is called from the calling goroutine only, never concurrently; it
// must not block for long, the timeout is checked between calls.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(timeout, func() bool { return cond() }) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// For calls check until it returns nil, and fails the test with
// "timed out after <timeout> waiting for <what>: <last error>" if it has
// not by timeout. The last error is the one to read: it says what still
// did not hold. check is called as cond is in Until.
func For(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	var last error
	if !poll(timeout, func() bool { last = check(); return last == nil }) {
		t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, last)
	}
}

// poll calls ok until it returns true (then poll does too) or timeout
// passes (then false). ok is always called at least once, and once more
// at the deadline.
func poll(timeout time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := firstPause
	for {
		if ok() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(pause, left))
		pause = min(2*pause, maxPause)
	}
}
