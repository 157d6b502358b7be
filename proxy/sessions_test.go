package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"tokengate/authn"
)

// cutoffRevoker is a real Checker that, once armed, lets one check pass
// and then, before the handler goes on, logs the user out everywhere and
// moves the clock on: the race of issue 21 point 1 (a renewal or refresh
// whose check passed just before the cutoff became visible is issued
// after it), reached without relying on luck.
type cutoffRevoker struct {
	Revoker
	mu     sync.Mutex
	armed  func() // run once, after the next check that passes
	cutoff time.Time
}

func (r *cutoffRevoker) Revoked(ctx context.Context, jti, userID string, signedIn time.Time) (bool, error) {
	revoked, err := r.Revoker.Revoked(ctx, jti, userID, signedIn)
	r.mu.Lock()
	f := r.armed
	r.armed = nil
	r.mu.Unlock()
	if f != nil && err == nil && !revoked {
		f()
	}
	return revoked, err
}

// Issue 21 point 1: a cookie renewal, a verify renewal and a PUT /session
// refresh whose revocation check passed just before "sign out everywhere"
// are issued after the cutoff. They carry the sign-in's auth_time, so the
// cutoff still ends them, on this replica and on one that never saw the
// sign-in; a new sign-in right after the cutoff works at once.
func TestLogoutAllEndsTokensRenewedDuringIt(t *testing.T) {
	rev := &cutoffRevoker{}
	e := newVerifyEnv(t, loopback, func(o *Options) {
		rev.Revoker = o.Revocation
		o.Revocation = rev
	})
	other := e.replica(e.clock)
	caddy := hdr("X-Forwarded-Uri", "/app", "X-Forwarded-Method", "GET", "X-Forwarded-Host", "app.example.com", "X-Forwarded-Proto", "https")

	// raceCutoff arms the revoker: the next passing check is followed by a
	// logout-all of marco (the operator's revoke-user takes this path:
	// Checker.RevokeUser with its clock's now) and a millisecond.
	raceCutoff := func() {
		rev.mu.Lock()
		defer rev.mu.Unlock()
		rev.armed = func() {
			now := e.clock.Now()
			if err := e.checker.RevokeUser(context.Background(), "marco", now); err != nil {
				t.Error(err)
			}
			rev.cutoff = now
			e.clock.Advance(time.Millisecond)
		}
	}
	ways := []struct {
		name  string
		renew func(t *testing.T, cookie *http.Cookie) string // returns the new token
	}{
		{"cookie renewal", func(t *testing.T, cookie *http.Cookie) string {
			res := e.send("GET", "/app", session(cookie), "")
			fresh := cookieNamed(res.Cookies(), sessionCookieName)
			if res.StatusCode != 200 || fresh == nil {
				t.Fatalf("renewal: %d, fresh cookie %v", res.StatusCode, fresh != nil)
			}
			return fresh.Value
		}},
		{"verify renewal", func(t *testing.T, cookie *http.Cookie) string {
			res := e.send("GET", verifyPath, merge(caddy, session(cookie)), "")
			fresh := cookieNamed(res.Cookies(), sessionCookieName)
			if res.StatusCode != 200 || fresh == nil {
				t.Fatalf("verify: %d, fresh cookie %v", res.StatusCode, fresh != nil)
			}
			return fresh.Value
		}},
		{"refresh", func(t *testing.T, cookie *http.Cookie) string {
			res := e.do("PUT", "/session", bearer(cookie.Value), "")
			var out struct{ Token string }
			if res.StatusCode != 200 || json.Unmarshal([]byte(res.body), &out) != nil || out.Token == "" {
				t.Fatalf("refresh: %d %s", res.StatusCode, res.body)
			}
			return out.Token
		}},
	}
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			cookie := e.signIn("marco", marcoPassword)
			signedIn, err := e.tokens.Verify(cookie.Value)
			if err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(31 * time.Minute) // past half of the hour
			raceCutoff()
			token := w.renew(t, cookie)
			c, err := e.tokens.Verify(token)
			if err != nil {
				t.Fatal(err)
			}
			if !c.IssuedAt.After(rev.cutoff) || !c.AuthTime.Equal(signedIn.AuthTime) {
				t.Fatalf("test setup: the new token (iat %s, auth_time %s) is not issued after the cutoff %s from the old sign-in (%s)",
					c.IssuedAt, c.AuthTime, rev.cutoff, signedIn.AuthTime)
			}
			replicas := map[string]*httptest.Server{"this replica": e.srv, "another replica": other}
			for name, srv := range replicas {
				if code, reason := getStatus(t, srv, token); code != 401 || reason != "token_revoked" {
					t.Errorf("%s: the token issued after the cutoff from a sign-in before it: %d %s", name, code, reason)
				}
			}
			// Nor can it be refreshed (a refresh that won would revoke its
			// jti and hide the answer above, so it comes last).
			for name, srv := range replicas {
				if code := statusOf(t, srv, "PUT", "/session", bearer(token)); code != 401 {
					t.Errorf("%s: refreshing it: %d", name, code)
				}
			}
			// A new sign-in after the cutoff works at once, on both.
			fresh := e.signIn("marco", marcoPassword)
			for name, srv := range replicas {
				if code := statusOf(t, srv, "GET", "/app", session(fresh)); code != 200 {
					t.Errorf("%s: a new sign-in after the cutoff: %d", name, code)
				}
			}
		})
	}
}

// A token whose auth_time is before the user's cutoff is dead whatever its
// iat; a new sign-in after the cutoff, and another user, are not.
func TestLogoutAllComparesAuthTime(t *testing.T) {
	e := newEnv(t)
	signedIn := e.clock.Now()
	e.clock.Advance(time.Second)
	if err := e.checker.RevokeUser(context.Background(), "marco", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	renewed, _, err := e.tokens.IssueSession(authn.Session{Subject: "marco", Username: "marco", AuthTime: signedIn})
	if err != nil {
		t.Fatal(err)
	}
	if res := e.do("GET", "/app", bearer(renewed), ""); res.StatusCode != 401 || res.apiErr().Code != "token_revoked" {
		t.Errorf("iat after the cutoff, auth_time before it: %d %s", res.StatusCode, res.body)
	}
	if res := e.do("GET", "/app", bearer(e.issue("marco", "marco")), ""); res.StatusCode != 200 {
		t.Errorf("a new sign-in after the cutoff: %d %s", res.StatusCode, res.body)
	}
	if res := e.do("GET", "/app", bearer(e.issue("u-alice", "alice")), ""); res.StatusCode != 200 {
		t.Errorf("another user: %d %s", res.StatusCode, res.body)
	}
}

// statusOf sends one request to srv and returns the status.
func statusOf(t *testing.T, srv *httptest.Server, method, path string, h http.Header) int {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	for k, vv := range h {
		req.Header[k] = vv
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// sessionCookieName is the session cookie's name with the test envs'
// defaults (Secure, no Domain).
const sessionCookieName = "__Host-tokengate"

// Issue 21 point 3: a Secure, host-only session cookie is __Host-
// prefixed, and only that name is read then. A planted un-prefixed cookie
// (a sibling subdomain can set one, a prefixed one it cannot) is no
// credential, however valid its token (the attacker's own session: login
// CSRF), is not passed to the app, and does not make the real cookie
// ambiguous. Without Secure (the plain-HTTP demo) or with a cookie
// domain, the cookie keeps its plain name.
func TestSessionCookieHostPrefix(t *testing.T) {
	e := newBrowserEnv(t)
	cookie := e.signIn("marco", marcoPassword)
	if cookie.Name != "__Host-tokengate" || !cookie.Secure || cookie.Path != "/" || cookie.Domain != "" {
		t.Fatalf("session cookie %s: want __Host-tokengate, Secure, Path=/, no Domain", cookie.Raw)
	}
	attacker := e.issue("u-alice", "alice")
	planted := http.Header{"Cookie": {"tokengate=" + attacker}, "Accept": {"application/json"}}
	if res := e.send("GET", "/app", planted, ""); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("a planted un-prefixed session cookie: %d, want 401", res.StatusCode)
	}
	if res := e.send("GET", "/app", http.Header{"Cookie": {"tokengate=" + attacker}, "Accept": {htmlAccept}}, ""); res.StatusCode != http.StatusFound {
		t.Errorf("a browser with only a planted cookie: %d, want the sign-in redirect", res.StatusCode)
	}
	// Beside the real one: the real one counts, the planted one is stripped.
	both := http.Header{"Cookie": {"tokengate=" + attacker + "; a=1; " + cookie.Name + "=" + cookie.Value}}
	res := e.send("GET", "/app", both, "")
	if res.StatusCode != 200 {
		t.Fatalf("the real cookie beside a planted one: %d %s", res.StatusCode, res.body)
	}
	seen := e.up.last(t)
	if got := seen.header.Get("X-Auth-UserId"); got != "marco" {
		t.Errorf("identity %q, want marco (the planted cookie is alice's)", got)
	}
	if got := strings.Join(seen.header.Values("Cookie"), "; "); got != "a=1" {
		t.Errorf("the app received Cookie %q, want a=1", got)
	}
	// Signing out clears the prefixed cookie.
	p := e.getPage(signOutPath, cookie)
	res = e.postForm(signOutPath, url.Values{"csrf": {p.csrf}}, nil, cookie, p.csrfCookie)
	if cleared := cookieNamed(res.Cookies(), "__Host-tokengate"); res.StatusCode != http.StatusSeeOther || cleared == nil || cleared.MaxAge >= 0 || !cleared.Secure {
		t.Errorf("sign-out: %d %v, want the __Host- cookie cleared", res.StatusCode, res.Header["Set-Cookie"])
	}

	for _, tc := range []struct {
		name string
		opts func(*Options)
	}{
		{"plain HTTP (cookie_secure: false)", func(o *Options) { o.Browser.InsecureCookie = true }},
		{"a cookie domain", func(o *Options) { o.Browser.CookieDomain = "example.test" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newBrowserEnv(t, envConfig{options: tc.opts})
			cookie := e.signIn("marco", marcoPassword)
			if cookie.Name != "tokengate" {
				t.Fatalf("session cookie %q, want tokengate", cookie.Name)
			}
			if res := e.send("GET", "/app", http.Header{"Cookie": {"tokengate=" + cookie.Value}}, ""); res.StatusCode != 200 {
				t.Errorf("the cookie: %d", res.StatusCode)
			}
			if res := e.send("GET", "/app", http.Header{"Cookie": {"__Host-tokengate=" + cookie.Value}, "Accept": {"application/json"}}, ""); res.StatusCode != http.StatusUnauthorized {
				t.Errorf("the other spelling: %d, want 401", res.StatusCode)
			}
		})
	}
}
