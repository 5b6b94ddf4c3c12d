package bench

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestInproc(t *testing.T) {
	for _, cfg := range []Config{
		{Pubs: 1, Subs: 1, Size: 16, Msgs: 20000},
		{Pubs: 3, Subs: 2, Size: 128, Msgs: 10001},
		{Pubs: 1, Subs: 1, Size: 4, Msgs: 1000}, // too small for stamps
	} {
		calls := 0
		cfg.Progress = func(received, expected int) {
			calls++
			if received > expected {
				t.Errorf("progress %d of %d", received, expected)
			}
		}
		r, err := Inproc(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if r.Msgs != cfg.Msgs || r.MsgsPerSec <= 0 || r.Dropped != 0 || calls == 0 {
			t.Errorf("%+v: result %+v, %d progress calls", cfg, r, calls)
		}
		wantSamples := 0
		if cfg.Size >= minStampSize {
			wantSamples = cfg.Subs * ((cfg.Msgs/cfg.Pubs + SampleEvery - 1) / SampleEvery) * cfg.Pubs
		}
		if r.Samples < wantSamples-cfg.Pubs*cfg.Subs || r.Samples > wantSamples+cfg.Pubs*cfg.Subs {
			t.Errorf("%+v: %d latency samples, want about %d", cfg, r.Samples, wantSamples)
		}
		if wantSamples > 0 && !(r.P50us > 0 && r.P50us <= r.P90us && r.P90us <= r.P99us) {
			t.Errorf("percentiles out of order: %+v", r)
		}
	}
	if _, err := Inproc(t.Context(), Config{Msgs: -1}); err == nil {
		t.Error("negative --msgs accepted")
	}
}
