package revocation

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// claimConcurrently calls RevokeTokenOnce for jti from n goroutines, spread
// over handles, released together, and returns how many got first == true.
func claimConcurrently(t *testing.T, handles []Store, jti string, exp time.Time, n int) int {
	t.Helper()
	ctx := context.Background()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
		wins  int
		errs  []error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			first, err := handles[i%len(handles)].RevokeTokenOnce(ctx, jti, exp)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else if first {
				wins++
			}
		}()
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return wins
}

// Of concurrent claims of one jti, from every handle on the store (two
// RedisStores on one Redis), exactly one is first; later ones are not, nor
// is a claim of a token already logged out.
func TestStoreRevokeTokenOnce(t *testing.T) {
	ctx := context.Background()
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			s, replica, clock := b.open(t)
			handles := []Store{s, replica()}
			exp := clock.Now().Add(time.Hour)
			for round := range 10 {
				jti := fmt.Sprintf("refresh-%d", round)
				if wins := claimConcurrently(t, handles, jti, exp, 20); wins != 1 {
					t.Fatalf("round %d: %d of 20 concurrent claims were first, want exactly 1", round, wins)
				}
				if first, err := s.RevokeTokenOnce(ctx, jti, exp); err != nil || first {
					t.Fatalf("round %d: a later claim: first=%v err=%v, want false", round, first, err)
				}
				if !mustStatus(t, replica(), jti, "").TokenRevoked {
					t.Fatalf("round %d: the claimed jti is not revoked", round)
				}
			}
			if err := s.RevokeToken(ctx, "logged-out", exp); err != nil {
				t.Fatal(err)
			}
			if first, err := s.RevokeTokenOnce(ctx, "logged-out", exp); err != nil || first {
				t.Fatalf("claim of a logged-out jti: first=%v err=%v, want false", first, err)
			}
			if first, err := s.RevokeTokenOnce(ctx, "long-gone", clock.Now().Add(-time.Second)); err != nil || first {
				t.Fatalf("claim of an expired jti: first=%v err=%v, want false (nothing to claim)", first, err)
			}
			if _, err := s.RevokeTokenOnce(ctx, "", exp); err == nil {
				t.Error("RevokeTokenOnce with an empty jti succeeded")
			}
			// Once the revocation expired, the jti may be claimed again
			// (the token it stood for cannot be verified any more).
			if first, err := s.RevokeTokenOnce(ctx, "short", clock.Now().Add(300*time.Millisecond)); err != nil || !first {
				t.Fatalf("first claim of short: first=%v err=%v", first, err)
			}
			clock.Advance(300 * time.Millisecond)
			eventually(t, 5*time.Second, "an expired claim can be made again", func() bool {
				first, err := s.RevokeTokenOnce(ctx, "short", clock.Now().Add(time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				return first
			})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RevokeTokenOnce(ctx, "j", exp); !errors.Is(err, ErrUnavailable) {
				t.Errorf("RevokeTokenOnce after Close: %v, want ErrUnavailable", err)
			}
		})
	}
}

// The longest lifetime only grows, is shared by every handle, and (bolt,
// Redis) survives reopening.
func TestStoreNoteLifetime(t *testing.T) {
	ctx := context.Background()
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			s, replica, _ := b.open(t)
			for _, step := range []struct{ note, want time.Duration }{
				{time.Minute, time.Minute},
				{2 * time.Second, time.Minute},
				{90 * time.Second, 90 * time.Second},
				{0, 90 * time.Second},
			} {
				got, err := s.NoteLifetime(ctx, step.note)
				if err != nil {
					t.Fatal(err)
				}
				if got != step.want {
					t.Fatalf("NoteLifetime(%s) = %s, want %s", step.note, got, step.want)
				}
			}
			if got, err := replica().NoteLifetime(ctx, time.Second); err != nil || got != 90*time.Second {
				t.Fatalf("another handle: %s, %v; want 90s", got, err)
			}
		})
	}
	t.Run("bolt reopened", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "r.db")
		s := openBolt(t, path, BoltOptions{})
		if _, err := s.NoteLifetime(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openBolt(t, path, BoltOptions{})
		if got, err := s.NoteLifetime(ctx, time.Second); err != nil || got != time.Hour {
			t.Fatalf("after reopening: %s, %v; want 1h", got, err)
		}
	})
	t.Run("redis key has no expiry", func(t *testing.T) {
		opts := redisTestOptions(t)
		s := newRedisStore(t, opts)
		if _, err := s.NoteLifetime(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		ttl, err := rawRedis(t, opts).PTTL(ctx, s.prefix+"longest_lifetime").Result()
		if err != nil || ttl != -1 {
			t.Fatalf("PTTL of the longest lifetime key: %s, %v; want -1ms (no expiry)", ttl, err)
		}
	})
}

// Twenty concurrent Checker.RevokeTokenOnce calls on two replicas: one wins,
// and only the winner counts as a revoked token.
func TestCheckerRevokeTokenOnce(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	store := NewMemoryStore(clock.Now)
	a := newChecker(t, store, CheckerOptions{Now: clock.Now})
	b := newChecker(t, store, CheckerOptions{Now: clock.Now})
	exp := clock.Now().Add(time.Hour)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
		wins  int
	)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c := a
			if i%2 == 1 {
				c = b
			}
			first, err := c.RevokeTokenOnce(ctx, "j", exp)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if first {
				wins++
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d of 20 concurrent refresh claims won, want exactly 1", wins)
	}
	if got := metricValue(t, a.m.revokedTokens) + metricValue(t, b.m.revokedTokens); got != 1 {
		t.Fatalf("revoked tokens counted %v times, want 1", got)
	}
	if !mustRevoked(t, a, "j", "u", clock.Now()) || !mustRevoked(t, b, "j", "u", clock.Now()) {
		t.Fatal("the claimed token is not revoked")
	}
	_ = store.Close()
	// Cached as revoked: answered without the (now closed) store.
	if first, err := a.RevokeTokenOnce(ctx, "j", exp); err != nil || first {
		t.Fatalf("claim of a cached revoked jti: first=%v err=%v", first, err)
	}
	if _, err := a.RevokeTokenOnce(ctx, "other", exp); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("claim with the store down: %v, want ErrUnavailable", err)
	}
}

// Issue 13 point 6: tokens issued while tokens.ttl was 60s; the process
// restarts with 2s and a user logs out everywhere. The cutoff must outlive
// the 60s tokens, on a fresh replica and after another restart.
func TestCutoffOutlivesLoweredLifetimeBolt(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), "revocations.db")
	iat := clock.Now().Truncate(time.Microsecond)

	s := openBolt(t, path, BoltOptions{Now: clock.Now})
	before := newChecker(t, s, CheckerOptions{Now: clock.Now, UserCutoffTTL: 60 * time.Second})
	if err := before.NoteLifetime(ctx); err != nil { // startup, before issuing
		t.Fatal(err)
	}
	_ = before.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Second)
	s = openBolt(t, path, BoltOptions{Now: clock.Now})
	after := newChecker(t, s, CheckerOptions{Now: clock.Now, UserCutoffTTL: 2 * time.Second})
	if err := after.NoteLifetime(ctx); err != nil {
		t.Fatal(err)
	}
	if err := after.RevokeUser(ctx, "u", clock.Now()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Second) // past 2s; the 60s token is still valid
	if n, err := s.sweep(); err != nil || n != 0 {
		t.Fatalf("sweep deleted %d entries (%v); the cutoff must stay", n, err)
	}
	_ = after.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openBolt(t, path, BoltOptions{Now: clock.Now})
	fresh := newChecker(t, s, CheckerOptions{Now: clock.Now, UserCutoffTTL: 2 * time.Second})
	if !mustRevoked(t, fresh, "old", "u", iat) {
		t.Fatal("a token issued under ttl 60s works again 10s after logout-all under ttl 2s")
	}
	// And the cutoff is not kept forever: past the longest lifetime it goes.
	clock.Advance(60 * time.Second)
	if n, err := s.sweep(); err != nil || n != 1 {
		t.Fatalf("sweep past the longest lifetime deleted %d entries (%v), want 1", n, err)
	}
}

// The same on Redis: the cutoff's key lives as long as the longest lifetime
// any replica noted, not the revoking replica's own.
func TestCutoffOutlivesLoweredLifetimeRedis(t *testing.T) {
	ctx := context.Background()
	opts := redisTestOptions(t)
	long := newChecker(t, newRedisStore(t, opts), CheckerOptions{UserCutoffTTL: time.Hour})
	if err := long.NoteLifetime(ctx); err != nil {
		t.Fatal(err)
	}
	shortStore := newRedisStore(t, opts)
	short := newChecker(t, shortStore, CheckerOptions{UserCutoffTTL: 2 * time.Second})
	if err := short.RevokeUser(ctx, "u", time.Now()); err != nil {
		t.Fatal(err)
	}
	ttl, err := rawRedis(t, opts).PTTL(ctx, shortStore.userKey("u")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl < 50*time.Minute {
		t.Fatalf("cutoff kept for %s, want about the 1h lifetime noted by the other replica", ttl)
	}
}

// A store that was unreachable when the lifetime was first noted learns it
// from the first RevokeUser: the cutoff is kept for this replica's lifetime.
func TestRevokeUserNotesLifetime(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	store := NewMemoryStore(clock.Now)
	c := newChecker(t, store, CheckerOptions{Now: clock.Now, UserCutoffTTL: time.Hour})
	if err := c.RevokeUser(ctx, "u", clock.Now()); err != nil {
		t.Fatal(err)
	}
	if got, err := store.NoteLifetime(ctx, 0); err != nil || got != time.Hour {
		t.Fatalf("noted lifetime %s, %v; want 1h", got, err)
	}
}

// Issue 13 point 7: one precision. The cutoff is kept in whole
// microseconds (iat's precision); iat <= cutoff is dead, so a token of the
// cutoff's own microsecond is dead (it cannot be told from one issued just
// before) and one of the next microsecond lives.
func TestCutoffPrecision(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock() // ...05.123456789
	store := NewMemoryStore(clock.Now)
	c := newChecker(t, store, CheckerOptions{Now: clock.Now})
	if err := c.RevokeUser(ctx, "u", clock.Now()); err != nil {
		t.Fatal(err)
	}
	want := clock.Now().Truncate(time.Microsecond)
	if got := mustStatus(t, store, "", "u").UserCutoff; !got.Equal(want) {
		t.Fatalf("stored cutoff %s, want %s (whole microseconds)", got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
	for _, tc := range []struct {
		iat  time.Time
		want bool
	}{
		{want.Add(-time.Microsecond), true},
		{want, true},
		{want.Add(time.Microsecond), false},
	} {
		fresh := newChecker(t, store, CheckerOptions{Now: clock.Now})
		for _, ch := range []*Checker{fresh, fresh, c} { // store path, cached, revoking replica
			if got := mustRevoked(t, ch, "j", "u", tc.iat); got != tc.want {
				t.Fatalf("iat %s: revoked %v, want %v", tc.iat.Format(time.RFC3339Nano), got, tc.want)
			}
		}
	}
}

// On the real clock: a token issued right after RevokeUser returns (iat =
// now in whole microseconds, as authn issues it) is never refused, even
// when both fall in one microsecond of a nanosecond-precise cutoff.
func TestTokenIssuedAfterLogoutAllPasses(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore(nil)
	c := newChecker(t, store, CheckerOptions{})
	for i := range 3000 {
		user := fmt.Sprintf("u%d", i)
		if err := c.RevokeUser(ctx, user, time.Now()); err != nil {
			t.Fatal(err)
		}
		iat := time.Now().UTC().Truncate(time.Microsecond)
		if mustRevoked(t, c, "j", user, iat) {
			t.Fatalf("attempt %d: a token issued after logout-all returned is refused", i)
		}
	}
}

// Issue 17 point 2: the logout-all boundary on the store path. A token
// issued in the same tick as the logout-all is refused by a replica that
// never saw either (nothing cached: its answer comes from the store).
func TestCutoffBoundaryOnStorePath(t *testing.T) {
	ctx := context.Background()
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			s, replica, clock := b.open(t)
			now := clock.Now()
			tick := now.Truncate(time.Microsecond) // the token's iat
			a := newChecker(t, s, CheckerOptions{Now: clock.Now})
			if err := a.RevokeUser(ctx, "u", now); err != nil {
				t.Fatal(err)
			}
			fresh := newChecker(t, replica(), CheckerOptions{Now: clock.Now})
			if !mustRevoked(t, fresh, "same-tick", "u", tick) {
				t.Fatal("a replica that never saw it accepts a token issued in the logout-all's tick")
			}
			later := newChecker(t, replica(), CheckerOptions{Now: clock.Now})
			if mustRevoked(t, later, "next-tick", "u", tick.Add(time.Microsecond)) {
				t.Fatal("a token issued a microsecond after the logout-all is refused")
			}
		})
	}
}
