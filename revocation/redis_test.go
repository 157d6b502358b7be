package revocation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"tokengate/internal/testsvc"
)

func TestRedisEveryKeyHasTTL(t *testing.T) {
	ctx := context.Background()
	opts := redisTestOptions(t)
	s := newRedisStore(t, opts)
	now := time.Now()
	for _, err := range []error{
		s.RevokeToken(ctx, "j1", now.Add(time.Hour)),
		s.RevokeUser(ctx, "u1", now, now.Add(time.Hour)),
		s.RevokeUser(ctx, "u1", now.Add(-time.Second), now.Add(2*time.Hour)), // cutoff stays, expiry grows
		s.RevokeUser(ctx, "u2", now, now.Add(time.Minute)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	raw := rawRedis(t, opts)
	ttls := map[string]time.Duration{}
	iter := raw.Scan(ctx, 0, opts.Prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		ttls[iter.Val()] = raw.PTTL(ctx, iter.Val()).Val()
	}
	want := map[string]time.Duration{
		opts.Prefix + "jti:j1":  time.Hour,
		opts.Prefix + "user:u1": 2 * time.Hour,
		opts.Prefix + "user:u2": time.Minute,
	}
	if len(ttls) != len(want) {
		t.Fatalf("keys %v, want %v", ttls, want)
	}
	for key, max := range want {
		if got := ttls[key]; got <= max-time.Minute/2 || got > max {
			t.Errorf("%s: TTL %v, want about %v", key, got, max)
		}
	}
}

// roundTrips counts commands and pipelines sent (one pipeline = one round trip).
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

func TestRedisStatusIsOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newRedisStore(t, redisTestOptions(t))
	now := time.Now()
	if err := s.RevokeToken(ctx, "j", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeUser(ctx, "u", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	hook := &roundTrips{}
	s.client.AddHook(hook)

	st := mustStatus(t, s, "j", "u")
	if !st.TokenRevoked || !st.UserCutoff.Equal(now) {
		t.Fatalf("Status: %+v", st)
	}
	if n := hook.n.Load(); n != 1 {
		t.Fatalf("Status took %d round trips, want 1", n)
	}

	c := newChecker(t, s, CheckerOptions{})
	eventually(t, 5*time.Second, "subscribed", func() bool { return c.Ready(ctx) == nil })
	hook.n.Store(0)
	if _, err := c.Revoked(ctx, "other", "u", now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := hook.n.Load(); n != 1 {
		t.Fatalf("a Checker miss took %d round trips, want 1", n)
	}
}

func TestRedisOptions(t *testing.T) {
	ctx := context.Background()
	r := testsvc.StartRedis(t)
	// Set after start: testsvc checks the server with an unauthenticated PING.
	if err := redis.NewClient(&redis.Options{Addr: r.Addr}).ConfigSet(ctx, "requirepass", "s3cret-pass").Err(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		opts    RedisOptions
		wantErr bool
	}{
		{"URL without password", RedisOptions{URL: "redis://" + r.Addr}, true},
		{"Password overrides the URL", RedisOptions{URL: "redis://:wrong@" + r.Addr, Password: "s3cret-pass"}, false},
		{"URL with password", RedisOptions{URL: "redis://:s3cret-pass@" + r.Addr + "/1"}, false},
		{"single address", RedisOptions{Addrs: []string{r.Addr}, Password: "s3cret-pass"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newRedisStore(t, tc.opts)
			err := s.Ping(ctx)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Ping: %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Ping error %v does not wrap ErrUnavailable", err)
			}
		})
	}

	for _, bad := range []RedisOptions{{}, {URL: "http://:pw-in-url@host"}, {URL: "redis://:pw-in-url@host:6379/x"}, {URL: "redis://:pw-in-url@ho st"}} {
		_, err := NewRedisStore(bad)
		if err == nil {
			t.Errorf("%q accepted", bad.URL)
		} else if strings.Contains(err.Error(), "pw-in-url") {
			t.Errorf("error repeats the URL's password: %v", err)
		}
	}
}

// Two replicas share one Redis: a revocation through A replaces B's cached
// "not revoked" answer. MaxStaleness is an hour, so only the published event
// can explain B seeing it.
func TestRedisPubSubUpdatesOtherReplicas(t *testing.T) {
	ctx := context.Background()
	opts := redisTestOptions(t)
	a := newChecker(t, newRedisStore(t, opts), CheckerOptions{MaxStaleness: time.Hour})
	b := newChecker(t, newRedisStore(t, opts), CheckerOptions{MaxStaleness: time.Hour})
	for _, c := range []*Checker{a, b} {
		eventually(t, 5*time.Second, "subscribed", func() bool { return c.Ready(ctx) == nil })
	}
	iat := time.Now().Add(-time.Second)
	if mustRevoked(t, b, "j", "u", iat) || mustRevoked(t, b, "k", "v", iat) {
		t.Fatal("revoked before anything happened")
	}

	if err := a.RevokeToken(ctx, "j", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "B sees A's token revocation", func() bool { return mustRevoked(t, b, "j", "u", iat) })

	if err := a.RevokeUser(ctx, "v", iat); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "B sees A's user cutoff", func() bool { return mustRevoked(t, b, "k", "v", iat) })
	if mustRevoked(t, b, "k2", "v", iat.Truncate(time.Microsecond).Add(time.Microsecond)) {
		t.Fatal("a token issued after the cutoff is revoked on B")
	}
}

// A revocation that arrives without a message (lost, or written by hand) is
// enforced once the cached answer is older than MaxStaleness.
func TestRedisLostMessageBoundedByStaleness(t *testing.T) {
	ctx := context.Background()
	opts := redisTestOptions(t)
	clock := newFakeClock()
	c := newChecker(t, newRedisStore(t, opts), CheckerOptions{Now: clock.Now, MaxStaleness: 200 * time.Millisecond})
	// Subscribing drops cached answers: wait for it before caching one.
	eventually(t, 5*time.Second, "subscribed", func() bool { return c.Ready(ctx) == nil })
	iat := clock.Now().Add(-time.Second)
	if mustRevoked(t, c, "j", "u", iat) {
		t.Fatal("revoked before anything happened")
	}
	if err := rawRedis(t, opts).Set(ctx, opts.Prefix+"jti:j", "1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if mustRevoked(t, c, "j", "u", iat) {
		t.Fatal("the cached answer was not used within MaxStaleness")
	}
	clock.Advance(201 * time.Millisecond)
	if !mustRevoked(t, c, "j", "u", iat) {
		t.Fatal("revocation without a message not enforced after MaxStaleness")
	}
}

// A private Redis is killed and restarted empty.
func TestRedisOutageAndRecovery(t *testing.T) {
	ctx := context.Background()
	r := testsvc.StartRedis(t)
	opts := RedisOptions{URL: "redis://" + r.Addr, HealthCheckInterval: time.Second}
	store := newRedisStore(t, opts)
	reg := prometheus.NewRegistry()
	c := newChecker(t, store, CheckerOptions{MaxStaleness: time.Hour, Registerer: reg})
	eventually(t, 5*time.Second, "ready", func() bool { return c.Ready(ctx) == nil })
	if up := gathered(t, reg)["tokengate_revocation_pubsub_up"].GetMetric()[0].GetGauge().GetValue(); up != 1 {
		t.Fatalf("pubsub_up %v while subscribed", up)
	}
	iat := time.Now().Add(-time.Second)
	if mustRevoked(t, c, "live", "u", iat) {
		t.Fatal("revoked before anything happened")
	}
	if err := c.RevokeToken(ctx, "dead", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	r.Stop()
	if _, err := c.Revoked(ctx, "uncached", "u", iat); !errors.Is(err, ErrUnavailable) {
		t.Errorf("uncached check with Redis down: %v, want ErrUnavailable", err)
	}
	if err := c.RevokeToken(ctx, "j", time.Now().Add(time.Hour)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("RevokeToken with Redis down: %v, want ErrUnavailable", err)
	}
	if err := c.Ready(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ready with Redis down: %v, want ErrUnavailable", err)
	}
	if !mustRevoked(t, c, "dead", "u", iat) {
		t.Error("cached revoked answer lost while Redis is down")
	}
	eventually(t, 5*time.Second, "subscription marked down", func() bool { return !store.Subscribed() })

	r.Restart(t)
	eventually(t, 10*time.Second, "ready again", func() bool { return c.Ready(ctx) == nil })
	if n := metricValue(t, c.m.pubsubReconnect); n < 1 {
		t.Fatalf("reconnects counted %v, want at least 1", n)
	}
	// Behind the Checker's back, without a message: only the reset on
	// resubscription can make the Checker ask again within the hour.
	if err := rawRedis(t, opts).Set(ctx, store.Prefix()+"jti:live", "1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if !mustRevoked(t, c, "live", "u", iat) {
		t.Error("cached \"not revoked\" answer survived the resubscription")
	}
	if !mustRevoked(t, c, "dead", "u", iat) {
		t.Error("revocation known before the restart forgotten (Redis came back empty)")
	}
}

func TestRedisCloseStopsNotifications(t *testing.T) {
	const fn = "revocation.(*RedisStore).Notifications"
	ctx := context.Background()
	store := newRedisStore(t, redisTestOptions(t))
	c, err := NewChecker(store, CheckerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "ready", func() bool { return c.Ready(ctx) == nil })
	eventually(t, 5*time.Second, "goroutine started", func() bool { return goroutineRunning(fn) })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutineGone(t, fn)
	if store.Subscribed() {
		t.Fatal("still subscribed after Close")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestParseEvent(t *testing.T) {
	cases := []struct {
		payload string
		want    Event
		ok      bool
	}{
		{"t:1700000000123456789:jti-1", Event{EventToken, "jti-1", time.Unix(0, 1700000000123456789)}, true},
		{"u:01700000000123456789:user:with:colons", Event{EventUser, "user:with:colons", time.Unix(0, 1700000000123456789)}, true},
		{"x:1:id", Event{}, false},
		{"t:notanumber:id", Event{}, false},
		{"t:1:", Event{}, false},
		{"t", Event{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.payload, func(t *testing.T) {
			got, ok := parseEvent(tc.payload)
			if ok != tc.ok || got.Kind != tc.want.Kind || got.ID != tc.want.ID || !got.Time.Equal(tc.want.Time) {
				t.Fatalf("parseEvent = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// Two deployments share one Redis server in different databases with the
// default prefix (issue 14): a logout-all and a logout in one never refuse a
// valid token in the other, and neither does a forged message on the other's
// own channel, since a message only makes a replica re-read the store.
// MaxStaleness is an hour, so only a message can change a cached answer.
func TestRedisDeploymentsOnOneServerAreIsolated(t *testing.T) {
	ctx := context.Background()
	addr := testsvc.RedisAddr(t)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 10)
	user, jti := "alice-"+suffix, "jti-"+suffix
	deployment := func(db int) (*RedisStore, *Checker, *Checker) {
		opts := RedisOptions{URL: fmt.Sprintf("redis://%s/%d", addr, db), Logger: slog.New(slog.DiscardHandler)}
		raw := rawRedis(t, opts)
		t.Cleanup(func() {
			for _, k := range []string{"user:" + user, "jti:" + jti, "jti:m1-" + suffix, "jti:m2-" + suffix} {
				raw.Del(context.Background(), DefaultRedisPrefix(db)+k)
			}
		})
		s := newRedisStore(t, opts)
		c1 := newChecker(t, s, CheckerOptions{MaxStaleness: time.Hour})
		c2 := newChecker(t, newRedisStore(t, opts), CheckerOptions{MaxStaleness: time.Hour})
		for _, c := range []*Checker{c1, c2} {
			eventually(t, 5*time.Second, "subscribed", func() bool { return c.Ready(ctx) == nil })
		}
		return s, c1, c2
	}
	storeA, a, _ := deployment(14)
	storeB, b, b2 := deployment(15)
	if storeA.Prefix() != "tokengate:db14:" || storeB.Prefix() != "tokengate:db15:" {
		t.Fatalf("default prefixes %q, %q", storeA.Prefix(), storeB.Prefix())
	}
	iat := time.Now().Add(-time.Second)
	exp := time.Now().Add(time.Hour)
	// seenBy waits until b learns of a revocation made through b2, which
	// was published after every earlier message on b's channel.
	seenBy := func(marker string) {
		t.Helper()
		if mustRevoked(t, b, marker, "marker", iat) {
			t.Fatalf("%s revoked before anything happened", marker)
		}
		if err := b2.RevokeToken(ctx, marker, exp); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "b sees its own deployment's revocation", func() bool {
			return mustRevoked(t, b, marker, "marker", iat)
		})
	}
	if mustRevoked(t, b, jti, user, iat) {
		t.Fatal("revoked before anything happened")
	}

	if err := a.RevokeUser(ctx, user, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := a.RevokeToken(ctx, jti, exp); err != nil {
		t.Fatal(err)
	}
	if !mustRevoked(t, a, jti, user, iat) {
		t.Fatal("deployment A does not refuse its own revoked token")
	}
	seenBy("m1-" + suffix)
	misses := metricValue(t, b.m.miss)
	if mustRevoked(t, b, jti, user, iat) {
		t.Fatal("deployment B refuses a valid token after A's logout and logout_all")
	}
	if metricValue(t, b.m.miss) != misses {
		t.Fatal("A's messages reached B (B re-asked its store): the channel is shared")
	}

	// A message on B's own channel that B's store does not confirm.
	for _, msg := range []string{
		redisEventUser + ":" + fmt.Sprintf("%0*d", redisCutoffDigits, time.Now().UnixNano()) + ":" + user,
		redisEventToken + ":" + strconv.FormatInt(exp.UnixNano(), 10) + ":" + jti,
	} {
		if err := storeB.client.Publish(ctx, storeB.channel, msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	seenBy("m2-" + suffix)
	if mustRevoked(t, b, jti, user, iat) {
		t.Fatal("an unconfirmed message refused a valid token")
	}
}
