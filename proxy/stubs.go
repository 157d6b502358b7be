// Package proxy is tokengate's HTTP front: it serves the identity endpoints
// (login, logout, logout_all, session, users, jwks), checks the Bearer token
// on every other request and forwards it to the upstream through
// httputil.ReverseProxy with the identity header set.
package proxy

// STUBS: the exported API cmd/tokengate compiles against. The proxy helper
// replaces this with real files, keeping the names, and deletes this file.

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tokengate/authn"
)

// Verifier checks tokens (authn.Tokens).
type Verifier interface {
	Verify(token string) (authn.Claims, error)
}

// Issuer signs tokens (authn.Tokens).
type Issuer interface {
	Issue(subject, username string) (string, authn.Claims, error)
}

// Refresher accepts tokens still inside the refresh window (authn.Tokens).
type Refresher interface {
	VerifyRefreshable(token string) (authn.Claims, error)
}

// Registrar creates users (authn.Registrar): ErrInvalidUsername,
// ErrWeakPassword, ErrUserExists, ErrReadOnly.
type Registrar interface {
	Register(ctx context.Context, username, password string) (authn.User, error)
}

// Authenticator checks credentials (authn.Authenticator).
type Authenticator interface {
	Authenticate(ctx context.Context, username, password, clientAddr string) (authn.User, error)
}

// Revoker records and answers revocations (revocation.Checker).
type Revoker interface {
	Revoked(ctx context.Context, jti, userID string, iat time.Time) (bool, error)
	RevokeToken(ctx context.Context, jti string, exp time.Time) error
	RevokeUser(ctx context.Context, userID string, cutoff time.Time) error
}

// Routes are the paths of the identity endpoints; "" disables a route.
type Routes struct {
	Login     string // default /user/login
	Logout    string // default /user/logout
	LogoutAll string // default /user/logout_all
	Session   string // default /session
	Users     string // default /users
	JWKS      string // default /.well-known/jwks.json
}

// Options configure the handler. Required: Upstream, Tokens, Auth, Revocation.
type Options struct {
	Upstream        *url.URL
	UpstreamTimeout time.Duration  // wait for response headers; default 60s; 504 past it
	IdentityHeader  string         // default X-Auth-UserId
	PublicPaths     []string       // whole-segment prefixes proxied without a token
	TrustedProxies  []netip.Prefix // peers whose X-Forwarded-* are kept; none by default
	Routes          Routes
	MaxBodyBytes    int64 // identity endpoint bodies; default 64 KiB; 413 past it

	Tokens interface {
		Verifier
		Issuer
		Refresher
	}
	JWKS func() ([]byte, bool) // optional; nil disables the jwks route
	Auth Authenticator
	// Registration is off (default: the users route answers 404), open, or
	// authenticated (a valid token is needed).
	Registration string
	Registrar    Registrar // required unless Registration is off
	Revocation   Revoker
	// OnStoreError allow: a revocation store failure lets the request through
	// (dangerous). Default false: deny with 503.
	AllowOnStoreError bool

	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // optional
	Now        func() time.Time      // default time.Now
}

// New returns the public handler.
func New(opts Options) (http.Handler, error) { return nil, errors.New("proxy: not implemented") }
