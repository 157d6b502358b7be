package revocation

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// storeBackend opens a store for one test. replica returns another handle on
// the same data (a second RedisStore on the same Redis; the same instance for
// in-process stores). The clock is the store's: fake for in-process stores,
// real for Redis, whose TTLs run on its own clock.
type storeBackend struct {
	name string
	open func(t *testing.T) (s Store, replica func() Store, clock testClock)
}

type testClock interface {
	Now() time.Time
	Advance(time.Duration)
}

type realClock struct{}

func (realClock) Now() time.Time          { return time.Now() }
func (realClock) Advance(d time.Duration) { time.Sleep(d) }

func storeBackends() []storeBackend {
	return []storeBackend{
		{"memory", func(t *testing.T) (Store, func() Store, testClock) {
			clock := newFakeClock()
			s := NewMemoryStore(clock.Now)
			return s, func() Store { return s }, clock
		}},
		{"bolt", func(t *testing.T) (Store, func() Store, testClock) {
			clock := newFakeClock()
			s, err := OpenBoltStore(filepath.Join(t.TempDir(), "revocations.db"), BoltOptions{Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s, func() Store { return s }, clock
		}},
		{"redis", func(t *testing.T) (Store, func() Store, testClock) {
			opts := redisTestOptions(t)
			return newRedisStore(t, opts), func() Store { return newRedisStore(t, opts) }, realClock{}
		}},
	}
}

func mustStatus(t *testing.T, s Store, jti, user string) Status {
	t.Helper()
	st, err := s.Status(context.Background(), jti, user)
	if err != nil {
		t.Fatalf("Status(%q, %q): %v", jti, user, err)
	}
	return st
}

func TestStoreBehaviour(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		run  func(t *testing.T, s Store, replica func() Store, clock testClock)
	}{
		{"revoked token is reported, others are not", func(t *testing.T, s Store, _ func() Store, clock testClock) {
			if st := mustStatus(t, s, "j1", "u1"); st.TokenRevoked || !st.UserCutoff.IsZero() {
				t.Fatalf("fresh store: %+v", st)
			}
			if err := s.RevokeToken(ctx, "j1", clock.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if st := mustStatus(t, s, "j1", "u1"); !st.TokenRevoked || !st.UserCutoff.IsZero() {
				t.Fatalf("after revoking j1: %+v", st)
			}
			if st := mustStatus(t, s, "j2", "u1"); st.TokenRevoked {
				t.Fatalf("j2 reported revoked: %+v", st)
			}
		}},
		{"cutoff keeps nanoseconds and only moves forward", func(t *testing.T, s Store, _ func() Store, clock testClock) {
			c1 := clock.Now().Add(-time.Minute).Truncate(time.Second).Add(123456789)
			until := clock.Now().Add(time.Hour)
			steps := []struct {
				cutoff, want time.Time
			}{
				{c1, c1},
				{c1.Add(-time.Nanosecond), c1},
				{c1.Add(time.Nanosecond), c1.Add(time.Nanosecond)},
				{c1, c1.Add(time.Nanosecond)},
			}
			for i, step := range steps {
				if err := s.RevokeUser(ctx, "u1", step.cutoff, until); err != nil {
					t.Fatal(err)
				}
				if got := mustStatus(t, s, "j1", "u1").UserCutoff; !got.Equal(step.want) {
					t.Fatalf("step %d: cutoff %v, want %v", i, got.Format(time.RFC3339Nano), step.want.Format(time.RFC3339Nano))
				}
			}
			if st := mustStatus(t, s, "j1", "u2"); !st.UserCutoff.IsZero() {
				t.Fatalf("u2 has a cutoff: %+v", st)
			}
		}},
		{"concurrent cutoffs keep the latest", func(t *testing.T, s Store, replica func() Store, clock testClock) {
			base := clock.Now().Truncate(time.Second)
			handles := []Store{s, replica()}
			const racers = 32
			order := rand.Perm(racers)
			var wg sync.WaitGroup
			errs := make(chan error, racers)
			for i, n := range order {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cutoff := base.Add(time.Duration(n) * time.Nanosecond)
					errs <- handles[i%len(handles)].RevokeUser(ctx, "racer", cutoff, base.Add(time.Hour))
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			want := base.Add((racers - 1) * time.Nanosecond)
			if got := mustStatus(t, replica(), "", "racer").UserCutoff; !got.Equal(want) {
				t.Fatalf("cutoff %v, want the latest %v", got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
			}
		}},
		{"entries expire", func(t *testing.T, s Store, _ func() Store, clock testClock) {
			now := clock.Now()
			if err := s.RevokeToken(ctx, "short", now.Add(300*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if err := s.RevokeUser(ctx, "short", now, now.Add(300*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if st := mustStatus(t, s, "short", "short"); !st.TokenRevoked || st.UserCutoff.IsZero() {
				t.Fatalf("just revoked: %+v", st)
			}
			clock.Advance(300 * time.Millisecond)
			eventually(t, 5*time.Second, "entries expire", func() bool {
				st := mustStatus(t, s, "short", "short")
				return !st.TokenRevoked && st.UserCutoff.IsZero()
			})
		}},
		{"an earlier cutoff kept longer keeps the later cutoff alive", func(t *testing.T, s Store, _ func() Store, clock testClock) {
			now := clock.Now()
			late := now.Add(-time.Second)
			if err := s.RevokeUser(ctx, "u", late, now.Add(300*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if err := s.RevokeUser(ctx, "u", late.Add(-time.Minute), now.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			clock.Advance(500 * time.Millisecond) // past the first expiry
			if got := mustStatus(t, s, "", "u").UserCutoff; !got.Equal(late) {
				t.Fatalf("cutoff %v, want %v kept until the later expiry", got, late)
			}
		}},
		{"already expired revocations are no-ops", func(t *testing.T, s Store, _ func() Store, clock testClock) {
			past := clock.Now().Add(-time.Second)
			if err := s.RevokeToken(ctx, "old", past); err != nil {
				t.Fatal(err)
			}
			if err := s.RevokeUser(ctx, "old", past.Add(-time.Hour), past); err != nil {
				t.Fatal(err)
			}
			if st := mustStatus(t, s, "old", "old"); st.TokenRevoked || !st.UserCutoff.IsZero() {
				t.Fatalf("expired revocations reported: %+v", st)
			}
		}},
		{"empty ids are refused", func(t *testing.T, s Store, _ func() Store, clock testClock) {
			if err := s.RevokeToken(ctx, "", clock.Now().Add(time.Hour)); err == nil {
				t.Error("RevokeToken with empty jti succeeded")
			}
			if err := s.RevokeUser(ctx, "", clock.Now(), clock.Now().Add(time.Hour)); err == nil {
				t.Error("RevokeUser with empty user succeeded")
			}
			if st := mustStatus(t, s, "", ""); st.TokenRevoked || !st.UserCutoff.IsZero() {
				t.Fatalf("empty ids reported revoked: %+v", st)
			}
		}},
		{"a closed store is unavailable", func(t *testing.T, s Store, _ func() Store, clock testClock) {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Status(ctx, "j", "u"); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Status after Close: %v, want ErrUnavailable", err)
			}
			if err := s.RevokeToken(ctx, "j", clock.Now().Add(time.Hour)); !errors.Is(err, ErrUnavailable) {
				t.Errorf("RevokeToken after Close: %v, want ErrUnavailable", err)
			}
			if err := s.RevokeUser(ctx, "u", clock.Now(), clock.Now().Add(time.Hour)); !errors.Is(err, ErrUnavailable) {
				t.Errorf("RevokeUser after Close: %v, want ErrUnavailable", err)
			}
			if err := s.(pinger).Ping(ctx); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Ping after Close: %v, want ErrUnavailable", err)
			}
		}},
	}
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					s, replica, clock := b.open(t)
					tc.run(t, s, replica, clock)
				})
			}
		})
	}
}
