package revocation

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"tokengate/internal/metricstest"
)

// The HELP lines are part of the exposition testutil compares.
const (
	helpCache       = "# HELP tokengate_revocation_cache_requests_total Revocation checks answered from the LRU (hit) or by asking the store (miss).\n# TYPE tokengate_revocation_cache_requests_total counter\n"
	helpRevocations = "# HELP tokengate_revocations_total Revocations recorded through this replica (token: logout, user: logout-all).\n# TYPE tokengate_revocations_total counter\n"
	helpStoreErrors = "# HELP tokengate_revocation_store_errors_total Revocation store calls that failed.\n# TYPE tokengate_revocation_store_errors_total counter\n"
	helpStoreDur    = "# HELP tokengate_revocation_store_duration_seconds Latency of revocation store calls.\n# TYPE tokengate_revocation_store_duration_seconds histogram\n"
)

var storeOps = []string{"ping", "revoke_token", "revoke_user", "status"}

func storeDurationCounts(n map[string]int) string {
	return metricstest.HistogramCounts(helpStoreDur, "tokengate_revocation_store_duration_seconds", "op", storeOps, n)
}

func TestTestutilCheckerMetrics(t *testing.T) {
	backends := []struct {
		name string
		open func(t *testing.T) Store
	}{
		{"memory", func(t *testing.T) Store { return NewMemoryStore(nil) }},
		{"bolt", func(t *testing.T) Store {
			return openBolt(t, filepath.Join(t.TempDir(), "revocations.db"), BoltOptions{Logger: slog.New(slog.DiscardHandler)})
		}},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			store := be.open(t)
			reg := prometheus.NewRegistry()
			// Real clock; an hour of staleness keeps every cached answer fresh.
			c := newChecker(t, store, CheckerOptions{MaxStaleness: time.Hour, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
			now := time.Now()
			iat := now.Add(-time.Minute)

			for range 3 { // one miss, then two hits
				mustRevoked(t, c, "j1", "u1", iat)
			}
			if miss, hit := testutil.ToFloat64(c.m.miss), testutil.ToFloat64(c.m.hit); miss != 1 || hit != 2 {
				t.Fatalf("after three checks of one token: miss %v hit %v, want 1 and 2", miss, hit)
			}
			if err := c.RevokeToken(ctx, "j2", now.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if !mustRevoked(t, c, "j2", "u1", iat) { // hit: the revocation is cached
				t.Fatal("revoked token not revoked")
			}
			if err := c.RevokeUser(ctx, "u2", now); err != nil {
				t.Fatal(err)
			}
			if !mustRevoked(t, c, "j3", "u2", iat) { // hit: the cutoff is cached
				t.Fatal("token before the cutoff not revoked")
			}
			if mustRevoked(t, c, "j4", "u3", iat) { // miss
				t.Fatal("unknown token revoked")
			}
			if err := c.Ready(ctx); err != nil {
				t.Fatal(err)
			}

			metricstest.Want(t, reg, helpCache+`
tokengate_revocation_cache_requests_total{result="hit"} 4
tokengate_revocation_cache_requests_total{result="miss"} 2
`, "tokengate_revocation_cache_requests_total")
			metricstest.Want(t, reg, helpRevocations+`
tokengate_revocations_total{kind="token"} 1
tokengate_revocations_total{kind="user"} 1
`, "tokengate_revocations_total")
			metricstest.Want(t, reg, helpStoreErrors+`
tokengate_revocation_store_errors_total{op="ping"} 0
tokengate_revocation_store_errors_total{op="revoke_token"} 0
tokengate_revocation_store_errors_total{op="revoke_user"} 0
tokengate_revocation_store_errors_total{op="status"} 0
`, "tokengate_revocation_store_errors_total")
			metricstest.Want(t, metricstest.CountsOnly(reg), storeDurationCounts(map[string]int{"ping": 1, "revoke_token": 1, "revoke_user": 1, "status": 2}),
				"tokengate_revocation_store_duration_seconds")

			// The store closed: every kind of call fails once, and failed
			// revocations are not counted as revocations.
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Revoked(ctx, "j5", "u4", iat); err == nil {
				t.Error("Revoked with the store closed: no error")
			}
			if err := c.RevokeToken(ctx, "j6", now.Add(time.Hour)); err == nil {
				t.Error("RevokeToken with the store closed: no error")
			}
			if err := c.RevokeUser(ctx, "u5", now); err == nil {
				t.Error("RevokeUser with the store closed: no error")
			}
			if err := c.Ready(ctx); err == nil {
				t.Error("Ready with the store closed: no error")
			}

			metricstest.Want(t, reg, helpStoreErrors+`
tokengate_revocation_store_errors_total{op="ping"} 1
tokengate_revocation_store_errors_total{op="revoke_token"} 1
tokengate_revocation_store_errors_total{op="revoke_user"} 1
tokengate_revocation_store_errors_total{op="status"} 1
`, "tokengate_revocation_store_errors_total")
			metricstest.Want(t, metricstest.CountsOnly(reg), storeDurationCounts(map[string]int{"ping": 2, "revoke_token": 2, "revoke_user": 2, "status": 3}),
				"tokengate_revocation_store_duration_seconds")
			metricstest.Want(t, reg, helpRevocations+`
tokengate_revocations_total{kind="token"} 1
tokengate_revocations_total{kind="user"} 1
`, "tokengate_revocations_total")
			metricstest.Want(t, reg, helpCache+`
tokengate_revocation_cache_requests_total{result="hit"} 4
tokengate_revocation_cache_requests_total{result="miss"} 3
`, "tokengate_revocation_cache_requests_total")
		})
	}
}

func TestTestutilStoreDurationBuckets(t *testing.T) {
	reg := prometheus.NewRegistry()
	newChecker(t, NewMemoryStore(nil), CheckerOptions{Registerer: reg})
	// Empty histograms, one per op, so the buckets themselves compare:
	// 100 µs (a local Redis round trip) to 5 s (a slow fsync, a failover).
	bounds := []string{"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"}
	var b strings.Builder
	b.WriteString(helpStoreDur)
	for _, op := range storeOps {
		for _, le := range bounds {
			fmt.Fprintf(&b, "tokengate_revocation_store_duration_seconds_bucket{op=%q,le=%q} 0\n", op, le)
		}
		fmt.Fprintf(&b, "tokengate_revocation_store_duration_seconds_sum{op=%q} 0\n", op)
		fmt.Fprintf(&b, "tokengate_revocation_store_duration_seconds_count{op=%q} 0\n", op)
	}
	metricstest.Want(t, reg, b.String(), "tokengate_revocation_store_duration_seconds")
	// Nothing but the Checker's families, and no series per token or user.
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 2+2+4+4 {
		t.Errorf("%d series on a fresh Checker (%v), want 12: cache hit/miss, revocations token/user, 4 ops x (duration, errors)", n, err)
	}
}

// The pub/sub metrics exist only for a store that notifies (Redis).
func TestTestutilRedisPubSubMetrics(t *testing.T) {
	ctx := context.Background()
	store := newRedisStore(t, redisTestOptions(t))
	reg := prometheus.NewRegistry()
	c := newChecker(t, store, CheckerOptions{MaxStaleness: time.Hour, Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	eventually(t, 5*time.Second, "subscribed", store.Subscribed)
	metricstest.Want(t, reg, `
# HELP tokengate_revocation_pubsub_up 1 while the revocation pub/sub subscription is established.
# TYPE tokengate_revocation_pubsub_up gauge
tokengate_revocation_pubsub_up 1
# HELP tokengate_revocation_pubsub_reconnects_total Times the revocation pub/sub subscription was re-established after a loss.
# TYPE tokengate_revocation_pubsub_reconnects_total counter
tokengate_revocation_pubsub_reconnects_total 0
`, "tokengate_revocation_pubsub_up", "tokengate_revocation_pubsub_reconnects_total")

	// The Checker's own metrics behave as with any store.
	if err := c.RevokeUser(ctx, "u", time.Now()); err != nil {
		t.Fatal(err)
	}
	if !mustRevoked(t, c, "j", "u", time.Now().Add(-time.Minute)) {
		t.Fatal("token before the cutoff not revoked")
	}
	if got := testutil.ToFloat64(c.m.revokedUsers); got != 1 {
		t.Errorf("revocations{user} %v, want 1", got)
	}
	metricstest.Want(t, reg, helpRevocations+`
tokengate_revocations_total{kind="token"} 0
tokengate_revocations_total{kind="user"} 1
`, "tokengate_revocations_total")

	// Without a notifying store the pub/sub families are absent.
	plain := prometheus.NewRegistry()
	newChecker(t, NewMemoryStore(nil), CheckerOptions{Registerer: plain})
	if n, err := testutil.GatherAndCount(plain, "tokengate_revocation_pubsub_up", "tokengate_revocation_pubsub_reconnects_total"); err != nil || n != 0 {
		t.Errorf("memory store: %d pub/sub series (%v), want none", n, err)
	}
}
