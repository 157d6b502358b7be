package main

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestBrowserSignInWiring runs two replicas of the real binary sharing a
// signing key, with the browser.* keys set from the environment: a form
// served by one is accepted by the other (the CSRF key is derived from the
// shared signing key), and the cookie follows cookie_secure and cookie_name.
func TestBrowserSignInWiring(t *testing.T) {
	up := newEchoUpstream(t)
	env := []string{
		"TOKENGATE_BROWSER_COOKIE_SECURE=false",
		"TOKENGATE_BROWSER_COOKIE_NAME=acme_session",
		"TOKENGATE_BROWSER_TITLE=Acme intranet",
	}
	a, b := startReplicas(t, up, env...)

	noFollow := &http.Client{Timeout: client.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(req *http.Request) (*http.Response, string) {
		t.Helper()
		res, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res, string(body)
	}

	// An unauthenticated browser is sent to the sign-in page.
	req, _ := http.NewRequest("GET", a.Public+"/reports?y=2025", nil)
	req.Header.Set("Accept", "text/html,*/*;q=0.8")
	if res, _ := send(req); res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/tokengate/sign_in?rd=%2Freports%3Fy%3D2025" {
		t.Fatalf("navigation: %d Location %q", res.StatusCode, res.Header.Get("Location"))
	}

	// The page from replica A...
	req, _ = http.NewRequest("GET", a.Public+"/tokengate/sign_in?rd=%2Freports%3Fy%3D2025", nil)
	res, body := send(req)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "<title>Acme intranet</title>") {
		t.Fatalf("page: %d\n%s", res.StatusCode, body)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	var csrfCookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "acme_session_csrf" {
			csrfCookie = c
		}
	}
	if m == nil || csrfCookie == nil {
		t.Fatalf("no CSRF field or cookie: %v\n%s", res.Header["Set-Cookie"], body)
	}

	// ...posted to replica B.
	form := url.Values{"username": {"alice"}, "password": {testUsers["alice"]}, "csrf": {m[1]}, "rd": {"/reports?y=2025"}}
	req, _ = http.NewRequest("POST", b.Public+"/tokengate/sign_in", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(csrfCookie)
	res, body = send(req)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/reports?y=2025" {
		t.Fatalf("sign-in on the other replica: %d Location %q\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "acme_session" {
			session = c
		}
	}
	if session == nil || session.Secure || !session.HttpOnly || session.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie %v (want not Secure with cookie_secure false)", res.Header["Set-Cookie"])
	}

	// The cookie works on both replicas; the app never sees it.
	for _, base := range []string{a.Public, b.Public} {
		req, _ = http.NewRequest("GET", base+"/reports", nil)
		req.AddCookie(session)
		req.AddCookie(&http.Cookie{Name: "app", Value: "1"})
		if res, body := send(req); res.StatusCode != http.StatusOK || !strings.Contains(body, `"user_id":["alice"]`) {
			t.Errorf("%s with the cookie: %d %s", base, res.StatusCode, body)
		}
		up.mu.Lock()
		got := up.seen[len(up.seen)-1].Values("Cookie")
		up.mu.Unlock()
		if strings.Join(got, "; ") != "app=1" {
			t.Errorf("%s: the app got Cookie %q, want only its own", base, got)
		}
	}
}
