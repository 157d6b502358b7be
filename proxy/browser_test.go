package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestCookieAuthentication: the session cookie authenticates proxied
// requests through the same checks as a Bearer token; a Bearer header wins;
// the app never sees tokengate's cookies but gets its own untouched.
func TestCookieAuthentication(t *testing.T) {
	e := newBrowserEnv(t)
	cookie := e.signIn("marco", marcoPassword)
	csrf := e.getPage(signInPath).csrfCookie
	alice := e.issue("u-alice", "alice")
	revokedCookie := e.signIn("marco", marcoPassword)
	if res := e.do("POST", "/user/logout", bearer(revokedCookie.Value), ""); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d", res.StatusCode)
	}

	appCookies := "theme=dark; app_session=abc123"
	tests := []struct {
		name       string
		hdr        http.Header
		status     int
		user       string // X-Auth-UserId the app sees
		appCookie  string // the Cookie header the app sees
		code       string // error code when refused
		decision   string
		clearsSelf bool // the answer clears the session cookie
	}{
		{"cookie alone", session(cookie), 200, "marco", "", "", decisionAllowed, false},
		{"cookie among the app's cookies", http.Header{"Cookie": {"theme=dark; " + sessionCookieName + "=" + cookie.Value + "; app_session=abc123"}}, 200, "marco", appCookies, "", decisionAllowed, false},
		{"CSRF cookie is not forwarded either", http.Header{"Cookie": {"theme=dark", csrf.Name + "=" + csrf.Value + "; " + sessionCookieName + "=" + cookie.Value, "app_session=abc123"}}, 200, "marco", "theme=dark\napp_session=abc123", "", decisionAllowed, false},
		{"the CSRF cookie's other spelling is tokengate's too", http.Header{"Cookie": {"theme=dark; tokengate_csrf=x; " + sessionCookieName + "=" + cookie.Value + "; app_session=abc123"}}, 200, "marco", appCookies, "", decisionAllowed, false},
		{"a look-alike cookie name passes", http.Header{"Cookie": {sessionCookieName + "=" + cookie.Value + "; tokengate_pref=1; xtokengate=2"}}, 200, "marco", "tokengate_pref=1; xtokengate=2", "", decisionAllowed, false},
		{"Bearer wins over the cookie", withCookies(bearer(alice), cookie), 200, "u-alice", "", "", decisionAllowed, false},
		{"a bad Bearer is not rescued by the cookie", withCookies(bearer("not.a.token"), cookie), 401, "", "", "invalid_token", decisionMalformed, false},
		{"revoked cookie", session(revokedCookie), 401, "", "", "token_revoked", decisionRevoked, true},
		{"garbage cookie", http.Header{"Cookie": {sessionCookieName + "=garbage"}}, 401, "", "", "invalid_token", decisionMalformed, true},
		{"two session cookies are ambiguous", http.Header{"Cookie": {sessionCookieName + "=" + cookie.Value + "; " + sessionCookieName + "=" + cookie.Value}}, 401, "", "", "missing_token", decisionMissing, false},
		{"only the app's cookies", http.Header{"Cookie": {appCookies}}, 401, "", "", "missing_token", decisionMissing, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.up.requests())
			decisions := metricValue(t, e.reg, "tokengate_auth_decisions_total", map[string]string{"result": tt.decision})
			res := e.send("GET", "/app", tt.hdr, "")
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, res.body)
			}
			if got := metricValue(t, e.reg, "tokengate_auth_decisions_total", map[string]string{"result": tt.decision}); got != decisions+1 {
				t.Errorf("auth_decisions_total{%s} went %v -> %v", tt.decision, decisions, got)
			}
			cleared := cookieNamed(res.Cookies(), sessionCookieName)
			if got := cleared != nil && cleared.MaxAge < 0; got != tt.clearsSelf {
				t.Errorf("cookie cleared: %v, want %v (%v)", got, tt.clearsSelf, res.Header["Set-Cookie"])
			}
			if tt.status != 200 {
				if res.apiErr().Code != tt.code {
					t.Errorf("error %q, want %q", res.apiErr().Code, tt.code)
				}
				if len(e.up.requests()) != before {
					t.Error("a refused request reached the app")
				}
				return
			}
			seen := e.up.last(t)
			if got := identityValues(seen.header); len(got) != 1 || got[0] != tt.user {
				t.Errorf("identity %v, want %q", got, tt.user)
			}
			if got := strings.Join(seen.header["Cookie"], "\n"); got != tt.appCookie {
				t.Errorf("the app got Cookie %q, want %q", got, tt.appCookie)
			}
			if strings.Contains(fmt.Sprint(seen.header), cookie.Value) {
				t.Error("the app saw the token")
			}
		})
	}

	t.Run("public paths: the cookie sets the identity, and is stripped", func(t *testing.T) {
		res := e.send("GET", "/healthz", http.Header{"Cookie": {"a=1; " + sessionCookieName + "=" + cookie.Value}}, "")
		seen := e.up.last(t)
		if res.StatusCode != 200 || seen.header.Get("X-Auth-UserId") != "marco" || seen.header.Get("Cookie") != "a=1" {
			t.Errorf("%d identity %q Cookie %q", res.StatusCode, seen.header.Get("X-Auth-UserId"), seen.header.Get("Cookie"))
		}
	})
	t.Run("sign-in off: the cookie is nobody's", func(t *testing.T) {
		off := newEnv(t)
		res := off.send("GET", "/app", http.Header{"Cookie": {"tokengate=" + off.issue("marco", "marco")}}, "")
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("cookie accepted with sign-in off: %d", res.StatusCode)
		}
		off.send("GET", "/healthz", http.Header{"Cookie": {"tokengate=x; a=1"}}, "")
		if got := off.up.last(t).header.Get("Cookie"); got != "tokengate=x; a=1" {
			t.Errorf("with sign-in off the app's cookie named tokengate was touched: %q", got)
		}
	})
	t.Run("identity endpoints take no cookie", func(t *testing.T) {
		// logout, logout_all and session are API endpoints: a cookie there
		// would be a CSRF target.
		if res := e.send("POST", "/user/logout_all", session(cookie), ""); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("logout_all with a cookie: %d", res.StatusCode)
		}
	})
}

// TestBrowserOrAPI: unauthenticated browser navigations go to sign-in with
// rd; everything else gets the 401 JSON.
func TestBrowserOrAPI(t *testing.T) {
	e := newBrowserEnv(t)
	expired := e.signIn("marco", marcoPassword)
	revoked := e.signIn("marco", marcoPassword)
	if res := e.do("POST", "/user/logout", bearer(revoked.Value), ""); res.StatusCode != http.StatusNoContent {
		t.Fatal("logout failed")
	}
	e.clock.Advance(2 * time.Hour)
	_ = expired // now past its exp

	wantRedirect := signInPath + "?rd=" + url.QueryEscape("/reports/2025?q=a%20b&sort=asc")
	tests := []struct {
		name     string
		method   string
		target   string
		hdr      http.Header
		status   int
		location string
		cleared  bool
	}{
		{"navigation", "GET", "/reports/2025?q=a%20b&sort=asc", http.Header{"Accept": {htmlAccept}}, 302, wantRedirect, false},
		{"HEAD navigation", "HEAD", "/reports/2025?q=a%20b&sort=asc", http.Header{"Accept": {htmlAccept}}, 302, wantRedirect, false},
		{"plain text/html", "GET", "/", http.Header{"Accept": {"TEXT/HTML"}}, 302, signInPath, false},
		{"expired cookie", "GET", "/reports/2025?q=a%20b&sort=asc", session(expired, "Accept", htmlAccept), 302, wantRedirect, true},
		{"revoked cookie", "GET", "/reports/2025?q=a%20b&sort=asc", session(revoked, "Accept", htmlAccept), 302, wantRedirect, true},
		{"invalid Bearer, browser", "GET", "/x", http.Header{"Accept": {htmlAccept}, "Authorization": {"Bearer nope"}}, 302, signInPath + "?rd=%2Fx", false},
		{"expired cookie, API client", "GET", "/x", session(expired, "Accept", "application/json"), 401, "", true},
		{"fetch()", "GET", "/x", http.Header{"Accept": {"*/*"}}, 401, "", false},
		{"no Accept", "GET", "/x", nil, 401, "", false},
		{"text/html refused", "GET", "/x", http.Header{"Accept": {"application/json, text/html;q=0"}}, 401, "", false},
		{"POST from a browser", "POST", "/x", http.Header{"Accept": {htmlAccept}}, 401, "", false},
		{"several Authorization headers", "GET", "/x", http.Header{"Accept": {htmlAccept}, "Authorization": {"Bearer a", "Bearer b"}}, 400, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.send(tt.method, tt.target, tt.hdr, "")
			if res.StatusCode != tt.status || res.Header.Get("Location") != tt.location {
				t.Fatalf("%d Location %q, want %d %q\n%s", res.StatusCode, res.Header.Get("Location"), tt.status, tt.location, res.body)
			}
			if tt.status == 401 && res.apiErr().Code == "" {
				t.Errorf("401 without the JSON error: %q", res.body)
			}
			if tt.status == 302 && res.Header.Get("Cache-Control") != "no-store" {
				t.Error("redirect without Cache-Control: no-store")
			}
			c := cookieNamed(res.Cookies(), sessionCookieName)
			if got := c != nil && c.MaxAge < 0 && c.Value == ""; got != tt.cleared {
				t.Errorf("cookie cleared %v, want %v: %v", got, tt.cleared, res.Header["Set-Cookie"])
			}
		})
	}
	t.Run("the redirect's rd survives the round trip", func(t *testing.T) {
		res := e.send("GET", "/reports/2025?q=a%20b&sort=asc", http.Header{"Accept": {htmlAccept}}, "")
		p := e.getPage(res.Header.Get("Location"))
		post := e.postForm(signInPath, url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {p.csrf}, "rd": {"/reports/2025?q=a%20b&sort=asc"}}, nil, p.csrfCookie)
		if got := post.Header.Get("Location"); got != "/reports/2025?q=a%20b&sort=asc" {
			t.Errorf("back to %q", got)
		}
		if !strings.Contains(p.res.body, `name="rd" value="/reports/2025?q=a%20b&amp;sort=asc"`) {
			t.Errorf("rd not carried:\n%s", p.res.body)
		}
	})
	t.Run("sign-in off: 401 for browsers too", func(t *testing.T) {
		off := newEnv(t)
		if res := off.send("GET", "/x", http.Header{"Accept": {htmlAccept}}, ""); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%d", res.StatusCode)
		}
	})
}

// TestCookieRenewal: past half its life, a cookie's token is replaced by a
// fresh one; the old one still works.
func TestCookieRenewal(t *testing.T) {
	e := newBrowserEnv(t)
	cookie := e.signIn("marco", marcoPassword)

	e.clock.Advance(29 * time.Minute)
	res := e.send("GET", "/app", session(cookie), "")
	if res.StatusCode != 200 || cookieNamed(res.Cookies(), sessionCookieName) != nil {
		t.Fatalf("before half-life: %d %v", res.StatusCode, res.Header["Set-Cookie"])
	}

	e.clock.Advance(2 * time.Minute)
	res = e.send("GET", "/app", session(cookie), "")
	fresh := cookieNamed(res.Cookies(), sessionCookieName)
	if res.StatusCode != 200 || fresh == nil || fresh.Value == cookie.Value {
		t.Fatalf("past half-life: %d, new cookie %v", res.StatusCode, fresh)
	}
	claims, err := e.tokens.Verify(fresh.Value)
	if err != nil || claims.Subject != "marco" || !claims.IssuedAt.Equal(e.clock.Now().UTC().Truncate(time.Microsecond)) {
		t.Fatalf("fresh token %+v %v", claims, err)
	}
	if !strings.Contains(strings.Join(res.Header.Values("Cache-Control"), ","), "no-store") {
		t.Errorf("a response carrying a fresh token may be cached: Cache-Control %q", res.Header.Values("Cache-Control"))
	}
	if !fresh.HttpOnly || !fresh.Secure || fresh.Path != "/" || fresh.SameSite != http.SameSiteLaxMode || fresh.MaxAge != 3600 {
		t.Errorf("fresh cookie %+v", fresh)
	}
	if res := e.send("GET", "/app", session(cookie), ""); res.StatusCode != 200 {
		t.Errorf("the old token was revoked: %d", res.StatusCode)
	}
	if res := e.send("GET", "/app", session(fresh), ""); res.StatusCode != 200 || cookieNamed(res.Cookies(), sessionCookieName) != nil {
		t.Errorf("fresh cookie: %d %v", res.StatusCode, res.Header["Set-Cookie"])
	}
	// A Bearer token is the client's business: never renewed by cookie.
	if res := e.send("GET", "/app", bearer(cookie.Value), ""); res.StatusCode != 200 || len(res.Header["Set-Cookie"]) != 0 {
		t.Errorf("Bearer past half-life: %d %v", res.StatusCode, res.Header["Set-Cookie"])
	}
}

// TestCrossSiteCookieRequests: a cookie-authenticated unsafe request from
// another site is refused before the app; Bearer requests are not affected.
func TestCrossSiteCookieRequests(t *testing.T) {
	e := newBrowserEnv(t)
	cookie := e.signIn("marco", marcoPassword)
	token := e.issue("marco", "marco")
	host := strings.TrimPrefix(e.srv.URL, "http://")
	tests := []struct {
		name   string
		method string
		hdr    http.Header
		status int
	}{
		{"POST, Sec-Fetch-Site cross-site", "POST", session(cookie, "Sec-Fetch-Site", "cross-site"), 403},
		{"PUT, cross-site", "PUT", session(cookie, "Sec-Fetch-Site", "cross-site"), 403},
		{"PATCH, cross-site", "PATCH", session(cookie, "Sec-Fetch-Site", "cross-site"), 403},
		{"DELETE, cross-site", "DELETE", session(cookie, "Sec-Fetch-Site", "cross-site"), 403},
		{"POST, same-site sibling", "POST", session(cookie, "Sec-Fetch-Site", "same-site"), 403},
		{"POST, foreign Origin (older browser)", "POST", session(cookie, "Origin", "http://evil.example"), 403},
		{"POST, Origin on another port", "POST", session(cookie, "Origin", "http://127.0.0.1:1"), 403},
		{"POST, same-origin", "POST", session(cookie, "Sec-Fetch-Site", "same-origin", "Origin", "http://"+host), 200},
		{"POST, own Origin only", "POST", session(cookie, "Origin", "http://"+host), 200},
		{"POST, user-typed (none)", "POST", session(cookie, "Sec-Fetch-Site", "none"), 200},
		{"POST, no browser headers (curl)", "POST", session(cookie), 200},
		{"GET, cross-site navigation", "GET", session(cookie, "Sec-Fetch-Site", "cross-site"), 200},
		{"GET, cross-site WebSocket handshake a proxy stripped of Upgrade", "GET", session(cookie, "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "websocket", "Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), 403},
		{"POST, Bearer, cross-site", "POST", http.Header{"Authorization": {"Bearer " + token}, "Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://evil.example"}}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.up.requests())
			res := e.send(tt.method, "/app/items", tt.hdr, "x=1")
			if res.StatusCode != tt.status {
				t.Fatalf("%d, want %d: %s", res.StatusCode, tt.status, res.body)
			}
			if tt.status == 403 {
				if res.apiErr().Code != "cross_origin_request" {
					t.Errorf("error %q", res.body)
				}
				if len(e.up.requests()) != before {
					t.Error("the refused request reached the app")
				}
			}
		})
	}
	t.Run("cross-site WebSocket handshake with the cookie", func(t *testing.T) {
		for _, tt := range []struct {
			origin string
			status int
		}{{"http://evil.example", 403}, {"http://tokengate.test", 101}} { // raw sends Host: tokengate.test
			res := e.raw("/ws", http.Header{
				"Upgrade": {"websocket"}, "Connection": {"Upgrade"},
				"Origin": {tt.origin}, "Cookie": {sessionCookieName + "=" + cookie.Value},
			})
			if res.StatusCode != tt.status {
				t.Errorf("Origin %s: %d, want %d", tt.origin, res.StatusCode, tt.status)
			}
		}
	})
	t.Run("public path: cross-site cookie request goes on anonymously", func(t *testing.T) {
		res := e.send("POST", "/healthz", session(cookie, "Sec-Fetch-Site", "cross-site"), "")
		if res.StatusCode != 200 || len(identityValues(e.up.last(t).header)) != 0 {
			t.Errorf("%d identity %v", res.StatusCode, identityValues(e.up.last(t).header))
		}
	})
}

// TestQueryToken: ?access_token= works on query token paths only, when no
// header or cookie is there, never reaches the app and is never logged.
func TestQueryToken(t *testing.T) {
	e := newBrowserEnv(t, envConfig{options: func(o *Options) { o.Browser.QueryTokenPaths = []string{"/ws", "/events/"} }})
	token := e.issue("marco", "marco")
	alice := e.issue("u-alice", "alice")
	cookie := e.signIn("alice", alicePassword)
	bad := token[:len(token)-4] + "AAAA"
	tests := []struct {
		name       string
		target     string
		hdr        http.Header
		status     int
		user       string
		requestURI string // what the app received
	}{
		{"on a query token path", "/events/stream?a=1&access_token=" + token + "&b=2", nil, 200, "marco", "/events/stream?a=1&b=2"},
		{"path itself", "/events?access_token=" + token, nil, 200, "marco", "/events"},
		{"encoded parameter name", "/events?%61ccess_token=" + token + "&z=%2F", nil, 200, "marco", "/events?z=%2F"},
		{"elsewhere it is not accepted", "/app?access_token=" + token, nil, 401, "", ""},
		{"not a segment prefix", "/eventsX?access_token=" + token, nil, 401, "", ""},
		{"the header wins", "/events?access_token=" + token, bearer(alice), 200, "u-alice", "/events"},
		{"the cookie wins", "/events?access_token=" + token, session(cookie), 200, "u-alice", "/events"},
		{"an invalid one", "/events?access_token=" + bad, nil, 401, "", ""},
		{"two of them", "/events?access_token=" + token + "&access_token=" + token, nil, 400, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.send("GET", tt.target, tt.hdr, "")
			if res.StatusCode != tt.status {
				t.Fatalf("%d, want %d: %s", res.StatusCode, tt.status, res.body)
			}
			if tt.status != 200 {
				return
			}
			seen := e.up.last(t)
			if got := identityValues(seen.header); len(got) != 1 || got[0] != tt.user {
				t.Errorf("identity %v, want %s", got, tt.user)
			}
			if seen.requestURI != tt.requestURI {
				t.Errorf("the app got %q, want %q", seen.requestURI, tt.requestURI)
			}
		})
	}
	t.Run("a browser with a dead query token is not redirected with it", func(t *testing.T) {
		res := e.send("GET", "/events?x=1&access_token="+bad, http.Header{"Accept": {htmlAccept}}, "")
		if res.StatusCode != 302 || strings.Contains(res.Header.Get("Location"), "access_token") || res.Header.Get("Location") != signInPath+"?rd="+url.QueryEscape("/events?x=1") {
			t.Errorf("%d Location %q", res.StatusCode, res.Header.Get("Location"))
		}
	})
	t.Run("WebSocket", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /ws?access_token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", token)
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("X-Seen-User") != "marco" {
			t.Fatalf("%d X-Seen-User %q", res.StatusCode, res.Header.Get("X-Seen-User"))
		}
		if got := e.up.last(t).requestURI; got != "/ws" {
			t.Errorf("the app got %q", got)
		}
		io.WriteString(conn, "hello\n")
		if line, _ := br.ReadString('\n'); line != "echo: hello\n" {
			t.Errorf("echo %q", line)
		}
	})
	t.Run("never logged", func(t *testing.T) {
		// Debug level: the env logs everything it can.
		logs := e.logs.String()
		for _, secret := range []string{token, bad, token[strings.LastIndexByte(token, '.')+1:], bad[strings.LastIndexByte(bad, '.')+1:]} {
			if strings.Contains(logs, secret) {
				t.Fatalf("a query token is in the logs:\n%s", logs)
			}
		}
		if !strings.Contains(logs, `"path":"/events/stream"`) {
			t.Fatalf("the access log has no line for the requests (the check above proves nothing):\n%s", logs)
		}
	})
}

// TestAllowedPathAllocationsWithSignIn: browser sign-in (on by default)
// costs a Bearer request nothing: no cookie parsing, no extra allocation.
// Cookie requests may allocate; API clients do not pay for them.
func TestAllowedPathAllocationsWithSignIn(t *testing.T) {
	next, req := authOnly(t, func(o *Options) {
		o.Routes.SignIn, o.Routes.SignOut = signInPath, signOutPath
		o.Browser.QueryTokenPaths = []string{"/ws"}
	})
	auth := req.Header["Authorization"]
	req.Header = http.Header{"Authorization": auth, "Cookie": {"theme=dark; lang=en"}}
	w := &nopWriter{h: http.Header{}}
	n := testing.AllocsPerRun(200, func() {
		delete(req.Header, "X-Request-Id")
		next.ServeHTTP(w, req)
	})
	if n > 2 {
		t.Errorf("the allowed path allocates %v times per request with sign-in on, want <= 2", n)
	}
}
