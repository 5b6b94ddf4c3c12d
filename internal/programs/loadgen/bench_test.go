package loadgen

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func valid() Config {
	return Config{Transport: Inproc, Pubs: 1, Subs: 1, Size: 128, Msgs: 1000}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		is     error  // nil: valid
		want   string // in the error
	}{
		{"defaults", func(*Config) {}, nil, ""},
		{"unix", func(c *Config) { c.Transport = Unix }, nil, ""},
		{"unix broker", func(c *Config) { c.Transport, c.Addr = Unix, "/run/x.sock" }, nil, ""},
		{"publish only", func(c *Config) { c.Subs = 0 }, nil, ""},
		{"no stamp", func(c *Config) { c.Size = 0 }, nil, ""},
		{"paced", func(c *Config) { c.Rate, c.SampleEvery = 100, 10 }, nil, ""},
		{"empty transport", func(c *Config) { c.Transport = "" }, ErrConfig, `unknown transport ""`},
		{"bad transport", func(c *Config) { c.Transport = "carrier-pigeon" }, ErrConfig, `unknown transport "carrier-pigeon": use inproc, unix, tcp`},
		{"inproc with address", func(c *Config) { c.Addr = "/tmp/x.sock" }, ErrConfig, "--transport inproc"},
		{"tcp", func(c *Config) { c.Transport = TCP }, nil, ""},
		{"no publisher", func(c *Config) { c.Pubs = 0 }, ErrConfig, "--pub 0"},
		{"negative subscribers", func(c *Config) { c.Subs = -1 }, ErrConfig, "--sub -1"},
		{"negative size", func(c *Config) { c.Size = -1 }, ErrConfig, "--size -1"},
		{"oversize", func(c *Config) { c.Size = eventbus.DefaultMaxPayload + 1 }, ErrConfig, "at most 1048576 bytes"},
		{"oversize for another broker", func(c *Config) { c.Transport, c.Addr, c.Size = Unix, "/x", eventbus.DefaultMaxPayload+1 }, nil, ""},
		{"no messages", func(c *Config) { c.Msgs = 0 }, ErrConfig, "--msgs 0"},
		{"negative rate", func(c *Config) { c.Rate = -5 }, ErrConfig, "--rate -5"},
		{"negative sample", func(c *Config) { c.SampleEvery = -1 }, ErrConfig, "--sample -1"},
		{"negative idle timeout", func(c *Config) { c.IdleTimeout = -time.Second }, ErrConfig, "idle timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.is == nil && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.is != nil && (!errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate: %v; want %v containing %q", err, tt.is, tt.want)
			}
			if tt.is != nil {
				if _, err := Run(t.Context(), c); !errors.Is(err, tt.is) {
					t.Errorf("Run: %v, want %v", err, tt.is)
				}
			}
		})
	}
}

// stamped returns how many messages of cfg carry a send time.
func stamped(cfg Config) int {
	if cfg.Size < StampSize {
		return 0
	}
	every := cfg.SampleEvery
	if every == 0 {
		every = DefaultSampleEvery(cfg.Transport, cfg.Rate)
	}
	n := 0
	for p := range cfg.Pubs {
		n += (cfg.share(p) + every - 1) / every
	}
	return n
}

// checkResult checks what every complete run must satisfy.
func checkResult(t *testing.T, cfg Config, r Result) {
	t.Helper()
	deliveries := int64(cfg.Msgs * cfg.Subs)
	if r.Transport != cfg.Transport || r.Pubs != cfg.Pubs || r.Subs != cfg.Subs || r.Size != cfg.Size || r.Msgs != cfg.Msgs {
		t.Errorf("result describes another run: %+v", r)
	}
	if r.Published != int64(cfg.Msgs) || r.Delivered != deliveries || r.Dropped != 0 || r.ClientDropped != 0 {
		t.Errorf("published %d, delivered %d, dropped %d (client %d); want %d, %d, 0", r.Published, r.Delivered, r.Dropped, r.ClientDropped, cfg.Msgs, deliveries)
	}
	if !(r.ElapsedS > 0 && r.PublishS > 0 && r.MsgsPerSec > 0 && r.PubMsgsPerSec > 0) {
		t.Errorf("times or rates not positive: %+v", r)
	}
	if want := float64(deliveries) / r.ElapsedS; r.DeliveriesPerSec != want {
		t.Errorf("deliveries/s %v, want %v", r.DeliveriesPerSec, want)
	}
	if want := uint64(stamped(cfg) * cfg.Subs); r.LatencySamples != want {
		t.Errorf("%d latency samples, want %d", r.LatencySamples, want)
	}
	if r.LatencySamples == 0 {
		if r.P50us != nil || r.P99us != nil || r.MaxUs != nil {
			t.Errorf("latency reported without samples: %+v", r)
		}
		return
	}
	if r.P50us == nil || r.P90us == nil || r.P99us == nil || r.MaxUs == nil || r.MeanUs == nil {
		t.Fatalf("latency missing: %+v", r)
	}
	if !(0 <= *r.P50us && *r.P50us <= *r.P90us && *r.P90us <= *r.P99us && *r.P99us <= *r.MaxUs) {
		t.Errorf("percentiles out of order: p50 %v p90 %v p99 %v max %v", *r.P50us, *r.P90us, *r.P99us, *r.MaxUs)
	}
	if *r.MaxUs > r.ElapsedS*1e6 {
		t.Errorf("max latency %v µs is longer than the run (%v s)", *r.MaxUs, r.ElapsedS)
	}
}

func TestRunInproc(t *testing.T) {
	for _, cfg := range []Config{
		{Pubs: 1, Subs: 1, Size: 16, Msgs: 20000},
		{Pubs: 3, Subs: 2, Size: 128, Msgs: 10001},
		{Pubs: 2, Subs: 1, Size: 64, Msgs: 5000, SampleEvery: 1},
		{Pubs: 1, Subs: 1, Size: 4, Msgs: 1000},  // too small for a send time
		{Pubs: 2, Subs: 0, Size: 64, Msgs: 1000}, // publish only
		{Pubs: 2, Subs: 3, Size: 8, Msgs: 400, Rate: 10000},
	} {
		cfg.Transport = Inproc
		var calls atomic.Int64
		cfg.Progress = func(p Progress) {
			calls.Add(1)
			if p.Delivered > p.Deliveries || p.Published > p.Msgs || p.Msgs != int64(cfg.Msgs) {
				t.Errorf("progress %+v", p)
			}
		}
		r, err := Run(t.Context(), cfg)
		if err != nil {
			t.Fatalf("%+v: %v", cfg, err)
		}
		checkResult(t, cfg, r)
		if r.Broker != "self-started" || r.BrokerDropped == nil || *r.BrokerDropped != 0 {
			t.Errorf("broker %q, broker drops %v", r.Broker, r.BrokerDropped)
		}
		if calls.Load() == 0 {
			t.Errorf("%+v: Progress never called", cfg)
		}
	}
}

func TestRunInprocRate(t *testing.T) {
	cfg := Config{Transport: Inproc, Pubs: 2, Subs: 1, Size: 16, Msgs: 200, Rate: 2000}
	r, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, cfg, r)
	// 100 messages per publisher at 2000/s take 50 ms.
	if r.PublishS < 0.045 || r.PubMsgsPerSec > 4400 {
		t.Errorf("published 200 msgs at 2 × 2000/s in %.3fs (%.0f msgs/s)", r.PublishS, r.PubMsgsPerSec)
	}
}

func TestRunSocket(t *testing.T) {
	for _, cfg := range []Config{
		{Transport: Unix, Pubs: 2, Subs: 2, Size: 128, Msgs: 20000},
		{Transport: Unix, Pubs: 1, Subs: 1, Size: 0, Msgs: 1000},
		{Transport: Unix, Pubs: 1, Subs: 1, Size: 64 << 10, Msgs: 100},
		{Transport: TCP, Pubs: 2, Subs: 2, Size: 128, Msgs: 10000},
	} {
		r, err := Run(t.Context(), cfg)
		if err != nil {
			t.Fatalf("%+v: %v", cfg, err)
		}
		checkResult(t, cfg, r)
		if r.Broker != "self-started" || r.BrokerDropped == nil {
			t.Errorf("broker %q, broker drops %v", r.Broker, r.BrokerDropped)
		}
	}
}

// startBroker starts a broker on a socket, as daemoneye-broker would.
func startBroker(t *testing.T) string {
	path, _, _ := testbroker.Start(t, server.Options{})
	return path
}

func TestRunAgainstABroker(t *testing.T) {
	path := startBroker(t)
	for _, addr := range []string{path, "unix://" + path} {
		cfg := Config{Transport: Unix, Addr: addr, Pubs: 1, Subs: 2, Size: 32, Msgs: 5000}
		r, err := Run(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, cfg, r)
		if r.Broker != addr || r.BrokerDropped != nil {
			t.Errorf("broker %q, broker drops %v; want %q and unknown", r.Broker, r.BrokerDropped, addr)
		}
	}
	_, err := Run(t.Context(), Config{Transport: Unix, Addr: filepath.Join(t.TempDir(), "none.sock"), Pubs: 1, Subs: 1, Size: 8, Msgs: 1})
	if err == nil || !strings.Contains(err.Error(), "is the broker running?") {
		t.Errorf("no broker: %v", err)
	}
}

// A fake transport, to drive measure through losses and failures.
type fakeHarness struct{}

func (fakeHarness) subscriber(context.Context, int, string) (receiver, error) { return nil, nil }
func (fakeHarness) publisher(context.Context, int) (sender, error)            { return nil, nil }
func (fakeHarness) brokerDropped() (uint64, bool)                             { return 0, false }
func (fakeHarness) close()                                                    {}

type fakeSub struct {
	c    chan []byte
	fail error
}

func (r *fakeSub) receive(ctx context.Context, st *subState, want int64) error {
	defer st.finish(want)
	if r.fail != nil {
		return r.fail
	}
	for st.got < want {
		select {
		case p := <-r.c:
			st.take(p)
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

func (r *fakeSub) dropped() uint64 { return 3 }

type fakePub struct {
	subs  []*fakeSub
	lose  int // every lose-th message never arrives
	fail  error
	block bool // wait for ctx instead of publishing
}

func (p *fakePub) send(ctx context.Context, job *pubJob) error {
	switch {
	case p.fail != nil:
		return p.fail
	case p.block:
		<-ctx.Done()
		return nil
	}
	for i := range job.n {
		b := make([]byte, job.size)
		job.stamp(b, i)
		if p.lose == 0 || i%p.lose != 0 {
			for _, s := range p.subs {
				s.c <- b
			}
		}
		job.published.Add(1)
	}
	return nil
}

func fakes(subs int, pub fakePub) ([]receiver, []sender) {
	recvs := make([]receiver, subs)
	for i := range recvs {
		s := &fakeSub{c: make(chan []byte, 1000)}
		pub.subs = append(pub.subs, s)
		recvs[i] = s
	}
	return recvs, []sender{&pub}
}

func TestMeasureCountsLostMessages(t *testing.T) {
	cfg := Config{Transport: Unix, Pubs: 1, Subs: 2, Size: 8, Msgs: 100, SampleEvery: 1, IdleTimeout: 100 * time.Millisecond}
	recvs, sends := fakes(2, fakePub{lose: 10})
	start := time.Now()
	r, err := measure(t.Context(), &cfg, "events.bench.t", recvs, sends, fakeHarness{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Published != 100 || r.Delivered != 180 || r.Dropped != 20 || r.ClientDropped != 6 || r.BrokerDropped != nil {
		t.Errorf("published %d, delivered %d, dropped %d (client %d, broker %v); want 100, 180, 20 (6, unknown)",
			r.Published, r.Delivered, r.Dropped, r.ClientDropped, r.BrokerDropped)
	}
	if r.LatencySamples != 180 {
		t.Errorf("%d latency samples, want 180", r.LatencySamples)
	}
	if waited := time.Since(start); waited < cfg.IdleTimeout || waited > 20*cfg.IdleTimeout {
		t.Errorf("gave up after %v; the idle timeout is %v", waited, cfg.IdleTimeout)
	}
}

func TestMeasureFailures(t *testing.T) {
	errSub, errPub := errors.New("subscriber broke"), errors.New("publisher broke")
	cfg := Config{Transport: Unix, Pubs: 1, Subs: 1, Size: 8, Msgs: 100, SampleEvery: 1, IdleTimeout: time.Minute}

	recvs, sends := fakes(1, fakePub{fail: errPub})
	if _, err := measure(t.Context(), &cfg, "events.bench.t", recvs, sends, fakeHarness{}); !errors.Is(err, errPub) {
		t.Errorf("a publisher failed: %v", err)
	}

	recvs, sends = fakes(1, fakePub{})
	recvs[0].(*fakeSub).fail = errSub
	if _, err := measure(t.Context(), &cfg, "events.bench.t", recvs, sends, fakeHarness{}); !errors.Is(err, errSub) {
		t.Errorf("a subscriber failed: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	recvs, sends = fakes(1, fakePub{block: true})
	_, err := measure(ctx, &cfg, "events.bench.t", recvs, sends, fakeHarness{})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("interrupted: %v", err)
	}
}

func TestRunInterrupted(t *testing.T) {
	for _, tr := range Transports {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		_, err := Run(ctx, Config{Transport: tr, Pubs: 1, Subs: 1, Size: 16, Msgs: 1000, Rate: 100})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v", tr, err)
		}
	}
}

func TestParseTransport(t *testing.T) {
	for _, tr := range Transports {
		if got, err := ParseTransport(string(tr)); got != tr || err != nil {
			t.Errorf("ParseTransport(%q) = %q, %v", tr, got, err)
		}
	}
	if _, err := ParseTransport("UNIX"); !errors.Is(err, ErrConfig) {
		t.Errorf("ParseTransport(UNIX): %v", err)
	}
}
