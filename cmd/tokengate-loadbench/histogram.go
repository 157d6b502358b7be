package main

import (
	"math/bits"
	"time"
)

// histogram is a fixed-size log-linear latency histogram (HDR-like): values
// below subBuckets nanoseconds are exact; above, every power of two is split
// into subBuckets/2 linear buckets, so a bucket is at most 1/64 of its
// values wide (a reported quantile is within about 1% of the truth). Recording is an index computation and an increment: no
// allocation, no lock (each worker owns one; they are merged at the end).
type histogram struct {
	counts [numBuckets]uint64
	n      uint64
	min    int64
	max    int64
}

const (
	subBits    = 7
	subBuckets = 1 << subBits // 128
	// maxShift bounds the range to subBuckets<<maxShift ns (about 9 min);
	// longer values land in the last bucket.
	maxShift   = 32
	numBuckets = subBuckets + maxShift*(subBuckets/2)
)

// bucketOf maps a latency in nanoseconds to its bucket index.
func bucketOf(v int64) int {
	if v < subBuckets {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits // >= 1; v>>shift is in [64, 128)
	if shift > maxShift {
		return numBuckets - 1
	}
	return subBuckets + (shift-1)*(subBuckets/2) + int(v>>shift) - subBuckets/2
}

// bucketBounds returns the half-open range [lo, hi) of values in bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < subBuckets {
		return int64(i), int64(i) + 1
	}
	shift := (i-subBuckets)/(subBuckets/2) + 1
	mant := int64((i-subBuckets)%(subBuckets/2) + subBuckets/2)
	return mant << shift, (mant + 1) << shift
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
}

// quantile returns the value at quantile q (0 < q <= 1): the midpoint of the
// bucket holding the ceil(q*n)-th smallest value, clamped to [min, max].
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++
	}
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketBounds(i)
			v := lo + (hi-lo-1)/2
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
