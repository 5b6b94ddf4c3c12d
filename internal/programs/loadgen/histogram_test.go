package loadgen

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the oracle: the value of rank ⌈q·n⌉ (at least 1) in
// sorted, which must be sorted.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

var quantiles = []float64{0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1}

// checkAgainstOracle records values in a histogram and compares every
// quantile with the exact one: within 1/256 of it, or exactly equal below
// 256 ns.
func checkAgainstOracle(t *testing.T, values []time.Duration) {
	t.Helper()
	var h Histogram
	for _, v := range values {
		h.Record(v)
	}
	sorted := slices.Clone(values)
	for i, v := range sorted {
		sorted[i] = min(max(v, 0), maxTracked)
	}
	slices.Sort(sorted)
	if h.Count() != uint64(len(values)) {
		t.Fatalf("Count %d, want %d", h.Count(), len(values))
	}
	if len(values) == 0 {
		if h.Quantile(0.5) != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 {
			t.Errorf("empty histogram: p50 %v min %v max %v mean %v", h.Quantile(0.5), h.Min(), h.Max(), h.Mean())
		}
		return
	}
	for _, q := range quantiles {
		got, want := h.Quantile(q), exactQuantile(sorted, q)
		if diff := got - want; diff < 0 && -diff > want/256 || diff > 0 && diff > want/256 {
			t.Errorf("%d values: Quantile(%v) = %d, exact %d: off by %.3f%%", len(values), q, got, want, 100*float64(diff)/float64(want))
		}
	}
	if h.Quantile(0) != sorted[0] || h.Quantile(1) != sorted[len(sorted)-1] {
		t.Errorf("Quantile(0) %v, Quantile(1) %v; want min %v, max %v", h.Quantile(0), h.Quantile(1), sorted[0], sorted[len(sorted)-1])
	}
	if h.Min() != sorted[0] || h.Max() != slices.Max(sorted) {
		t.Errorf("Min %v Max %v, want %v %v", h.Min(), h.Max(), sorted[0], slices.Max(sorted))
	}
}

func TestHistogramAgainstSortedSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gen := func(n int, f func() time.Duration) []time.Duration {
		v := make([]time.Duration, n)
		for i := range v {
			v[i] = f()
		}
		return v
	}
	tests := []struct {
		name   string
		values []time.Duration
	}{
		{"empty", nil},
		{"one", []time.Duration{12345}},
		{"zero", []time.Duration{0, 0, 0}},
		{"negative counts as 0", []time.Duration{-5, 3, 7}},
		{"exact range", gen(1000, func() time.Duration { return time.Duration(rng.IntN(256)) })},
		{"bucket edges", []time.Duration{255, 256, 257, 511, 512, 513, 1<<20 - 1, 1 << 20, 1<<20 + 1}},
		{"constant", gen(500, func() time.Duration { return 1234567 })},
		{"uniform µs", gen(10000, func() time.Duration { return time.Duration(rng.IntN(1000000)) })},
		{"log-uniform ns to s", gen(20000, func() time.Duration { return time.Duration(math.Exp(rng.Float64() * math.Log(1e9))) })},
		{"heavy tail", gen(20000, func() time.Duration { return time.Duration(1000 / (rng.Float64() + 1e-6)) })},
		{"two modes", gen(5000, func() time.Duration {
			if rng.IntN(100) == 0 {
				return 50*time.Millisecond + time.Duration(rng.IntN(1000000))
			}
			return 20*time.Microsecond + time.Duration(rng.IntN(5000))
		})},
		{"beyond the tracked range", []time.Duration{time.Hour, 2 * time.Hour, maxTracked, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkAgainstOracle(t, tt.values) })
	}
}

// Every value maps to a bucket whose range holds it, and the buckets tile
// the tracked range without gaps or overlaps.
func TestBuckets(t *testing.T) {
	next := uint64(0)
	for i := range numBuckets {
		low, width := bucketRange(i)
		if low != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, low, next)
		}
		if i >= 2*subBuckets && width*subBuckets > low {
			t.Fatalf("bucket %d: width %d is more than 1/%d of %d", i, width, subBuckets, low)
		}
		for _, v := range []uint64{low, low + width/2, low + width - 1} {
			if b := bucketOf(v); b != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, b, i)
			}
		}
		next = low + width
	}
	if next != maxTracked+1 {
		t.Errorf("the buckets end at %d, want %d", next, uint64(maxTracked)+1)
	}
}

func TestHistogramMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var a, b, all Histogram
	var empty Histogram
	a.Merge(&empty)
	if a.Count() != 0 || a.Min() != 0 {
		t.Fatalf("merging an empty histogram changed an empty one: %d values, min %v", a.Count(), a.Min())
	}
	for i := range 3000 {
		v := time.Duration(rng.Int64N(int64(time.Second)))
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
		all.Record(v)
	}
	var merged Histogram
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&empty)
	if merged.counts != all.counts || merged.Count() != all.Count() || merged.Min() != all.Min() || merged.Max() != all.Max() {
		t.Errorf("merged %d values (min %v, max %v), want %d (min %v, max %v)", merged.Count(), merged.Min(), merged.Max(), all.Count(), all.Min(), all.Max())
	}
	if d := merged.Mean() - all.Mean(); d < -1 || d > 1 {
		t.Errorf("merged mean %v, want %v", merged.Mean(), all.Mean())
	}
}

// FuzzHistogram compares the histogram with the sorted-slice oracle on
// arbitrary values, 8 bytes each.
func FuzzHistogram(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0})
	f.Add(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 1<<40), 255))
	f.Add(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 1<<63), 123456789))
	f.Fuzz(func(t *testing.T, data []byte) {
		var values []time.Duration
		for ; len(data) >= 8; data = data[8:] {
			values = append(values, time.Duration(binary.LittleEndian.Uint64(data)))
		}
		checkAgainstOracle(t, values)
	})
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	v := time.Duration(1)
	for b.Loop() {
		h.Record(v)
		v = v*7 + 13&(1<<30-1)
	}
}
