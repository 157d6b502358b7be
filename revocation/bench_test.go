package revocation

import (
	"context"
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
