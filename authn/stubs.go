package authn

// STUBS: the exported API the other packages compile against. The authn
// helper replaces these bodies with real files (tokens.go, keys.go, ...)
// keeping the signatures, and deletes this file.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var errTODO = errors.New("authn: not implemented")

// Key is one signing or verification key with its pinned algorithm and kid.
type Key struct {
	Algorithm string // EdDSA | ES256 | RS256 | HS256
	ID        string // kid: RFC 7638 thumbprint, or for HS256 a hash of the secret
}

// LoadOrCreateSigningKey reads the PEM PKCS#8 private key (or HS256 secret)
// at path, creating it (mode 0600, parent dir 0700) when absent.
func LoadOrCreateSigningKey(path, algorithm string) (*Key, error) { return nil, errTODO }

// LoadSigningKey reads an existing signing key; it never creates one.
func LoadSigningKey(path, algorithm string) (*Key, error) { return nil, errTODO }

// LoadVerificationKey reads an older key kept for rotation: a PEM private or
// public key (algorithm inferred from the key type), or an HS256 secret.
func LoadVerificationKey(path string) (*Key, error) { return nil, errTODO }

// TokenOptions configures Tokens. Zero values get the documented defaults.
type TokenOptions struct {
	Issuer        string        // iss; default "tokengate"
	Audience      string        // aud; set and checked only when non-empty
	TTL           time.Duration // default 1h
	RefreshWindow time.Duration // how long after exp VerifyRefreshable accepts; default 0
	Leeway        time.Duration // clock skew on exp/nbf/iat; default 5s
	CacheSize     int           // verified-token cache entries; default 10000; <0 disables
	Now           func() time.Time
	Registerer    prometheus.Registerer // optional: tokengate_token_cache_requests_total
}

// Tokens issues and verifies JWTs.
type Tokens struct{}

// NewTokens signs with signing and verifies with signing plus verification.
func NewTokens(signing *Key, verification []*Key, opts TokenOptions) (*Tokens, error) {
	return nil, errTODO
}

// Issue signs a new token for the user id subject with login name username.
func (t *Tokens) Issue(subject, username string) (string, Claims, error) {
	return "", Claims{}, errTODO
}

// Verify checks a token (cache first) and returns its claims, or an error
// wrapping ErrMalformed, ErrInvalid or ErrExpired.
func (t *Tokens) Verify(token string) (Claims, error) { return Claims{}, errTODO }

// VerifyRefreshable is Verify but also accepts a token whose exp passed less
// than RefreshWindow ago.
func (t *Tokens) VerifyRefreshable(token string) (Claims, error) { return Claims{}, errTODO }

// JWKS returns the JSON Web Key Set of the public keys; ok is false when
// there are only HS256 keys.
func (t *Tokens) JWKS() (doc []byte, ok bool) { return nil, false }

// SetKeys swaps the keys atomically (reload); the verified-token cache is cleared.
func (t *Tokens) SetKeys(signing *Key, verification []*Key) error { return errTODO }

// MaxLifetime is TTL + RefreshWindow + Leeway: how long a user cutoff must be kept.
func (t *Tokens) MaxLifetime() time.Duration { return 0 }

// HashOptions choose the hash for new passwords.
type HashOptions struct {
	Algorithm  string // bcrypt (default) | argon2id
	BcryptCost int    // default 10 (bcrypt.DefaultCost)
}

// HashPassword hashes password; bcrypt refuses (ErrWeakPassword) over 72 bytes.
func HashPassword(password string, opts HashOptions) (string, error) { return "", errTODO }

// CheckPassword reports whether password matches hash (bcrypt or argon2id PHC).
func CheckPassword(hash, password string) (bool, error) { return false, errTODO }

// UserStore finds users by login name.
type UserStore interface {
	LookupUser(ctx context.Context, username string) (User, error) // ErrUserNotFound
}

// FileUsersOptions configure a users file store.
type FileUsersOptions struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer // optional
}

// FileUsers is a UserStore read from a YAML users file, reloadable.
type FileUsers struct{}

// LoadFileUsers reads the users file; an error here is fatal for the caller.
func LoadFileUsers(path string, opts FileUsersOptions) (*FileUsers, error) { return nil, errTODO }

// LookupUser implements UserStore.
func (f *FileUsers) LookupUser(ctx context.Context, username string) (User, error) {
	return User{}, errTODO
}

// ThrottleOptions bound failed logins. Zero values get the defaults.
type ThrottleOptions struct {
	PerUser    int           // failures per login name per Window; default 10; <0 disables
	PerAddress int           // failures per client address per Window; default 50; <0 disables
	Window     time.Duration // default 15m
}

// ThrottledError is returned (wrapping ErrThrottled) when a budget is spent.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string { return ErrThrottled.Error() }
func (e *ThrottledError) Unwrap() error { return ErrThrottled }

// AuthenticatorOptions configure login checks.
type AuthenticatorOptions struct {
	Throttle ThrottleOptions
	Now      func() time.Time
}

// Authenticator checks a login name and password against a UserStore,
// spending the same time on unknown names as on wrong passwords.
type Authenticator struct{}

// NewAuthenticator returns an Authenticator over users.
func NewAuthenticator(users UserStore, opts AuthenticatorOptions) *Authenticator {
	return &Authenticator{}
}

// Authenticate returns the user, or an error wrapping ErrInvalidCredentials,
// ErrThrottled (as *ThrottledError) or a store failure.
func (a *Authenticator) Authenticate(ctx context.Context, username, password, clientAddr string) (User, error) {
	return User{}, errTODO
}
