package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"tokengate/access"
	"tokengate/authn"
	"tokengate/internal/accesslog"
)

// handler is the public handler New returns.
type handler struct {
	upstream          *url.URL
	identity          identityHeader
	groups            identityHeader // GroupsHeader; groupsOn says whether it is set
	groupsOn          bool
	access            atomic.Pointer[accessState] // the rules in force; SetAccess replaces them
	identities        Identities
	trusted           []netip.Prefix
	endpoints         map[string]endpoint
	maxBody           int64
	tokens            tokens
	jwks              func() ([]byte, bool)
	auth              Authenticator
	registration      string
	registrar         Registrar
	revocation        Revoker
	allowOnStoreError bool
	logger            *slog.Logger
	accessLog         *accesslog.Logger // nil: access lines go through logger
	metrics           *metrics
	now               func() time.Time
	browser           browser
	verifyRoute       string      // Routes.Verify; "" when off
	forwardAuthz      bool        // Options.ForwardAuthorization
	oidc              *oidcClient // nil: no OpenID Connect sign-in
	oidcUsers         *oidcUsers  // nil: OIDC identities not kept (no Records)
	// oidcIdentities answers who an OIDC token's user is now (the provider,
	// through oidcUsers, cached per replica); nil without oidcUsers.
	oidcIdentities *authn.Identities
	pageCSP        string // the pages' Content-Security-Policy

	tracer trace.Tracer // nil: tracing off

	rp    *httputil.ReverseProxy
	serve http.Handler // the assembled middleware chain
}

// tokens is what the handler needs of authn.Tokens.
type tokens interface {
	Verifier
	Issuer
	Refresher
}

// endpoint is an identity endpoint: served here, never proxied.
type endpoint struct {
	name  string
	serve http.HandlerFunc
}

// New returns the public handler. It validates opts and reports every
// problem at once.
func New(opts Options) (http.Handler, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("proxy: registering metrics: %w", err)
	}
	// Before the handler takes opts.Identities: OIDC tokens' users are
	// answered by the provider's identities (see oidcAwareIdentities).
	oidcParts, err := newOIDC(&opts)
	if err != nil {
		return nil, err
	}
	h := &handler{
		upstream:          opts.Upstream,
		identity:          newIdentityHeader(opts.IdentityHeader),
		groups:            newIdentityHeader(opts.GroupsHeader),
		groupsOn:          opts.GroupsHeader != "",
		identities:        opts.Identities,
		trusted:           opts.TrustedProxies,
		maxBody:           opts.MaxBodyBytes,
		tokens:            opts.Tokens,
		jwks:              opts.JWKS,
		auth:              opts.Auth,
		registration:      opts.Registration,
		registrar:         opts.Registrar,
		revocation:        opts.Revocation,
		allowOnStoreError: opts.AllowOnStoreError,
		logger:            opts.Logger,
		accessLog:         opts.AccessLog,
		metrics:           m,
		now:               opts.Now,
		browser:           newBrowser(opts.Routes, opts.Browser),
		verifyRoute:       opts.Routes.Verify,
		tracer:            opts.Tracer,
		forwardAuthz:      opts.ForwardAuthorization,
	}
	h.pageCSP = pageCSP
	h.oidc, h.oidcUsers, h.oidcIdentities = oidcParts.client, oidcParts.users, oidcParts.identities
	if opts.OIDC != nil {
		if !opts.OIDC.NoProviderLogout {
			// Signing out posts a form that redirects to the provider's
			// end_session_endpoint: form-action must allow its origin.
			h.pageCSP = pageContentSecurityPolicy(pageCSS, h.oidc.issuerOrigin)
		}
	}
	rules := opts.Access
	if rules == nil {
		if rules, err = access.Compile(access.Config{PublicPaths: opts.PublicPaths}); err != nil {
			return nil, fmt.Errorf("proxy: PublicPaths: %w", err)
		}
	}
	h.access.Store(newAccessState(rules, m))
	if h.upstream != nil {
		h.rp = h.newReverseProxy(opts.UpstreamTimeout)
		h.traceUpstream()
	}
	h.endpoints = h.buildEndpoints(opts.Routes)

	// Read top to bottom: the order a request goes through.
	h.serve = chain(http.HandlerFunc(h.route),
		h.recoverPanics,   // outermost: a panic anywhere becomes a 500
		h.assignRequestID, // X-Request-Id on the response and to the upstream
		h.traceRequests,   // the server span (absent when tracing is off)
		h.observe,         // metrics and the access log
		h.stripIdentity,   // no client-sent identity header goes further
	)
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.serve.ServeHTTP(w, r) }

// chain wraps final in the middlewares, the first one outermost.
func chain(final http.Handler, mws ...func(http.Handler) http.Handler) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		final = mws[i](final)
	}
	return final
}

func (h *handler) buildEndpoints(rt Routes) map[string]endpoint {
	eps := map[string]endpoint{}
	add := func(path, name string, serve http.HandlerFunc) {
		if path != "" {
			eps[path] = endpoint{name: name, serve: serve}
		}
	}
	add(rt.Login, routeLogin, h.serveLogin)
	add(rt.Logout, routeLogout, h.serveLogout)
	add(rt.LogoutAll, routeLogoutAll, h.serveLogoutAll)
	add(rt.Session, routeSession, h.serveSession)
	add(rt.Users, routeUsers, h.serveUsers)
	if h.jwks != nil {
		add(rt.JWKS, routeJWKS, h.serveJWKS)
	}
	if rt.SignIn != "" {
		add(rt.SignIn, routeSignIn, h.serveSignIn)
		add(rt.SignOut, routeSignOut, h.serveSignOut)
	}
	add(rt.Verify, routeVerify, h.serveVerify)
	if h.oidc != nil {
		add(rt.OIDCSignIn, routeOIDCSignIn, h.serveOIDCSignIn)
		add(rt.OIDCCallback, routeOIDCCallback, h.serveOIDCCallback)
		add(rt.BackchannelLogout, routeBackchannelLogout, h.serveBackchannelLogout)
	}
	return eps
}

// recoverPanics turns a panic into a logged 500. It also creates the
// per-request state (and response wrapper) every later step shares: one
// allocation that carries the id, route, identity and status.
func (h *handler) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, r := withState(w, r)
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v) // ReverseProxy aborting a response: net/http closes the connection
			}
			h.logger.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
				slog.String("request_id", st.id),
				slog.String("panic", fmt.Sprint(v)),
				slog.String("stack", string(debug.Stack())))
			if st.status == 0 && !st.hijacked {
				writeError(st, errInternal)
			}
		}()
		next.ServeHTTP(st, r)
	})
}

// assignRequestID keeps a well-formed client X-Request-Id (1-128 of
// [A-Za-z0-9._-]) or makes one, and sets it on the response and upstream.
func (h *handler) assignRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateFrom(r.Context())
		vals := r.Header["X-Request-Id"]
		if len(vals) == 1 && validRequestID(vals[0]) {
			st.id = vals[0]
		} else {
			st.id = st.newRequestID()
			st.idVals[0] = st.id
			r.Header["X-Request-Id"] = st.idVals[0:1:1]
		}
		// Full slice expressions: an append by anyone copies instead of
		// writing into the neighbour.
		st.idVals[1] = st.id
		w.Header()["X-Request-Id"] = st.idVals[1:2:2]
		next.ServeHTTP(w, r)
	})
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// A request id only has to be unique, not secret or unpredictable: it
// names a request in logs, and a client may choose its own anyway. So it is
// a per-process random prefix (replicas do not collide) and a counter,
// instead of 16 bytes from crypto/rand per request.
const requestIDLen = 32 // 16 hex digits of prefix, 16 of counter

var (
	requestIDPrefix = newRequestIDPrefix()
	requestIDSeq    atomic.Uint64
)

func newRequestIDPrefix() [8]byte {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return b
}

// newRequestID formats the next id into st.idBuf. The string shares that
// array, which is never written again, so it costs no allocation.
func (st *requestState) newRequestID() string {
	var raw [16]byte
	copy(raw[:8], requestIDPrefix[:])
	binary.BigEndian.PutUint64(raw[8:], requestIDSeq.Add(1))
	hex.Encode(st.idBuf[:], raw[:])
	return unsafe.String(&st.idBuf[0], len(st.idBuf))
}

// observe records the metrics and writes the access log line.
func (h *handler) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateFrom(r.Context())
		start := time.Now()
		defer func() {
			if v := recover(); v != nil {
				h.finish(r, st, start, v != http.ErrAbortHandler)
				panic(v) // recoverPanics answers it
			}
		}()
		next.ServeHTTP(w, r)
		h.finish(r, st, start, false)
	})
}

// finish records a request; panicked means recoverPanics will answer 500
// unless a status was already sent.
func (h *handler) finish(r *http.Request, st *requestState, start time.Time, panicked bool) {
	elapsed := time.Since(start)
	status := st.status
	switch {
	case panicked && status == 0:
		status = http.StatusInternalServerError
	case st.clientGone:
		status = 499 // nginx's "client closed request"; nothing was sent
	case status == 0:
		status = http.StatusOK // net/http's answer when a handler writes nothing
	}
	route := st.route
	if route == "" {
		route = routeProxy
	}
	h.metrics.observe(route, status, elapsed.Seconds())

	ctx := r.Context()
	if !h.logger.Enabled(ctx, slog.LevelInfo) {
		return
	}
	h.logAccess(r, st, route, status, start, elapsed)
}

// stripIdentity removes every client-sent spelling of the identity header
// and of the groups header, on every request. The identity values are kept
// aside for logout_all's 403. When rules name methods, the method override
// headers' values are kept aside too (in the same pass over the headers).
func (h *handler) stripIdentity(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateFrom(r.Context())
		// One rule set for the whole request, even if SetAccess replaces
		// it meanwhile.
		st.access = h.access.Load()
		overrides := st.access.rules.UsesMethods()
		for k, vv := range r.Header {
			switch {
			case h.identity.matches(k):
				st.claimed = append(st.claimed, vv...)
				delete(r.Header, k)
			case h.groupsOn && h.groups.matches(k):
				delete(r.Header, k)
			case overrides && isMethodOverride(k):
				st.addOverrides(vv)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// route dispatches: identity endpoints, public paths, then everything else
// with a token required.
func (h *handler) route(w http.ResponseWriter, r *http.Request) {
	st := stateFrom(r.Context())
	switch classifyPath(r.URL.Path, r.URL.RawPath) {
	case pathHostile:
		st.route = routeProxy
		if h.upstream == nil {
			st.route = routeNotFound // auth-server mode: nothing would be proxied
		}
		writeError(w, errBadPath)
		return
	case pathClean:
		if ep, ok := h.endpoints[r.URL.Path]; ok {
			st.route = ep.name
			ep.serve(w, r)
			return
		}
		if h.verifyRoute != "" && len(r.URL.Path) > len(h.verifyRoute) && r.URL.Path[len(h.verifyRoute)] == '/' && strings.HasPrefix(r.URL.Path, h.verifyRoute) {
			st.route = routeVerify // Envoy ext_authz: verify + the original path
			h.serveVerify(w, r)
			return
		}
		if h.upstream == nil {
			break // auth-server mode: nothing is proxied
		}
	}
	if h.upstream == nil {
		st.route = routeNotFound
		writeError(w, errNotFound)
		return
	}
	st.route = routeProxy
	if st.tooManyOverrides {
		writeError(w, errTooManyMethods)
		return
	}
	var req access.Request
	h.accessRequest(&req, r, r)
	switch d := st.access.rules.Decide(&req, access.Identity{}); d.Outcome {
	case access.Allow:
		h.decided(r, st, d)
		st.route = routePublic
		h.servePublic(w, r)
	case access.Unauthenticated:
		h.servePrivate(w, r, &req, d)
	case access.Forbidden: // a deny rule: no credential helps
		h.decided(r, st, d)
		h.countDecision(r, decisionForbidden)
		h.writeForbidden(w, r, nil)
	default: // a bad path: route refused it already
		writeError(w, errBadPath)
	}
}

// servePrivate proxies only requests with a valid, unrevoked token of a
// user the rules allow. A browser without one is sent to the sign-in page.
// anon is the decision for the request without a credential.
func (h *handler) servePrivate(w http.ResponseWriter, r *http.Request, req *access.Request, anon access.Decision) {
	st := stateFrom(r.Context())
	token, src, out := h.credential(r)
	out = h.check(r, token, out, false)
	if !out.allowed() {
		h.decided(r, st, anon)
		h.countDecision(r, out.decision)
		if src == sourceCookie && out.decision != decisionError {
			h.browser.clearSessionCookie(w) // expired, revoked, invalid or its user removed
		}
		if h.browser.enabled && out.err.Status == http.StatusUnauthorized && wantsHTML(r) {
			h.redirectToSignIn(w, r)
			return
		}
		writeAuthError(w, out)
		return
	}
	d := st.access.rules.Decide(req, identityOf(out))
	h.decided(r, st, d)
	if d.Outcome != access.Allow {
		h.countDecision(r, decisionForbidden)
		h.writeForbidden(w, r, &out.claims)
		return
	}
	h.countDecision(r, out.decision)
	if src == sourceCookie {
		if !h.sameOrigin(r) {
			writeError(w, errCrossOrigin)
			return
		}
		h.renewCookie(w, r, out.claims)
	}
	st.setIdentity(out.claims, out.groups)
	h.forward(w, r)
}

// servePublic proxies anyway; a valid token still sets the identity header,
// a bad or absent one makes the request anonymous (so does a cross-site
// request with the session cookie).
func (h *handler) servePublic(w http.ResponseWriter, r *http.Request) {
	token, src, out := h.credential(r)
	if src != sourceNone {
		if out = h.judge(r, token, out, false); out.allowed() && (src != sourceCookie || h.sameOrigin(r)) {
			stateFrom(r.Context()).setIdentity(out.claims, out.groups)
		}
	}
	h.forward(w, r)
}

func (h *handler) forward(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h.rp.ServeHTTP(w, r)
	stateFrom(r.Context()).upstreamDur = time.Since(start)
}
