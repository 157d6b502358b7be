package authn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"tokengate/internal/testclock"
)

// fakeByID is a user store by id whose answers, failures and speed a test sets.
type fakeByID struct {
	mu    sync.Mutex
	users map[string]User
	err   error         // returned by every lookup while set
	gate  chan struct{} // while set, lookups wait for it to close (or their context)
	calls atomic.Int32
}

func newFakeByID(users ...User) *fakeByID {
	f := &fakeByID{users: map[string]User{}}
	for _, u := range users {
		f.users[u.ID] = u
	}
	return f
}

func (f *fakeByID) LookupUserByID(ctx context.Context, id string) (User, error) {
	f.calls.Add(1)
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return User{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return User{}, f.err
	}
	u, ok := f.users[id]
	if !ok {
		return User{}, ErrUserNotFound
	}
	return u, nil
}

func (f *fakeByID) set(u User) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users[u.ID] = u
}

func (f *fakeByID) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.users, id)
}

func (f *fakeByID) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// hang makes lookups wait until the returned func is called.
func (f *fakeByID) hang() (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := make(chan struct{})
	f.gate = g
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.gate = nil
			f.mu.Unlock()
			close(g)
		})
	}
}

func newTestIdentities(t *testing.T, store UserByIDStore, clock *testclock.Clock, opts IdentitiesOptions) *Identities {
	t.Helper()
	opts.Now = clock.Now
	c, err := NewIdentities(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// settle waits until no lookup is in progress.
func (c *Identities) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		n := len(c.flights)
		c.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lookups still in progress", n)
		}
		time.Sleep(time.Millisecond)
	}
}

func wantGroups(t *testing.T, c *Identities, id string, want ...string) {
	t.Helper()
	u, err := c.Identity(context.Background(), id)
	if err != nil {
		t.Fatalf("Identity(%q): %v, want groups %v", id, err, want)
	}
	if !slices.Equal(u.Groups, want) {
		t.Fatalf("Identity(%q) groups = %q, want %q", id, u.Groups, want)
	}
}

func wantIdentityErr(t *testing.T, c *Identities, id string, want error) {
	t.Helper()
	if _, err := c.Identity(context.Background(), id); !errors.Is(err, want) {
		t.Fatalf("Identity(%q) = %v, want %v", id, err, want)
	}
}

var identStart = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestIdentitiesCacheRefreshAndRemoval(t *testing.T) {
	store := newFakeByID(User{ID: "alice", Username: "alice", PasswordHash: "$2a$secret", Groups: []string{"ops"}})
	clock := testclock.New(identStart)
	reg := prometheus.NewRegistry()
	c := newTestIdentities(t, store, clock, IdentitiesOptions{RefreshInterval: time.Minute, Registerer: reg})

	u, err := c.Identity(context.Background(), "alice")
	if err != nil || u.Username != "alice" || u.PasswordHash != "" || !slices.Equal(u.Groups, []string{"ops"}) {
		t.Fatalf("first Identity = %+v, %v; want alice in ops, no password hash", u, err)
	}
	if n := store.calls.Load(); n != 1 {
		t.Fatalf("store lookups after a miss = %d, want 1", n)
	}

	// Within half the refresh interval: hits, no I/O, even after a change.
	store.set(User{ID: "alice", Username: "alice", Groups: []string{"finance"}})
	clock.Advance(29 * time.Second)
	for range 100 {
		wantGroups(t, c, "alice", "ops")
	}
	if n := store.calls.Load(); n != 1 {
		t.Fatalf("store lookups after 100 hits = %d, want 1", n)
	}

	// Past half: the cached answer is served at once and refreshed behind it.
	clock.Advance(2 * time.Second)
	wantGroups(t, c, "alice", "ops")
	c.settle(t)
	if n := store.calls.Load(); n != 2 {
		t.Fatalf("store lookups after a refresh-ahead = %d, want 2", n)
	}
	wantGroups(t, c, "alice", "finance")

	// An entry nobody asked for during a whole interval is re-read before
	// it is answered: the change shows at once.
	store.set(User{ID: "alice", Username: "alice", Groups: []string{"finance", "ops"}})
	clock.Advance(time.Minute)
	wantGroups(t, c, "alice", "finance", "ops")

	// A removal is seen within the interval too, and then cached as such.
	store.remove("alice")
	clock.Advance(time.Minute)
	wantIdentityErr(t, c, "alice", ErrUserNotFound)
	calls := store.calls.Load()
	wantIdentityErr(t, c, "alice", ErrUserNotFound)
	if n := store.calls.Load(); n != calls {
		t.Fatalf("a cached removal asked the store again (%d lookups, want %d)", n, calls)
	}
	// And an id that comes back is seen again.
	store.set(User{ID: "alice", Username: "alice"})
	clock.Advance(time.Minute)
	wantGroups(t, c, "alice")

	wantMetrics(t, reg, `
# HELP tokengate_identity_refresh_errors_total User store lookups by id that failed (outage, timeout, bad table), in the background or for a waiting request.
# TYPE tokengate_identity_refresh_errors_total counter
tokengate_identity_refresh_errors_total 0
`, "tokengate_identity_refresh_errors_total")
	if hit, miss := testutil.ToFloat64(c.hit), testutil.ToFloat64(c.miss); hit != 103 || miss != 4 {
		t.Fatalf("hits %v misses %v, want 103 and 4", hit, miss)
	}
}

// The bound holds for a user who keeps calling: however the refreshes fall,
// no answer is ever older than the refresh interval while the store works.
func TestIdentitiesActiveUserNeverSeesOlderThanInterval(t *testing.T) {
	store := newFakeByID(User{ID: "bob", Groups: []string{"v0"}})
	clock := testclock.New(identStart)
	c := newTestIdentities(t, store, clock, IdentitiesOptions{RefreshInterval: 10 * time.Second})
	wantGroups(t, c, "bob", "v0")
	changedAt := map[string]time.Time{"v0": clock.Now()}
	for step := 1; step <= 300; step++ {
		clock.Advance(700 * time.Millisecond)
		if step%7 == 0 {
			v := "v" + string(rune('a'+step%26))
			store.set(User{ID: "bob", Groups: []string{v}})
			changedAt = map[string]time.Time{v: clock.Now()}
		}
		u, err := c.Identity(context.Background(), "bob")
		if err != nil {
			t.Fatal(err)
		}
		c.settle(t)
		for v, at := range changedAt {
			if u.Groups[0] != v && clock.Now().Sub(at) >= 10*time.Second {
				t.Fatalf("step %d: answer %q, but %q was stored %s ago (interval 10s)", step, u.Groups[0], v, clock.Now().Sub(at))
			}
		}
	}
}

func TestIdentitiesOutageServesStaleThenRefuses(t *testing.T) {
	store := newFakeByID(User{ID: "alice", Groups: []string{"ops"}})
	clock := testclock.New(identStart)
	reg := prometheus.NewRegistry()
	c := newTestIdentities(t, store, clock, IdentitiesOptions{
		RefreshInterval: time.Minute, MaxStale: 5 * time.Minute, Timeout: 50 * time.Millisecond, Registerer: reg,
	})
	wantGroups(t, c, "alice", "ops")

	// The store stops answering (a hang, not a quick error).
	release := store.hang()
	defer release()
	clock.Advance(90 * time.Second)
	// The first request past the interval waits for the store (it does not
	// know yet that it is down), up to the lookup timeout, then gets the
	// last known answer.
	wantGroups(t, c, "alice", "ops")
	if n := testutil.ToFloat64(c.refreshErrors); n != 1 {
		t.Fatalf("refresh errors = %v, want 1", n)
	}
	// Now that the store is known to fail, requests do not wait on it.
	clock.Advance(time.Minute)
	begin := time.Now()
	for range 50 {
		wantGroups(t, c, "alice", "ops")
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("50 lookups during an outage took %s: they waited on the store", d)
	}
	// An id never seen cannot be answered.
	wantIdentityErr(t, c, "carol", ErrUsersUnavailable)

	// Past max_stale (counted from the store's last answer): refused, never a guess.
	clock.Advance(5*time.Minute - 150*time.Second)
	wantIdentityErr(t, c, "alice", ErrUsersUnavailable)
	if n := testutil.ToFloat64(c.unavailable); n < 2 {
		t.Fatalf("unavailable = %v, want at least 2", n)
	}
	if n := testutil.ToFloat64(c.stale); n < 50 {
		t.Fatalf("stale = %v, want at least 50", n)
	}

	// The store comes back with a change: the next background retry picks it up.
	store.set(User{ID: "alice", Groups: []string{"finance"}})
	release()
	c.settle(t)
	clock.Advance(2 * time.Second) // past the retry interval
	_, _ = c.Identity(context.Background(), "alice")
	c.settle(t)
	wantGroups(t, c, "alice", "finance")
	if c.failedAt.Load() != 0 {
		t.Fatal("still marked failing after the store answered")
	}
}

func TestIdentitiesOutageWithErrors(t *testing.T) {
	// A store that fails fast (connection refused, a dropped table).
	store := newFakeByID(User{ID: "alice", Groups: []string{"ops"}}, User{ID: "bob"})
	clock := testclock.New(identStart)
	c := newTestIdentities(t, store, clock, IdentitiesOptions{RefreshInterval: time.Minute, MaxStale: 5 * time.Minute})
	wantGroups(t, c, "alice", "ops")
	wantGroups(t, c, "bob")
	store.remove("bob")
	clock.Advance(61 * time.Second)
	wantIdentityErr(t, c, "bob", ErrUserNotFound) // re-read: removed

	store.fail(errors.New("relation does not exist"))
	clock.Advance(2 * time.Minute)
	wantGroups(t, c, "alice", "ops") // 3m1s old: the last known answer
	// A removal the store told us about stays a removal during the outage.
	wantIdentityErr(t, c, "bob", ErrUserNotFound)
	c.settle(t)
	clock.Advance(3 * time.Minute)
	wantIdentityErr(t, c, "alice", ErrUsersUnavailable)
	wantIdentityErr(t, c, "bob", ErrUsersUnavailable)
}

func TestIdentitiesSingleFlight(t *testing.T) {
	store := newFakeByID(User{ID: "alice", Groups: []string{"ops"}})
	clock := testclock.New(identStart)
	c := newTestIdentities(t, store, clock, IdentitiesOptions{RefreshInterval: time.Minute})
	release := store.hang()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			u, err := c.Identity(context.Background(), "alice")
			if err == nil && !slices.Equal(u.Groups, []string{"ops"}) {
				err = errors.New("wrong groups")
			}
			errs <- err
		})
	}
	// Let them all reach the lookup, then release it.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(c.miss) < 64 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := store.calls.Load(); n != 1 {
		t.Fatalf("64 concurrent misses made %d store lookups, want 1", n)
	}

	// Refresh-ahead: many hits past half the interval start one lookup, and
	// none of them waits for it.
	release = store.hang()
	defer release()
	clock.Advance(40 * time.Second)
	begin := time.Now()
	for range 64 {
		wantGroups(t, c, "alice", "ops")
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("64 hits took %s while a refresh hung", d)
	}
	release()
	c.settle(t)
	if n := store.calls.Load(); n != 2 {
		t.Fatalf("64 hits past half the interval made %d lookups in all, want 2", n)
	}
}

func TestIdentitiesCallerGivesUp(t *testing.T) {
	store := newFakeByID(User{ID: "alice", Groups: []string{"ops"}})
	clock := testclock.New(identStart)
	c := newTestIdentities(t, store, clock, IdentitiesOptions{})
	release := store.hang()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Identity(ctx, "alice"); !errors.Is(err, ErrUsersUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Identity with an expiring context = %v, want ErrUsersUnavailable wrapping the deadline", err)
	}
	// The shared lookup was not cancelled with it: it completes and fills the cache.
	release()
	c.settle(t)
	calls := store.calls.Load()
	wantGroups(t, c, "alice", "ops")
	if store.calls.Load() != calls {
		t.Fatal("the lookup a caller gave up on did not fill the cache")
	}
}

func TestIdentitiesCloseStopsLookups(t *testing.T) {
	store := newFakeByID(User{ID: "alice"})
	clock := testclock.New(identStart)
	c, err := NewIdentities(store, IdentitiesOptions{Now: clock.Now, Timeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	wantGroups(t, c, "alice")
	release := store.hang()
	defer release()
	clock.Advance(40 * time.Second)
	wantGroups(t, c, "alice") // starts a background lookup that hangs
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop a hanging background lookup")
	}
	clock.Advance(time.Minute)
	wantIdentityErr(t, c, "nobody", ErrUsersUnavailable)
}

func TestIdentitiesCacheBounded(t *testing.T) {
	store := newFakeByID()
	for _, id := range []string{"a", "b", "c"} {
		store.set(User{ID: id})
	}
	clock := testclock.New(identStart)
	c := newTestIdentities(t, store, clock, IdentitiesOptions{CacheSize: 2})
	for _, id := range []string{"a", "b", "c"} {
		wantGroups(t, c, id)
	}
	if n := c.cache.Len(); n != 2 {
		t.Fatalf("cache holds %d ids, want 2", n)
	}
	calls := store.calls.Load()
	wantGroups(t, c, "a") // evicted: a miss
	if store.calls.Load() != calls+1 {
		t.Fatal("an evicted id was answered without a lookup")
	}
}

func strconvQuote(s string) string { return `"` + s + `"` }

func TestIdentitiesFileStoreReadsSnapshot(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.yaml")
	write := func(body string) {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("users:\n  - username: alice\n    password_hash: " + strconvQuote(marcoHash) + "\n    groups: [ops]\n  - username: bob\n    password_hash: " + strconvQuote(marcoHash) + "\n")
	fu, err := LoadFileUsers(path, FileUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := NewIdentities(fu, IdentitiesOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := c.Identity(context.Background(), "alice")
	if err != nil || u.PasswordHash != "" || !slices.Equal(u.Groups, []string{"ops"}) {
		t.Fatalf("Identity(alice) = %+v, %v", u, err)
	}
	write("users:\n  - username: alice\n    password_hash: " + strconvQuote(marcoHash) + "\n    groups: [finance, ops]\n")
	if err := fu.Reload(); err != nil {
		t.Fatal(err)
	}
	// No cache in front of the snapshot: the reload shows at once.
	wantGroups(t, c, "alice", "finance", "ops")
	wantIdentityErr(t, c, "bob", ErrUserNotFound)
	if hit := testutil.ToFloat64(c.hit); hit != 3 {
		t.Fatalf("hits = %v, want 3", hit)
	}
}

// badRecordStore fails for one id with a record error, answers the others.
type badRecordStore struct{ *fakeByID }

func (s badRecordStore) LookupUserByID(ctx context.Context, id string) (User, error) {
	if id == "broken" {
		s.calls.Add(1)
		return User{}, fmt.Errorf("authn: users postgres: %w: groups column: cannot decode", errBadRecord)
	}
	return s.fakeByID.LookupUserByID(ctx, id)
}

// One user's unusable row is that user's problem: it does not make the
// cache treat the store as down for everybody else.
func TestIdentitiesBadRecordIsNotAnOutage(t *testing.T) {
	store := badRecordStore{newFakeByID(User{ID: "alice", Groups: []string{"ops"}})}
	clock := testclock.New(identStart)
	c := newTestIdentities(t, store, clock, IdentitiesOptions{})
	for range 3 {
		wantIdentityErr(t, c, "broken", ErrUsersUnavailable)
		wantGroups(t, c, "alice", "ops") // a miss right after: asked, answered
		clock.Advance(70 * time.Second)
	}
	if c.failedAt.Load() != 0 {
		t.Fatal("a bad record marked the store as failing")
	}
}

// BenchmarkIdentitiesHit is the cost a request pays for its user's groups
// from the cache (bolt, SQL); the file store's snapshot read is the second.
func BenchmarkIdentitiesHit(b *testing.B) {
	store := newFakeByID(User{ID: "alice", Groups: []string{"ops", "finance"}})
	c, err := NewIdentities(store, IdentitiesOptions{Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Identity(ctx, "alice"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Identity(ctx, "alice"); err != nil {
				b.Fatal(err)
			}
		}
	})
	if n := store.calls.Load(); n != 1 {
		b.Fatalf("%d store lookups, want 1", n)
	}
}

func BenchmarkIdentitiesFileSnapshot(b *testing.B) {
	path := filepath.Join(b.TempDir(), "users.yaml")
	if err := os.WriteFile(path, []byte("users:\n  - username: alice\n    password_hash: "+strconvQuote(marcoHash)+"\n    groups: [ops, finance]\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	fu, err := LoadFileUsers(path, FileUsersOptions{})
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewIdentities(fu, IdentitiesOptions{Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Identity(ctx, "alice"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
