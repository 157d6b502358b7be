package authn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// gatedStore holds every lookup until the test opens the gate, so the
// attempts that got past the throttle are all in flight at once: exactly
// the window in which a check-then-count throttle lets them all through.
type gatedStore struct {
	users   mapStore
	gate    chan struct{}
	lookups atomic.Int64
}

func (s *gatedStore) LookupUser(ctx context.Context, name string) (User, error) {
	s.lookups.Add(1)
	<-s.gate
	return s.users.LookupUser(ctx, name)
}

// loginStorm sends n wrong passwords at once (names and addrs pick each
// attempt's name and address) and returns how many were checked (answered
// as invalid credentials) and how many were throttled.
func loginStorm(t *testing.T, th ThrottleOptions, n int, name, addr func(i int) string) (checked, throttled int, lookups int64) {
	t.Helper()
	hash, err := HashPassword("the-right-password", HashOptions{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	store := &gatedStore{users: mapStore{"marco": {Username: "marco", PasswordHash: hash}}, gate: make(chan struct{})}
	a := NewAuthenticator(store, AuthenticatorOptions{Throttle: th, Hash: HashOptions{BcryptCost: bcrypt.MinCost}})
	var (
		wg       sync.WaitGroup
		returned atomic.Int64
		mu       sync.Mutex
		errs     []error
	)
	for i := range n {
		wg.Go(func() {
			_, err := a.Authenticate(context.Background(), name(i), "wrong", addr(i))
			returned.Add(1)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}
	// Every attempt is either held in a lookup or already answered; only
	// then may the held ones finish.
	deadline := time.Now().Add(10 * time.Second)
	for store.lookups.Load()+returned.Load() < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("attempts neither answered nor in a lookup: %d of %d", int64(n)-store.lookups.Load()-returned.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	close(store.gate)
	wg.Wait()
	for _, err := range errs {
		switch {
		case errors.Is(err, ErrInvalidCredentials):
			checked++
		case errors.Is(err, ErrThrottled):
			throttled++
		default:
			t.Errorf("unexpected answer %v", err)
		}
	}
	return checked, throttled, store.lookups.Load()
}

// TestThrottleConcurrentAttempts: N wrong passwords at once never check more
// than the budget, per name and per address (issue 13: 40 concurrent
// attempts against per_user 10 got 36 checked).
func TestThrottleConcurrentAttempts(t *testing.T) {
	const n, budget = 40, 10
	tests := []struct {
		name       string
		th         ThrottleOptions
		user, addr func(i int) string
	}{
		{"per user, many addresses", ThrottleOptions{PerUser: budget, PerAddress: 1000},
			func(int) string { return "marco" }, func(i int) string { return fmt.Sprintf("192.0.2.%d", i+1) }},
		{"unknown name", ThrottleOptions{PerUser: budget, PerAddress: 1000},
			func(int) string { return "ghost" }, func(i int) string { return fmt.Sprintf("192.0.2.%d", i+1) }},
		{"per address, many names", ThrottleOptions{PerUser: 1000, PerAddress: budget},
			func(i int) string { return fmt.Sprintf("name-%d", i) }, func(int) string { return "198.51.100.7" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checked, throttled, lookups := loginStorm(t, tt.th, n, tt.user, tt.addr)
			if checked != budget || throttled != n-budget || lookups != budget {
				t.Errorf("%d concurrent wrong passwords: %d checked (%d lookups), %d throttled; want %d checked, %d throttled",
					n, checked, lookups, throttled, budget, n-budget)
			}
		})
	}
}

// TestThrottleSuccessGivesBack: a success gives its attempt back, so an
// address whose logins succeed is never throttled, while its failures keep
// counting.
func TestThrottleSuccessGivesBack(t *testing.T) {
	a, _ := newTestAuthenticator(t, ThrottleOptions{PerUser: 100, PerAddress: 2, Window: time.Hour})
	ctx := context.Background()
	for i := range 5 {
		if _, err := a.Authenticate(ctx, "marco", "marco-password", "192.0.2.1"); err != nil {
			t.Fatalf("success %d from one address with a budget of 2: %v", i, err)
		}
	}
	a.Authenticate(ctx, "marco", "wrong", "192.0.2.1")
	if _, err := a.Authenticate(ctx, "marco", "marco-password", "192.0.2.1"); err != nil {
		t.Fatalf("one failure in a budget of 2, then the right password: %v", err)
	}
	a.Authenticate(ctx, "ada", "wrong", "192.0.2.1")
	_, err := a.Authenticate(ctx, "marco", "marco-password", "192.0.2.1")
	wantThrottled(t, err, time.Hour)
}

// TestThrottleGiveBackKeepsNewWindow: an attempt that ends after its window
// closed does not give back an attempt of the next window.
func TestThrottleGiveBackKeepsNewWindow(t *testing.T) {
	th := newThrottle(ThrottleOptions{PerUser: 2, PerAddress: -1, Window: time.Minute})
	now := time.Now()
	old, _ := th.reserve("marco", "", now)
	later := now.Add(2 * time.Minute)
	th.reserve("marco", "", later)
	th.reserve("marco", "", later)
	th.release(old) // the store failed for the old attempt
	if _, wait := th.reserve("marco", "", later); wait != time.Minute {
		t.Errorf("third attempt of a window with a budget of 2: wait %v, want 1m", wait)
	}
}
