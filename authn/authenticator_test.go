package authn

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// failingStore is a user store whose backend is down.
type failingStore struct{ err error }

func (s failingStore) LookupUser(context.Context, string) (User, error) { return User{}, s.err }

func newTestAuthenticator(t *testing.T, th ThrottleOptions) (*Authenticator, *testClock) {
	t.Helper()
	users, err := LoadFileUsers("testdata/users.yaml", FileUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clock := newTestClock()
	return NewAuthenticator(users, AuthenticatorOptions{
		Throttle: th, Now: clock.Now, Hash: HashOptions{BcryptCost: bcrypt.MinCost},
	}), clock
}

func TestAuthenticate(t *testing.T) {
	a, _ := newTestAuthenticator(t, ThrottleOptions{})
	ctx := context.Background()
	tests := []struct {
		name, user, pw string
		wantID         string
		wantErr        error
	}{
		{"bcrypt user", "marco", "marco-password", "marco", nil},
		{"argon2id user with id", "ada", "ada-password", "user-0001", nil},
		{"wrong password", "marco", "ada-password", "", ErrInvalidCredentials},
		{"unknown user", "nobody", "marco-password", "", ErrInvalidCredentials},
		{"empty password", "marco", "", "", ErrInvalidCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := a.Authenticate(ctx, tt.user, tt.pw, "192.0.2.1")
			if !errors.Is(err, tt.wantErr) || u.ID != tt.wantID {
				t.Errorf("Authenticate = %+v, %v; want id %q, %v", u, err, tt.wantID, tt.wantErr)
			}
			if err != nil && err != ErrInvalidCredentials {
				t.Errorf("error %q says more than invalid credentials", err)
			}
		})
	}
}

func TestAuthenticateStoreError(t *testing.T) {
	down := errors.New("connection refused")
	a := NewAuthenticator(failingStore{down}, AuthenticatorOptions{
		Throttle: ThrottleOptions{PerUser: 1, PerAddress: 1}, Hash: HashOptions{BcryptCost: bcrypt.MinCost}})
	for range 3 {
		_, err := a.Authenticate(context.Background(), "marco", "pw", "192.0.2.1")
		if !errors.Is(err, down) || errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrThrottled) {
			t.Fatalf("store down: %v, want the store error (not counted as a failure)", err)
		}
	}
}

type mapStore map[string]User

func (m mapStore) LookupUser(_ context.Context, name string) (User, error) {
	u, ok := m[name]
	if !ok {
		return User{}, ErrUserNotFound
	}
	return u, nil
}

func wantThrottled(t *testing.T, err error, retry time.Duration) {
	t.Helper()
	te, ok := errors.AsType[*ThrottledError](err)
	if !ok || !errors.Is(err, ErrThrottled) {
		t.Fatalf("err = %v, want *ThrottledError", err)
	}
	if te.RetryAfter != retry {
		t.Errorf("RetryAfter = %v, want %v", te.RetryAfter, retry)
	}
}

func TestThrottlePerUser(t *testing.T) {
	a, clock := newTestAuthenticator(t, ThrottleOptions{PerUser: 3, PerAddress: 100, Window: 10 * time.Minute})
	ctx := context.Background()
	for i := range 3 {
		if _, err := a.Authenticate(ctx, "marco", "wrong", "192.0.2.1"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
		clock.Advance(time.Minute)
	}
	// Budget spent: even the right password waits, from any address.
	_, err := a.Authenticate(ctx, "marco", "marco-password", "198.51.100.7")
	wantThrottled(t, err, 7*time.Minute)
	// Other users are unaffected, from the same address.
	if _, err := a.Authenticate(ctx, "ada", "ada-password", "192.0.2.1"); err != nil {
		t.Errorf("other user: %v", err)
	}
	// The window opened at the first failure; once it has passed, marco may try again.
	clock.Advance(7*time.Minute - time.Second)
	_, err = a.Authenticate(ctx, "marco", "marco-password", "192.0.2.1")
	wantThrottled(t, err, time.Second)
	clock.Advance(time.Second)
	if _, err := a.Authenticate(ctx, "marco", "marco-password", "192.0.2.1"); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

func TestThrottleUnknownNamesCount(t *testing.T) {
	a, _ := newTestAuthenticator(t, ThrottleOptions{PerUser: 2, PerAddress: 100, Window: time.Minute})
	ctx := context.Background()
	a.Authenticate(ctx, "ghost", "x", "192.0.2.1")
	a.Authenticate(ctx, "ghost", "x", "192.0.2.2")
	_, err := a.Authenticate(ctx, "ghost", "x", "192.0.2.3")
	wantThrottled(t, err, time.Minute)
}

func TestThrottleSuccessResetsName(t *testing.T) {
	a, _ := newTestAuthenticator(t, ThrottleOptions{PerUser: 3, PerAddress: 100, Window: time.Hour})
	ctx := context.Background()
	for range 2 {
		a.Authenticate(ctx, "marco", "wrong", "192.0.2.1")
	}
	if _, err := a.Authenticate(ctx, "marco", "marco-password", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := a.Authenticate(ctx, "marco", "wrong", "192.0.2.1"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("failure %d after a success: %v (the success should have reset the count)", i, err)
		}
	}
	_, err := a.Authenticate(ctx, "marco", "wrong", "192.0.2.1")
	wantThrottled(t, err, time.Hour)
}

func TestThrottlePerAddress(t *testing.T) {
	a, clock := newTestAuthenticator(t, ThrottleOptions{PerUser: 100, PerAddress: 3, Window: 5 * time.Minute})
	ctx := context.Background()
	for _, name := range []string{"n1", "n2", "marco"} {
		a.Authenticate(ctx, name, "wrong", "192.0.2.9")
	}
	// Any name from that address now waits, even with the right password.
	_, err := a.Authenticate(ctx, "ada", "ada-password", "192.0.2.9")
	wantThrottled(t, err, 5*time.Minute)
	// Other addresses are unaffected.
	if _, err := a.Authenticate(ctx, "ada", "ada-password", "192.0.2.10"); err != nil {
		t.Errorf("other address: %v", err)
	}
	// A success does not reset the address.
	_, err = a.Authenticate(ctx, "marco", "marco-password", "192.0.2.9")
	wantThrottled(t, err, 5*time.Minute)
	clock.Advance(5 * time.Minute)
	if _, err := a.Authenticate(ctx, "ada", "ada-password", "192.0.2.9"); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

func TestThrottleIPv6Prefix(t *testing.T) {
	a, _ := newTestAuthenticator(t, ThrottleOptions{PerUser: 100, PerAddress: 2, Window: time.Minute})
	ctx := context.Background()
	a.Authenticate(ctx, "x", "wrong", "2001:db8:1:2::1")
	a.Authenticate(ctx, "y", "wrong", "[2001:db8:1:2::ffff]:443")
	_, err := a.Authenticate(ctx, "ada", "ada-password", "2001:db8:1:2:aaaa::3")
	wantThrottled(t, err, time.Minute)
	if _, err := a.Authenticate(ctx, "ada", "ada-password", "2001:db8:1:3::1"); err != nil {
		t.Errorf("another /64: %v", err)
	}
	// IPv4 and its IPv4-mapped IPv6 spelling are one client.
	a.Authenticate(ctx, "x", "wrong", "203.0.113.5")
	a.Authenticate(ctx, "y", "wrong", "::ffff:203.0.113.5")
	_, err = a.Authenticate(ctx, "ada", "ada-password", "203.0.113.5")
	wantThrottled(t, err, time.Minute)
}

func TestThrottleDisabled(t *testing.T) {
	a, _ := newTestAuthenticator(t, ThrottleOptions{PerUser: -1, PerAddress: -1})
	ctx := context.Background()
	for range 20 {
		a.Authenticate(ctx, "marco", "wrong", "192.0.2.1")
	}
	if _, err := a.Authenticate(ctx, "marco", "marco-password", "192.0.2.1"); err != nil {
		t.Errorf("throttling disabled: %v", err)
	}
}

func TestThrottleDefaults(t *testing.T) {
	a, _ := newTestAuthenticator(t, ThrottleOptions{})
	ctx := context.Background()
	for range DefaultThrottlePerUser {
		a.Authenticate(ctx, "nobody", "wrong", "")
	}
	_, err := a.Authenticate(ctx, "nobody", "wrong", "")
	wantThrottled(t, err, DefaultThrottleWindow)
}

func TestThrottleBounded(t *testing.T) {
	th := newThrottle(ThrottleOptions{MaxEntries: 10, PerAddress: 1000})
	now := time.Now()
	for i := range 100 {
		th.reserve(string(rune('a'+i)), "192.0.2.1", now)
	}
	if th.users.Len() != 10 || th.addrs.Len() != 1 {
		t.Errorf("throttle holds %d names, %d addresses; want at most 10 names", th.users.Len(), th.addrs.Len())
	}
}
