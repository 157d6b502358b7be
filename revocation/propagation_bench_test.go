package revocation

import (
	"context"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkCheckerHitRatio compares a fully cached "not revoked" answer with
// the memory store and with the Redis store in one run, interleaving the two
// in chunks of calls so that a noisy neighbour slows both alike. It reports
// each backend's ns per call and redis/memory; ns/op is their mean. One
// goroutine: this is the latency of an uncontended hit (BenchmarkCheckerHit
// and BenchmarkCheckerHitRedis give the parallel throughput).
func BenchmarkCheckerHitRatio(b *testing.B) {
	const chunk = 1024
	ctx := context.Background()
	iat := time.Now()
	checkers := [2]*Checker{
		newChecker(b, NewMemoryStore(nil), CheckerOptions{MaxStaleness: time.Hour, Registerer: prometheus.NewRegistry()}),
		newChecker(b, newRedisStore(b, redisTestOptions(b)), CheckerOptions{MaxStaleness: time.Hour, Registerer: prometheus.NewRegistry()}),
	}
	for _, c := range checkers {
		if mustRevoked(b, c, "jti-0123456789", "user-42", iat) {
			b.Fatal("revoked before anything happened")
		}
	}
	var spent [2]time.Duration
	var calls [2]int
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		which := (done / chunk) % 2
		n := min(chunk, b.N-done)
		c := checkers[which]
		start := time.Now()
		for range n {
			if revoked, err := c.Revoked(ctx, "jti-0123456789", "user-42", iat); revoked || err != nil {
				b.Fatal(revoked, err)
			}
		}
		spent[which] += time.Since(start)
		calls[which] += n
		done += n
	}
	b.StopTimer()
	if calls[0] == 0 || calls[1] == 0 {
		return // b.N too small to reach the Redis chunk; the framework runs again
	}
	mem := float64(spent[0]) / float64(calls[0])
	red := float64(spent[1]) / float64(calls[1])
	b.ReportMetric(mem, "mem-ns/op")
	b.ReportMetric(red, "redis-ns/op")
	b.ReportMetric(red/mem, "redis/mem")
}

// BenchmarkPropagation measures how long a token revocation through replica A
// takes to reach replica B's cache over Redis pub/sub. One op is one
// revocation: B caches "not revoked" for a fresh jti (a miss, one Status
// round trip), then the clock starts, A revokes (SET + PUBLISH, one
// pipeline), and B is asked until it says revoked. MaxStaleness is an hour,
// so only the published event can change B's answer: the event makes B's
// entry stale, and B's next question asks the store once more (a message is
// a reason to re-check, not a verdict). So B misses its cache exactly twice
// per op (checked at the end); every other question is a hit.
//
// Reported, in microseconds from the start of A's RevokeToken: p50/p99/max
// until B sees it; p50/p99 of A's write alone; and p50/p99 of the time B
// still took after A's write returned (0 when B already knew), an upper
// bound of the pure pub/sub propagation. The event is published within A's
// write, so B may see it before A's write returns: "seen-at-write-%" is the
// share of ops where B already answered revoked at that moment.
func BenchmarkPropagation(b *testing.B) {
	ctx := context.Background()
	opts := redisTestOptions(b) // same prefix and channel: two replicas of one deployment
	regB := prometheus.NewRegistry()
	a := newChecker(b, newRedisStore(b, opts), CheckerOptions{MaxStaleness: time.Hour, Registerer: prometheus.NewRegistry()})
	bc := newChecker(b, newRedisStore(b, opts), CheckerOptions{MaxStaleness: time.Hour, Registerer: regB})
	for _, c := range []*Checker{a, bc} {
		eventually(b, 5*time.Second, "subscribed", func() bool { return c.Ready(ctx) == nil })
	}
	iat := time.Now().Add(-time.Second)
	exp := time.Now().Add(time.Hour)
	prefix := "prop-" + strconv.Itoa(b.N) + "-"
	missesBefore := metricValue(b, bc.m.miss)

	seen := make([]time.Duration, 0, b.N)
	writes := make([]time.Duration, 0, b.N)
	after := make([]time.Duration, 0, b.N)
	seenAtWrite := 0
	b.ResetTimer()
	for i := range b.N {
		jti := prefix + strconv.Itoa(i)
		if mustRevoked(b, bc, jti, "user-42", iat) {
			b.Fatalf("%s revoked before A revoked it", jti)
		}
		t0 := time.Now()
		if err := a.RevokeToken(ctx, jti, exp); err != nil {
			b.Fatal(err)
		}
		write := time.Since(t0)
		writes = append(writes, write)
		if mustRevoked(b, bc, jti, "user-42", iat) {
			seenAtWrite++
		} else {
			deadline := t0.Add(5 * time.Second)
			for !mustRevoked(b, bc, jti, "user-42", iat) {
				if time.Now().After(deadline) {
					b.Fatalf("B did not see A's revocation of %s within 5s", jti)
				}
				// Sleep rather than spin (even with runtime.Gosched): a P that
				// always has a runnable goroutine polls the network only via
				// sysmon, every 10ms, which with GOMAXPROCS=1 would be
				// measured instead of the propagation. An idle P blocks in
				// epoll, which B's incoming event wakes at once.
				time.Sleep(time.Microsecond)
			}
		}
		took := time.Since(t0)
		seen = append(seen, took)
		after = append(after, max(0, took-write))
	}
	b.StopTimer()
	if misses := metricValue(b, bc.m.miss) - missesBefore; misses != float64(2*b.N) {
		b.Fatalf("B missed its cache %v times, want %d (warm-up and re-check per op): waiting was not all cache hits", misses, 2*b.N)
	}

	slices.Sort(seen)
	slices.Sort(writes)
	slices.Sort(after)
	b.ReportMetric(micros(percentile(seen, 0.50)), "p50-µs")
	b.ReportMetric(micros(percentile(seen, 0.99)), "p99-µs")
	b.ReportMetric(micros(seen[len(seen)-1]), "max-µs")
	b.ReportMetric(micros(percentile(writes, 0.50)), "write-p50-µs")
	b.ReportMetric(micros(percentile(writes, 0.99)), "write-p99-µs")
	b.ReportMetric(micros(percentile(after, 0.50)), "after-write-p50-µs")
	b.ReportMetric(micros(percentile(after, 0.99)), "after-write-p99-µs")
	b.ReportMetric(100*float64(seenAtWrite)/float64(b.N), "seen-at-write-%")
}

// percentile returns the nearest-rank q-quantile of sorted, non-empty d.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
