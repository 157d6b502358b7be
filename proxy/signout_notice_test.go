package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// After signing out, the browser lands on the sign-in page, which says it
// worked: "You have signed out", and after "everywhere" that every session
// ended. "Everywhere" is claimed only when every token was revoked: with
// no valid session there was nothing to revoke, and the page says only
// that this browser signed out.
func TestSignOutNotice(t *testing.T) {
	for _, tc := range []struct {
		scope, location, notice string
		signedIn                bool
	}{
		{"this", "?signed_out=this", noticeSignedOut, true},
		{"everywhere", "?signed_out=everywhere", noticeEverywhere, true},
		{"everywhere", "?signed_out=this", noticeSignedOut, false},
	} {
		t.Run(tc.scope+map[bool]string{true: "", false: " without a session"}[tc.signedIn], func(t *testing.T) {
			e := newBrowserEnv(t)
			var cookies []*http.Cookie
			if tc.signedIn {
				cookies = append(cookies, e.signIn("marco", marcoPassword))
				e.clock.Advance(time.Millisecond)
			}
			p := e.getPage(signOutPath, cookies...)
			res := e.postForm(signOutPath, url.Values{"csrf": {p.csrf}, "scope": {tc.scope}}, nil, append(cookies, p.csrfCookie)...)
			loc := res.Header.Get("Location")
			if res.StatusCode != http.StatusSeeOther || loc != signInPath+tc.location {
				t.Fatalf("sign out: %d Location %q, want %q", res.StatusCode, loc, signInPath+tc.location)
			}
			page := e.getPage(loc)
			if !strings.Contains(page.res.body, `<p class="notice" role="status">`+tc.notice+`</p>`) {
				t.Errorf("the sign-in page after sign-out lacks %q:\n%s", tc.notice, page.res.body)
			}
			if page.csrf == "" {
				t.Error("the page has no sign-in form")
			}
		})
	}
	t.Run("no notice otherwise, and nothing from the URL on the page", func(t *testing.T) {
		e := newBrowserEnv(t)
		for _, target := range []string{signInPath, signInPath + "?signed_out=", signInPath + "?signed_out=%3Cb%3Ehi%3C/b%3E"} {
			body := e.getPage(target).res.body
			if strings.Contains(body, `class="notice"`) || strings.Contains(body, "hi</b>") || strings.Contains(body, "&lt;b&gt;") {
				t.Errorf("GET %s shows a notice or the parameter:\n%s", target, body)
			}
		}
	})
}
