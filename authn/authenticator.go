package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// UserStore finds users by login name.
type UserStore interface {
	LookupUser(ctx context.Context, username string) (User, error) // ErrUserNotFound
}

// PasswordChecker is a user store that checks passwords itself (a
// directory: search, then bind as the entry found). The Authenticator uses
// it instead of comparing hashes when the store implements it; the
// malformed-name check and the throttle still come first.
type PasswordChecker interface {
	// CheckPassword returns the user, ErrInvalidCredentials (wrong or empty
	// password), ErrUserNotFound (possibly wrapped) or a store failure.
	CheckPassword(ctx context.Context, username, password string) (User, error)
}

// hashInventory is a user store that knows the parameters of every hash it
// holds (the users file): its most expensive one is the dummy for unknown
// names, exactly, whatever the configuration says.
type hashInventory interface {
	// dummyHash is a hash with the parameters of the most expensive stored
	// hash; false when the store holds none.
	dummyHash() (string, bool)
}

// AuthenticatorOptions configure login checks.
type AuthenticatorOptions struct {
	Throttle ThrottleOptions
	Now      func() time.Time // default time.Now
	// Hash is the kind and cost new passwords get. Unknown login names are
	// checked against a dummy hash as costly as the most expensive of this
	// and every stored hash seen so far (for the users file: of every
	// stored hash), so they take as long as a wrong password. Default
	// bcrypt, cost 10.
	Hash HashOptions
	// Logger gets an Info line when a login name matches an account that
	// cannot log in (no usable password hash). Default: discard.
	Logger *slog.Logger
}

// Authenticator checks a login name and password against a UserStore,
// spending the same time on unknown names as on wrong passwords.
type Authenticator struct {
	users    UserStore
	now      func() time.Time
	throttle *throttle
	log      *slog.Logger
	// check is CheckPassword; tests count the hash checks through it.
	check func(hash, password string) (bool, error)
	// dummy is the most expensive of the configured parameters and those
	// of hashes seen on lookups, for stores without a hashInventory.
	dummy atomic.Pointer[dummy]
}

type dummy struct {
	params hashParams
	hash   string
}

// NewAuthenticator returns an Authenticator over users.
func NewAuthenticator(users UserStore, opts AuthenticatorOptions) *Authenticator {
	a := &Authenticator{users: users, now: opts.Now, throttle: newThrottle(opts.Throttle), log: opts.Logger, check: CheckPassword}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	p, ok := paramsFor(opts.Hash)
	if !ok {
		// Bad options: fall back to the default so unknown names still cost a hash.
		p, _ = paramsFor(HashOptions{})
	}
	a.dummy.Store(&dummy{params: p, hash: p.dummyHash()})
	return a
}

// dummyHash is the hash an unknown name is checked against.
func (a *Authenticator) dummyHash() string {
	if inv, ok := a.users.(hashInventory); ok {
		if h, ok := inv.dummyHash(); ok {
			return h
		}
	}
	return a.dummy.Load().hash
}

// noteHash raises the dummy to p when checking p costs more.
func (a *Authenticator) noteHash(p hashParams) {
	for {
		cur := a.dummy.Load()
		if p == cur.params || !p.moreExpensive(cur.params) {
			return
		}
		if a.dummy.CompareAndSwap(cur, &dummy{params: p, hash: p.dummyHash()}) {
			return
		}
	}
}

// Authenticate returns the user, or an error wrapping ErrInvalidCredentials,
// ErrMalformedLoginName, ErrThrottled (as *ThrottledError) or a store
// failure (the store could not answer).
func (a *Authenticator) Authenticate(ctx context.Context, username, password, clientAddr string) (User, error) {
	if !usableLoginName(username) {
		return User{}, ErrMalformedLoginName
	}
	// The attempt counts before the slow hash; a success gives it back.
	// Stores match names ignoring case, so the throttle counts them that
	// way too: "Dave" and "dave" share one budget.
	at, wait := a.throttle.reserve(foldName(username), clientAddr, a.now())
	if wait > 0 {
		return User{}, &ThrottledError{RetryAfter: wait}
	}
	if pc, ok := a.users.(PasswordChecker); ok {
		return a.checkWith(ctx, pc, username, password, at)
	}
	u, err := a.users.LookupUser(ctx, username)
	switch {
	case errors.Is(err, ErrUserNotFound):
		if err != ErrUserNotFound {
			// The store found rows nobody can log in as (two rows for one
			// name, no id): the client cannot tell, the operator should.
			a.log.Warn("login refused: the user store holds no usable account for this name", "username", username, "error", err)
		}
		return User{}, a.refuse(password)
	case err != nil:
		a.throttle.release(at)
		return User{}, fmt.Errorf("authn: look up user: %w", err)
	}
	p, usable := paramsOf(u.PasswordHash)
	if !usable {
		// Empty, "!", "*", md5...: a disabled account, or one no hash we
		// know can open. Answered exactly like an unknown name, so neither
		// the status nor the time says the account exists.
		a.log.Info("login refused: the account has no usable password hash", "username", username)
		return User{}, a.refuse(password)
	}
	a.noteHash(p)
	ok, err := a.check(u.PasswordHash, password)
	if err != nil {
		a.throttle.release(at)
		return User{}, fmt.Errorf("authn: check password of %q: %w", username, err)
	}
	if !ok {
		a.padFailure(p, password)
		return User{}, ErrInvalidCredentials
	}
	a.throttle.succeed(at)
	if u.ID == "" {
		u.ID = u.Username
	}
	return u, nil
}

// padFailure makes a wrong password for a hash with parameters p take at
// least as long as an unknown name: when the dummy hash costs more than p
// (a cost-4 bcrypt among cost-12 ones answers a wrong password in about
// 2 ms, an unknown name in about 220 ms, so the cheap account's existence
// showed), the password is checked against the dummy too. A failure then
// costs the dummy check plus the cheap one, a difference far below
// network jitter; a success is not padded (it proves the password).
func (a *Authenticator) padFailure(p hashParams, password string) {
	d := a.dummyHash()
	if dp, ok := paramsOf(d); ok && dp.moreExpensive(p) {
		a.check(d, password)
	}
}

// refuse does what a wrong password costs, so timing does not tell names
// apart; the attempt reserved before the lookup stays counted as a failure.
func (a *Authenticator) refuse(password string) error {
	a.check(a.dummyHash(), password)
	return ErrInvalidCredentials // the attempt reserved before stays counted
}

// checkWith lets a PasswordChecker store judge the password; the attempt
// reserved before is counted as for a hash check.
func (a *Authenticator) checkWith(ctx context.Context, pc PasswordChecker, username, password string, at attempt) (User, error) {
	u, err := pc.CheckPassword(ctx, username, password)
	switch {
	case errors.Is(err, ErrInvalidCredentials), errors.Is(err, ErrUserNotFound):
		return User{}, ErrInvalidCredentials // the attempt reserved before stays counted
	case err != nil:
		a.throttle.release(at)
		return User{}, fmt.Errorf("authn: check password: %w", err)
	}
	a.throttle.succeed(at)
	if u.ID == "" {
		u.ID = u.Username
	}
	return u, nil
}
