package revocation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func newChecker(t testing.TB, s Store, opts CheckerOptions) *Checker {
	t.Helper()
	c, err := NewChecker(s, opts)
	if err != nil {
		t.Fatalf("NewChecker: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func mustRevoked(t testing.TB, c *Checker, jti, user string, iat time.Time) bool {
	t.Helper()
	revoked, err := c.Revoked(context.Background(), jti, user, iat)
	if err != nil {
		t.Fatalf("Revoked(%q, %q): %v", jti, user, err)
	}
	return revoked
}

func TestCheckerAnswers(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	store := NewMemoryStore(clock.Now)
	c := newChecker(t, store, CheckerOptions{Now: clock.Now})
	cutoff := clock.Now().Add(-time.Minute)
	if err := c.RevokeToken(ctx, "dead", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeUser(ctx, "all-out", cutoff); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, jti, user string
		iat             time.Time
		want            bool
	}{
		{"revoked jti", "dead", "someone", cutoff.Add(time.Hour), true},
		{"live jti, user without cutoff", "live", "someone", cutoff, false},
		{"issued before the cutoff", "a", "all-out", cutoff.Add(-time.Second), true},
		{"issued exactly at the cutoff", "b", "all-out", cutoff, true},
		{"issued in the cutoff's microsecond", "c", "all-out", cutoff.Truncate(time.Microsecond).Add(999 * time.Nanosecond), true},
		{"issued one microsecond after the cutoff", "c2", "all-out", cutoff.Truncate(time.Microsecond).Add(time.Microsecond), false},
		{"no iat with a cutoff", "d", "all-out", time.Time{}, true},
		{"no iat without a cutoff", "e", "someone", time.Time{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: the store's answer, then the cached one.
			for i := range 2 {
				if got := mustRevoked(t, c, tc.jti, tc.user, tc.iat); got != tc.want {
					t.Fatalf("call %d: Revoked = %v, want %v", i+1, got, tc.want)
				}
			}
		})
	}
}

func TestCheckerCachesAndCountsHits(t *testing.T) {
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	c := newChecker(t, NewMemoryStore(clock.Now), CheckerOptions{Now: clock.Now, Registerer: reg})
	for range 3 {
		mustRevoked(t, c, "j", "u", clock.Now())
	}
	if hit, miss := metricValue(t, c.m.hit), metricValue(t, c.m.miss); hit != 2 || miss != 1 {
		t.Fatalf("hits %v misses %v, want 2 and 1", hit, miss)
	}
	if n := len(gathered(t, reg)["tokengate_revocation_store_duration_seconds"].GetMetric()); n != 4 {
		t.Fatalf("%d store duration series, want one per op (4)", n)
	}
}

func TestCheckerStaleness(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	store := NewMemoryStore(clock.Now)
	c := newChecker(t, store, CheckerOptions{Now: clock.Now, MaxStaleness: 5 * time.Second})
	iat := clock.Now().Add(-time.Minute)
	if mustRevoked(t, c, "j", "u", iat) || mustRevoked(t, c, "k", "v", iat) {
		t.Fatal("fresh store says revoked")
	}
	// Revocations behind the Checker's back (another replica, message lost).
	if err := store.RevokeToken(ctx, "j", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := store.RevokeUser(ctx, "v", clock.Now(), clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(4 * time.Second)
	if mustRevoked(t, c, "j", "u", iat) || mustRevoked(t, c, "k", "v", iat) {
		t.Fatal("cached answers not used within MaxStaleness")
	}
	clock.Advance(time.Second)
	if !mustRevoked(t, c, "j", "u", iat) {
		t.Error("revoked jti not seen after MaxStaleness")
	}
	if !mustRevoked(t, c, "k", "v", iat) {
		t.Error("user cutoff not seen after MaxStaleness")
	}
}

func TestCheckerStoreErrors(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	store := NewMemoryStore(clock.Now)
	reg := prometheus.NewRegistry()
	c := newChecker(t, store, CheckerOptions{Now: clock.Now, Registerer: reg})
	iat := clock.Now().Add(-time.Minute)
	if err := c.RevokeToken(ctx, "dead", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeUser(ctx, "gone", iat); err != nil {
		t.Fatal(err)
	}
	_ = store.Close()
	clock.Advance(time.Hour) // nothing fresh any more, except what is final

	if !mustRevoked(t, c, "dead", "u", iat) {
		t.Error("cached revoked jti not answered while the store is down")
	}
	if !mustRevoked(t, c, "x", "gone", iat) {
		t.Error("cached cutoff not answered while the store is down")
	}
	if _, err := c.Revoked(ctx, "other", "u", iat); !errors.Is(err, ErrUnavailable) {
		t.Errorf("uncached check: %v, want ErrUnavailable", err)
	}
	if err := c.RevokeToken(ctx, "j", clock.Now().Add(time.Hour)); !errors.Is(err, ErrUnavailable) {
		t.Errorf("RevokeToken: %v, want ErrUnavailable", err)
	}
	if mustRevokedOrErr(c, "j") {
		t.Error("a failed RevokeToken was cached as revoked")
	}
	if err := c.Ready(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ready: %v, want ErrUnavailable", err)
	}
	for op, want := range map[storeOp]float64{opStatus: 2, opRevokeToken: 1, opPing: 1} {
		if got := metricValue(t, c.m.storeErrors[op]); got != want {
			t.Errorf("%s errors counted %v, want %v", opNames[op], got, want)
		}
	}
}

// mustRevokedOrErr reports whether j is answered as revoked (an error is "no").
func mustRevokedOrErr(c *Checker, jti string) bool {
	revoked, err := c.Revoked(context.Background(), jti, "u", time.Time{}.Add(time.Hour))
	return err == nil && revoked
}

func TestCheckerUserCutoffTTL(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	store := NewMemoryStore(clock.Now)
	c := newChecker(t, store, CheckerOptions{Now: clock.Now, UserCutoffTTL: time.Hour})
	cutoff := clock.Now()
	if err := c.RevokeUser(ctx, "u", cutoff); err != nil {
		t.Fatal(err)
	}
	clock.Advance(59 * time.Minute)
	if mustStatus(t, store, "", "u").UserCutoff.IsZero() {
		t.Fatal("cutoff forgotten before UserCutoffTTL")
	}
	clock.Advance(2 * time.Minute)
	if !mustStatus(t, store, "", "u").UserCutoff.IsZero() {
		t.Fatal("cutoff kept past UserCutoffTTL")
	}
}

func TestCheckerCacheIsBounded(t *testing.T) {
	clock := newFakeClock()
	c := newChecker(t, NewMemoryStore(clock.Now), CheckerOptions{Now: clock.Now, CacheSize: 8})
	if err := c.RevokeToken(context.Background(), "j7", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		jti := fmt.Sprintf("j%d", i)
		if got := mustRevoked(t, c, jti, fmt.Sprintf("u%d", i), clock.Now()); got != (jti == "j7") {
			t.Fatalf("%s: Revoked = %v", jti, got)
		}
		if n := c.cache.Len(); n > 8 {
			t.Fatalf("cache holds %d entries, more than CacheSize 8", n)
		}
	}
	if !mustRevoked(t, c, "j7", "u", clock.Now()) {
		t.Fatal("evicted revoked jti not found in the store again")
	}
}

func TestCheckerResetDropsLiveAnswersKeepsRevocations(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	store := NewMemoryStore(clock.Now)
	c := newChecker(t, store, CheckerOptions{Now: clock.Now, MaxStaleness: time.Hour})
	iat := clock.Now().Add(-time.Minute).Truncate(time.Microsecond) // as authn issues it
	if err := c.RevokeToken(ctx, "dead", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeUser(ctx, "gone", iat); err != nil {
		t.Fatal(err)
	}
	mustRevoked(t, c, "live", "u", iat)
	// Behind the Checker's back; then the store "restarts" empty.
	if err := store.RevokeToken(ctx, "live", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c.reset()
	if !mustRevoked(t, c, "live", "u", iat) {
		t.Error("cached \"not revoked\" answer survived a reset")
	}
	_ = store.Close()

	// What this replica had confirmed stays known when the store comes back empty.
	sw := &swapStore{}
	sw.Store(NewMemoryStore(clock.Now))
	c2 := newChecker(t, sw, CheckerOptions{Now: clock.Now, MaxStaleness: time.Hour})
	if err := c2.RevokeToken(ctx, "dead", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c2.RevokeUser(ctx, "gone", iat); err != nil {
		t.Fatal(err)
	}
	sw.Store(NewMemoryStore(clock.Now)) // restarted empty
	c2.reset()
	if !mustRevoked(t, c2, "dead", "x", iat) || !mustRevoked(t, c2, "y", "gone", iat) {
		t.Error("revocations known before a reset were forgotten")
	}
	if mustRevoked(t, c2, "z", "gone", iat.Add(time.Microsecond)) {
		t.Error("a token issued after the cutoff is revoked")
	}
}

// swapStore delegates to a MemoryStore that a test can replace (a store
// that restarts empty).
type swapStore struct{ atomic.Pointer[MemoryStore] }

func (s *swapStore) RevokeToken(ctx context.Context, jti string, exp time.Time) error {
	return s.Load().RevokeToken(ctx, jti, exp)
}
func (s *swapStore) RevokeUser(ctx context.Context, id string, cutoff, until time.Time) error {
	return s.Load().RevokeUser(ctx, id, cutoff, until)
}
func (s *swapStore) Status(ctx context.Context, jti, id string) (Status, error) {
	return s.Load().Status(ctx, jti, id)
}
func (s *swapStore) RevokeTokenOnce(ctx context.Context, jti string, exp time.Time) (bool, error) {
	return s.Load().RevokeTokenOnce(ctx, jti, exp)
}
func (s *swapStore) NoteLifetime(ctx context.Context, d time.Duration) (time.Duration, error) {
	return s.Load().NoteLifetime(ctx, d)
}
func (s *swapStore) Close() error { return nil }

// An event (a pub/sub message) makes the Checker ask the store again; it is
// never a verdict of its own (issue 14: a message on a shared channel
// refused valid tokens of another deployment).
func TestCheckerEventsAreHintsNotVerdicts(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	store := NewMemoryStore(clock.Now)
	c := newChecker(t, store, CheckerOptions{Now: clock.Now, MaxStaleness: time.Hour})
	t0 := clock.Now()
	if mustRevoked(t, c, "j", "u", t0) {
		t.Fatal("revoked before anything happened")
	}
	c.apply(Event{Kind: EventUser, ID: "u", Time: t0})
	c.apply(Event{Kind: EventToken, ID: "j", Time: t0.Add(time.Hour)})
	if mustRevoked(t, c, "j", "u", t0) || mustRevoked(t, c, "j2", "u", t0) {
		t.Fatal("an event the store does not confirm refused a valid token")
	}

	// Confirmed by the store: seen at once, although cached answers are
	// trusted for an hour.
	if err := store.RevokeUser(ctx, "u", t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c.apply(Event{Kind: EventUser, ID: "u", Time: t0})
	if !mustRevoked(t, c, "j", "u", t0) {
		t.Fatal("a confirmed cutoff was not re-read after its event")
	}
	c.apply(Event{Kind: EventUser, ID: "u", Time: t0.Add(-time.Hour)}) // late, older message
	if !mustRevoked(t, c, "j3", "u", t0) {
		t.Fatal("an older cutoff moved the cached cutoff back")
	}

	// A store answer fetched before an event about the same id (the event
	// overtook it) is not cached: the id is asked again.
	mustRevoked(t, c, "m", "v", t0)
	before, gen := clock.Now().UnixNano(), c.generation.Load()
	clock.Advance(time.Millisecond)
	if err := store.RevokeToken(ctx, "m", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	c.apply(Event{Kind: EventToken, ID: "m", Time: t0.Add(time.Hour)})
	c.remember(gen, before, "m", "v", Status{})
	if !mustRevoked(t, c, "m", "v", t0) {
		t.Fatal("a \"not revoked\" answer older than the event was cached")
	}

	// A revocation this replica confirmed is not undone by an older answer.
	c.mergeToken("k", clock.Now().UnixNano(), true)
	c.remember(c.generation.Load(), clock.Now().UnixNano(), "k", "v", Status{})
	if !mustRevoked(t, c, "k", "v", t0) {
		t.Fatal("a stale \"not revoked\" answer undid a revocation")
	}
}

func TestCheckerReadyAndOptions(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore(nil)
	c := newChecker(t, store, CheckerOptions{})
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if c.maxStale != int64(DefaultMaxStaleness) || c.cutoffTTL != DefaultUserCutoffTTL {
		t.Errorf("defaults not applied: stale %v ttl %v", time.Duration(c.maxStale), c.cutoffTTL)
	}
	if _, err := NewChecker(store, CheckerOptions{MaxStaleness: -time.Second}); err == nil {
		t.Error("negative MaxStaleness accepted")
	}
	reg := prometheus.NewRegistry()
	newChecker(t, store, CheckerOptions{Registerer: reg})
	if _, err := NewChecker(store, CheckerOptions{Registerer: reg}); err == nil || !strings.Contains(err.Error(), "metrics") {
		t.Errorf("second registration on one registry: %v, want a metrics error", err)
	}
}

// A cache hit must not allocate: it is on every proxied request.
func TestCheckerHitDoesNotAllocate(t *testing.T) {
	clock := newFakeClock()
	c := newChecker(t, NewMemoryStore(clock.Now), CheckerOptions{
		Now: clock.Now, MaxStaleness: time.Hour, Registerer: prometheus.NewRegistry(),
	})
	ctx := context.Background()
	iat := clock.Now()
	mustRevoked(t, c, "jti-1234", "user-1", iat)
	if err := c.RevokeToken(ctx, "dead", iat.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, jti := range []string{"jti-1234", "dead"} {
		allocs := testing.AllocsPerRun(1000, func() {
			_, _ = c.Revoked(ctx, jti, "user-1", iat)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per cached check, want 0", jti, allocs)
		}
	}
	if miss := metricValue(t, c.m.miss); miss != 1 {
		t.Fatalf("%v misses, want 1 (the checks above were not hits)", miss)
	}
}

// forgetfulStore loses every user cutoff once forget is set: a Redis
// failover to a replica that never got the key, or a restore from an old
// backup.
type forgetfulStore struct {
	Store
	forget atomic.Bool
}

func (s *forgetfulStore) Status(ctx context.Context, jti, userID string) (Status, error) {
	st, err := s.Store.Status(ctx, jti, userID)
	if s.forget.Load() {
		st.UserCutoff = time.Time{}
	}
	return st, err
}

// Issue 21 point 7: a cutoff this Checker knows survives a later store
// answer that has none. The store's "no cutoff" is read (a newer token of
// the user is checked past MaxStaleness) and merged, but cutoffs never move
// back, so tokens from before the cutoff stay dead here; a failover that
// lost the key must not bring them back.
func TestCheckerCutoffSurvivesStoreThatForgot(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	store := &forgetfulStore{Store: NewMemoryStore(clock.Now)}
	c := newChecker(t, store, CheckerOptions{Now: clock.Now, MaxStaleness: 5 * time.Second})
	signedIn := clock.Now()
	clock.Advance(time.Second)
	if err := c.RevokeUser(ctx, "u", clock.Now()); err != nil {
		t.Fatal(err)
	}
	store.forget.Store(true)
	clock.Advance(time.Minute) // every cached answer is past MaxStaleness
	if mustRevoked(t, c, "newer", "u", clock.Now()) {
		t.Fatal("a token from a sign-in after the cutoff is revoked")
	}
	if !mustRevoked(t, c, "older", "u", signedIn) {
		t.Fatal("a token from before the cutoff works again after the store forgot the cutoff")
	}
	if !mustRevoked(t, c, "older-renewed", "u", signedIn) {
		t.Fatal("another token from that sign-in works after the store forgot the cutoff")
	}
}
