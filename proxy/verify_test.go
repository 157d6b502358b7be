package proxy

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

const verifyPath = "/tokengate/verify"

// newVerifyEnv is a browser env with verify on and the test client's
// loopback address trusted as the ingress, unless trusted says otherwise.
func newVerifyEnv(t *testing.T, trusted []netip.Prefix, more ...func(*Options)) *env {
	t.Helper()
	return newBrowserEnv(t, envConfig{options: func(o *Options) {
		o.Routes.Verify = verifyPath
		o.TrustedProxies = trusted
		o.PublicPaths = []string{"/healthz", "/static/"}
		o.Browser.QueryTokenPaths = []string{"/ws"}
		o.Browser.AllowedRedirectHosts = []string{"app.example.com"}
		for _, f := range more {
			f(o)
		}
	}})
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

func merge(hs ...http.Header) http.Header {
	out := http.Header{}
	for _, h := range hs {
		for k, vv := range h {
			out[k] = append(out[k], vv...)
		}
	}
	return out
}

func TestVerify(t *testing.T) {
	e := newVerifyEnv(t, loopback)
	token := e.issue("marco", "marco")
	revoked := e.issue("marco", "marco")
	if res := e.do("POST", "/user/logout", bearer(revoked), ""); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %s", res.StatusCode, res.body)
	}
	cookie := e.signIn("marco", marcoPassword)
	browser := hdr("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	caddy := func(uri string) http.Header {
		return hdr("X-Forwarded-Uri", uri, "X-Forwarded-Method", "GET", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Proto", "https")
	}
	nginx := func(uri string) http.Header {
		return hdr("X-Original-Uri", uri, "X-Original-Method", "GET", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Proto", "https")
	}

	tests := []struct {
		name     string
		method   string
		hdr      http.Header
		status   int
		identity string // the identity header on the answer; "" none
		location string // Location (302) or X-Tokengate-Sign-In (nginx 401)
		errCode  string
	}{
		{"no credentials, private", "GET", caddy("/app"), 401, "", "", "missing_token"},
		{"no credentials, no original", "GET", nil, 401, "", "", "missing_token"},
		{"valid bearer", "GET", merge(caddy("/app"), bearer(token)), 200, "marco", "", ""},
		{"valid bearer, any method", "DELETE", merge(nginx("/app"), bearer(token)), 200, "marco", "", ""},
		{"valid bearer, no original", "POST", bearer(token), 200, "marco", "", ""},
		{"revoked bearer", "GET", merge(caddy("/app"), bearer(revoked)), 401, "", "", "token_revoked"},
		{"garbage bearer", "GET", merge(caddy("/app"), bearer("x.y.z")), 401, "", "", "invalid_token"},
		{"public path, no credentials", "GET", caddy("/healthz"), 200, "", "", ""},
		{"public path, nginx", "GET", nginx("/static/app.js?v=1"), 200, "", "", ""},
		{"public path, revoked token: anonymous", "GET", merge(caddy("/healthz"), bearer(revoked)), 200, "", "", ""},
		{"public path, valid token: identity", "GET", merge(caddy("/healthz"), bearer(token)), 200, "marco", "", ""},
		{"public prefix lookalike is private", "GET", caddy("/healthzX"), 401, "", "", "missing_token"},
		{"dot segments to a public path are private", "GET", caddy("/healthz/../app"), 401, "", "", "missing_token"},
		{"encoded dot segments are private", "GET", caddy("/healthz/%2e%2e/app"), 401, "", "", "missing_token"},
		{"absolute-form URI is private", "GET", caddy("http://x/healthz"), 401, "", "", "missing_token"},
		{"two X-Forwarded-Uri are private", "GET", merge(caddy("/healthz"), hdr("X-Forwarded-Uri", "/healthz")), 401, "", "", "missing_token"},
		{"session cookie", "GET", merge(caddy("/app"), session(cookie)), 200, "marco", "", ""},
		{"query token on a query token path", "GET", caddy("/ws?access_token=" + token), 200, "marco", "", ""},
		{"query token elsewhere is ignored", "GET", caddy("/app?access_token=" + token), 401, "", "", "missing_token"},
		{"browser, caddy: 302 with absolute rd", "GET", merge(caddy("/app/page?a=1&b=2"), browser), 302, "",
			signInPath + "?rd=" + url.QueryEscape("https://app.example.com/app/page?a=1&b=2"), ""},
		{"browser, host not allowed: relative rd", "GET", merge(caddy("/app/page"), browser, hdr("X-Forwarded-Host", "other.example.com")), 302, "",
			signInPath + "?rd=" + url.QueryEscape("/app/page"), ""},
		{"browser, nginx: 401 naming the sign-in URL", "GET", merge(nginx("/app/page?a=1&b=2"), browser), 401, "",
			signInPath + "?rd=" + url.QueryEscape("https://app.example.com/app/page?a=1&b=2"), "missing_token"},
		{"browser POST is an API call", "GET", merge(caddy("/app"), browser, hdr("X-Forwarded-Method", "POST")), 401, "", "", "missing_token"},
		{"browser, query token stays out of rd", "GET", merge(caddy("/ws?access_token=bad&x=1"), browser), 302, "",
			signInPath + "?rd=" + url.QueryEscape("https://app.example.com/ws?x=1"), ""},
		{"cookie, cross-site POST", "GET", merge(caddy("/app"), session(cookie), hdr("X-Forwarded-Method", "POST", "Sec-Fetch-Site", "cross-site")), 403, "", "", "cross_origin_request"},
		{"bearer, cross-site POST", "GET", merge(caddy("/app"), bearer(token), hdr("X-Forwarded-Method", "POST", "Sec-Fetch-Site", "cross-site")), 200, "marco", "", ""},
		{"client identity header is never echoed", "GET", merge(caddy("/healthz"), hdr("X-Auth-UserId", "alice", "X_Auth_Userid", "alice")), 200, "", "", ""},
		{"client identity header does not authenticate", "GET", merge(caddy("/app"), hdr("X-Auth-UserId", "alice")), 401, "", "", "missing_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The X-Forwarded-Method above overrides caddy()'s GET: keep the last.
			h := tt.hdr.Clone()
			if m := h["X-Forwarded-Method"]; len(m) > 1 {
				h["X-Forwarded-Method"] = m[len(m)-1:]
			}
			if m := h["X-Forwarded-Host"]; len(m) > 1 {
				h["X-Forwarded-Host"] = m[len(m)-1:]
			}
			res := e.send(tt.method, verifyPath, h, "")
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, res.body)
			}
			if got := strings.Join(identityValues(res.Header), ","); got != tt.identity {
				t.Errorf("identity on the answer %q, want %q", got, tt.identity)
			}
			if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			loc := res.Header.Get("Location")
			if res.StatusCode == 401 {
				loc = res.Header.Get(signInHeader)
				if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without a Bearer challenge: %q", res.Header.Get("WWW-Authenticate"))
				}
			}
			if loc != tt.location {
				t.Errorf("location %q, want %q", loc, tt.location)
			}
			if got := res.apiErr().Code; got != tt.errCode {
				t.Errorf("error code %q, want %q", got, tt.errCode)
			}
		})
	}
	if n := len(e.up.requests()); n != 0 {
		t.Errorf("verify reached the upstream %d times", n)
	}
	if got := metricValue(t, e.reg, "tokengate_http_requests_total", map[string]string{"route": "verify", "code": "200"}); got == 0 {
		t.Error(`no tokengate_http_requests_total{route="verify",code="200"}`)
	}
	if got := metricValue(t, e.reg, "tokengate_auth_decisions_total", map[string]string{"result": "revoked"}); got == 0 {
		t.Error("the revoked token was not counted as a decision")
	}
}

// An original method the ingress names twice (ingress-nginx sets
// X-Original-Method itself, and a snippet may set it again), empty or
// malformed is unknown, and judged as unsafe: a cookie request from another
// site is refused, not taken for the GET verify itself receives.
func TestVerifyUnreadableMethodIsUnsafe(t *testing.T) {
	e := newVerifyEnv(t, loopback)
	cookie := e.signIn("marco", marcoPassword)
	crossSite := hdr("Sec-Fetch-Site", "cross-site", "Accept", "text/html")
	nginx := hdr("X-Original-Uri", "/app", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Proto", "https")
	for _, tt := range []struct {
		name   string
		method []string
		status int
	}{
		{"one GET: a navigation, allowed", []string{"GET"}, 200},
		{"one POST: refused", []string{"POST"}, 403},
		{"POST twice: refused", []string{"POST", "POST"}, 403},
		{"GET twice: unknown, refused", []string{"GET", "GET"}, 403},
		{"empty: unknown, refused", []string{""}, 403},
		{"malformed: unknown, refused", []string{"PO ST"}, 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := merge(nginx, session(cookie), crossSite)
			h["X-Original-Method"] = tt.method
			res := e.send("GET", verifyPath, h, "")
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, res.body)
			}
		})
	}
}

// Issue 21 point 2: verify's own method (a GET behind nginx's
// auth_request and ingress-nginx) never stands for the original one. With
// no original method (a trusted ingress that sends none, or any request
// from a peer outside trusted_proxies, whatever it names), a cross-site
// cookie request is refused as an unsafe one; the same cookie from the
// same site, and a Bearer token, still pass.
func TestVerifyMissingMethodIsUnsafe(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		hdr     http.Header
	}{
		{"trusted nginx without X-Original-Method", loopback, hdr("X-Original-Uri", "/app")},
		{"trusted Caddy without X-Forwarded-Method", loopback, hdr("X-Forwarded-Uri", "/app", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Proto", "https")},
		{"trusted peer, no original at all", loopback, nil},
		{"untrusted peer, no original", nil, nil},
		{"untrusted peer naming a GET", nil, hdr("X-Original-Uri", "/app", "X-Original-Method", "GET")},
		{"untrusted peer naming a GET (Caddy's headers)", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, hdr("X-Forwarded-Uri", "/app", "X-Forwarded-Method", "GET")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newVerifyEnv(t, tc.trusted)
			cookie := e.signIn("marco", marcoPassword)
			for _, m := range []string{"GET", "POST"} { // verify's own method does not matter
				res := e.send(m, verifyPath, merge(tc.hdr, session(cookie), hdr("Sec-Fetch-Site", "cross-site")), "")
				if res.StatusCode != http.StatusForbidden || res.apiErr().Code != "cross_origin_request" {
					t.Errorf("verify %s, cross-site with the cookie: %d %s, want 403 cross_origin_request", m, res.StatusCode, res.body)
				}
				res = e.send(m, verifyPath, merge(tc.hdr, session(cookie), hdr("Origin", "https://evil.example")), "")
				if res.StatusCode != http.StatusForbidden {
					t.Errorf("verify %s, foreign Origin with the cookie: %d %s, want 403", m, res.StatusCode, res.body)
				}
			}
			if res := e.send("GET", verifyPath, merge(tc.hdr, session(cookie), hdr("Sec-Fetch-Site", "same-origin")), ""); res.StatusCode != 200 {
				t.Errorf("same-origin with the cookie: %d %s", res.StatusCode, res.body)
			}
			if res := e.send("GET", verifyPath, merge(tc.hdr, bearer(cookie.Value), hdr("Sec-Fetch-Site", "cross-site")), ""); res.StatusCode != 200 {
				t.Errorf("cross-site with a Bearer token: %d %s", res.StatusCode, res.body)
			}
		})
	}
}

// Issue 21 point 4: from a trusted peer, both families of original-request
// headers naming different requests (an ingress that writes one family and
// passes the client's copy of the other) are refused with 400, whichever
// family the ingress wrote; agreeing copies are fine.
func TestVerifyHeaderFamiliesDisagree(t *testing.T) {
	e := newVerifyEnv(t, loopback)
	token := e.issue("marco", "marco")
	cookie := e.signIn("marco", marcoPassword)
	for _, tt := range []struct {
		name   string
		hdr    http.Header
		status int
	}{
		{"public nginx URI, private Caddy URI", hdr("X-Original-Uri", "/healthz", "X-Forwarded-Uri", "/admin", "X-Forwarded-Method", "GET"), 400},
		{"private nginx URI, public Caddy URI", hdr("X-Original-Uri", "/admin", "X-Original-Method", "GET", "X-Forwarded-Uri", "/healthz", "X-Forwarded-Method", "GET"), 400},
		{"same URIs, methods differ", hdr("X-Original-Uri", "/app", "X-Original-Method", "GET", "X-Forwarded-Uri", "/app", "X-Forwarded-Method", "POST"), 400},
		{"a method in one family only", hdr("X-Original-Method", "GET", "X-Forwarded-Uri", "/healthz", "X-Forwarded-Method", "POST"), 400},
		{"a URI in one family only", hdr("X-Original-Uri", "/healthz", "X-Original-Method", "GET", "X-Forwarded-Method", "GET"), 400},
		{"both families agree", hdr("X-Original-Uri", "/healthz", "X-Original-Method", "GET", "X-Forwarded-Uri", "/healthz", "X-Forwarded-Method", "GET"), 200},
		{"one family", hdr("X-Forwarded-Uri", "/healthz", "X-Forwarded-Method", "GET"), 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, cred := range []http.Header{nil, bearer(token), session(cookie)} {
				res := e.send("GET", verifyPath, merge(tt.hdr, cred), "")
				if res.StatusCode != tt.status {
					t.Fatalf("credential %v: %d %s, want %d", cred != nil, res.StatusCode, res.body, tt.status)
				}
				if tt.status == 400 && (res.apiErr().Code != "malformed_request" || len(identityValues(res.Header)) != 0) {
					t.Errorf("400 %s with identity %q", res.body, identityValues(res.Header))
				}
			}
		})
	}
	// From a peer outside trusted_proxies neither family counts: private.
	u := newVerifyEnv(t, nil)
	if res := u.send("GET", verifyPath, hdr("X-Original-Uri", "/healthz", "X-Forwarded-Uri", "/admin"), ""); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("untrusted peer, both families: %d, want 401", res.StatusCode)
	}
}

// A client that reaches verify directly (not through a trusted ingress)
// cannot make a private path public with X-Forwarded-Uri or X-Original-URI.
func TestVerifyIgnoresOriginalFromUntrustedPeers(t *testing.T) {
	for _, trusted := range [][]netip.Prefix{nil, {netip.MustParsePrefix("10.0.0.0/8")}} {
		e := newVerifyEnv(t, trusted)
		token := e.issue("marco", "marco")
		for _, h := range []http.Header{
			hdr("X-Forwarded-Uri", "/healthz"),
			hdr("X-Forwarded-Uri", "/healthz", "X-Forwarded-Method", "GET", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Proto", "https"),
			hdr("X-Original-Uri", "/healthz"),
			hdr("X-Original-Uri", "/static/x.js", "X-Original-Method", "GET"),
			hdr("X-Original-Uri", "/healthz", "X-Forwarded-Uri", "/healthz"),
		} {
			res := e.send("GET", verifyPath, h, "")
			if res.StatusCode != http.StatusUnauthorized {
				t.Errorf("trusted %v, %v: status %d, want 401", trusted, h, res.StatusCode)
			}
			// A query token named in an untrusted original URL is no credential either.
			h2 := h.Clone()
			h2["X-Forwarded-Uri"] = []string{"/ws?access_token=" + token}
			if res := e.send("GET", verifyPath, h2, ""); res.StatusCode != http.StatusUnauthorized {
				t.Errorf("trusted %v: query token from an untrusted original: status %d, want 401", trusted, res.StatusCode)
			}
			// Nor is the method known: not even a browser navigation can be
			// told, so no sign-in redirect (a 401 as for any request).
			res = e.send("GET", verifyPath, merge(hdr("Accept", "text/html"), hdr("X-Forwarded-Uri", "/app", "X-Forwarded-Method", "GET")), "")
			if res.StatusCode != http.StatusUnauthorized || res.Header.Get("Location") != "" {
				t.Errorf("trusted %v: browser: %d %q, want 401", trusted, res.StatusCode, res.Header.Get("Location"))
			}
		}
		// Credentials still work: only the original URL is unknown.
		if res := e.send("GET", verifyPath, merge(bearer(token), hdr("X-Forwarded-Uri", "/healthz")), ""); res.StatusCode != 200 || res.Header.Get("X-Auth-UserId") != "marco" {
			t.Errorf("trusted %v: valid token: %d %q", trusted, res.StatusCode, res.Header.Get("X-Auth-UserId"))
		}
	}
}

func TestVerifyDisabled(t *testing.T) {
	e := newVerifyEnv(t, loopback, func(o *Options) { o.Routes.Verify = "" })
	token := e.issue("marco", "marco")
	res := e.send("GET", verifyPath, bearer(token), "")
	if len(e.up.requests()) != 1 || res.Header.Get("Cache-Control") == "no-store" {
		t.Fatalf("with routes.verify off, %s should be proxied like any path: %d", verifyPath, res.StatusCode)
	}
}

// Auth-server mode: no upstream; identity endpoints, sign-in and verify
// are served, anything else is 404 JSON, public paths too.
func TestAuthServerMode(t *testing.T) {
	e := newVerifyEnv(t, loopback, func(o *Options) { o.Upstream = nil })
	token := e.login("marco", marcoPassword)
	if res := e.send("GET", verifyPath, merge(bearer(token), hdr("X-Forwarded-Uri", "/app")), ""); res.StatusCode != 200 || res.Header.Get("X-Auth-UserId") != "marco" {
		t.Fatalf("verify: %d %q", res.StatusCode, res.Header.Get("X-Auth-UserId"))
	}
	if p := e.getPage(signInPath); p.csrf == "" {
		t.Fatal("the sign-in page has no form")
	}
	for _, target := range []string{"/app", "/healthz", "/", "/static/x.js", "/tokengate/other"} {
		for _, h := range []http.Header{nil, bearer(token), hdr("Accept", "text/html")} {
			res := e.send("GET", target, h, "")
			if res.StatusCode != http.StatusNotFound || res.apiErr().Code != "not_found" {
				t.Errorf("GET %s %v: %d %s, want 404 not_found", target, h, res.StatusCode, res.body)
			}
		}
	}
	if n := len(e.up.requests()); n != 0 {
		t.Errorf("the (unconfigured) upstream was reached %d times", n)
	}
}

// Envoy's ext_authz HTTP service appends the original path and query to
// the verify route and keeps the original method and Host.
func TestVerifyEnvoyPathStyle(t *testing.T) {
	e := newVerifyEnv(t, loopback)
	token := e.issue("marco", "marco")
	tests := []struct {
		method, target string
		hdr            http.Header
		status         int
		identity       string
		location       string
	}{
		{"GET", verifyPath + "/healthz", nil, 200, "", ""},
		{"POST", verifyPath + "/static/x.js?v=1", nil, 200, "", ""},
		{"GET", verifyPath + "/app", nil, 401, "", ""},
		{"DELETE", verifyPath + "/app", bearer(token), 200, "marco", ""},
		{"GET", verifyPath + "/ws?access_token=" + token, nil, 200, "marco", ""},
		{"GET", verifyPath + "/healthzX", nil, 401, "", ""},
		{"GET", verifyPath + "/healthz/%2e%2e/app", nil, 400, "", ""}, // a hostile path is refused whole
		{"GET", verifyPath + "/app/page?a=1", hdr("Accept", "text/html", "X-Forwarded-Proto", "https"), 302, "",
			signInPath + "?rd=" + url.QueryEscape("/app/page?a=1")}, // the test's Host is not an allowed host
	}
	for _, tt := range tests {
		res := e.send(tt.method, tt.target, tt.hdr, "")
		if res.StatusCode != tt.status || strings.Join(identityValues(res.Header), ",") != tt.identity || res.Header.Get("Location") != tt.location {
			t.Errorf("%s %s: %d identity %q Location %q, want %d %q %q", tt.method, tt.target, res.StatusCode,
				identityValues(res.Header), res.Header.Get("Location"), tt.status, tt.identity, tt.location)
		}
	}
	if n := len(e.up.requests()); n != 0 {
		t.Errorf("the upstream was reached %d times", n)
	}
	// From an untrusted peer the appended path is unknown: private.
	e = newVerifyEnv(t, nil)
	if res := e.send("GET", verifyPath+"/healthz", nil, ""); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("untrusted peer, %s/healthz: %d, want 401", verifyPath, res.StatusCode)
	}
}

// TestVerifyWebSocketHandshake: cross-site WebSocket hijacking behind an
// ingress. The ingress's auth request lacks the hop-by-hop Upgrade and
// Connection headers (nginx's proxy module clears Upgrade, Traefik deletes
// it, Envoy sends only the headers listed), so verify must know a
// handshake by what reaches it end to end: Sec-WebSocket-Key, or
// Sec-Fetch-Mode: websocket. With the session cookie from another origin it
// is refused; from the app's own origin, or with a Bearer token, allowed.
func TestVerifyWebSocketHandshake(t *testing.T) {
	e := newVerifyEnv(t, loopback)
	cookie := e.signIn("marco", marcoPassword)
	token := e.issue("marco", "marco")
	nginx := hdr("X-Original-Uri", "/app/ws", "X-Original-Method", "GET", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Proto", "https")
	traefik := hdr("X-Forwarded-Uri", "/app/ws", "X-Forwarded-Method", "GET", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Proto", "https")
	key := hdr("Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Sec-Websocket-Version", "13")
	fetchMeta := func(site string) http.Header {
		return hdr("Sec-Fetch-Site", site, "Sec-Fetch-Mode", "websocket", "Sec-Fetch-Dest", "empty")
	}
	evil := hdr("Origin", "https://evil.example")
	own := hdr("Origin", "https://app.example.com")
	envoyOwn := hdr("Origin", e.srv.URL) // Envoy passes the original Host itself
	cookies := session(cookie)
	tests := []struct {
		name     string
		target   string
		hdr      http.Header
		status   int
		identity string
	}{
		{"nginx: cross-site, no Upgrade", verifyPath, merge(nginx, cookies, key, fetchMeta("cross-site"), evil), 403, ""},
		{"traefik: cross-site, no Upgrade", verifyPath, merge(traefik, cookies, key, fetchMeta("cross-site"), evil), 403, ""},
		{"same-site, another origin", verifyPath, merge(nginx, cookies, key, fetchMeta("same-site"), hdr("Origin", "https://evil.example.com")), 403, ""},
		{"old browser: foreign Origin and the key only", verifyPath, merge(nginx, cookies, key, evil), 403, ""},
		{"Fetch metadata without the key", verifyPath, merge(nginx, cookies, fetchMeta("cross-site"), evil), 403, ""},
		{"mode in capitals", verifyPath, merge(nginx, cookies, hdr("Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "WebSocket")), 403, ""},
		{"Upgrade passed (Caddy)", verifyPath, merge(traefik, cookies, key, hdr("Upgrade", "websocket", "Connection", "Upgrade"), fetchMeta("cross-site"), evil), 403, ""},
		{"envoy: cross-site", verifyPath + "/app/ws", merge(cookies, key, fetchMeta("cross-site"), evil), 403, ""},
		{"same origin", verifyPath, merge(nginx, cookies, key, fetchMeta("same-origin"), own), 200, "marco"},
		{"old browser: own Origin", verifyPath, merge(nginx, cookies, key, own), 200, "marco"},
		{"envoy: own Origin", verifyPath + "/app/ws", merge(cookies, key, envoyOwn), 200, "marco"},
		{"no browser headers (a script with the cookie)", verifyPath, merge(nginx, cookies, key), 200, "marco"},
		{"bearer, cross-site", verifyPath, merge(nginx, bearer(token), key, fetchMeta("cross-site"), evil), 200, "marco"},
		{"cookie, cross-site navigation (not a handshake)", verifyPath, merge(nginx, cookies, hdr("Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate"), evil), 200, "marco"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.send("GET", tt.target, tt.hdr, "")
			if res.StatusCode != tt.status || strings.Join(identityValues(res.Header), ",") != tt.identity {
				t.Fatalf("%d identity %q, want %d %q: %s", res.StatusCode, identityValues(res.Header), tt.status, tt.identity, res.body)
			}
			if tt.status == http.StatusForbidden {
				if code := res.apiErr().Code; code != "cross_origin_request" {
					t.Errorf("error %q, want cross_origin_request", code)
				}
				if len(res.Header["Set-Cookie"]) != 0 || res.Header.Get("Cookie") != "" {
					t.Errorf("a refusal carries Set-Cookie %q / Cookie %q", res.Header["Set-Cookie"], res.Header.Get("Cookie"))
				}
			}
		})
	}
	if n := len(e.up.requests()); n != 0 {
		t.Errorf("verify reached the upstream %d times", n)
	}
}

// TestVerifyAppCookies: an allowing answer carries the Cookie header the
// app should get (the request's cookies without tokengate's), or, when only
// tokengate's came, no Cookie and X-Envoy-Auth-Headers-To-Remove: cookie;
// a refusal carries neither.
func TestVerifyAppCookies(t *testing.T) {
	e := newVerifyEnv(t, loopback)
	cookie := e.signIn("marco", marcoPassword)
	revoked := e.signIn("marco", marcoPassword)
	if res := e.do("POST", "/user/logout", bearer(revoked.Value), ""); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %s", res.StatusCode, res.body)
	}
	token := e.issue("marco", "marco")
	tg := sessionCookieName + "=" + cookie.Value
	caddy := func(uri string, kv ...string) http.Header {
		return merge(hdr("X-Forwarded-Uri", uri, "X-Forwarded-Method", "GET", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Proto", "https"), hdr(kv...))
	}
	const noCookie = "-" // the answer has no Cookie header

	tests := []struct {
		name     string
		target   string
		hdr      http.Header
		status   int
		identity string
		cookie   string // the answer's Cookie; noCookie: none
		remove   string // X-Envoy-Auth-Headers-To-Remove
	}{
		{"tokengate's cookies out, the app's in order", verifyPath, caddy("/app", "Cookie", "app=1; "+tg+"; __Host-tokengate_csrf=x; other=2"), 200, "marco", "app=1; other=2", ""},
		{"the CSRF cookie without its prefix is tokengate's too", verifyPath, caddy("/app", "Cookie", "app=1; "+tg+"; tokengate_csrf=x; other=2"), 200, "marco", "app=1; other=2", ""},
		{"only tokengate's cookies: none left, Envoy told to remove", verifyPath, caddy("/app", "Cookie", tg+"; __Host-tokengate_csrf=x"), 200, "marco", noCookie, "cookie"},
		{"several Cookie lines: one header", verifyPath, caddy("/app", "Cookie", "a=1", "Cookie", tg+"; b=2"), 200, "marco", "a=1; b=2", ""},
		{"look-alike names pass", verifyPath, caddy("/app", "Cookie", tg+"; tokengate_pref=1; xtokengate=2"), 200, "marco", "tokengate_pref=1; xtokengate=2", ""},
		{"bearer, only the app's cookies: echoed unchanged", verifyPath, merge(caddy("/app", "Cookie", "a=1;b=2"), bearer(token)), 200, "marco", "a=1;b=2", ""},
		{"bearer beside the session cookie: the cookie still out", verifyPath, merge(caddy("/app", "Cookie", "a=1; "+tg), bearer(token)), 200, "marco", "a=1", ""},
		{"no Cookie header: neither", verifyPath, merge(caddy("/app"), bearer(token)), 200, "marco", noCookie, ""},
		{"public path, anonymous: the app's cookies echoed", verifyPath, caddy("/healthz", "Cookie", "a=1; b=2"), 200, "", "a=1; b=2", ""},
		{"public path, bad session cookie: filtered", verifyPath, caddy("/healthz", "Cookie", "a=1; "+sessionCookieName+"=garbage"), 200, "", "a=1", ""},
		{"public path, revoked session cookie only: removed", verifyPath, caddy("/healthz", "Cookie", sessionCookieName+"="+revoked.Value), 200, "", noCookie, "cookie"},
		{"public path, valid session cookie: identity and filtered", verifyPath, caddy("/static/x.js", "Cookie", tg+"; a=1"), 200, "marco", "a=1", ""},
		{"Envoy's form", verifyPath + "/app", hdr("Cookie", "a=1; "+tg), 200, "marco", "a=1", ""},
		{"refused: revoked cookie", verifyPath, caddy("/app", "Cookie", "a=1; "+sessionCookieName+"="+revoked.Value), 401, "", noCookie, ""},
		{"refused: garbage bearer beside app cookies", verifyPath, merge(caddy("/app", "Cookie", "a=1; "+tg), bearer("x.y.z")), 401, "", noCookie, ""},
		{"refused: no credential, app cookies only", verifyPath, caddy("/app", "Cookie", "a=1"), 401, "", noCookie, ""},
		{"refused: browser sent to sign in", verifyPath, caddy("/app", "Cookie", "a=1", "Accept", htmlAccept), 302, "", noCookie, ""},
		{"refused: cross-site unsafe request with the cookie", verifyPath, merge(caddy("/app", "Cookie", "a=1; "+tg, "Sec-Fetch-Site", "cross-site"), hdr("X-Forwarded-Method", "POST")), 403, "", noCookie, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.hdr.Clone()
			if m := h["X-Forwarded-Method"]; len(m) > 1 {
				h["X-Forwarded-Method"] = m[len(m)-1:]
			}
			res := e.send("GET", tt.target, h, "")
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, res.body)
			}
			if got := strings.Join(identityValues(res.Header), ","); got != tt.identity {
				t.Errorf("identity %q, want %q", got, tt.identity)
			}
			got := noCookie
			if vals, ok := res.Header["Cookie"]; ok {
				got = strings.Join(vals, "\n")
			}
			if got != tt.cookie {
				t.Errorf("Cookie on the answer %q, want %q", got, tt.cookie)
			}
			if got := strings.Join(res.Header.Values("X-Envoy-Auth-Headers-To-Remove"), ","); got != tt.remove {
				t.Errorf("X-Envoy-Auth-Headers-To-Remove %q, want %q", got, tt.remove)
			}
			if strings.Contains(strings.Join(res.Header.Values("Cookie"), ";"), cookie.Value) {
				t.Error("the session token is in the answer's Cookie")
			}
		})
	}

	// Without browser sign-in tokengate has no cookie: the app's Cookie is
	// echoed as sent (the sidecar forwards it the same way).
	off := newVerifyEnv(t, loopback, func(o *Options) { o.Routes.SignIn = ""; o.Routes.SignOut = "" })
	res := off.send("GET", verifyPath, merge(caddy("/app", "Cookie", "tokengate=x; a=1"), bearer(off.issue("marco", "marco"))), "")
	if res.StatusCode != 200 || res.Header.Get("Cookie") != "tokengate=x; a=1" {
		t.Errorf("sign-in off: %d Cookie %q, want 200 %q", res.StatusCode, res.Header.Get("Cookie"), "tokengate=x; a=1")
	}
}

// TestVerifyRenewsCookie: past half its life, a session cookie gets a
// fresh token in verify's 200 (Set-Cookie, for the ingress to copy to the
// app's response), as a proxied request does; never for other credentials,
// public paths, refusals, or before half its life.
func TestVerifyRenewsCookie(t *testing.T) {
	e := newVerifyEnv(t, loopback)
	cookie := e.signIn("marco", marcoPassword)
	revoked := e.signIn("marco", marcoPassword)
	if res := e.do("POST", "/user/logout", bearer(revoked.Value), ""); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %s", res.StatusCode, res.body)
	}
	caddy := func(uri string) http.Header {
		return hdr("X-Forwarded-Uri", uri, "X-Forwarded-Method", "GET", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Proto", "https")
	}
	verify := func(uri string, h http.Header) response {
		t.Helper()
		return e.send("GET", verifyPath, merge(caddy(uri), h), "")
	}

	if res := verify("/app", session(cookie)); res.StatusCode != 200 || len(res.Header["Set-Cookie"]) != 0 {
		t.Fatalf("before half-life: %d, %d Set-Cookie", res.StatusCode, len(res.Header["Set-Cookie"]))
	}
	e.clock.Advance(31 * time.Minute) // past half of the hour

	res := verify("/app", session(cookie, "Cookie", "a=1"))
	fresh := cookieNamed(res.Cookies(), sessionCookieName)
	if res.StatusCode != 200 || fresh == nil || fresh.Value == cookie.Value {
		t.Fatalf("past half-life: %d, %d Set-Cookie, fresh %v", res.StatusCode, len(res.Header["Set-Cookie"]), fresh != nil)
	}
	claims, err := e.tokens.Verify(fresh.Value)
	if err != nil || claims.Subject != "marco" || !claims.IssuedAt.Equal(e.clock.Now().UTC().Truncate(time.Microsecond)) {
		t.Fatalf("fresh token %+v %v", claims, err)
	}
	if !fresh.HttpOnly || !fresh.Secure || fresh.Path != "/" || fresh.SameSite != http.SameSiteLaxMode || fresh.MaxAge != 3600 {
		t.Errorf("fresh cookie %+v", fresh)
	}
	if got := res.Header.Values("Cache-Control"); strings.Join(got, ",") != "no-store" {
		t.Errorf("Cache-Control %q, want one no-store", got)
	}
	if got := res.Header.Get("X-Auth-UserId"); got != "marco" {
		t.Errorf("identity %q", got)
	}
	if got := res.Header.Get("Cookie"); strings.Contains(got, "tokengate") || !strings.Contains(got, "a=1") {
		t.Errorf("Cookie for the app %q", got)
	}
	// Both tokens keep working; the fresh one is not renewed again.
	if res := verify("/app", session(cookie)); res.StatusCode != 200 {
		t.Errorf("the old token stopped working: %d", res.StatusCode)
	}
	if res := verify("/app", session(fresh)); res.StatusCode != 200 || len(res.Header["Set-Cookie"]) != 0 {
		t.Errorf("fresh cookie: %d, %d Set-Cookie", res.StatusCode, len(res.Header["Set-Cookie"]))
	}
	// Envoy's form renews too.
	if res := e.send("GET", verifyPath+"/app", session(cookie), ""); cookieNamed(res.Cookies(), sessionCookieName) == nil {
		t.Errorf("Envoy's form: %d, no fresh cookie", res.StatusCode)
	}

	for _, c := range []struct {
		name string
		uri  string
		hdr  http.Header
	}{
		{"public path", "/healthz", session(cookie)},
		{"bearer", "/app", bearer(cookie.Value)},
		{"revoked cookie", "/app", session(revoked)},
		{"cross-site unsafe request", "/app", session(cookie, "Sec-Fetch-Site", "cross-site")},
	} {
		h := merge(caddy(c.uri), c.hdr)
		if c.name == "cross-site unsafe request" {
			h["X-Forwarded-Method"] = []string{"POST"}
		}
		res := e.send("GET", verifyPath, h, "")
		if got := cookieNamed(res.Cookies(), sessionCookieName); got != nil && got.MaxAge >= 0 {
			t.Errorf("%s: %d carries a fresh session cookie (Max-Age %d)", c.name, res.StatusCode, got.MaxAge)
		}
	}
}
