package main

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestBucketBoundsHoldTheirValues(t *testing.T) {
	values := []int64{0, 1, 127, 128, 129, 255, 256, 1000, 12345, 999_999, 1 << 30, 123_456_789_012}
	for v := int64(1); v < 1<<38; v = v*3 + 1 {
		values = append(values, v, v+1, v-1)
	}
	for _, v := range values {
		i := bucketOf(v)
		lo, hi := bucketBounds(i)
		if v < lo || v >= hi {
			t.Fatalf("value %d in bucket %d = [%d, %d)", v, i, lo, hi)
		}
		if v >= subBuckets && float64(hi-lo) > float64(lo)/64 {
			t.Fatalf("bucket [%d, %d) for %d is wider than 1/64 of its values", lo, hi, v)
		}
	}
	if got := bucketOf(math.MaxInt64); got != numBuckets-1 {
		t.Errorf("huge value in bucket %d, want the last (%d)", got, numBuckets-1)
	}
	if got := bucketOf(-5); got != 0 {
		t.Errorf("negative value in bucket %d, want 0", got)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []time.Duration
	}{
		{"one value", []time.Duration{3 * time.Millisecond}},
		{"uniform 1..1000µs", func() []time.Duration {
			var v []time.Duration
			for i := 1; i <= 1000; i++ {
				v = append(v, time.Duration(i)*time.Microsecond)
			}
			return v
		}()},
		{"long tail", func() []time.Duration {
			var v []time.Duration
			for i := 0; i < 990; i++ {
				v = append(v, 200*time.Microsecond+time.Duration(i)*time.Microsecond/10)
			}
			for i := 0; i < 10; i++ {
				v = append(v, 50*time.Millisecond+time.Duration(i)*time.Millisecond)
			}
			return v
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.values {
				h.record(v)
			}
			sorted := slices.Clone(tt.values)
			slices.Sort(sorted)
			if h.n != uint64(len(sorted)) || time.Duration(h.min) != sorted[0] || time.Duration(h.max) != sorted[len(sorted)-1] {
				t.Fatalf("n/min/max = %d/%v/%v, want %d/%v/%v", h.n, h.min, h.max, len(sorted), sorted[0], sorted[len(sorted)-1])
			}
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				rank := int(math.Ceil(q * float64(len(sorted))))
				want := sorted[rank-1]
				got := h.quantile(q)
				if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.01 {
					t.Errorf("q%.3f = %v, want %v (±1%%)", q, got, want)
				}
			}
		})
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all histogram
	for i := 1; i <= 500; i++ {
		d := time.Duration(i) * 7 * time.Microsecond
		all.record(d)
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	var empty histogram
	a.merge(&empty)
	a.merge(&b)
	if a != all {
		t.Errorf("merged histogram differs from recording everything in one (n %d vs %d, min %d vs %d, max %d vs %d)",
			a.n, all.n, a.min, all.min, a.max, all.max)
	}
	if q := empty.quantile(0.99); q != 0 {
		t.Errorf("empty histogram p99 = %v, want 0", q)
	}
}
