package proxy

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"tokengate/authn"
)

// TestSignInPage: the page works without script, on a phone, with a
// password manager, and cannot be framed, cached or scripted.
func TestSignInPage(t *testing.T) {
	e := newBrowserEnv(t, envConfig{options: func(o *Options) { o.Browser.Title = "Acme intranet" }})
	p := e.getPage(signInPath + "?rd=" + url.QueryEscape("/reports?year=2025&q=a%20b"))
	res, body := p.res, p.res.body

	wantHeaders := map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-store",
		"X-Frame-Options":        "DENY",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
	}
	for k, want := range wantHeaders {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, bad := range []string{"script-src", "unsafe-inline", "unsafe-eval"} {
		if strings.Contains(csp, bad) {
			t.Errorf("CSP %q allows %q", csp, bad)
		}
	}
	// The one inline stylesheet is allowed by its hash, byte for byte.
	style := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(body)
	if style == nil {
		t.Fatal("no <style> in the page")
	}
	sum := sha256.Sum256([]byte(style[1]))
	if want := "style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, want) {
		t.Errorf("CSP %q does not allow the page's stylesheet (%s)", csp, want)
	}

	for _, want := range []string{
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`<form method="post" action="/tokengate/sign_in">`,
		`<label for="username">`,
		`id="username" name="username"`,
		`autocomplete="username"`,
		`<label for="password">`,
		`type="password" id="password" name="password" autocomplete="current-password"`,
		`<button type="submit">Sign in</button>`,
		`<title>Acme intranet</title>`,
		`<input type="hidden" name="rd" value="/reports?year=2025&amp;q=a%20b">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s\n%s", want, body)
		}
	}
	if strings.Contains(strings.ToLower(body), "<script") || strings.Contains(strings.ToLower(body), " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
		t.Error("the page has script")
	}
	c := p.csrfCookie
	if c.Name != "__Host-tokengate_csrf" || !c.HttpOnly || !c.Secure || c.Path != "/" || c.Domain != "" || c.SameSite != http.SameSiteLaxMode {
		t.Errorf("CSRF cookie %+v: want __Host-, HttpOnly, Secure, Path=/, host-only, Lax", c)
	}
	if cookieNamed(res.Cookies(), sessionCookieName) != nil {
		t.Error("the page set a session cookie")
	}

	t.Run("the CSRF cookie is reused", func(t *testing.T) {
		again := e.getPage(signInPath, p.csrfCookie)
		if cookieNamed(again.res.Cookies(), p.csrfCookie.Name) != nil {
			t.Error("a browser with a CSRF cookie got a new one")
		}
		if again.csrf != p.csrf {
			t.Error("the same browser got another CSRF token")
		}
	})
	t.Run("an unsafe rd is not carried", func(t *testing.T) {
		bad := e.getPage(signInPath + "?rd=" + url.QueryEscape("//evil.example/"))
		if !strings.Contains(bad.res.body, `name="rd" value=""`) {
			t.Errorf("rd carried:\n%s", bad.res.body)
		}
	})
	t.Run("HEAD and methods", func(t *testing.T) {
		if res := e.send("HEAD", signInPath, nil, ""); res.StatusCode != http.StatusOK || res.body != "" {
			t.Errorf("HEAD: %d %q", res.StatusCode, res.body)
		}
		res := e.send("PUT", signInPath, nil, "")
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD, POST" {
			t.Errorf("PUT: %d Allow %q", res.StatusCode, res.Header.Get("Allow"))
		}
	})
	t.Run("sign-out page", func(t *testing.T) {
		cookie := e.signIn("marco", marcoPassword)
		sp := e.getPage(signOutPath, cookie)
		for _, want := range []string{
			`<form method="post" action="/tokengate/sign_out">`,
			`<button type="submit" name="scope" value="this">Sign out</button>`,
			`value="everywhere" class="secondary">Sign out everywhere</button>`,
			`Signed in as <strong>marco</strong>`,
		} {
			if !strings.Contains(sp.res.body, want) {
				t.Errorf("sign-out page lacks %s\n%s", want, sp.res.body)
			}
		}
		if sp.res.Header.Get("Content-Security-Policy") != csp || sp.res.Header.Get("Cache-Control") != "no-store" {
			t.Error("the sign-out page lacks the page headers")
		}
	})
}

// TestSignInPost is the form's every outcome.
func TestSignInPost(t *testing.T) {
	type result struct {
		status   int
		location string
		message  string
		cookie   bool
	}
	tests := []struct {
		name string
		// form builds the post from a fresh page (its CSRF field and cookie).
		form    func(p page) (url.Values, []*http.Cookie)
		hdr     http.Header
		want    result
		outcome string // logins_total result
	}{
		{"success goes to rd", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {p.csrf}, "rd": {"/reports?year=2025"}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 303, location: "/reports?year=2025", cookie: true}, loginSuccess},
		{"success without rd goes to /", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {p.csrf}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 303, location: "/", cookie: true}, loginSuccess},
		{"an open redirect goes to /", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {p.csrf}, "rd": {"//evil.example/x"}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 303, location: "/", cookie: true}, loginSuccess},
		{"rd to the sign-in page goes to /", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {p.csrf}, "rd": {signInPath + "?rd=/x"}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 303, location: "/", cookie: true}, loginSuccess},
		{"wrong password", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco"}, "password": {"wrong"}, "csrf": {p.csrf}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 401, message: msgBadCredentials}, loginInvalidCredentials},
		{"unknown user gets the same answer", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"nobody"}, "password": {"wrong"}, "csrf": {p.csrf}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 401, message: msgBadCredentials}, loginInvalidCredentials},
		{"no CSRF field, right password", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco"}, "password": {marcoPassword}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 403, message: msgFormExpired}, loginMalformed},
		{"no CSRF cookie, right password", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {p.csrf}}, nil
		}, nil, result{status: 403, message: msgFormExpired}, loginMalformed},
		{"another browser's CSRF cookie", func(p page) (url.Values, []*http.Cookie) {
			other := *p.csrfCookie
			other.Value = base64.RawURLEncoding.EncodeToString(make([]byte, 32))
			return url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {p.csrf}}, []*http.Cookie{&other}
		}, nil, result{status: 403, message: msgFormExpired}, loginMalformed},
		{"a CSRF field made with another key", func(p page) (url.Values, []*http.Cookie) {
			forged := csrfSigner{key: []byte(strings.Repeat("k", 32))}.token(csrfSignIn, p.csrfCookie.Value)
			return url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {forged}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 403, message: msgFormExpired}, loginMalformed},
		{"the sign-out form's CSRF token", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {csrfSigner{key: testCSRFKey}.token(csrfSignOut, p.csrfCookie.Value)}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 403, message: msgFormExpired}, loginMalformed},
		{"cross-site post with a valid form", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {p.csrf}}, []*http.Cookie{p.csrfCookie}
		}, http.Header{"Sec-Fetch-Site": {"cross-site"}}, result{status: 403, message: msgCrossSite}, loginMalformed},
		{"missing password", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco"}, "csrf": {p.csrf}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 400, message: msgMissingFields}, loginMalformed},
		{"NUL in the username", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco\x00"}, "password": {marcoPassword}, "csrf": {p.csrf}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 400, message: msgBadUsername}, loginMalformed},
		{"invalid UTF-8 in the username", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"mar\xffco"}, "password": {marcoPassword}, "csrf": {p.csrf}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 400, message: msgBadUsername}, loginMalformed},
		{"repeated field", func(p page) (url.Values, []*http.Cookie) {
			return url.Values{"username": {"marco", "alice"}, "password": {marcoPassword}, "csrf": {p.csrf}}, []*http.Cookie{p.csrfCookie}
		}, nil, result{status: 400, message: msgMissingFields}, loginMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newBrowserEnv(t)
			p := e.getPage(signInPath)
			form, cookies := tt.form(p)
			res := e.postForm(signInPath, form, tt.hdr, cookies...)
			if res.StatusCode != tt.want.status {
				t.Fatalf("status %d, want %d\n%s", res.StatusCode, tt.want.status, res.body)
			}
			if got := res.Header.Get("Location"); got != tt.want.location {
				t.Errorf("Location %q, want %q", got, tt.want.location)
			}
			if res.Header.Get("Cache-Control") != "no-store" {
				t.Error("no Cache-Control: no-store")
			}
			session := cookieNamed(res.Cookies(), sessionCookieName)
			if (session != nil) != tt.want.cookie {
				t.Fatalf("session cookie %v, want one: %v", session, tt.want.cookie)
			}
			if tt.want.message != "" {
				if !strings.Contains(res.body, tt.want.message) {
					t.Errorf("page lacks %q:\n%s", tt.want.message, res.body)
				}
				if !strings.Contains(res.body, `name="csrf" value="`) {
					t.Error("the answer page has no fresh form")
				}
			}
			if got := metricValue(t, e.reg, "tokengate_logins_total", map[string]string{"result": tt.outcome}); got != 1 {
				t.Errorf("logins_total{result=%q} = %v, want 1", tt.outcome, got)
			}
			if got := metricValue(t, e.reg, "tokengate_http_requests_total", map[string]string{"route": "sign_in", "code": strconv.Itoa(tt.want.status)}); got != 1 {
				t.Errorf("http_requests_total{route=sign_in,code=%d} = %v, want 1", tt.want.status, got)
			}
			if !tt.want.cookie {
				return
			}
			if session.Value == "" {
				t.Fatal("empty session cookie")
			}
			claims, err := e.tokens.Verify(session.Value)
			if err != nil || claims.Subject != "marco" {
				t.Fatalf("the cookie holds no token for marco: %+v %v", claims, err)
			}
			if !session.HttpOnly || !session.Secure || session.Path != "/" || session.Domain != "" || session.SameSite != http.SameSiteLaxMode || session.MaxAge != 3600 {
				t.Errorf("session cookie %+v: want HttpOnly, Secure, Path=/, host-only, Lax, Max-Age=3600", session)
			}
		})
	}
}

// TestSessionCookieAttributes: cookie_secure false, a cookie domain, and
// Max-Age as the token's remaining life.
func TestSessionCookieAttributes(t *testing.T) {
	e := newBrowserEnv(t, envConfig{options: func(o *Options) {
		o.Browser.InsecureCookie = true
		o.Browser.CookieDomain = "example.test"
		o.Browser.CookieName = "sso"
	}})
	p := e.getPage(signInPath)
	if p.csrfCookie.Name != "sso_csrf" || p.csrfCookie.Secure {
		t.Errorf("CSRF cookie %+v: want sso_csrf, not Secure (no __Host- without Secure)", p.csrfCookie)
	}
	res := e.postForm(signInPath, url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {p.csrf}}, nil, p.csrfCookie)
	var c *http.Cookie
	for _, sc := range res.Cookies() {
		if sc.Name == "sso" && sc.Value != "" {
			c = sc
		}
	}
	if res.StatusCode != http.StatusSeeOther || c == nil {
		t.Fatalf("%d %v", res.StatusCode, res.Header["Set-Cookie"])
	}
	if c.Secure || c.Domain != "example.test" || !c.HttpOnly || c.MaxAge != 3600 {
		t.Errorf("cookie %+v: want not Secure, Domain=example.test, HttpOnly, Max-Age=3600", c)
	}
	// A host-only cookie from before cookie_domain was set is dropped, or
	// the browser would send two and never be signed in again.
	var hostOnlyCleared bool
	for _, c := range res.Cookies() {
		hostOnlyCleared = hostOnlyCleared || (c.Name == "sso" && c.Domain == "" && c.MaxAge < 0)
	}
	if !hostOnlyCleared {
		t.Errorf("no host-only cookie cleared: %v", res.Header["Set-Cookie"])
	}
	raw := strings.Join(res.Header["Set-Cookie"], "\n")
	if strings.Contains(raw, "Secure") {
		t.Errorf("Secure set with InsecureCookie: %s", raw)
	}
}

// TestSignInThrottled: the form is throttled exactly as /user/login, by the
// same counters: failures on either count for both.
func TestSignInThrottled(t *testing.T) {
	e := newBrowserEnv(t, envConfig{throttle: authn.ThrottleOptions{PerUser: 2, PerAddress: 100, Window: time.Minute}})
	p := e.getPage(signInPath)
	post := func(password string) response {
		return e.postForm(signInPath, url.Values{"username": {"marco"}, "password": {password}, "csrf": {p.csrf}}, nil, p.csrfCookie)
	}
	if res := post("wrong"); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("first failure: %d", res.StatusCode)
	}
	if res := e.do("POST", "/user/login", jsonHeader(), `{"username":"marco","password":"wrong"}`); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("second failure (API): %d", res.StatusCode)
	}
	res := post(marcoPassword)
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("right password after two failures: %d, want 429", res.StatusCode)
	}
	api := e.do("POST", "/user/login", jsonHeader(), `{"username":"marco","password":"`+marcoPassword+`"}`)
	if api.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("API login: %d, want 429", api.StatusCode)
	}
	if ra := res.Header.Get("Retry-After"); ra == "" || ra != api.Header.Get("Retry-After") {
		t.Errorf("Retry-After %q, want the API's %q", ra, api.Header.Get("Retry-After"))
	}
	if !strings.Contains(res.body, "Too many failed attempts") || cookieNamed(res.Cookies(), sessionCookieName) != nil {
		t.Errorf("429 page: %v\n%s", res.Header["Set-Cookie"], res.body)
	}
	if got := metricValue(t, e.reg, "tokengate_logins_total", map[string]string{"result": "throttled"}); got != 2 {
		t.Errorf("logins_total{throttled} = %v, want 2", got)
	}
}

// TestSignOut: "Sign out" revokes the cookie's token, "Sign out everywhere"
// every token of the user; both clear the cookie and go to sign-in.
func TestSignOut(t *testing.T) {
	tests := []struct {
		scope           string
		otherTokenAlive bool // a Bearer token of the same user
		revocation      string
	}{
		{"this", true, "token"},
		{"everywhere", false, "user"},
	}
	for _, tt := range tests {
		t.Run(tt.scope, func(t *testing.T) {
			e := newBrowserEnv(t, envConfig{revocationMetrics: true})
			other := e.login("marco", marcoPassword)
			cookie := e.signIn("marco", marcoPassword)
			if res := e.send("GET", "/app", session(cookie), ""); res.StatusCode != http.StatusOK {
				t.Fatalf("before: %d", res.StatusCode)
			}
			e.clock.Advance(time.Millisecond) // a cutoff covers tokens issued until now
			p := e.getPage(signOutPath, cookie)
			res := e.postForm(signOutPath, url.Values{"csrf": {p.csrf}, "scope": {tt.scope}}, nil, cookie, p.csrfCookie)
			if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != signInPath+"?signed_out="+tt.scope {
				t.Fatalf("sign out: %d Location %q\n%s", res.StatusCode, res.Header.Get("Location"), res.body)
			}
			cleared := cookieNamed(res.Cookies(), sessionCookieName)
			if cleared == nil || cleared.Value != "" || cleared.MaxAge >= 0 || cleared.Path != "/" {
				t.Errorf("cookie not cleared: %v", res.Header["Set-Cookie"])
			}
			// The old cookie value is refused, like a revoked Bearer token.
			if res := e.send("GET", "/app", session(cookie), ""); res.StatusCode != http.StatusUnauthorized || res.apiErr().Code != "token_revoked" {
				t.Errorf("old cookie after sign-out: %d %s", res.StatusCode, res.body)
			}
			alive := e.do("GET", "/app", bearer(other), "").StatusCode == http.StatusOK
			if alive != tt.otherTokenAlive {
				t.Errorf("another token of the user alive: %v, want %v", alive, tt.otherTokenAlive)
			}
			if got := metricValue(t, e.reg, "tokengate_revocations_total", map[string]string{"kind": tt.revocation}); got != 1 {
				t.Errorf("revocations_total{kind=%q} = %v, want 1", tt.revocation, got)
			}
			if got := metricValue(t, e.reg, "tokengate_http_requests_total", map[string]string{"route": "sign_out", "code": "303"}); got != 1 {
				t.Errorf("http_requests_total{route=sign_out,code=303} = %v, want 1", got)
			}
		})
	}

	t.Run("refused without a valid CSRF token", func(t *testing.T) {
		e := newBrowserEnv(t)
		cookie := e.signIn("marco", marcoPassword)
		p := e.getPage(signOutPath, cookie)
		for name, res := range map[string]response{
			"no field":          e.postForm(signOutPath, url.Values{"scope": {"everywhere"}}, nil, cookie, p.csrfCookie),
			"sign-in token":     e.postForm(signOutPath, url.Values{"scope": {"everywhere"}, "csrf": {e.getPage(signInPath, p.csrfCookie).csrf}}, nil, cookie, p.csrfCookie),
			"no CSRF cookie":    e.postForm(signOutPath, url.Values{"scope": {"everywhere"}, "csrf": {p.csrf}}, nil, cookie),
			"cross-site origin": e.postForm(signOutPath, url.Values{"scope": {"everywhere"}, "csrf": {p.csrf}}, http.Header{"Origin": {"http://evil.example"}}, cookie, p.csrfCookie),
		} {
			if res.StatusCode != http.StatusForbidden || cookieNamed(res.Cookies(), sessionCookieName) != nil {
				t.Errorf("%s: %d %v", name, res.StatusCode, res.Header["Set-Cookie"])
			}
		}
		if res := e.send("GET", "/app", session(cookie), ""); res.StatusCode != http.StatusOK {
			t.Errorf("the session died from a refused sign-out: %d", res.StatusCode)
		}
	})
	t.Run("without a session it just clears the cookie", func(t *testing.T) {
		e := newBrowserEnv(t)
		p := e.getPage(signOutPath)
		if !strings.Contains(p.res.body, "You are not signed in") {
			t.Errorf("page:\n%s", p.res.body)
		}
		res := e.postForm(signOutPath, url.Values{"csrf": {p.csrf}}, nil, p.csrfCookie)
		if res.StatusCode != http.StatusSeeOther || cookieNamed(res.Cookies(), sessionCookieName) == nil {
			t.Errorf("%d %v", res.StatusCode, res.Header["Set-Cookie"])
		}
	})
}
