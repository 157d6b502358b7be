package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// jwtClaims decodes a JWT's payload (no verification: tokengate did that).
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Sign-in through a real provider over HTTP: the button, PKCE S256 and a
// nonce in the authorization request, rd kept through the round trip, and
// tokengate's own token carrying the provider's sid and auth_time.
func TestOIDCSignInHTTP(t *testing.T) {
	port := reservePort(t)
	p := startIDP(t, []map[string]any{oidcClient([]int{port}, "")}, map[string][]string{"alice": {"ops"}})
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), oidcEnv(p.Issuer, port)...)

	// The sign-in page offers the provider beside the password form, and
	// the button keeps rd.
	c := newBrowserClient(t)
	pg := fetch(t, c, "GET", in.Public+"/tokengate/sign_in?rd=%2Fapp%2Fx%3Fq%3D1", nil)
	if pg.Code != 200 || !strings.Contains(pg.Body, "Sign in with Test IdP") ||
		!strings.Contains(pg.Body, `href="/tokengate/oidc/sign_in?rd=%2Fapp%2Fx%3Fq%3D1"`) || !strings.Contains(pg.Body, `name="password"`) {
		t.Fatalf("sign-in page: %d\n%s", pg.Code, pg.Body)
	}

	// The authorization request: code flow, PKCE S256, state and nonce.
	noFollow := newBrowserClient(t, "/auth")
	pg = fetch(t, noFollow, "GET", in.Public+oidcStart+"?rd=/app/x", nil)
	if pg.Code != http.StatusFound {
		t.Fatalf("start: %d %s", pg.Code, pg.Body)
	}
	auth, _ := url.Parse(pg.Location)
	q := auth.Query()
	if !strings.HasPrefix(pg.Location, p.Issuer+"/auth?") || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" ||
		len(q.Get("code_challenge")) != 43 || len(q.Get("state")) < 32 || len(q.Get("nonce")) < 32 || q.Get("client_id") != oidcClientID ||
		q.Get("code_verifier") != "" || !strings.Contains(q.Get("scope"), "openid") {
		t.Fatalf("authorization request: %s", pg.Location)
	}
	if v := cookieNamed(noFollow, in.Public, "tokengate_oidc_state"); v == "" || strings.Contains(v, q.Get("state")) {
		t.Fatalf("state cookie %q: missing, or not sealed", v)
	}

	// The whole round trip ends on rd, signed in as the provider's user.
	pg = signInAtProvider(t, c, in.Public+oidcStart+"?rd=%2Fapp%2Fx%3Fq%3D1", "alice")
	if pg.Code != 200 || pg.URL.Path != "/app/x" || pg.URL.RawQuery != "q=1" || !strings.Contains(pg.Body, `"user_id":["alice"]`) {
		t.Fatalf("after sign-in: %d %s %s", pg.Code, pg.URL, pg.Body)
	}
	if h, ok := up.headersSeen("/app/x"); !ok || strings.Contains(h.Get("Cookie"), "tokengate") {
		t.Fatalf("the app saw tokengate's cookies: %q", h.Get("Cookie"))
	}
	token := cookieNamed(c, in.Public, "tokengate")
	claims := jwtClaims(t, token)
	if claims["sub"] != "alice" || claims["sid"] == nil || claims["sid"] == "" || claims["auth_time"] == nil {
		t.Fatalf("tokengate's token claims: %v", claims)
	}
	if cookieNamed(c, in.Public, "tokengate_oidc_state") != "" {
		t.Fatal("the state cookie outlived its use")
	}
	// The same token works as a Bearer token: it is tokengate's own.
	if r := call(t, "GET", in.Public+"/session", token, ""); r.Code != 200 || !strings.Contains(r.Body, `"alice"`) {
		t.Fatalf("GET /session with the cookie's token: %d %s", r.Code, r.Body)
	}
	if !strings.Contains(in.logs.String(), `"login":"alice"`) && !strings.Contains(in.logs.String(), `"user":"alice"`) {
		t.Logf("log:\n%s", in.logs)
	}
	// The log never holds the provider's tokens or the client secret.
	if strings.Contains(in.logs.String(), oidcClientSecret) || strings.Contains(in.logs.String(), token) {
		t.Fatal("the log holds a secret or a token")
	}
}

// The callback refuses what an attacker could bring: a replayed callback
// (with or without the used state cookie), another browser's state, a code
// issued to another client; and a denied consent, a wrong client secret and
// a provider that is down each get a page saying so, and a log line.
func TestOIDCCallbackRefusals(t *testing.T) {
	port, badPort := reservePort(t), reservePort(t)
	other := oidcClient([]int{port}, "")
	other["client_id"], other["client_secret"] = "other-app", "other-app-secret-0123456789abcdef"
	p := startIDP(t, []map[string]any{oidcClient([]int{port, badPort}, ""), other}, nil)
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), oidcEnv(p.Issuer, port)...)
	begin := in.Public + oidcStart

	stale := "This sign-in has expired or was already used"
	noSession := func(t *testing.T, pg page) {
		t.Helper()
		for _, sc := range pg.Header.Values("Set-Cookie") {
			if strings.HasPrefix(sc, "tokengate=") && !strings.HasPrefix(sc, "tokengate=;") {
				t.Fatalf("a session cookie was set: %s", sc)
			}
		}
		if strings.Contains(pg.Body, "code=") || strings.Contains(pg.Body, "eyJ") {
			t.Fatalf("the page shows token material: %s", pg.Body)
		}
	}

	t.Run("replayed callback", func(t *testing.T) {
		c := newBrowserClient(t, oidcCallback)
		pg := signInAtProvider(t, c, begin, "alice")
		if pg.Code != http.StatusSeeOther || !strings.Contains(pg.Location, oidcCallback+"?code=") {
			t.Fatalf("expected the redirect to the callback: %d %s", pg.Code, pg.Location)
		}
		callback := pg.Location
		stateCookie := cookieNamed(c, in.Public, "tokengate_oidc_state")
		if pg = fetch(t, c, "GET", callback, nil); pg.Code != 200 || pg.URL.Path != "/" || !strings.Contains(pg.Body, `"user_id":["alice"]`) {
			t.Fatalf("first callback: %d %s %s", pg.Code, pg.Location, pg.Body)
		}
		// Same browser again: the state cookie was used up.
		pg = fetch(t, c, "GET", callback, nil)
		if pg.Code != http.StatusBadRequest || !strings.Contains(pg.Body, stale) {
			t.Fatalf("replayed callback: %d %s", pg.Code, pg.Body)
		}
		noSession(t, pg)
		// With a copy of the used state cookie: the provider refuses the
		// code a second time, and so does tokengate.
		attacker := newBrowserClient(t)
		u, _ := url.Parse(in.Public)
		attacker.Jar.SetCookies(u, []*http.Cookie{{Name: "tokengate_oidc_state", Value: stateCookie, Path: "/"}})
		pg = fetch(t, attacker, "GET", callback, nil)
		if pg.Code != http.StatusBadRequest || !strings.Contains(pg.Body, stale) {
			t.Fatalf("replayed callback with the old state cookie: %d %s", pg.Code, pg.Body)
		}
		noSession(t, pg)
	})

	t.Run("swapped state", func(t *testing.T) {
		victim, attacker := newBrowserClient(t, oidcCallback), newBrowserClient(t, oidcCallback)
		_ = fetch(t, victim, "GET", begin, nil) // the victim started a sign-in (has a state cookie)
		pg := signInAtProvider(t, attacker, begin, "mallory")
		if pg.Code != http.StatusSeeOther {
			t.Fatalf("attacker's redirect: %d", pg.Code)
		}
		// The attacker's callback URL, opened in the victim's browser (login CSRF).
		pg = fetch(t, victim, "GET", pg.Location, nil)
		if pg.Code != http.StatusBadRequest || !strings.Contains(pg.Body, stale) {
			t.Fatalf("swapped state: %d %s", pg.Code, pg.Body)
		}
		noSession(t, pg)
		waitLog(t, in, "state does not match")
	})

	t.Run("code for another client", func(t *testing.T) {
		c := newBrowserClient(t, "/auth", oidcCallback)
		pg := fetch(t, c, "GET", begin, nil)
		auth, _ := url.Parse(pg.Location)
		q := auth.Query()
		q.Set("client_id", "other-app") // same state, nonce and challenge: only the client differs
		auth.RawQuery = q.Encode()
		c.CheckRedirect = newBrowserClient(t, oidcCallback).CheckRedirect
		pg = signInAtProvider(t, c, auth.String(), "alice")
		if pg.Code != http.StatusSeeOther || !strings.Contains(pg.Location, oidcCallback) {
			t.Fatalf("other client's redirect: %d %s %s", pg.Code, pg.Location, pg.Body)
		}
		pg = fetch(t, c, "GET", pg.Location, nil)
		if pg.Code != http.StatusBadRequest || !strings.Contains(pg.Body, stale) {
			t.Fatalf("another client's code: %d %s", pg.Code, pg.Body)
		}
		noSession(t, pg)
	})

	t.Run("nonce not this sign-in's", func(t *testing.T) {
		// Same state and PKCE challenge, so the code exchange succeeds;
		// only the ID token's nonce differs from the one in the cookie.
		c := newBrowserClient(t, "/auth", oidcCallback)
		pg := fetch(t, c, "GET", begin, nil)
		auth, _ := url.Parse(pg.Location)
		q := auth.Query()
		q.Set("nonce", "not-the-nonce-tokengate-made-0123456789")
		auth.RawQuery = q.Encode()
		c.CheckRedirect = newBrowserClient(t, oidcCallback).CheckRedirect
		pg = signInAtProvider(t, c, auth.String(), "alice")
		if pg.Code != http.StatusSeeOther {
			t.Fatalf("redirect: %d %s", pg.Code, pg.Body)
		}
		pg = fetch(t, c, "GET", pg.Location, nil)
		if pg.Code != http.StatusBadRequest || !strings.Contains(pg.Body, stale) {
			t.Fatalf("another nonce: %d %s", pg.Code, pg.Body)
		}
		noSession(t, pg)
		waitLog(t, in, "the ID token's nonce is not this sign-in's")
	})

	t.Run("consent denied", func(t *testing.T) {
		c := newBrowserClient(t)
		pg := fetch(t, c, "GET", begin, nil) // the provider's login page
		abort := regexp.MustCompile(`href="([^"]*/abort)"`).FindStringSubmatch(pg.Body)
		if abort == nil {
			t.Fatalf("no cancel link on the provider's page: %s", pg.Body)
		}
		target, _ := pg.URL.Parse(abort[1])
		pg = fetch(t, c, "GET", target.String(), nil)
		if pg.Code != http.StatusForbidden || !strings.Contains(pg.Body, "cancelled or denied") || !strings.Contains(pg.Body, "Sign in with Test IdP again") {
			t.Fatalf("denied: %d %s", pg.Code, pg.Body)
		}
		noSession(t, pg)
	})

	t.Run("wrong client secret", func(t *testing.T) {
		env := oidcEnv(p.Issuer, badPort)
		env = append(env, "TOKENGATE_OIDC_CLIENT_SECRET=not-the-secret-0123456789")
		bad := start(t, newDir(t, up.URL), env...)
		c := newBrowserClient(t)
		pg := signInAtProvider(t, c, bad.Public+oidcStart, "alice")
		if pg.Code != http.StatusBadGateway || !strings.Contains(pg.Body, "needs your administrator") {
			t.Fatalf("wrong secret: %d %s", pg.Code, pg.Body)
		}
		noSession(t, pg)
		waitLog(t, bad, "refused the client credentials; check oidc.client_id and the client secret")
		if strings.Contains(bad.logs.String(), "not-the-secret") {
			t.Fatalf("the log holds the secret:\n%s", bad.logs)
		}
	})

	t.Run("provider down", func(t *testing.T) {
		downPort := reservePort(t)
		env := oidcEnv(fmt.Sprintf("http://127.0.0.1:%d", reservePort(t)), downPort)
		down := start(t, newDir(t, up.URL), env...)
		pg := fetch(t, newBrowserClient(t), "GET", down.Public+oidcStart, nil)
		if pg.Code != http.StatusServiceUnavailable || !strings.Contains(pg.Body, "not reachable right now") ||
			!strings.Contains(pg.Body, `<a href="/tokengate/sign_in">or sign in with a password</a>`) {
			t.Fatalf("provider down: %d %s", pg.Code, pg.Body)
		}
		waitLog(t, down, "provider discovery failed; check oidc.issuer")
		// Password sign-in still works meanwhile.
		if tok := login(t, down.Public, "alice", testUsers["alice"]); tok == "" {
			t.Fatal("password login while the provider is down")
		}
	})
}

// waitLog waits for a log line holding s (lines are written asynchronously).
func waitLog(t *testing.T, in *instance, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(in.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q:\n%s", s, in.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signOutForm posts the sign-out page's form (scope this) with c.
func signOutForm(t *testing.T, c *http.Client, base string) page {
	t.Helper()
	pg := fetch(t, c, "GET", base+"/tokengate/sign_out", nil)
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(pg.Body)
	if pg.Code != 200 || csrf == nil {
		t.Fatalf("sign-out page: %d %s", pg.Code, pg.Body)
	}
	return fetch(t, c, "POST", base+"/tokengate/sign_out", url.Values{"csrf": {csrf[1]}, "scope": {"this"}})
}

// Signing out of a session that came from the provider ends the provider
// session too (RP-initiated logout): the browser goes to the provider's
// end_session_endpoint with id_token_hint and a post_logout_redirect_uri
// back to the sign-in page; the next sign-in asks for the password again.
// With oidc.provider_logout false, signing out stays local.
func TestOIDCProviderLogout(t *testing.T) {
	port, localPort := reservePort(t), reservePort(t)
	p := startIDP(t, []map[string]any{oidcClient([]int{port, localPort}, "")}, nil)
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), oidcEnv(p.Issuer, port)...)

	c := newBrowserClient(t, "/session/end")
	if pg := signInAtProvider(t, c, in.Public+oidcStart+"?rd=/app", "alice"); pg.Code != 200 || pg.URL.Path != "/app" {
		t.Fatalf("sign-in: %d %s", pg.Code, pg.URL)
	}
	token := cookieNamed(c, in.Public, "tokengate")
	pg := fetch(t, c, "GET", in.Public+"/tokengate/sign_out", nil)
	if csp := pg.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' "+p.Issuer+";") {
		t.Fatalf("the sign-out page's CSP does not let its form continue to the provider: %s", csp)
	}
	pg = signOutForm(t, c, in.Public)
	if pg.Code != http.StatusSeeOther {
		t.Fatalf("sign-out: %d %s", pg.Code, pg.Body)
	}
	end, _ := url.Parse(pg.Location)
	q := end.Query()
	if !strings.HasPrefix(pg.Location, p.Issuer+"/session/end?") || q.Get("id_token_hint") == "" || q.Get("client_id") != oidcClientID ||
		q.Get("post_logout_redirect_uri") != fmt.Sprintf("http://127.0.0.1:%d/tokengate/sign_in", port) {
		t.Fatalf("sign-out's redirect: %s", pg.Location)
	}
	if r := call(t, "GET", in.Public+"/app", token, ""); r.Code != http.StatusUnauthorized {
		t.Fatalf("the signed-out token: %d", r.Code)
	}
	// The provider confirms, ends its session and sends the browser back.
	c.CheckRedirect = nil
	pg = confirmIDPLogout(t, c, fetch(t, c, "GET", pg.Location, nil))
	if pg.Code != 200 || pg.URL.Path != "/tokengate/sign_in" || !strings.Contains(pg.Body, "Sign in with Test IdP") {
		t.Fatalf("back from the provider's logout: %d %s", pg.Code, pg.URL)
	}
	if cookieNamed(c, in.Public, "tokengate_oidc") != "" {
		t.Fatal("the ID token cookie outlived the sign-out")
	}
	// The provider session is gone: a new sign-in shows its login form.
	pg = fetch(t, c, "GET", in.Public+oidcStart, nil)
	if !strings.Contains(pg.Body, `value="login"`) {
		t.Fatalf("the provider still had a session: %d %s", pg.Code, pg.URL)
	}

	t.Run("provider_logout false", func(t *testing.T) {
		env := append(oidcEnv(p.Issuer, localPort), "TOKENGATE_OIDC_PROVIDER_LOGOUT=false")
		local := start(t, newDir(t, up.URL), env...)
		c := newBrowserClient(t, "/tokengate/sign_in")
		if pg := signInAtProvider(t, c, local.Public+oidcStart+"?rd=/app", "alice"); pg.Code != 200 || pg.URL.Path != "/app" {
			t.Fatalf("sign-in: %d %s", pg.Code, pg.URL)
		}
		if cookieNamed(c, local.Public, "tokengate_oidc") != "" {
			t.Fatal("an ID token cookie was kept with provider logout off")
		}
		if pg := signOutForm(t, c, local.Public); pg.Code != http.StatusSeeOther || !strings.HasPrefix(pg.Location, "/tokengate/sign_in?") {
			t.Fatalf("local sign-out: %d %s", pg.Code, pg.Location)
		}
		// The provider session lives on: signing in again needs no password.
		c.CheckRedirect = nil
		if pg := fetch(t, c, "GET", local.Public+oidcStart+"?rd=/app", nil); pg.Code != 200 || pg.URL.Path != "/app" {
			t.Fatalf("single sign-on after a local sign-out: %d %s", pg.Code, pg.URL)
		}
	})
}

// check-config --probe fetches the discovery document; an unreachable
// issuer is a configuration problem (exit 2) naming oidc.issuer. The
// client secret file is loaded like every file the config names.
func TestOIDCCheckConfigProbe(t *testing.T) {
	p := startIDP(t, nil, nil)
	dir := newDir(t, "http://127.0.0.1:1")
	secret := filepath.Join(dir, "oidc-secret")
	if err := os.WriteFile(secret, []byte(oidcClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(issuer, secretFile string) {
		cfg := baseConfig("http://127.0.0.1:1") + fmt.Sprintf(`oidc:
  issuer: %s
  client_id: tokengate
  client_secret_file: %s
  redirect_url: http://127.0.0.1:8081/tokengate/oidc/callback
`, issuer, secretFile)
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.Issuer, "oidc-secret")
	out, errOut, code := runBin(t, dir, "", "check-config", "--probe", "--config", "config.yaml")
	if code != 0 || !strings.Contains(out, "oidc: discovery OK at "+p.Issuer) || !strings.Contains(out, "end session "+p.Issuer+"/session/end") {
		t.Fatalf("probe: %d\n%s%s", code, out, errOut)
	}
	// Without --probe the provider is not contacted.
	write(fmt.Sprintf("http://127.0.0.1:%d", reservePort(t)), "oidc-secret")
	if out, errOut, code := runBin(t, dir, "", "check-config", "--config", "config.yaml"); code != 0 {
		t.Fatalf("check-config without --probe: %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = runBin(t, dir, "", "check-config", "--probe", "--config", "config.yaml")
	if code != 2 || !strings.Contains(errOut, "oidc.issuer: discovery at http://127.0.0.1:") {
		t.Fatalf("probe of a dead issuer: %d\n%s", code, errOut)
	}
	write(p.Issuer, "missing-secret")
	_, errOut, code = runBin(t, dir, "", "check-config", "--config", "config.yaml")
	if code != 2 || !strings.Contains(errOut, "oidc.client_secret_file:") {
		t.Fatalf("missing secret file: %d\n%s", code, errOut)
	}
}
