package authn

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// UserStore finds users by login name.
type UserStore interface {
	LookupUser(ctx context.Context, username string) (User, error) // ErrUserNotFound
}

// AuthenticatorOptions configure login checks.
type AuthenticatorOptions struct {
	Throttle ThrottleOptions
	Now      func() time.Time // default time.Now
	// Hash is the kind and cost of most stored hashes: an unknown login
	// name is checked against a dummy hash made with it, so it takes as
	// long as a wrong password. Default bcrypt, cost 10.
	Hash HashOptions
}

// Authenticator checks a login name and password against a UserStore,
// spending the same time on unknown names as on wrong passwords.
type Authenticator struct {
	users     UserStore
	now       func() time.Time
	throttle  *throttle
	dummyHash string
}

// NewAuthenticator returns an Authenticator over users. It computes the
// dummy hash once, which takes one hash's time.
func NewAuthenticator(users UserStore, opts AuthenticatorOptions) *Authenticator {
	a := &Authenticator{users: users, now: opts.Now, throttle: newThrottle(opts.Throttle)}
	if a.now == nil {
		a.now = time.Now
	}
	var pw [18]byte
	rand.Read(pw[:])
	h, err := HashPassword(base64.RawURLEncoding.EncodeToString(pw[:]), opts.Hash)
	if err != nil {
		// Bad options: fall back to the default so unknown names still cost a hash.
		h, _ = HashPassword(base64.RawURLEncoding.EncodeToString(pw[:]), HashOptions{})
	}
	a.dummyHash = h
	return a
}

// Authenticate returns the user, or an error wrapping ErrInvalidCredentials,
// ErrThrottled (as *ThrottledError) or a store failure.
func (a *Authenticator) Authenticate(ctx context.Context, username, password, clientAddr string) (User, error) {
	// The attempt counts before the slow hash; a success gives it back.
	at, wait := a.throttle.reserve(username, clientAddr, a.now())
	if wait > 0 {
		return User{}, &ThrottledError{RetryAfter: wait}
	}
	u, err := a.users.LookupUser(ctx, username)
	switch {
	case errors.Is(err, ErrUserNotFound):
		// Same work as a wrong password, so timing does not tell names apart.
		CheckPassword(a.dummyHash, password)
		return User{}, ErrInvalidCredentials
	case err != nil:
		a.throttle.release(at)
		return User{}, fmt.Errorf("authn: look up user: %w", err)
	}
	ok, err := CheckPassword(u.PasswordHash, password)
	if err != nil {
		a.throttle.release(at)
		return User{}, fmt.Errorf("authn: check password of %q: %w", username, err)
	}
	if !ok {
		return User{}, ErrInvalidCredentials
	}
	a.throttle.succeed(at)
	if u.ID == "" {
		u.ID = u.Username
	}
	return u, nil
}
