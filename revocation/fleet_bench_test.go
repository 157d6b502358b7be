package revocation

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"tokengate/internal/testsvc"
)

// fleetSize is the number of replicas in BenchmarkFleetPropagation.
const fleetSize = 20

// BenchmarkFleetPropagation (issue 11.4): 20 replicas (a RedisStore and a
// Checker each, their own connections and subscription) share one private
// Redis, or the 3+3 Cluster. One op is one logout through replica 0: every
// replica first caches "not revoked" for a fresh jti, then the clock
// starts, replica 0 revokes, and every replica is asked until it refuses
// the token. MaxStaleness is an hour, so only the published message can
// make a replica re-read the key. Reported: p50/p99/max over every
// (revocation, replica) pair of the time from the start of the revocation
// to that replica refusing it; and, from INFO commandstats around the
// propagation phase only (the warm-up excluded), Redis commands per
// revocation by name and pub/sub deliveries per revocation.
//
//	go test -run '^$' -bench BenchmarkFleetPropagation -benchtime 300x ./revocation
func BenchmarkFleetPropagation(b *testing.B) {
	b.Run("standalone", func(b *testing.B) {
		r := testsvc.StartRedis(b)
		opts := haOptions(b)
		opts.URL = "redis://" + r.Addr
		benchFleet(b, opts, []string{r.Addr})
	})
	b.Run("cluster", func(b *testing.B) {
		c := testsvc.StartRedisCluster(b)
		opts := haOptions(b)
		opts.Addrs = c.Addrs()
		benchFleet(b, opts, c.Addrs())
	})
}

func benchFleet(b *testing.B, opts RedisOptions, servers []string) {
	ctx := context.Background()
	fleet := make([]*Checker, fleetSize)
	for i := range fleet {
		s := newRedisStore(b, opts)
		fleet[i] = newChecker(b, s, CheckerOptions{MaxStaleness: time.Hour, Registerer: prometheus.NewRegistry()})
		eventually(b, 10*time.Second, "subscribed", s.Subscribed)
	}
	iat := time.Now().Add(-time.Second)
	exp := time.Now().Add(time.Hour)
	var seen []time.Duration
	calls := map[string]int64{}
	var spent time.Duration
	b.ResetTimer()
	for i := range b.N {
		jti := "fleet-" + strconv.Itoa(b.N) + "-" + strconv.Itoa(i)
		for _, c := range fleet {
			if mustRevoked(b, c, jti, "user-42", iat) {
				b.Fatal("revoked before anything happened")
			}
		}
		before := commandStats(b, servers)
		t0 := time.Now()
		if err := fleet[0].RevokeToken(ctx, jti, exp); err != nil {
			b.Fatal(err)
		}
		pending := slices.Clone(fleet)
		for len(pending) > 0 {
			if time.Since(t0) > 10*time.Second {
				b.Fatalf("%d replicas did not see %s within 10s", len(pending), jti)
			}
			pending = slices.DeleteFunc(pending, func(c *Checker) bool {
				if mustRevoked(b, c, jti, "user-42", iat) {
					seen = append(seen, time.Since(t0))
					return true
				}
				return false
			})
			if len(pending) > 0 {
				time.Sleep(20 * time.Microsecond) // let the event loop deliver (see BenchmarkPropagation)
			}
		}
		spent += time.Since(t0)
		for name, n := range commandStats(b, servers) {
			calls[name] += n - before[name]
		}
	}
	b.StopTimer()
	slices.Sort(seen)
	b.ReportMetric(micros(percentile(seen, 0.50)), "p50-µs")
	b.ReportMetric(micros(percentile(seen, 0.99)), "p99-µs")
	b.ReportMetric(micros(seen[len(seen)-1]), "max-µs")
	var total int64
	var parts []string
	for name, n := range calls {
		if n == 0 || clientOverhead[name] {
			continue
		}
		total += n
		parts = append(parts, fmt.Sprintf("%s=%.1f", name, float64(n)/float64(b.N)))
	}
	slices.Sort(parts)
	b.ReportMetric(float64(total)/float64(b.N), "redis-cmds/revocation")
	b.ReportMetric(float64(calls["publish"]+calls["spublish"])*fleetSize/float64(b.N), "deliveries/revocation")
	b.Logf("%d replicas, %d revocations: commands per revocation during propagation: %s; busy %.0f revocations/s end to end",
		fleetSize, b.N, strings.Join(parts, " "), float64(b.N)/spent.Seconds())
}

// clientOverhead are commands of the measurement (INFO on a new connection)
// and of the clients' own bookkeeping, not of revocations.
var clientOverhead = map[string]bool{"info": true, "hello": true, "command": true, "select": true,
	"replconf": true, "cluster|slots": true, "ping": true, "client|setinfo": true}

// commandStats sums INFO commandstats calls per command over servers.
func commandStats(b *testing.B, servers []string) map[string]int64 {
	b.Helper()
	out := map[string]int64{}
	for _, addr := range servers {
		c := redis.NewClient(&redis.Options{Addr: addr})
		info, err := c.Info(context.Background(), "commandstats").Result()
		_ = c.Close()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			// cmdstat_get:calls=12,usec=...
			name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":calls=")
			if !ok {
				continue
			}
			n, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
			out[name] += n
		}
	}
	return out
}
