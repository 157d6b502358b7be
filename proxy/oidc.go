package proxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"tokengate/authn"
)

// OIDCOptions configure sign-in through an external OpenID Connect
// provider: the authorization code flow with PKCE (S256), state bound to
// the browser in a sealed one-use cookie, a nonce checked in the ID token,
// the ID token verified against the provider's keys (fetched again when a
// token names an unknown kid: key rotation). tokengate then issues its own
// token and cookie, as after a password sign-in, carrying the provider's
// session id (sid) so that the provider's back-channel logout can end it.
type OIDCOptions struct {
	Issuer       string // required; discovery at Issuer + /.well-known/openid-configuration
	ClientID     string // required
	ClientSecret string // required (a confidential client)
	// RedirectURL is the absolute callback URL registered at the provider;
	// its path must be Routes.OIDCCallback. Required.
	RedirectURL string
	Scopes      []string // default openid, profile, email
	// IDClaim names the claim that becomes the user id (sub, X-Auth-UserId):
	// "sub" (default), "email" (only with email_verified true) or
	// "preferred_username".
	IDClaim       string
	UsernameClaim string // the name shown and logged; default preferred_username, falling back to the id
	GroupsClaim   string // default groups: a list of strings, or one string
	Name          string // the button reads "Sign in with <Name>"; default "Single sign-on"
	// AllowedEmailDomains and AllowedGroups refuse everyone else when set:
	// a domain needs a verified email; a group list needs any one of them.
	AllowedEmailDomains []string
	AllowedGroups       []string
	// HidePasswordForm shows the provider's button alone on the sign-in
	// page, and refuses password posts to it. Default false: both.
	HidePasswordForm bool
	// NoProviderLogout keeps signing out local: by default (false) a browser
	// whose session came from the provider is sent on to the provider's
	// end_session_endpoint (RP-initiated logout) with the ID token as
	// id_token_hint.
	NoProviderLogout bool
	// PostLogoutRedirectURL is where the provider sends the browser after
	// its logout: same origin as RedirectURL or an allowed redirect host.
	// Default: the sign-in page on RedirectURL's origin.
	PostLogoutRedirectURL string
	// Key seals the state and ID token cookies (AES-256-GCM); 32 bytes, the
	// same on every replica. Required.
	Key []byte
	// Timeout bounds each call to the provider; default 10s.
	Timeout time.Duration
	// Records keep each OIDC user's identity (name, groups, sealed refresh
	// token) where every replica reads it: the revocation store. nil: none
	// kept, and OIDC tokens are judged like any other (no refresh).
	Records Records
	// RefreshInterval: an OIDC user's identity is read again from the
	// provider (refresh token) when older than this, so group changes and
	// the provider ending the user's grant apply within it; default 1m
	// (users.refresh_interval).
	RefreshInterval time.Duration
	// MaxStale: while the provider cannot be asked, an identity is served
	// this long past its last confirmation, then refused (503); default 5m
	// (users.max_stale).
	MaxStale time.Duration
	// RecordLife keeps an identity this long after its last sign-in or
	// refresh: at least the longest a token lives; default 24h.
	RecordLife time.Duration
	// HTTPClient calls the provider; default a client with Timeout.
	HTTPClient *http.Client
}

const (
	defaultOIDCName    = "Single sign-on"
	defaultOIDCTimeout = 10 * time.Second
	// oidcStateLife bounds a sign-in at the provider: long enough for a
	// password and MFA, short enough that a stolen state cookie is stale.
	oidcStateLife = 10 * time.Minute
	// oidcIDTokenLife is how long the ID token kept for logout is honoured.
	oidcIDTokenLife = 30 * 24 * time.Hour
	// maxIDTokenCookie keeps the sealed ID token inside a browser's 4 KiB
	// cookie limit; a bigger one is not kept (logout then names client_id).
	maxIDTokenCookie = 3800
	// discoveryRetry spaces discovery attempts while the provider is down.
	discoveryRetry = 5 * time.Second
	// maxClaimBytes bounds the id and the name taken from the ID token.
	maxClaimBytes = 256
)

func (o *OIDCOptions) withDefaults() {
	if len(o.Scopes) == 0 {
		o.Scopes = []string{oidc.ScopeOpenID, "profile", "email"}
	}
	if o.IDClaim == "" {
		o.IDClaim = "sub"
	}
	if o.UsernameClaim == "" {
		o.UsernameClaim = "preferred_username"
	}
	if o.GroupsClaim == "" {
		o.GroupsClaim = "groups"
	}
	if o.Name == "" {
		o.Name = defaultOIDCName
	}
	if o.Timeout == 0 {
		o.Timeout = defaultOIDCTimeout
	}
	if o.RefreshInterval == 0 {
		o.RefreshInterval = authn.DefaultRefreshInterval
	}
	if o.MaxStale == 0 {
		o.MaxStale = authn.DefaultMaxStale
	}
	if o.RecordLife == 0 {
		o.RecordLife = 24 * time.Hour
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.Timeout}
	}
}

func (o *OIDCOptions) validate(rt Routes, hosts redirectHosts) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("proxy: OIDC."+format, args...)) }
	if u, err := url.Parse(o.Issuer); err != nil || !u.IsAbs() || u.Host == "" {
		bad("Issuer %q: want an absolute URL", o.Issuer)
	}
	if o.ClientID == "" {
		bad("ClientID is required")
	}
	if o.ClientSecret == "" {
		bad("ClientSecret is required")
	}
	redirect, err := url.Parse(o.RedirectURL)
	switch {
	case err != nil || !redirect.IsAbs() || redirect.Host == "":
		bad("RedirectURL %q: want an absolute URL", o.RedirectURL)
	case rt.OIDCCallback == "" || redirect.Path != rt.OIDCCallback:
		bad("RedirectURL %q: its path must be Routes.OIDCCallback (%q)", o.RedirectURL, rt.OIDCCallback)
	}
	if rt.OIDCSignIn == "" || rt.SignIn == "" {
		bad("needs Routes.SignIn and Routes.OIDCSignIn")
	}
	if !slices.Contains(o.Scopes, oidc.ScopeOpenID) {
		bad("Scopes: openid is required")
	}
	switch o.IDClaim {
	case "sub", "email", "preferred_username":
	default:
		bad("IDClaim %q: want sub, email or preferred_username", o.IDClaim)
	}
	if o.PostLogoutRedirectURL != "" && err == nil && !sameOrigin(o.PostLogoutRedirectURL, redirect) && !hosts.permits(o.PostLogoutRedirectURL) {
		bad("PostLogoutRedirectURL %q: must be on RedirectURL's origin or an allowed redirect host", o.PostLogoutRedirectURL)
	}
	if len(o.Key) != sealKeyBytes {
		bad("Key: %d bytes, want %d", len(o.Key), sealKeyBytes)
	}
	if o.Timeout < 0 {
		bad("Timeout %v: must be positive", o.Timeout)
	}
	return errors.Join(errs...)
}

func sameOrigin(raw string, base *url.URL) bool {
	u, err := url.Parse(raw)
	return err == nil && strings.EqualFold(u.Scheme, base.Scheme) && strings.EqualFold(u.Host, base.Host)
}

// oidcClient is the handler's OpenID Connect state, built once in New.
type oidcClient struct {
	opts         OIDCOptions
	seal         sealer
	stateCookie  string // "<cookie>_oidc_state", __Host- prefixed when Secure
	idCookie     string // "<cookie>_oidc": the sealed ID token for logout
	postLogout   string // post_logout_redirect_uri
	signInRoute  string // Routes.OIDCSignIn
	issuerOrigin string // for the pages' form-action (sign-out redirects there)

	mu        sync.Mutex
	found     *discovered // nil until discovery succeeds; then kept
	lastTry   time.Time
	lastError error
}

// discovered is what the provider's discovery document told us.
type discovered struct {
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier // ID tokens and logout tokens: iss, aud, exp, signature
	config     oauth2.Config
	endSession string // "" when the provider has no end_session_endpoint
}

func newOIDCClient(o OIDCOptions, rt Routes, br browser) (*oidcClient, error) {
	s, err := newSealer(o.Key)
	if err != nil {
		return nil, fmt.Errorf("proxy: OIDC.Key: %w", err)
	}
	c := &oidcClient{opts: o, seal: s, signInRoute: rt.OIDCSignIn}
	c.stateCookie = br.baseName + "_oidc_state"
	c.idCookie = br.baseName + "_oidc"
	if br.secure {
		c.stateCookie = "__Host-" + c.stateCookie
		c.idCookie = "__Host-" + c.idCookie
	}
	redirect, _ := url.Parse(o.RedirectURL) // validated
	c.postLogout = o.PostLogoutRedirectURL
	if c.postLogout == "" {
		c.postLogout = (&url.URL{Scheme: redirect.Scheme, Host: redirect.Host, Path: rt.SignIn}).String()
	}
	if iss, err := url.Parse(o.Issuer); err == nil {
		c.issuerOrigin = iss.Scheme + "://" + iss.Host
	}
	return c, nil
}

// provider returns the discovered provider, discovering it on first use
// (tokengate starts, and password sign-in works, while the provider is
// down). Failures are remembered for discoveryRetry so that a dead provider
// is not asked once per click.
func (c *oidcClient) provider(ctx context.Context, now time.Time) (*discovered, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.found != nil {
		return c.found, nil
	}
	if c.lastError != nil && now.Sub(c.lastTry) < discoveryRetry {
		return nil, c.lastError
	}
	c.lastTry = now
	d, err := discover(ctx, c.opts.Issuer, c.opts.HTTPClient, c.opts.Timeout)
	if err != nil {
		c.lastError = err
		return nil, err
	}
	d.verifier = d.provider.VerifierContext(oidc.ClientContext(context.Background(), c.opts.HTTPClient),
		&oidc.Config{ClientID: c.opts.ClientID})
	d.config = oauth2.Config{
		ClientID:     c.opts.ClientID,
		ClientSecret: c.opts.ClientSecret,
		Endpoint:     d.provider.Endpoint(),
		RedirectURL:  c.opts.RedirectURL,
		Scopes:       c.opts.Scopes,
	}
	c.found, c.lastError = d, nil
	return d, nil
}

// ProbeOIDC fetches issuer's discovery document as sign-in will (for
// check-config --probe) and returns the endpoints an operator registers
// against: authorization, token, and end-session ("" when none).
func ProbeOIDC(ctx context.Context, issuer string, timeout time.Duration) (authURL, tokenURL, endSession string, err error) {
	d, err := discover(ctx, issuer, &http.Client{Timeout: timeout}, timeout)
	if err != nil {
		return "", "", "", err
	}
	ep := d.provider.Endpoint()
	return ep.AuthURL, ep.TokenURL, d.endSession, nil
}

// discover fetches and checks issuer's discovery document (the issuer it
// names must be issuer itself).
func discover(ctx context.Context, issuer string, client *http.Client, timeout time.Duration) (*discovered, error) {
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, client), timeout)
	defer cancel()
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery at %s: %w", issuer, err)
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = p.Claims(&extra) // the document already parsed once
	return &discovered{provider: p, endSession: extra.EndSession}, nil
}

// oidcState is what the state cookie carries through the provider.
type oidcState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"` // the PKCE code verifier
	RD       string `json:"rd"`
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Messages on the OpenID Connect pages: what happened and what to do, never
// a token, a code or the provider's raw error text.
const (
	msgProviderDown    = "The sign-in service is not reachable right now. Please try again in a moment."
	msgProviderRefused = "The sign-in service refused tokengate's sign-in. This needs your administrator: the details are in tokengate's log."
	msgStateStale      = "This sign-in has expired or was already used. Please start again."
	msgConsentDenied   = "Sign-in was cancelled or denied at the sign-in service."
	msgProviderError   = "The sign-in service reported an error. Please try again; if it keeps happening, tell your administrator."
	msgNotAllowed      = "Your account is not allowed to use this application. Ask your administrator for access."
	msgNoIdentity      = "The sign-in service did not say who you are in a way this application can use. Tell your administrator."
	msgPasswordOff     = "Password sign-in is off here. Use the sign-in button."
)

// serveOIDCSignIn starts a sign-in at the provider: GET with an optional
// rd. A GET is safe to start (it can only sign the browser's own user in,
// and the state cookie stops another's code being injected at the end).
func (h *handler) serveOIDCSignIn(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeMethodNotAllowed(w, "GET, HEAD")
		return
	}
	rd := h.redirectTarget(r.URL.Query().Get("rd"))
	d, err := h.oidc.provider(r.Context(), h.now())
	if err != nil {
		h.logger.LogAttrs(r.Context(), slog.LevelError, "oidc: provider discovery failed; check oidc.issuer and that the provider is reachable",
			slog.String("request_id", RequestIDFromContext(r.Context())), slog.String("error", err.Error()))
		h.oidcErrorPage(w, r, http.StatusServiceUnavailable, rd, msgProviderDown)
		return
	}
	st := oidcState{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), RD: rd}
	now := h.now()
	sealed, err := seal(h.oidc.seal, "oidc state", st, now.Add(oidcStateLife))
	if err != nil {
		h.logError(r.Context(), "oidc: sealing the state failed", err)
		h.oidcErrorPage(w, r, http.StatusInternalServerError, rd, msgUnavailable)
		return
	}
	// SameSite=Lax: the provider's redirect back is a top-level GET
	// navigation from another site, which Lax lets the cookie ride along.
	http.SetCookie(w, &http.Cookie{
		Name: h.oidc.stateCookie, Value: sealed, Path: "/", MaxAge: int(oidcStateLife / time.Second),
		Secure: h.browser.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	target := d.config.AuthCodeURL(st.State, oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce))
	noStore(w)
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusFound)
}

// serveOIDCCallback finishes a sign-in: the state cookie must match the
// state parameter (and is cleared whatever happens: one use), the code is
// exchanged with the PKCE verifier, the ID token verified and its nonce
// checked, the identity mapped and allowed; then tokengate's own token.
func (h *handler) serveOIDCCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeMethodNotAllowed(w, "GET")
		return
	}
	ctx := r.Context()
	now := h.now()
	q := r.URL.Query()
	st, ok := h.oidcStateFrom(r, now)
	h.clearOIDCCookie(w, h.oidc.stateCookie)
	if !ok {
		h.countLogin(r, loginMalformed, "")
		h.oidcWarn(ctx, "oidc callback: no valid state cookie (expired, already used, or another browser)")
		h.oidcErrorPage(w, r, http.StatusBadRequest, "", msgStateStale)
		return
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 {
		h.countLogin(r, loginMalformed, "")
		h.oidcWarn(ctx, "oidc callback: state does not match this browser's sign-in")
		h.oidcErrorPage(w, r, http.StatusBadRequest, st.RD, msgStateStale)
		return
	}
	if e := q.Get("error"); e != "" {
		h.countLogin(r, loginInvalidCredentials, "")
		h.oidcWarn(ctx, "oidc callback: the provider returned an error", slog.String("oidc_error", clip(e, 64)))
		if e == "access_denied" || e == "consent_required" || e == "login_required" {
			h.oidcErrorPage(w, r, http.StatusForbidden, st.RD, msgConsentDenied)
		} else {
			h.oidcErrorPage(w, r, http.StatusBadGateway, st.RD, msgProviderError)
		}
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 4096 {
		h.countLogin(r, loginMalformed, "")
		h.oidcErrorPage(w, r, http.StatusBadRequest, st.RD, msgStateStale)
		return
	}
	d, err := h.oidc.provider(ctx, now)
	if err != nil {
		h.countLogin(r, loginError, "")
		h.logError(ctx, "oidc callback: provider discovery failed", err)
		h.oidcErrorPage(w, r, http.StatusServiceUnavailable, st.RD, msgProviderDown)
		return
	}
	callCtx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, h.oidc.opts.HTTPClient), h.oidc.opts.Timeout)
	defer cancel()
	tok, err := d.config.Exchange(callCtx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		h.countLogin(r, loginError, "")
		status, msg := h.exchangeFailed(ctx, err)
		h.oidcErrorPage(w, r, status, st.RD, msg)
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		h.countLogin(r, loginError, "")
		h.oidcLog(ctx, slog.LevelError, "oidc callback: the token response has no id_token; is openid in oidc.scopes?")
		h.oidcErrorPage(w, r, http.StatusBadGateway, st.RD, msgProviderRefused)
		return
	}
	idt, err := d.verifier.Verify(callCtx, rawID)
	if err != nil {
		h.countLogin(r, loginError, "")
		h.logError(ctx, "oidc callback: the ID token failed verification (issuer, audience, expiry or signature)", err)
		h.oidcErrorPage(w, r, http.StatusBadGateway, st.RD, msgProviderRefused)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		h.countLogin(r, loginMalformed, "")
		h.oidcWarn(ctx, "oidc callback: the ID token's nonce is not this sign-in's (a replayed or injected token)")
		h.oidcErrorPage(w, r, http.StatusBadRequest, st.RD, msgStateStale)
		return
	}
	id, groups, err := h.oidc.identity(idt)
	if err != nil {
		h.countLogin(r, loginInvalidCredentials, "")
		msg := msgNoIdentity
		if errors.Is(err, errOIDCNotAllowed) {
			msg = msgNotAllowed
		}
		h.oidcWarn(ctx, "oidc callback: sign-in refused", slog.String("reason", err.Error()), slog.String("user", clip(id.Subject, maxClaimBytes)))
		h.oidcErrorPage(w, r, http.StatusForbidden, st.RD, msg)
		return
	}
	if id.SessionID == "" {
		// The provider names no session: one of tokengate's own marks the
		// token as an OIDC sign-in (its identity is then the provider's).
		id.SessionID = "tg-" + randomToken()[:22]
	}
	if h.oidcUsers != nil {
		if err := h.oidcUsers.signedIn(ctx, id, groups, tok.RefreshToken); err != nil {
			h.countLogin(r, loginError, "")
			h.logError(ctx, "oidc callback: recording the user's identity in the revocation store failed", err)
			h.oidcErrorPage(w, r, http.StatusServiceUnavailable, st.RD, msgUnavailable)
			return
		}
	}
	token, claims, err := h.tokens.IssueSession(id)
	if err != nil {
		h.countLogin(r, loginError, "")
		h.logError(ctx, "oidc callback: issuing a token failed", err)
		h.oidcErrorPage(w, r, http.StatusInternalServerError, st.RD, msgUnavailable)
		return
	}
	h.countLogin(r, loginSuccess, id.Username)
	stateFrom(ctx).setClaims(claims)
	h.browser.clearHostOnlyCookie(w)
	http.SetCookie(w, h.browser.sessionCookieFor(token, now, claims.ExpiresAt))
	h.keepIDToken(w, rawID, now)
	noStore(w)
	w.Header().Set("Location", h.redirectTarget(st.RD))
	w.WriteHeader(http.StatusSeeOther)
}

// exchangeFailed logs why the code exchange failed in words an operator
// can act on, and picks the page.
func (h *handler) exchangeFailed(ctx context.Context, err error) (int, string) {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		attrs := []slog.Attr{slog.String("oidc_error", clip(re.ErrorCode, 64)), slog.Int("status", re.Response.StatusCode)}
		switch {
		case re.ErrorCode == "invalid_client" || re.Response.StatusCode == http.StatusUnauthorized:
			h.oidcLog(ctx, slog.LevelError, "oidc callback: the provider refused the client credentials; check oidc.client_id and the client secret", attrs...)
			return http.StatusBadGateway, msgProviderRefused
		case re.ErrorCode == "invalid_grant":
			h.oidcWarn(ctx, "oidc callback: the provider refused the code (expired, already used, or PKCE mismatch)", attrs...)
			return http.StatusBadRequest, msgStateStale
		default:
			h.oidcLog(ctx, slog.LevelError, "oidc callback: the provider refused the code exchange", attrs...)
			return http.StatusBadGateway, msgProviderError
		}
	}
	h.logError(ctx, "oidc callback: the token endpoint is unreachable", err)
	return http.StatusServiceUnavailable, msgProviderDown
}

// oidcStateFrom opens the browser's state cookie.
func (h *handler) oidcStateFrom(r *http.Request, now time.Time) (oidcState, bool) {
	cs := r.CookiesNamed(h.oidc.stateCookie)
	if len(cs) != 1 {
		return oidcState{}, false
	}
	st, err := unseal[oidcState](h.oidc.seal, "oidc state", cs[0].Value, now)
	if err != nil || st.State == "" || st.Nonce == "" || st.Verifier == "" {
		return oidcState{}, false
	}
	return st, true
}

func (h *handler) clearOIDCCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		Secure: h.browser.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

var errOIDCNotAllowed = errors.New("not allowed")

// identity maps a verified ID token to tokengate's session: the id from
// IDClaim, the name from UsernameClaim, the provider's sid; then the
// allow-lists. On a refusal the returned session names whom (for the log).
func (c *oidcClient) identity(idt *oidc.IDToken) (authn.Session, []string, error) {
	var raw map[string]json.RawMessage
	if err := idt.Claims(&raw); err != nil {
		return authn.Session{}, nil, fmt.Errorf("reading the claims: %w", err)
	}
	return c.identityFrom(raw)
}

// identityFrom maps claims (an ID token's or userinfo's) to the session
// and the groups; see identity.
func (c *oidcClient) identityFrom(raw map[string]json.RawMessage) (authn.Session, []string, error) {
	str := func(name string) string {
		var s string
		if v, ok := raw[name]; ok && json.Unmarshal(v, &s) == nil {
			return s
		}
		return ""
	}
	email, verified := str("email"), emailVerified(raw["email_verified"])
	id := str(c.opts.IDClaim)
	s := authn.Session{Subject: id, SessionID: str("sid")}
	switch {
	case id == "":
		return s, nil, fmt.Errorf("the ID token has no %s claim", c.opts.IDClaim)
	case c.opts.IDClaim == "email" && !verified:
		return s, nil, errors.New("id_claim is email but the email is not verified")
	case !printableClaim(id) || !printableClaim(s.SessionID):
		return s, nil, fmt.Errorf("the %s or sid claim is too long or holds control characters", c.opts.IDClaim)
	}
	s.Username = str(c.opts.UsernameClaim)
	if s.Username == "" || !printableClaim(s.Username) {
		s.Username = id
	}
	if len(c.opts.AllowedEmailDomains) > 0 {
		_, domain, _ := strings.Cut(email, "@")
		if !verified || !slices.ContainsFunc(c.opts.AllowedEmailDomains, func(d string) bool { return strings.EqualFold(d, domain) }) {
			return s, nil, fmt.Errorf("%w: email domain %q (verified: %t) is not in allowed_email_domains", errOIDCNotAllowed, clip(domain, 64), verified)
		}
	}
	groups := claimGroups(raw[c.opts.GroupsClaim])
	if len(c.opts.AllowedGroups) > 0 {
		if !slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(c.opts.AllowedGroups, g) }) {
			return s, nil, fmt.Errorf("%w: in none of allowed_groups (has %d groups)", errOIDCNotAllowed, len(groups))
		}
	}
	return s, groups, nil
}

// emailVerified accepts true, and "true" (some providers send a string).
func emailVerified(v json.RawMessage) bool {
	var b bool
	if json.Unmarshal(v, &b) == nil {
		return b
	}
	var s string
	return json.Unmarshal(v, &s) == nil && s == "true"
}

// claimGroups reads a groups claim: a list of strings, or one string.
func claimGroups(v json.RawMessage) []string {
	var list []string
	if json.Unmarshal(v, &list) == nil {
		return list
	}
	var one string
	if json.Unmarshal(v, &one) == nil && one != "" {
		return []string{one}
	}
	return nil
}

func printableClaim(s string) bool {
	if len(s) > maxClaimBytes {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}

// keepIDToken stores the ID token, sealed, for RP-initiated logout's
// id_token_hint; a token too big for a cookie is not kept.
func (h *handler) keepIDToken(w http.ResponseWriter, rawID string, now time.Time) {
	if h.oidc.opts.NoProviderLogout {
		return
	}
	sealed, err := seal(h.oidc.seal, "oidc id token", rawID, now.Add(oidcIDTokenLife))
	if err != nil || len(sealed) > maxIDTokenCookie {
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: h.oidc.idCookie, Value: sealed, Path: "/", MaxAge: int(oidcIDTokenLife / time.Second),
		Secure: h.browser.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// afterSignOut is where a signed-out browser goes: the provider's
// end_session_endpoint when its session came from the provider (the ID
// token cookie, or a token with a sid) and provider logout is on; else
// local (the sign-in page). The ID token cookie is cleared either way.
func (h *handler) afterSignOut(w http.ResponseWriter, r *http.Request, c authn.Claims, signedIn bool, local string) string {
	if h.oidc == nil {
		return local
	}
	var idToken string
	if cs := r.CookiesNamed(h.oidc.idCookie); len(cs) == 1 {
		idToken, _ = unseal[string](h.oidc.seal, "oidc id token", cs[0].Value, h.now())
		h.clearOIDCCookie(w, h.oidc.idCookie)
	}
	if h.oidc.opts.NoProviderLogout || (idToken == "" && !(signedIn && c.SessionID != "")) {
		return local
	}
	d, err := h.oidc.provider(r.Context(), h.now())
	if err != nil || d.endSession == "" {
		if err != nil {
			h.logError(r.Context(), "sign-out: the provider is unreachable; its session was not ended", err)
		}
		return local
	}
	u, err := url.Parse(d.endSession)
	if err != nil {
		return local
	}
	q := u.Query()
	if idToken != "" {
		q.Set("id_token_hint", idToken)
	}
	q.Set("client_id", h.oidc.opts.ClientID)
	q.Set("post_logout_redirect_uri", h.oidc.postLogout)
	u.RawQuery = q.Encode()
	return u.String()
}

// oidcErrorPage shows what went wrong and a way to start again (and the
// password form, when it is offered).
func (h *handler) oidcErrorPage(w http.ResponseWriter, r *http.Request, status int, rd, msg string) {
	retry := h.oidc.signInRoute
	if rd != "" && rd != "/" {
		retry += "?rd=" + url.QueryEscape(rd)
	}
	signIn := h.browser.signIn
	if rd != "" && rd != "/" {
		signIn += "?rd=" + url.QueryEscape(rd)
	}
	h.renderPage(w, "oidc_error.html", status, pageData{Message: msg, ProviderURL: retry, Provider: h.oidc.opts.Name,
		PasswordForm: !h.oidc.opts.HidePasswordForm, Action: signIn})
}

func (h *handler) oidcWarn(ctx context.Context, msg string, attrs ...slog.Attr) {
	h.oidcLog(ctx, slog.LevelWarn, msg, attrs...)
}

func (h *handler) oidcLog(ctx context.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	attrs = append(attrs, slog.String("request_id", RequestIDFromContext(ctx)))
	h.logger.LogAttrs(ctx, level, msg, attrs...)
}
