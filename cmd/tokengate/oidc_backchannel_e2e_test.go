package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tokengate/internal/testsvc"
)

// logoutRelay stands between the provider and replica A's back-channel
// route: it passes each logout token on and keeps a copy to replay.
type logoutRelay struct {
	*httptest.Server
	mu     sync.Mutex
	target string // A's back-channel URL, set once A runs
	tokens []string
	codes  []int
}

func newLogoutRelay(t *testing.T) *logoutRelay {
	r := &logoutRelay{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<16))
		form, _ := url.ParseQuery(string(body))
		r.mu.Lock()
		target := r.target
		r.mu.Unlock()
		resp, err := http.Post(target, "application/x-www-form-urlencoded", strings.NewReader(string(body)))
		code := http.StatusBadGateway
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
		r.mu.Lock()
		r.tokens = append(r.tokens, form.Get("logout_token"))
		r.codes = append(r.codes, code)
		r.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *logoutRelay) seen() ([]string, []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tokens...), append([]int(nil), r.codes...)
}

// signedIn reports whether c's session cookie gets base's app page.
func signedIn(t *testing.T, c *http.Client, base string) bool {
	t.Helper()
	pg := fetch(t, c, "GET", base+"/app", nil)
	return pg.Code == 200 && pg.URL.Path == "/app"
}

// The provider's back-channel logout ends the session on both replicas
// sharing Redis: the next request with the old cookie is refused on each
// (within a second: pub/sub, not the 30 s staleness). Only that provider
// session ends: the same user's other session goes on. A replayed logout
// token is refused, on either replica.
func TestOIDCBackchannelLogoutReplicas(t *testing.T) {
	addr := testsvc.RedisAddr(t)
	portA, portB := reservePort(t), reservePort(t)
	relay := newLogoutRelay(t)
	p := startIDP(t, []map[string]any{oidcClient([]int{portA, portB}, relay.URL)}, nil)
	up := newEchoUpstream(t)

	dirA, dirB := newDir(t, up.URL), newDir(t, up.URL)
	a := start(t, dirA, append(redisEnv(addr), oidcEnv(p.Issuer, portA)...)...)
	key, err := os.ReadFile(filepath.Join(dirA, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "signing.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := start(t, dirB, append(redisEnv(addr), oidcEnv(p.Issuer, portB)...)...)
	relay.mu.Lock()
	relay.target = a.Public + "/tokengate/oidc/backchannel_logout"
	relay.mu.Unlock()

	// Two sessions of alice: one signed in through A, one through B, each
	// its own provider session (its own browser).
	one, two := newBrowserClient(t), newBrowserClient(t)
	for _, s := range []struct {
		c    *http.Client
		base string
	}{{one, a.Public}, {two, b.Public}} {
		if pg := signInAtProvider(t, s.c, s.base+oidcStart+"?rd=/app", "alice"); pg.Code != 200 || pg.URL.Path != "/app" {
			t.Fatalf("sign-in through %s: %d %s", s.base, pg.Code, pg.URL)
		}
	}
	// Cookies are per host, not port: each browser's cookie reaches both
	// replicas, and both have now cached its token as not revoked.
	for _, base := range []string{a.Public, b.Public} {
		if !signedIn(t, one, base) || !signedIn(t, two, base) {
			t.Fatalf("not signed in on %s before the logout", base)
		}
	}

	// Browser one signs out at the provider (another app's sign-out
	// button); the provider tells tokengate through the back channel.
	if pg := logoutAtProvider(t, one, p.Issuer); pg.Code >= 400 {
		t.Fatalf("logout at the provider: %d %s", pg.Code, pg.Body)
	}
	var tokens []string
	eventually(t, 5*time.Second, "the provider's logout token reaches A", func() bool {
		tokens, _ = relay.seen()
		return len(tokens) == 1
	})
	if _, codes := relay.seen(); codes[0] != http.StatusOK {
		t.Fatalf("A answered the logout token with %d\n%s", codes[0], a.logs)
	}
	for _, base := range []string{a.Public, b.Public} {
		eventually(t, time.Second, "the logged-out session is refused on "+base, func() bool { return !signedIn(t, one, base) })
		if !signedIn(t, two, base) {
			t.Fatalf("alice's other session was ended too on %s", base)
		}
	}
	// A page load with the old cookie goes to the sign-in page.
	if pg := fetch(t, newNoRedirect(one), "GET", b.Public+"/app", nil); pg.Code != http.StatusFound || !strings.HasPrefix(pg.Location, "/tokengate/sign_in") {
		t.Fatalf("old cookie on B: %d %s", pg.Code, pg.Location)
	}

	// Replays are refused on both replicas (the jti is remembered in Redis).
	for _, base := range []string{b.Public, a.Public} {
		r := call(t, "POST", base+"/tokengate/oidc/backchannel_logout", "", "", "Content-Type", "application/x-www-form-urlencoded")
		if r.Code != http.StatusBadRequest {
			t.Fatalf("empty logout form on %s: %d %s", base, r.Code, r.Body)
		}
		resp, err := http.Post(base+"/tokengate/oidc/backchannel_logout", "application/x-www-form-urlencoded",
			strings.NewReader(url.Values{"logout_token": {tokens[0]}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "already used") || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("replayed logout token on %s: %d %s", base, resp.StatusCode, body)
		}
	}
	// The ID token kept for RP-initiated logout is sealed: no JWT readable
	// in the browser.
	if idt := cookieNamed(two, a.Public, "tokengate_oidc"); idt == "" || strings.Contains(idt, "eyJ") {
		t.Fatalf("ID token cookie %q: missing or readable", idt)
	}
	waitLog(t, b, "a logout token was replayed; refused")
}

// newNoRedirect is c (same cookies) without following redirects.
func newNoRedirect(c *http.Client) *http.Client {
	return &http.Client{Jar: c.Jar, Timeout: c.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// A user removed at the provider loses access without signing in again:
// within users.refresh_interval (1m by default, 2s here) a replica asks the
// provider again with the refresh token, the provider refuses it, and the
// identity record shared through Redis ends the user's OIDC sessions on
// both replicas. Another user signed in the same way goes on.
func TestOIDCUserRemovedAtProvider(t *testing.T) {
	addr := testsvc.RedisAddr(t)
	portA, portB := reservePort(t), reservePort(t)
	p := startIDP(t, []map[string]any{oidcClient([]int{portA, portB}, "")}, nil)
	up := newEchoUpstream(t)
	dirA, dirB := newDir(t, up.URL), newDir(t, up.URL)
	env := append(redisEnv(addr), "TOKENGATE_USERS_REFRESH_INTERVAL=2s")
	a := start(t, dirA, append(env, oidcEnv(p.Issuer, portA)...)...)
	key, err := os.ReadFile(filepath.Join(dirA, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "signing.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := start(t, dirB, append(env, oidcEnv(p.Issuer, portB)...)...)

	user := "carol-" + strings.ToLower(randomSuffix(t))
	carol, dave := newBrowserClient(t), newBrowserClient(t)
	if pg := signInAtProvider(t, carol, a.Public+oidcStart+"?rd=/app", user); pg.Code != 200 || pg.URL.Path != "/app" {
		t.Fatalf("sign-in: %d %s", pg.Code, pg.URL)
	}
	if pg := signInAtProvider(t, dave, b.Public+oidcStart+"?rd=/app", "dave-"+user); pg.Code != 200 || pg.URL.Path != "/app" {
		t.Fatalf("sign-in: %d %s", pg.Code, pg.URL)
	}
	// Past the refresh interval, the provider still knows carol: a refresh
	// succeeds and she goes on.
	time.Sleep(2500 * time.Millisecond)
	for _, base := range []string{a.Public, b.Public} {
		if !signedIn(t, carol, base) {
			t.Fatalf("carol refused on %s while the provider still knows her\n%s", base, a.logs)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("A:\n%s\nB:\n%s", a.logs, b.logs)
		}
	})
	p.ChangeAccount(t, map[string]any{"id": user, "removed": true})
	removed := time.Now()
	for _, base := range []string{a.Public, b.Public} {
		eventually(t, 8*time.Second, "carol's session ends on "+base, func() bool { return !signedIn(t, carol, base) })
		if !signedIn(t, dave, base) {
			t.Fatalf("dave's session ended too on %s", base)
		}
	}
	// Within the refresh interval (2s), with slack for a loaded machine.
	if took := time.Since(removed); took > 5*time.Second {
		t.Fatalf("the removal took %s to end the session on both replicas", took)
	} else {
		t.Logf("the removal ended the session on both replicas after %s", took.Round(10*time.Millisecond))
	}
	waitLogAny(t, []*instance{a, b}, "the provider refused the refresh token")
}

func randomSuffix(t *testing.T) string {
	return strings.ReplaceAll(strings.ReplaceAll(t.Name(), "/", "-"), "_", "-") + "-" + time.Now().Format("150405.000000")
}

// waitLogAny waits for a log line holding s on any of the instances.
func waitLogAny(t *testing.T, ins []*instance, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, in := range ins {
			if strings.Contains(in.logs.String(), s) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
