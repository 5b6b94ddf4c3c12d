package rpc

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestBreakerStates(t *testing.T) {
	// In the bubble time.Sleep moves the fake clock: the sleeps are the
	// cooldown under test.
	synctest.Test(t, func(t *testing.T) {
		var bs breakers
		bs.init(2, time.Second)
		fail := func() {
			t.Helper()
			b, err := bs.allow("t")
			if err != nil {
				t.Fatalf("allow = %v", err)
			}
			bs.done("t", b, false)
		}
		fail()
		fail()
		if _, err := bs.allow("t"); !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("after 2 failures allow = %v, want open", err)
		}
		time.Sleep(999 * time.Millisecond)
		if _, err := bs.allow("t"); !errors.Is(err, ErrCircuitOpen) {
			t.Fatal("closed before the cooldown ended")
		}
		time.Sleep(time.Millisecond)
		probe, err := bs.allow("t")
		if err != nil || probe == nil {
			t.Fatalf("after the cooldown allow = %v, %v; want one trial", probe, err)
		}
		if _, err := bs.allow("t"); !errors.Is(err, ErrCircuitOpen) {
			t.Fatal("a second call went through while the trial was under way")
		}
		bs.done("t", probe, false) // the trial failed: open again for a cooldown
		if _, err := bs.allow("t"); !errors.Is(err, ErrCircuitOpen) {
			t.Fatal("a failed trial did not reopen the circuit")
		}
		time.Sleep(time.Second)
		probe, _ = bs.allow("t")
		bs.done("t", probe, true)
		if b, err := bs.allow("t"); err != nil || b != nil || len(bs.m) != 0 {
			t.Fatalf("after a good trial: %v, %v, %d entries; want closed and forgotten", b, err, len(bs.m))
		}
	})
}

func TestBreakerOff(t *testing.T) {
	var bs breakers
	bs.init(-1, time.Second)
	for range 100 {
		b, err := bs.allow("t")
		if err != nil {
			t.Fatal(err)
		}
		bs.done("t", b, false)
	}
}

func TestBreakerMapIsBounded(t *testing.T) {
	var bs breakers
	bs.init(5, time.Second)
	for i := range 3 * maxBreakers {
		bs.done(string(rune('a'+i%26))+time.Duration(i).String(), nil, false)
	}
	if len(bs.m) > maxBreakers {
		t.Errorf("%d entries, want at most %d", len(bs.m), maxBreakers)
	}
}

func TestBackoff(t *testing.T) {
	for n := 1; n <= 10; n++ {
		want := min(25*time.Millisecond<<(n-1), time.Second)
		for range 50 {
			if d := backoff(25*time.Millisecond, time.Second, n); d < want/2 || d >= want*3/2 {
				t.Fatalf("retry %d waits %v, want within ±50%% of %v", n, d, want)
			}
		}
	}
}
