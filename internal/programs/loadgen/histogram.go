package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// Histogram layout: log-linear buckets, like HdrHistogram. Values below
// 2*subBuckets nanoseconds have a bucket each; above, every power of two
// [2^k, 2^(k+1)) is cut into subBuckets equal buckets, so a bucket is at
// most 1/subBuckets of its lower bound wide.
const (
	subBits    = 7
	subBuckets = 1 << subBits // 128: a bucket's width is ≤ 1/128 of its values
	// maxTracked is the largest value the histogram tells apart (about
	// 18 minutes); larger values are recorded as maxTracked.
	maxTracked = 1<<40 - 1
	numBuckets = (40-subBits)*subBuckets + subBuckets // bucketOf(maxTracked) + 1
)

// Histogram counts durations in log-linear buckets with bounded memory
// (about 34 KiB, whatever the number of values). A quantile it reports is
// within 0.4% of the exact one: it is the middle of the bucket that holds
// the exact value, and a bucket is at most 1/128 of its values wide.
// Values under 256 ns are counted exactly, and the smallest and largest
// values are kept exactly. The zero value is an empty
// histogram. It is not safe for concurrent use; give each goroutine its
// own and Merge them.
type Histogram struct {
	counts   [numBuckets]uint64
	n        uint64
	min, max time.Duration
	sum      float64 // of values, in nanoseconds, for the mean
}

// bucketOf returns the bucket that counts v (0 ≤ v ≤ maxTracked).
func bucketOf(v uint64) int {
	if v < 2*subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBits // ≥ 1
	return shift*subBuckets + int(v>>shift)
}

// bucketRange returns the smallest value bucket i counts and its width.
func bucketRange(i int) (low, width uint64) {
	if i < 2*subBuckets {
		return uint64(i), 1
	}
	shift := i/subBuckets - 1
	return uint64(i-shift*subBuckets) << shift, 1 << shift
}

// Record adds one value. Negative values count as 0, and values over
// about 18 minutes (2^40 ns) as 2^40-1 ns.
func (h *Histogram) Record(d time.Duration) {
	d = min(max(d, 0), maxTracked)
	h.counts[bucketOf(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += float64(d)
}

// Merge adds the values of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest value recorded, exactly (0 if none).
func (h *Histogram) Min() time.Duration { return h.min }

// Max returns the largest value recorded, exactly (0 if none).
func (h *Histogram) Max() time.Duration { return h.max }

// Mean returns the mean of the values recorded (0 if none).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.n)))
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of the values recorded: the
// value of rank ⌈q·n⌉ (at least 1) in sorted order, to within 0.4%. It
// returns 0 for an empty histogram; Quantile(0) is Min and Quantile(1) is
// Max.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	switch rank {
	case 1:
		return h.min
	case h.n:
		return h.max
	}
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			low, width := bucketRange(i)
			v := time.Duration(low + (width-1)/2)
			return min(max(v, h.min), h.max)
		}
	}
	return h.max // not reached: the counts add up to n
}
