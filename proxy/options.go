package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"tokengate/access"
	"tokengate/authn"
	"tokengate/internal/accesslog"
)

// Verifier checks tokens (authn.Tokens).
type Verifier interface {
	Verify(token string) (authn.Claims, error)
}

// Issuer signs tokens (authn.Tokens): for a new sign-in (zero AuthTime),
// or a renewal that carries the old token's AuthTime and SessionID over.
type Issuer interface {
	IssueSession(s authn.Session) (string, authn.Claims, error)
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

// Identities says who a token's user is now (authn.Identities): the
// current groups, from the user store's in-memory snapshot or cache.
// authn.ErrUserNotFound: the user was removed (401 user_unknown);
// authn.ErrUsersUnavailable: the store cannot answer within its staleness
// bound (503). A hit must cost no I/O.
type Identities interface {
	Identity(ctx context.Context, id string) (authn.User, error)
}

// Revoker records and answers revocations (revocation.Checker).
type Revoker interface {
	// Revoked: signedIn is when the token's sign-in happened (auth_time,
	// else iat), the time a user's logout-all cutoff is compared with.
	Revoked(ctx context.Context, jti, userID string, signedIn time.Time) (bool, error)
	RevokeToken(ctx context.Context, jti string, exp time.Time) error
	// RevokeTokenOnce reports whether this call revoked jti: of concurrent
	// calls for one jti, exactly one gets true (refresh relies on it).
	RevokeTokenOnce(ctx context.Context, jti string, exp time.Time) (bool, error)
	RevokeUser(ctx context.Context, userID string, cutoff time.Time) error
}

// Routes are the paths of the identity endpoints; "" disables a route.
// New applies no defaults here: the caller passes the configured paths
// (cmd/tokengate's defaults are the ones shown). Each path must be an
// absolute, clean path, and no two routes may share one.
type Routes struct {
	Login     string // default /user/login
	Logout    string // default /user/logout
	LogoutAll string // default /user/logout_all
	Session   string // default /session
	Users     string // default /users
	JWKS      string // default /.well-known/jwks.json
	// SignIn serves the browser sign-in page (GET) and form (POST); ""
	// disables browser sign-in: no redirects to it, and no session cookie
	// is read. Default /tokengate/sign_in.
	SignIn string
	// SignOut serves the sign-out page (GET) and form (POST); default
	// /tokengate/sign_out. Unused when SignIn is "".
	SignOut string
	// Verify answers an ingress's authentication subrequest (forward auth:
	// nginx auth_request, Caddy forward_auth, Traefik ForwardAuth, Envoy
	// ext_authz), any method. Default /tokengate/verify.
	Verify string
	// OIDCSignIn starts a sign-in at the OpenID Connect provider (GET, the
	// sign-in page's button), OIDCCallback is where the provider sends the
	// browser back, BackchannelLogout takes the provider's logout tokens.
	// Served only with Options.OIDC; defaults /tokengate/oidc/sign_in,
	// /tokengate/oidc/callback, /tokengate/oidc/backchannel_logout.
	OIDCSignIn        string
	OIDCCallback      string
	BackchannelLogout string
}

// Registration modes for the users route.
const (
	RegistrationOff           = "off"
	RegistrationOpen          = "open"
	RegistrationAuthenticated = "authenticated"
)

// Options configure the handler. Required: Tokens, Auth, Revocation.
type Options struct {
	// Upstream is the protected app. nil is auth-server mode (forward
	// auth): the identity endpoints, the sign-in pages and verify are
	// served, and every other path is 404.
	Upstream        *url.URL
	UpstreamTimeout time.Duration // wait for response headers; default 60s; 504 past it
	IdentityHeader  string        // default X-Auth-UserId
	PublicPaths     []string      // whole-segment prefixes proxied without a token; used when Access is nil
	// Access are the compiled access rules (public paths included: see
	// access.Config.PublicPaths). nil: PublicPaths as public rules, and
	// every other path needs a valid credential. Set one or the other.
	Access *access.Rules
	// GroupsHeader carries the user's current groups (comma-separated) to
	// the app and on verify's answer; every client-sent spelling of it is
	// stripped, as the identity header's. Default "": not sent, nor
	// stripped (cmd/tokengate's default is X-Auth-Groups).
	GroupsHeader   string
	TrustedProxies []netip.Prefix // peers whose X-Forwarded-* are kept; none by default
	Routes         Routes
	Browser        BrowserOptions // browser sign-in; only used when Routes.SignIn is set
	// OIDC adds sign-in through an OpenID Connect provider to browser
	// sign-in, and its back-channel logout. nil: off (the OIDC routes are
	// not served).
	OIDC         *OIDCOptions
	MaxBodyBytes int64 // identity endpoint bodies; default 64 KiB; 413 past it

	// ForwardAuthorization keeps the client's Authorization: Bearer header
	// in what the app receives. Default false: it is removed (public paths
	// too), so the app never holds a token it could replay elsewhere.
	ForwardAuthorization bool

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
	// Identities looks up the current groups of a token's user for access
	// rules, and refuses users removed from the store. nil: no lookups (every
	// valid token's user is taken as existing, with no groups).
	Identities Identities
	// OnStoreError allow: a revocation store failure lets the request through
	// (dangerous). Default false: deny with 503.
	AllowOnStoreError bool

	Logger *slog.Logger // default slog.Default()
	// AccessLog formats and writes the access lines (one per request, when
	// Logger is enabled at INFO) without slog's per-line cost; give it an
	// accesslog.Writer so no request waits on the output. Default nil: the
	// lines go through Logger, same fields.
	AccessLog  *accesslog.Logger
	Registerer prometheus.Registerer // optional
	Now        func() time.Time      // default time.Now

	// Tracer starts the spans of each request (a server span, and a client
	// span for the upstream round trip). nil (default): tracing is off and
	// costs nothing; a client's traceparent still reaches the app as sent.
	Tracer trace.Tracer
}

const (
	defaultUpstreamTimeout = 60 * time.Second
	defaultIdentityHeader  = "X-Auth-UserId"
	defaultMaxBodyBytes    = 64 << 10
)

// withDefaults returns a copy of o with the documented defaults applied.
func (o Options) withDefaults() Options {
	if o.UpstreamTimeout == 0 {
		o.UpstreamTimeout = defaultUpstreamTimeout
	}
	if o.IdentityHeader == "" {
		o.IdentityHeader = defaultIdentityHeader
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = defaultMaxBodyBytes
	}
	if o.Registration == "" {
		o.Registration = RegistrationOff
	}
	o.Browser = o.Browser.withDefaults()
	if o.OIDC != nil {
		oc := *o.OIDC // the caller's value is not changed
		oc.withDefaults()
		o.OIDC = &oc
	} else {
		o.Routes.OIDCSignIn, o.Routes.OIDCCallback, o.Routes.BackchannelLogout = "", "", ""
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// validate reports every problem at once; o has its defaults applied.
func (o Options) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("proxy: "+format, args...)) }

	switch {
	case o.Upstream == nil:
		// auth-server mode
	case o.Upstream.Scheme != "http" && o.Upstream.Scheme != "https":
		bad("Upstream %q: scheme must be http or https", o.Upstream.Redacted())
	case o.Upstream.Host == "":
		bad("Upstream %q: no host", o.Upstream.Redacted())
	}
	if o.UpstreamTimeout < 0 {
		bad("UpstreamTimeout %v: must be positive", o.UpstreamTimeout)
	}
	if !validHeaderName(o.IdentityHeader) {
		bad("IdentityHeader %q: not a valid header name", o.IdentityHeader)
	}
	if o.GroupsHeader != "" {
		if !validHeaderName(o.GroupsHeader) {
			bad("GroupsHeader %q: not a valid header name", o.GroupsHeader)
		} else if normalizeHeaderName(o.GroupsHeader) == normalizeHeaderName(o.IdentityHeader) {
			bad("GroupsHeader %q: the identity header's name", o.GroupsHeader)
		}
	}
	if o.Access != nil && len(o.PublicPaths) > 0 {
		bad("PublicPaths and Access are both set: compile the public paths into Access")
	}
	if o.MaxBodyBytes < 0 {
		bad("MaxBodyBytes %d: must be positive", o.MaxBodyBytes)
	}
	for _, p := range o.PublicPaths {
		if _, err := cleanPublicPath(p); err != nil {
			bad("PublicPaths %q: %v", p, err)
		}
	}
	for _, p := range o.TrustedProxies {
		if !p.IsValid() {
			bad("TrustedProxies: invalid prefix %v", p)
		}
	}
	if o.Tokens == nil {
		bad("Tokens is required")
	}
	if o.Auth == nil {
		bad("Auth is required")
	}
	if o.Revocation == nil {
		bad("Revocation is required")
	}
	switch o.Registration {
	case RegistrationOff:
	case RegistrationOpen, RegistrationAuthenticated:
		if o.Registrar == nil {
			bad("Registrar is required when Registration is %q", o.Registration)
		}
	default:
		bad("Registration %q: want off, open or authenticated", o.Registration)
	}
	if err := o.Routes.validate(); err != nil {
		errs = append(errs, err)
	}
	if o.Routes.SignOut != "" && o.Routes.SignIn == "" {
		bad("Routes.sign_out %q: needs Routes.sign_in (browser sign-in is off)", o.Routes.SignOut)
	}
	if err := o.Browser.validate(); err != nil {
		errs = append(errs, err)
	}
	if o.OIDC != nil {
		if err := o.OIDC.validate(o.Routes, newRedirectHosts(o.Browser.AllowedRedirectHosts)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// byName lists the routes with their names, in a fixed order.
func (r Routes) byName() []struct{ name, path string } {
	return []struct{ name, path string }{
		{routeLogin, r.Login},
		{routeLogout, r.Logout},
		{routeLogoutAll, r.LogoutAll},
		{routeSession, r.Session},
		{routeUsers, r.Users},
		{routeJWKS, r.JWKS},
		{routeSignIn, r.SignIn},
		{routeSignOut, r.SignOut},
		{routeVerify, r.Verify},
		{routeOIDCSignIn, r.OIDCSignIn},
		{routeOIDCCallback, r.OIDCCallback},
		{routeBackchannelLogout, r.BackchannelLogout},
	}
}

func (r Routes) validate() error {
	var errs []error
	seen := map[string]string{}
	for _, rt := range r.byName() {
		if rt.path == "" {
			continue
		}
		if !isCleanRoute(rt.path) {
			errs = append(errs, fmt.Errorf("proxy: Routes.%s %q: must be an absolute clean path (no dot segments, empty segments, %%, \\ or trailing slash)", rt.name, rt.path))
			continue
		}
		if other, dup := seen[rt.path]; dup {
			errs = append(errs, fmt.Errorf("proxy: Routes.%s %q: already used by %s", rt.name, rt.path, other))
			continue
		}
		seen[rt.path] = rt.name
	}
	return errors.Join(errs...)
}

// isCleanRoute accepts "/a/b" style paths that a request path can match
// exactly: a route that could only be reached through an unclean spelling
// would be unreachable (unclean paths are refused) or ambiguous.
func isCleanRoute(p string) bool {
	if p == "/" {
		return false // would shadow the whole upstream
	}
	if strings.HasSuffix(p, "/") {
		return false
	}
	return isCleanPath(p)
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
