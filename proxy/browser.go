package proxy

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"tokengate/authn"
)

// BrowserOptions configure browser sign-in (Routes.SignIn): the session
// cookie that carries the token, the pages, and the query token. The zero
// value is the documented defaults.
type BrowserOptions struct {
	// CookieName names the session cookie (it holds the JWT); default
	// "tokengate". A Secure, host-only session cookie (no CookieDomain)
	// goes by "__Host-<name>", and only that name is read then. The CSRF
	// cookie is named after it ("<name>_csrf", with the __Host- prefix when
	// the cookie is Secure).
	CookieName string
	// InsecureCookie drops the Secure attribute (config
	// browser.cookie_secure: false): only for plain-HTTP development.
	// Default false: the cookies are Secure.
	InsecureCookie bool
	// CookieDomain is the session cookie's Domain; default "" (host-only).
	CookieDomain string
	// Title is shown on the pages; default "Sign in".
	Title string
	// QueryTokenPaths are whole-segment path prefixes where ?access_token=
	// (RFC 6750 section 2.3) authenticates a request that has no
	// Authorization header and no session cookie (browsers cannot set
	// headers on a WebSocket). Default none.
	QueryTokenPaths []string
	// AllowedRedirectHosts are the hosts an absolute rd may name after
	// sign-in: an exact host ("app.example.com") or a suffix
	// (".example.com": example.com and every name under it). Default none:
	// only relative rd values are honoured.
	AllowedRedirectHosts []string
	// CSRFKey signs the CSRF tokens of the sign-in and sign-out forms. Every
	// replica behind one address needs the same key (a form served by one
	// replica is posted to another); at least 32 bytes. Default: random
	// per process, fine for a single replica. cmd/tokengate derives it from
	// the signing key.
	CSRFKey []byte
}

const (
	defaultCookieName = "tokengate"
	defaultTitle      = "Sign in"
	minCSRFKeyBytes   = 32
)

func (b BrowserOptions) withDefaults() BrowserOptions {
	if b.CookieName == "" {
		b.CookieName = defaultCookieName
	}
	if b.Title == "" {
		b.Title = defaultTitle
	}
	if b.CSRFKey == nil {
		b.CSRFKey = make([]byte, minCSRFKeyBytes)
		_, _ = rand.Read(b.CSRFKey) // never fails since Go 1.24
	}
	return b
}

func (b BrowserOptions) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("proxy: Browser."+format, args...)) }
	if !validHeaderName(b.CookieName) || strings.HasPrefix(strings.ToLower(b.CookieName), "__host-") || strings.HasPrefix(strings.ToLower(b.CookieName), "__secure-") {
		bad("CookieName %q: must be a cookie name token without a __Host-/__Secure- prefix", b.CookieName)
	}
	if b.CookieDomain != "" {
		c := http.Cookie{Name: "x", Value: "x", Domain: b.CookieDomain}
		if c.Valid() != nil || strings.ContainsAny(b.CookieDomain, ":/") {
			bad("CookieDomain %q: not a valid cookie domain", b.CookieDomain)
		}
	}
	for _, p := range b.QueryTokenPaths {
		if _, err := cleanPublicPath(p); err != nil {
			bad("QueryTokenPaths %q: %v", p, err)
		}
	}
	for _, h := range b.AllowedRedirectHosts {
		if !validRedirectHost(strings.TrimPrefix(h, ".")) {
			bad("AllowedRedirectHosts %q: want a host name or a .example.com suffix", h)
		}
	}
	if len(b.CSRFKey) < minCSRFKeyBytes {
		bad("CSRFKey: %d bytes, want at least %d", len(b.CSRFKey), minCSRFKeyBytes)
	}
	return errors.Join(errs...)
}

// browser is the handler's browser sign-in state, built once in New.
type browser struct {
	enabled     bool   // Routes.SignIn is set
	signIn      string // the sign-in route
	signOut     string // the sign-out route; "" when disabled
	cookieName  string // the session cookie's name, __Host- prefixed when Secure and host-only
	baseName    string // BrowserOptions.CookieName: the name without a prefix
	csrfCookie  string // the CSRF cookie's name, __Host- prefixed when Secure
	csrfBase    string // "<cookieName>_csrf": the CSRF cookie without a prefix
	oidcBase    string // "<baseName>_oidc": the OpenID Connect ID token cookie
	stateBase   string // "<baseName>_oidc_state": the OpenID Connect state cookie
	secure      bool
	domain      string
	title       string
	queryPaths  publicPaths // where ?access_token= is read (also without sign-in)
	rdHosts     redirectHosts
	csrf        csrfSigner
	crossOrigin *http.CrossOriginProtection
}

func newBrowser(rt Routes, b BrowserOptions) browser {
	br := browser{
		enabled:     rt.SignIn != "",
		signIn:      rt.SignIn,
		signOut:     rt.SignOut,
		cookieName:  b.CookieName,
		baseName:    b.CookieName,
		secure:      !b.InsecureCookie,
		domain:      b.CookieDomain,
		title:       b.Title,
		queryPaths:  newPublicPaths(b.QueryTokenPaths),
		rdHosts:     newRedirectHosts(b.AllowedRedirectHosts),
		csrf:        csrfSigner{key: b.CSRFKey},
		crossOrigin: http.NewCrossOriginProtection(),
	}
	// __Host-: a sibling subdomain cannot plant its own CSRF cookie (the
	// prefix needs Secure, Path=/ and no Domain, which this cookie has).
	br.csrfBase = b.CookieName + "_csrf"
	br.oidcBase, br.stateBase = b.CookieName+"_oidc", b.CookieName+"_oidc_state"
	br.csrfCookie = br.csrfBase
	if br.secure {
		br.csrfCookie = "__Host-" + br.csrfCookie
	}
	// The session cookie too, when it can carry the prefix (Secure, no
	// Domain): a browser then refuses a "__Host-tokengate" set over plain
	// HTTP or by a sibling subdomain, so nobody can plant their own session
	// (login CSRF) or a duplicate that makes ours ambiguous. Only the
	// prefixed name is read: an un-prefixed cookie of the same name, which
	// anyone on a sibling subdomain can set, is no credential (one left
	// from before the prefix means signing in once more).
	if br.secure && br.domain == "" {
		br.cookieName = "__Host-" + b.CookieName
	}
	return br
}

// credSource says where a request's token came from.
type credSource uint8

const (
	sourceNone credSource = iota
	sourceBearer
	sourceCookie
	sourceQuery
)

// queryTokenParam is RFC 6750 section 2.3's URI query parameter.
const queryTokenParam = "access_token"

// credential finds the request's token, in order: the Authorization
// header; else the session cookie (browser sign-in on); else, on a query
// token path, ?access_token=. A failure (several Authorization headers, a
// malformed one, several query tokens) is final: no other source is tried.
func (h *handler) credential(r *http.Request) (token string, src credSource, fail authOutcome) {
	token, present, fail := bearerToken(r.Header)
	if present || fail.decision != decisionMissing {
		return token, sourceBearer, fail
	}
	if h.browser.enabled {
		if tok, ok := h.browser.sessionCookie(r); ok {
			if len(tok) > authn.MaxTokenBytes {
				return "", sourceCookie, authOutcome{decision: decisionMalformed, err: errInvalidToken}
			}
			return tok, sourceCookie, authOutcome{}
		}
	}
	if r.URL.RawQuery != "" && h.browser.queryPaths.match(r.URL.Path) && classifyPath(r.URL.Path, r.URL.RawPath) == pathClean {
		switch vals := queryValues(r.URL.RawQuery, queryTokenParam); {
		case len(vals) > 1:
			return "", sourceQuery, authOutcome{decision: decisionMalformed, err: errSeveralAuth}
		case len(vals) == 1 && vals[0] != "":
			if len(vals[0]) > authn.MaxTokenBytes {
				return "", sourceQuery, authOutcome{decision: decisionMalformed, err: errInvalidToken}
			}
			return vals[0], sourceQuery, authOutcome{}
		}
	}
	return "", sourceNone, fail // decisionMissing
}

// sessionCookie returns the session cookie's value. Several cookies of that
// name (a parent domain's and ours) are ambiguous: the first one the
// browser sent is the most specific path, but not necessarily ours, so
// only a lone cookie counts. With the __Host- prefix only the prefixed
// name is read.
func (b *browser) sessionCookie(r *http.Request) (string, bool) {
	if !cookieHeaderMentions(r.Header, b.cookieName) {
		return "", false // no parsing (nor allocation) for API clients
	}
	cs := r.CookiesNamed(b.cookieName)
	if len(cs) != 1 || cs[0].Value == "" {
		return "", false
	}
	return cs[0].Value, true
}

// cookieHeaderMentions is a cheap pre-check: could hdr carry cookie name?
func cookieHeaderMentions(hdr http.Header, name string) bool {
	return cookiesMention(hdr["Cookie"], name)
}

// cookiesMention is cookieHeaderMentions on the Cookie header's values.
func cookiesMention(vals []string, name string) bool {
	for _, v := range vals {
		if strings.Contains(v, name) {
			return true
		}
	}
	return false
}

// sessionCookieFor is the session cookie carrying token until exp.
func (b *browser) sessionCookieFor(token string, now, exp time.Time) *http.Cookie {
	maxAge := int(exp.Sub(now) / time.Second)
	if maxAge < 1 {
		maxAge = 1
	}
	return &http.Cookie{
		Name:     b.cookieName,
		Value:    token,
		Path:     "/",
		Domain:   b.domain,
		MaxAge:   maxAge,
		Secure:   b.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// clearSessionCookie tells the browser to drop the session cookie (same
// name, path and domain, or the browser keeps it).
func (b *browser) clearSessionCookie(w http.ResponseWriter) {
	b.clearCookie(w, b.domain)
}

// clearHostOnlyCookie drops a host-only session cookie left from before
// cookie_domain was set. Beside the domain cookie it would make two cookies
// of one name, which sessionCookie refuses as ambiguous: the browser could
// never sign in again. Sign-in and sign-out send it when a domain is set.
func (b *browser) clearHostOnlyCookie(w http.ResponseWriter) {
	if b.domain != "" {
		b.clearCookie(w, "")
	}
}

func (b *browser) clearCookie(w http.ResponseWriter, domain string) {
	http.SetCookie(w, &http.Cookie{
		Name:     b.cookieName,
		Value:    "",
		Path:     "/",
		Domain:   domain,
		MaxAge:   -1, // Max-Age=0
		Secure:   b.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// stripCookies removes tokengate's cookies (session and CSRF) from the
// forwarded Cookie headers and keeps the app's own cookies, in order (the
// pairs are rejoined with "; ").
func (b *browser) stripCookies(hdr http.Header) {
	vals := hdr["Cookie"]
	if len(vals) == 0 || !cookiesMention(vals, b.baseName) {
		return // no header written on the common path
	}
	out := b.appCookies(vals)
	if len(out) == 0 {
		delete(hdr, "Cookie")
		return
	}
	hdr["Cookie"] = out
}

// appCookies returns the Cookie header values without tokengate's cookies
// (session and CSRF): the app's own pairs, in order, rejoined with "; "
// per value; nothing when only tokengate's were there. vals is never
// modified; without tokengate's cookies it is returned as it is.
func (b *browser) appCookies(vals []string) []string {
	// Every spelling of both cookies contains the base name, so one cheap
	// check covers them; requests without them are left alone untouched.
	if !cookiesMention(vals, b.baseName) {
		return vals
	}
	out := vals[:0:0]
	for _, v := range vals {
		kept := make([]string, 0, strings.Count(v, ";")+1)
		for part := range strings.SplitSeq(v, ";") {
			pair := strings.TrimSpace(part)
			if pair == "" {
				continue
			}
			name, _, _ := strings.Cut(pair, "=")
			if b.ownCookie(strings.TrimSpace(name)) {
				continue
			}
			kept = append(kept, pair)
		}
		if len(kept) > 0 {
			out = append(out, strings.Join(kept, "; "))
		}
	}
	return out
}

// ownCookie reports whether a cookie name is one of tokengate's: the
// session or the CSRF cookie, with or without the __Host- prefix (a browser
// may still hold the other spelling after cookie_secure or cookie_domain
// changed, or a planted one). The shipped Caddy config matches the same
// four names.
func (b *browser) ownCookie(name string) bool {
	name = strings.TrimPrefix(name, "__Host-")
	return name == b.baseName || name == b.csrfBase || name == b.oidcBase || name == b.stateBase
}

// queryValues returns the values of key in a raw query, decoded the way
// url.ParseQuery decodes (key spelled %61ccess_token counts too).
func queryValues(rawQuery, key string) []string {
	var vals []string
	for part := range strings.SplitSeq(rawQuery, "&") {
		k, v, _ := strings.Cut(part, "=")
		if !queryKeyIs(k, key) {
			continue
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			dv = "" // undecodable: no token
		}
		vals = append(vals, dv)
	}
	return vals
}

func queryKeyIs(rawKey, key string) bool {
	if rawKey == key {
		return true
	}
	if !strings.ContainsAny(rawKey, "%+") {
		return false
	}
	k, err := url.QueryUnescape(rawKey)
	return err == nil && k == key
}

// withoutQueryParam removes every key parameter from a raw query and keeps
// the rest exactly as sent.
func withoutQueryParam(rawQuery, key string) string {
	if !strings.Contains(rawQuery, key) && !strings.Contains(rawQuery, "%") {
		return rawQuery // neither spelled out nor encoded: nothing to remove
	}
	kept := make([]string, 0, strings.Count(rawQuery, "&")+1)
	for part := range strings.SplitSeq(rawQuery, "&") {
		k, _, _ := strings.Cut(part, "=")
		if queryKeyIs(k, key) {
			continue
		}
		kept = append(kept, part)
	}
	return strings.Join(kept, "&")
}

// wantsHTML reports whether the request is a browser navigation: GET or
// HEAD with text/html in Accept (with a non-zero q). fetch() and API
// clients send */* or application/json and get the 401 JSON.
func wantsHTML(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	for _, v := range r.Header["Accept"] {
		for rng := range strings.SplitSeq(v, ",") {
			mt, params, _ := strings.Cut(rng, ";")
			if !strings.EqualFold(strings.TrimSpace(mt), "text/html") {
				continue
			}
			if zeroQ(params) {
				continue
			}
			return true
		}
	}
	return false
}

// zeroQ reports a q=0 parameter ("not acceptable").
func zeroQ(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			v = strings.TrimRight(strings.TrimSpace(v), "0")
			return v == "0" || v == "0." || v == ""
		}
	}
	return false
}

// redirectToSignIn sends a browser to the sign-in page, to come back to
// the request's path and query afterwards.
func (h *handler) redirectToSignIn(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	w.Header().Set("Location", h.signInLocation(r.URL, ""))
	w.WriteHeader(http.StatusFound)
}

// signInLocation is the sign-in page with rd naming back (nil: no rd).
// origin ("https://host", or "") makes rd absolute; an absolute rd that
// safeRedirect would refuse (a host not in allowed_redirect_hosts) falls
// back to the relative one, which the sign-in page is on anyway.
func (h *handler) signInLocation(back *url.URL, origin string) string {
	target := h.browser.signIn
	if back == nil {
		return target
	}
	rel := back.EscapedPath()
	if q := back.RawQuery; q != "" {
		if h.browser.queryPaths.match(back.Path) {
			q = withoutQueryParam(q, queryTokenParam) // never into a Location
		}
		if q != "" {
			rel += "?" + q
		}
	}
	if origin != "" {
		if rd, ok := safeRedirect(origin+rel, h.browser.rdHosts); ok {
			return target + "?rd=" + url.QueryEscape(rd)
		}
	}
	if rd, ok := safeRedirect(rel, nil); ok && rd != "/" {
		target += "?rd=" + url.QueryEscape(rd)
	}
	return target
}

// renewCookie gives a cookie-authenticated request past half its token's
// life a fresh token in a new cookie. The old token stays valid (other
// requests of the same page still carry it) until it expires.
func (h *handler) renewCookie(w http.ResponseWriter, r *http.Request, c authn.Claims) {
	fresh := h.renewedSessionCookie(r, c)
	if fresh == nil {
		return
	}
	http.SetCookie(w, fresh)
	// This response now carries a token: no shared cache may keep it, even
	// if the app marks the page public (its Cache-Control is added beside
	// this one, and no-store wins).
	w.Header().Add("Cache-Control", "no-store")
}

// renewalOf is the session a renewal or refresh of c continues: the same
// sign-in (auth_time) and provider session, so a logout-all cutoff after
// that sign-in still ends the new token.
func renewalOf(c authn.Claims) authn.Session {
	return authn.Session{Subject: c.Subject, Username: c.Username, AuthTime: c.SignedInAt(), SessionID: c.SessionID}
}

// renewedSessionCookie is the cookie replacing a session cookie whose
// token c is past half its life, with a fresh token; nil before that, or
// when issuing fails (the current cookie still works). Verify sends it
// for the ingress to copy to the app's response.
func (h *handler) renewedSessionCookie(r *http.Request, c authn.Claims) *http.Cookie {
	now := h.now()
	life := c.ExpiresAt.Sub(c.IssuedAt)
	if life <= 0 || now.Sub(c.IssuedAt) < life/2 {
		return nil
	}
	token, fresh, err := h.tokens.IssueSession(renewalOf(c))
	if err != nil {
		h.logError(r.Context(), "renewing the session cookie failed", err)
		return nil
	}
	return h.browser.sessionCookieFor(token, now, fresh.ExpiresAt)
}

var errCrossOrigin = apiError{http.StatusForbidden, "cross_origin_request", "a cross-site request with the session cookie is refused"}

// sameOrigin refuses cross-site unsafe requests (POST, PUT, PATCH, DELETE,
// ...) that carry the session cookie, with the standard library's check:
// Sec-Fetch-Site, else Origin against Host. A WebSocket handshake is a GET
// but opens a channel that can act: it is checked as an unsafe request
// (cross-site WebSocket hijacking). Bearer and query tokens are not ambient
// credentials, so their requests are never checked.
func (h *handler) sameOrigin(r *http.Request) bool {
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && webSocketHandshake(r.Header) {
		unsafe := *r // shallow: Check only reads the method and headers
		unsafe.Method = http.MethodPost
		return h.browser.crossOrigin.Check(&unsafe) == nil
	}
	return h.browser.crossOrigin.Check(r) == nil
}

// webSocketHandshake reports whether hdr shows a protocol upgrade, above
// all a WebSocket opening handshake. Upgrade is hop-by-hop: an ingress's
// auth request usually lacks it (nginx's proxy module and ingress-nginx
// clear it, Traefik's ForwardAuth deletes it, Envoy's ext_authz sends only
// the headers it is told to), so verify would see a plain GET. What a
// browser's handshake always carries end to end counts too:
// Sec-WebSocket-Key (RFC 6455 section 4.1; the app needs it to answer) and
// Sec-Fetch-Mode: websocket (Fetch metadata), neither of which a page can
// set or remove.
func webSocketHandshake(hdr http.Header) bool {
	if len(hdr["Upgrade"]) > 0 || len(hdr["Sec-Websocket-Key"]) > 0 {
		return true
	}
	for _, m := range hdr["Sec-Fetch-Mode"] {
		if strings.EqualFold(strings.TrimSpace(m), "websocket") {
			return true
		}
	}
	return false
}

// stripBrowserCredentials keeps tokengate's credentials from the app: its
// cookies out of the Cookie header, ?access_token= out of the URL on query
// token paths. The app's own cookies and parameters pass as sent.
func (h *handler) stripBrowserCredentials(pr *httputil.ProxyRequest) {
	if h.browser.enabled {
		h.browser.stripCookies(pr.Out.Header)
	}
	if len(h.browser.queryPaths) > 0 && pr.Out.URL.RawQuery != "" && h.browser.queryPaths.match(pr.In.URL.Path) {
		pr.Out.URL.RawQuery = withoutQueryParam(pr.Out.URL.RawQuery, queryTokenParam)
	}
}
