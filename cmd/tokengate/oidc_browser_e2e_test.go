package main

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// Sign-in through the real provider in the real Chromium, with Secure
// cookies as in production (Chromium keeps them on http://127.0.0.1):
// the button on the sign-in page, the provider's login and consent pages,
// back on the page first asked for with the identity; then signing out
// goes on to the provider's logout page (the sign-out page's CSP lets its
// form continue there) and comes back to the sign-in page.
func TestOIDCBrowserSignIn(t *testing.T) {
	tab := newTab(t) // first: without chromium, skip before starting anything
	port := reservePort(t)
	p := startIDP(t, []map[string]any{oidcClient([]int{port}, "")}, nil)
	app := newWebApp(t)
	dir := newDir(t, app.URL)
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(baseConfig(app.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range oidcEnv(p.Issuer, port) {
		if !strings.HasPrefix(kv, "TOKENGATE_BROWSER_COOKIE_SECURE=") {
			env = append(env, kv)
		}
	}
	in := start(t, dir, env...)
	base := in.Public

	resp := load(t, tab, chromedp.Navigate(base+"/account?tab=2"))
	if resp.Status != http.StatusOK || onSignInPage(t, tab, base) != "/account?tab=2" {
		t.Fatalf("sign-in page: %d %s", resp.Status, location(t, tab))
	}
	if label := browseValue(t, tab, chromedp.Text(chromedp.CSS(`#provider`))); label != "Sign in with Test IdP" {
		t.Fatalf("button: %q", label)
	}

	// The provider's pages.
	load(t, tab, chromedp.Click(chromedp.CSS(`#provider`)))
	if loc := location(t, tab); !strings.HasPrefix(loc, p.Issuer+"/interaction/") {
		t.Fatalf("not at the provider's login page: %s", loc)
	}
	if c := cookie(t, tab, base, "__Host-tokengate_oidc_state"); c == nil || !c.HTTPOnly || !c.Secure || c.Path != "/" || string(c.SameSite) != "Lax" {
		t.Fatalf("state cookie: %s", describeCookie(c))
	}
	browse(t, tab,
		chromedp.SetValue(chromedp.CSS(`input[name="login"]`), "alice"),
		chromedp.SetValue(chromedp.CSS(`input[name="password"]`), "any"),
	)
	load(t, tab, chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	resp = load(t, tab, chromedp.Click(chromedp.CSS(`button[type="submit"]`))) // consent: Continue
	if resp.Status != http.StatusOK {
		t.Fatalf("after consent: %d at %s", resp.Status, location(t, tab))
	}
	if loc := location(t, tab); loc != base+"/account?tab=2" {
		t.Fatalf("landed on %s, want the page first asked for", loc)
	}
	if user := browseValue(t, tab, chromedp.Text(chromedp.CSS(`#user`))); user != "alice" {
		t.Fatalf("the app greets %q", user)
	}
	if _, last := app.requests(); strings.Contains(last.Cookie, "tokengate") {
		t.Fatalf("the app saw tokengate's cookies: %q", last.Cookie)
	}
	if c := cookie(t, tab, base, "__Host-tokengate_oidc_state"); c != nil {
		t.Fatal("the state cookie outlived the sign-in")
	}
	if c := cookie(t, tab, base, "__Host-tokengate"); c == nil || !c.HTTPOnly || !c.Secure {
		t.Fatalf("session cookie: %s", describeCookie(c))
	}

	// Signing out: tokengate's page, then the provider's, then back.
	load(t, tab, chromedp.Navigate(base+signOutPath))
	load(t, tab, chromedp.Click(chromedp.CSS(`form button[type="submit"]`)))
	if loc := location(t, tab); !strings.HasPrefix(loc, p.Issuer+"/session/end") {
		t.Fatalf("sign-out did not continue to the provider: %s", loc)
	}
	load(t, tab, chromedp.Click(chromedp.CSS(`button[name="logout"]`)))
	loc, _ := url.Parse(location(t, tab))
	if loc.Path != signInPath || !strings.HasPrefix(loc.String(), base) {
		t.Fatalf("after the provider's logout: %s", loc)
	}
	if c := cookie(t, tab, base, "__Host-tokengate"); c != nil {
		t.Fatalf("the session cookie outlived the sign-out: %s", describeCookie(c))
	}
	load(t, tab, chromedp.Navigate(base+"/account"))
	onSignInPage(t, tab, base)
}
