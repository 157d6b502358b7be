// Package authn decides who a caller is: it checks passwords against user
// stores, issues and verifies JWTs (golang-jwt/jwt/v5), manages signing and
// verification keys and their JWKS, caches verified tokens and throttles
// login attempts. It knows nothing of HTTP routing or of revocation.
package authn

import (
	"errors"
	"time"
)

// Outcomes callers branch on. They are wrapped with %w; test with errors.Is.
var (
	// ErrMalformed: the token is not a well-formed JWT (or is over MaxTokenBytes).
	ErrMalformed = errors.New("authn: malformed token")
	// ErrInvalid: the token is well formed but not acceptable: bad signature,
	// wrong algorithm or key, wrong issuer or audience, not yet valid.
	ErrInvalid = errors.New("authn: invalid token")
	// ErrExpired: the token was valid but its exp has passed (leeway included).
	ErrExpired = errors.New("authn: token expired")

	// ErrInvalidCredentials: unknown user or wrong password (never says which).
	ErrInvalidCredentials = errors.New("authn: invalid credentials")
	// ErrMalformedLoginName: a login name that is not valid UTF-8 or holds
	// control characters; refused before any lookup (a client error).
	ErrMalformedLoginName = errors.New("authn: login name is not valid UTF-8 or contains control characters")
	// ErrUserNotFound is returned by UserStore.LookupUser.
	ErrUserNotFound = errors.New("authn: user not found")
	// ErrNoIDLookup: the store cannot find users by id (legacy query mode).
	ErrNoIDLookup = errors.New("authn: this user store cannot look users up by id")
	// ErrUserExists is returned by UserCreator.CreateUser.
	ErrUserExists = errors.New("authn: user already exists")
	// ErrWeakPassword: a new password fails the password policy.
	ErrWeakPassword = errors.New("authn: password too weak")
	// ErrInvalidUsername: a new user name fails the name policy.
	ErrInvalidUsername = errors.New("authn: invalid username")
	// ErrThrottled: too many failed logins; see ThrottledError for Retry-After.
	ErrThrottled = errors.New("authn: too many failed attempts")
	// ErrReadOnly: the user store cannot create users.
	ErrReadOnly = errors.New("authn: user store is read-only")
	// ErrUsersUnavailable: the user store could not say who a user is now
	// (an outage past the staleness bound): callers fail closed (503).
	ErrUsersUnavailable = errors.New("authn: user store unavailable")
	// errBadRecord marks a failure of one user's record (a corrupt row, a
	// groups value that cannot be decoded), not of the store: Identities
	// does not take it for an outage of every user.
	errBadRecord = errors.New("unusable user record")
	// ErrUsersTable: the PostgreSQL users table is missing or lacks the
	// columns the store uses (a configuration problem, not an outage).
	ErrUsersTable = errors.New("authn: users table missing or unusable")
)

// MaxTokenBytes is the largest token Verify will look at (8 KiB).
const MaxTokenBytes = 8 << 10

// Claims are the few verified claims the rest of tokengate needs.
// Times keep sub-second precision (NumericDate may be fractional).
type Claims struct {
	Subject   string    // sub: the user id; becomes X-Auth-UserId
	Username  string    // private claim "name": the login name, for GET /session
	ID        string    // jti: 128-bit random, base64url
	IssuedAt  time.Time // iat
	NotBefore time.Time // nbf
	ExpiresAt time.Time // exp
	// AuthTime is auth_time: when the person actually signed in (password,
	// or an identity provider). Renewal and refresh copy it, so a user's
	// logout-all cutoff ends every token derived from an earlier sign-in.
	// Zero for tokens issued without it (compare with IssuedAt then).
	AuthTime time.Time
	// SessionID is the private claim "sid": the identity provider's session
	// the sign-in came from (OpenID Connect), copied on renewal; "" for
	// password sign-ins.
	SessionID string
}

// SignedInAt is when the sign-in behind the token happened: AuthTime, or
// IssuedAt for tokens that carry no auth_time.
func (c Claims) SignedInAt() time.Time {
	if c.AuthTime.IsZero() {
		return c.IssuedAt
	}
	return c.AuthTime
}

// Session is what a token is issued for. A new sign-in leaves AuthTime
// zero (it becomes the issue time); a renewal or refresh copies AuthTime
// and SessionID from the token it replaces.
type Session struct {
	Subject   string    // the user id; required
	Username  string    // the login name
	AuthTime  time.Time // zero: now (a new sign-in)
	SessionID string    // optional: the identity provider's session id
}

// User is an account known to a UserStore.
type User struct {
	ID           string // the token's sub; defaults to Username
	Username     string
	PasswordHash string // bcrypt or argon2id PHC string; never logged or echoed
	// Groups are the user's groups (access rules match them); nil for none.
	// Every user source (file, SQL, LDAP, OpenID Connect) fills the same field.
	Groups []string
}
