package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tokengate/revocation"
)

// Issue 21 point 7: security lines that a careless edit could change
// without any other test noticing.

// The sign-in form's cross-origin check refuses a same-site sibling
// (Sec-Fetch-Site: same-site, which a plain "cross-site" comparison would
// let through) and, from a browser without Fetch metadata, a foreign
// Origin; same-origin posts and clients sending neither header sign in.
// The sign-out form is checked the same way.
func TestSignInFormOriginCheck(t *testing.T) {
	e := newBrowserEnv(t)
	self := e.srv.URL // the test server's origin: Origin matching Host
	for _, tc := range []struct {
		name string
		hdr  http.Header
		ok   bool
	}{
		{"same-site sibling", http.Header{"Sec-Fetch-Site": {"same-site"}}, false},
		{"same-site sibling naming our Origin", http.Header{"Sec-Fetch-Site": {"same-site"}, "Origin": {self}}, false},
		{"cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}}, false},
		{"foreign Origin, no Sec-Fetch-Site", http.Header{"Origin": {"https://evil.example"}}, false},
		{"sibling Origin, no Sec-Fetch-Site", http.Header{"Origin": {"http://sub." + strings.TrimPrefix(self, "http://")}}, false},
		{"same-origin", http.Header{"Sec-Fetch-Site": {"same-origin"}}, true},
		{"typed in the address bar", http.Header{"Sec-Fetch-Site": {"none"}}, true},
		{"our Origin, no Sec-Fetch-Site", http.Header{"Origin": {self}}, true},
		{"neither header (curl)", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := e.getPage(signInPath)
			res := e.postForm(signInPath, url.Values{"username": {"marco"}, "password": {marcoPassword}, "csrf": {p.csrf}}, tc.hdr, p.csrfCookie)
			session := cookieNamed(res.Cookies(), sessionCookieName)
			if tc.ok {
				if res.StatusCode != http.StatusSeeOther || session == nil {
					t.Fatalf("sign-in: %d, session cookie %v; want 303 with the cookie", res.StatusCode, session != nil)
				}
			} else if res.StatusCode != http.StatusForbidden || session != nil || !strings.Contains(res.body, msgCrossSite) {
				t.Fatalf("sign-in: %d, session cookie %v; want 403 %q without a cookie", res.StatusCode, session != nil, msgCrossSite)
			}

			cookie := e.signIn("marco", marcoPassword)
			op := e.getPage(signOutPath, cookie)
			res = e.postForm(signOutPath, url.Values{"csrf": {op.csrf}, "scope": {"everywhere"}}, tc.hdr, cookie, op.csrfCookie)
			if want := map[bool]int{true: http.StatusSeeOther, false: http.StatusForbidden}[tc.ok]; res.StatusCode != want {
				t.Fatalf("sign-out: %d, want %d", res.StatusCode, want)
			}
			e.clock.Advance(time.Millisecond) // the next sign-in is after any cutoff
		})
	}
}

// failingRevoker is a real Checker whose writes fail (the store took no
// revocation), and, when down is set, whose checks fail too.
type failingRevoker struct {
	Revoker
	down atomic.Bool
}

func (f *failingRevoker) Revoked(ctx context.Context, jti, userID string, signedIn time.Time) (bool, error) {
	if f.down.Load() {
		return false, fmt.Errorf("test: %w", revocation.ErrUnavailable)
	}
	return f.Revoker.Revoked(ctx, jti, userID, signedIn)
}

func (f *failingRevoker) RevokeToken(context.Context, string, time.Time) error {
	return fmt.Errorf("test: %w", revocation.ErrUnavailable)
}

func (f *failingRevoker) RevokeUser(context.Context, string, time.Time) error {
	return fmt.Errorf("test: %w", revocation.ErrUnavailable)
}

// Signing out while the revocation store fails: 503, the page says it did
// not work, and the cookie is kept (not cleared), so the person is never
// told they are signed out while the token still works, and can retry.
// Also when the store cannot even check the cookie's token.
func TestSignOutStoreDown(t *testing.T) {
	for _, down := range []bool{false, true} {
		for _, scope := range []string{"this", "everywhere"} {
			t.Run(fmt.Sprintf("%s, checks fail too: %v", scope, down), func(t *testing.T) {
				rev := &failingRevoker{}
				e := newBrowserEnv(t, envConfig{options: func(o *Options) {
					rev.Revoker = o.Revocation
					o.Revocation = rev
				}})
				cookie := e.signIn("marco", marcoPassword)
				p := e.getPage(signOutPath, cookie)
				rev.down.Store(down)
				res := e.postForm(signOutPath, url.Values{"csrf": {p.csrf}, "scope": {scope}}, nil, cookie, p.csrfCookie)
				if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(res.body, msgSignOutFailed) {
					t.Fatalf("sign-out with the store failing: %d, want 503 saying %q\n%s", res.StatusCode, msgSignOutFailed, res.body)
				}
				if c := cookieNamed(res.Cookies(), sessionCookieName); c != nil {
					t.Errorf("the session cookie was touched: %s", c.Raw)
				}
				if loc := res.Header.Get("Location"); loc != "" {
					t.Errorf("sent on to %q", loc)
				}
				rev.down.Store(false)
				if res := e.send("GET", "/app", session(cookie), ""); res.StatusCode != http.StatusOK {
					t.Errorf("the session after the failed sign-out: %d", res.StatusCode)
				}
			})
		}
	}
}

// Upper-case percent-encodings of / and \ are caught like lower-case ones:
// "/healthz%2Fadmin" decodes to the public-looking "/healthz/admin", but
// an upstream that keeps %2F sees one segment, so the path is private;
// %5C is a backslash (refused). A check for "%2f" alone would make it
// public without a token.
func TestUpperCaseEncodedSlashes(t *testing.T) {
	for _, raw := range []string{"/x%2Fy", "/x%2fy", "/x%5Cy", "/x%5cy"} {
		if !containsEncodedSlash(raw) {
			t.Errorf("containsEncodedSlash(%q) = false", raw)
		}
	}
	for _, raw := range []string{"/x%2Ey", "/x%25y", "/x%2", "/x%5"} {
		if containsEncodedSlash(raw) {
			t.Errorf("containsEncodedSlash(%q) = true", raw)
		}
	}
	for target, want := range map[string]pathClass{
		"/healthz%2Fadmin":      pathUnclean,
		"/healthz%2F..%2Fadmin": pathHostile,
		"/healthz%5Cadmin":      pathHostile,
		"/healthz%5C..%5Cadmin": pathHostile,
	} {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatal(err)
		}
		if got := classifyPath(u.Path, u.RawPath); got != want {
			t.Errorf("classifyPath(%q) = %d, want %d", target, got, want)
		}
	}
	e := newVerifyEnv(t, loopback)
	if res := e.raw("/healthz%2Fadmin", nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /healthz%%2Fadmin without a token: %d, want 401 (private)", res.StatusCode)
	}
	if n := len(e.up.requests()); n != 0 {
		t.Errorf("the upstream saw %d requests", n)
	}
	for _, uri := range []string{"/healthz%2Fadmin", "/static%2Fsecret"} {
		if res := e.send("GET", verifyPath, hdr("X-Original-Uri", uri, "X-Original-Method", "GET"), ""); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("verify %s without a token: %d, want 401", uri, res.StatusCode)
		}
	}
}
