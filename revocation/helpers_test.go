package revocation

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"tokengate/internal/testsvc"

	"tokengate/internal/testclock"
)

// fakeClock is a settable clock for code that takes Now.
type fakeClock = testclock.Clock

func newFakeClock() *fakeClock {
	return testclock.New(time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC))
}

var redisTestSeq atomic.Int64

// redisTestOptions returns options for the shared Redis with a prefix and a
// channel no other test uses; the keys are deleted when the test ends.
func redisTestOptions(t testing.TB) RedisOptions {
	t.Helper()
	addr := testsvc.RedisAddr(t)
	name := strings.NewReplacer("/", ".", " ", "_").Replace(t.Name())
	prefix := fmt.Sprintf("tgtest:%s:%d:%d:", name, time.Now().UnixNano(), redisTestSeq.Add(1))
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return RedisOptions{
		URL: "redis://" + addr + "/0", Prefix: prefix,
		Logger: slog.New(slog.DiscardHandler),
	}
}

func newRedisStore(t testing.TB, opts RedisOptions) *RedisStore {
	t.Helper()
	s, err := NewRedisStore(opts)
	if err != nil {
		t.Fatalf("NewRedisStore: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rawRedis is a plain client for looking behind a store's back.
func rawRedis(t testing.TB, opts RedisOptions) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(opts.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// goroutineRunning reports whether any goroutine's stack mentions fn.
func goroutineRunning(fn string) bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return bytes.Contains(buf[:n], []byte(fn))
}

// waitGoroutineGone fails unless no goroutine mentions fn within 5s.
func waitGoroutineGone(t testing.TB, fn string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for goroutineRunning(fn) {
		if time.Now().After(deadline) {
			t.Fatalf("goroutine %s still running", fn)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually polls cond every 10ms for up to d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricValue reads a counter or gauge (testutil is not in go.sum).
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	switch {
	case pb.Counter != nil:
		return pb.Counter.GetValue()
	case pb.Gauge != nil:
		return pb.Gauge.GetValue()
	}
	t.Fatalf("not a counter or gauge: %v", &pb)
	return 0
}

// gathered returns the metric families registered on reg, by name.
func gathered(t testing.TB, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}
