package revocation

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// benchmarkHit measures a fully cached "not revoked" answer, the common case
// on every proxied request.
func benchmarkHit(b *testing.B, s Store) {
	c := newChecker(b, s, CheckerOptions{MaxStaleness: time.Hour, Registerer: prometheus.NewRegistry()})
	ctx := context.Background()
	iat := time.Now()
	mustRevoked(b, c, "jti-0123456789", "user-42", iat)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if revoked, err := c.Revoked(ctx, "jti-0123456789", "user-42", iat); revoked || err != nil {
				b.Fatal(revoked, err)
			}
		}
	})
}

func BenchmarkCheckerHit(b *testing.B) {
	benchmarkHit(b, NewMemoryStore(nil))
}

func BenchmarkCheckerHitRedis(b *testing.B) {
	benchmarkHit(b, newRedisStore(b, redisTestOptions(b)))
}

// BenchmarkCheckerMissRedis asks Redis every time: a one-entry cache forgets
// each answer before its ids come round again.
func BenchmarkCheckerMissRedis(b *testing.B) {
	c := newChecker(b, newRedisStore(b, redisTestOptions(b)), CheckerOptions{CacheSize: 1, Registerer: prometheus.NewRegistry()})
	ctx := context.Background()
	iat := time.Now()
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = "id-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := c.Revoked(ctx, ids[i%len(ids)], ids[i%len(ids)], iat); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckerCacheEntry reports the heap one cached answer holds
// (B/entry): a full cache of distinct jtis (the default size) over an empty
// one. Run it with -benchtime 1x; it is a memory figure, not a timing.
func BenchmarkCheckerCacheEntry(b *testing.B) {
	const n = DefaultCacheSize
	jtis := make([]string, n)
	for i := range jtis {
		jtis[i] = fmt.Sprintf("%022d", i) // the length of tokengate's jtis
	}
	ctx := context.Background()
	iat := time.Now()
	for b.Loop() {
		c := newChecker(b, NewMemoryStore(nil), CheckerOptions{CacheSize: n})
		before := heapAlloc()
		for _, j := range jtis[:n-1] { // one entry is the user's
			if _, err := c.Revoked(ctx, j, "user-42", iat); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(heapAlloc()-before)/n, "B/entry")
		runtime.KeepAlive(c)
	}
}

func heapAlloc() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
