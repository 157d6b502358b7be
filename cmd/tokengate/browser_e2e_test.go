package main

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Browser sign-in, end to end: a real headless Chromium, the real binary and
// a real server-rendered app that knows nothing about authentication.

const (
	signInPath  = "/tokengate/sign_in"
	signOutPath = "/tokengate/sign_out"
	cookieName  = "tokengate"
)

// webApp is a legacy server-rendered app: it greets whoever X-Auth-UserId
// names, sets a cookie of its own that scripts may read, and has a form
// that changes state (POST /transfer).
type webApp struct {
	*httptest.Server
	mu   sync.Mutex
	seen []appRequest
}

type appRequest struct {
	Method, Path, User, Cookie string
}

var webAppPage = template.Must(template.New("app").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Legacy app</title></head>
<body>
<h1>Hello, <span id="user">{{.User}}</span></h1>
<p id="path">{{.Method}} {{.Path}}</p>
<p id="cookie">{{.Cookie}}</p>
<form method="post" action="/transfer"><input type="hidden" name="amount" value="10"><button id="transfer" type="submit">Transfer</button></form>
</body></html>
`))

func newWebApp(t *testing.T) *webApp {
	t.Helper()
	a := &webApp{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" { // browsers ask on their own; not counted
			http.NotFound(w, r)
			return
		}
		req := appRequest{Method: r.Method, Path: r.URL.RequestURI(), User: r.Header.Get("X-Auth-UserId"), Cookie: r.Header.Get("Cookie")}
		a.mu.Lock()
		a.seen = append(a.seen, req)
		a.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "app_pref", Value: "blue", Path: "/", SameSite: http.SameSiteLaxMode})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = webAppPage.Execute(w, req)
	}))
	t.Cleanup(a.Close)
	return a
}

// requests returns how many requests reached the app, and the last one.
func (a *webApp) requests() (int, appRequest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		return 0, appRequest{}
	}
	return len(a.seen), a.seen[len(a.seen)-1]
}

// saw reports whether a request with method and path reached the app.
func (a *webApp) saw(method, path string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.seen {
		if r.Method == method && r.Path == path {
			return true
		}
	}
	return false
}

// startBrowserStack runs tokengate with browser sign-in over plain HTTP in
// front of a webApp; extra YAML is appended to the config.
func startBrowserStack(t *testing.T, extra string) (*instance, *webApp) {
	t.Helper()
	app := newWebApp(t)
	dir := newDir(t, app.URL)
	conf := baseConfig(app.URL) + `routes:
  sign_in: ` + signInPath + `
  sign_out: ` + signOutPath + `
` + extra
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return start(t, dir), app
}

// signIn fills the sign-in form the tab shows and submits it; it returns
// the response of the page the browser lands on.
func signIn(t *testing.T, tab context.Context, user, password string) *network.Response {
	t.Helper()
	browse(t, tab,
		chromedp.WaitVisible(chromedp.CSS(`input[name="username"]`)),
		chromedp.SetValue(chromedp.CSS(`input[name="username"]`), user),
		chromedp.SetValue(chromedp.CSS(`input[name="password"]`), password),
	)
	return load(t, tab, chromedp.Click(chromedp.CSS(`form button[type="submit"]`)))
}

// onSignInPage checks the tab shows the sign-in page and returns its rd.
func onSignInPage(t *testing.T, tab context.Context, base string) string {
	t.Helper()
	loc := location(t, tab)
	u, err := url.Parse(loc)
	if err != nil || !strings.HasPrefix(loc, base+"/") || u.Path != signInPath {
		t.Fatalf("browser is at %s, want the sign-in page %s%s", loc, base, signInPath)
	}
	return u.Query().Get("rd")
}

func TestBrowserSignIn(t *testing.T) {
	tab := newTab(t) // first: without chromium, skip before starting anything
	in, app := startBrowserStack(t, "browser:\n  cookie_secure: false\n")
	base := in.Public
	var session string // the cookie's value while signed in

	t.Run("protected page redirects to sign-in", func(t *testing.T) {
		resp := load(t, tab, chromedp.Navigate(base+"/account?tab=2"))
		if resp.Status != http.StatusOK {
			t.Fatalf("sign-in page: status %d", resp.Status)
		}
		if rd := onSignInPage(t, tab, base); rd != "/account?tab=2" {
			t.Fatalf("rd = %q, want the original path and query", rd)
		}
		if n, _ := app.requests(); n != 0 {
			t.Fatalf("the app was reached %d times without credentials", n)
		}
		writeScreenshot(t, tab)
	})

	t.Run("wrong password stays on the sign-in page", func(t *testing.T) {
		resp := signIn(t, tab, "alice", "not-her-password")
		if resp.Status != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.Status)
		}
		onSignInPage(t, tab, base) // the form posts to the bare path; rd is a form field
		if rd := browseValue(t, tab, chromedp.Value(chromedp.CSS(`input[name="rd"]`))); rd != "/account?tab=2" {
			t.Fatalf("the form lost rd: %q", rd)
		}
		if c := cookie(t, tab, base, cookieName); c != nil {
			t.Fatalf("a failed sign-in set the cookie: %s", describeCookie(c))
		}
		if n, _ := app.requests(); n != 0 {
			t.Fatal("the app was reached after a failed sign-in")
		}
	})

	t.Run("signing in lands back on the page with the identity", func(t *testing.T) {
		resp := signIn(t, tab, "alice", testUsers["alice"])
		if resp.Status != http.StatusOK {
			t.Fatalf("status %d", resp.Status)
		}
		if loc := location(t, tab); loc != base+"/account?tab=2" {
			t.Fatalf("landed on %s, want %s/account?tab=2", loc, base)
		}
		if user := browseValue(t, tab, chromedp.Text(chromedp.CSS("#user"))); user != "alice" {
			t.Fatalf("the page greets %q", user)
		}
		if _, last := app.requests(); last.User != "alice" || last.Path != "/account?tab=2" {
			t.Fatalf("the app received %+v", last)
		}
		c := cookie(t, tab, base, cookieName)
		if c == nil {
			t.Fatal("no session cookie after signing in")
		}
		session = c.Value
	})

	t.Run("reload keeps the session", func(t *testing.T) {
		n, _ := app.requests()
		if resp := load(t, tab, chromedp.Reload()); resp.Status != http.StatusOK {
			t.Fatalf("reload: status %d", resp.Status)
		}
		if user := browseValue(t, tab, chromedp.Text(chromedp.CSS("#user"))); user != "alice" {
			t.Fatalf("after a reload the page greets %q", user)
		}
		if m, last := app.requests(); m != n+1 || last.User != "alice" {
			t.Fatalf("the reload did not reach the app as alice: %d -> %d, %+v", n, m, last)
		}
	})

	t.Run("cookie flags", func(t *testing.T) {
		c := cookie(t, tab, base, cookieName)
		if c == nil {
			t.Fatal("no session cookie")
		}
		if !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax || c.Path != "/" || c.Secure {
			t.Fatalf("cookie flags: HttpOnly=%v SameSite=%q Path=%q Secure=%v; want true, Lax, /, false (cookie_secure: false)",
				c.HTTPOnly, c.SameSite, c.Path, c.Secure)
		}
		if c.Domain != "127.0.0.1" {
			t.Fatalf("cookie domain %q: want a host-only cookie", c.Domain)
		}
		// Max-Age is the token's remaining life: the default ttl, 1h.
		left := time.Until(time.Unix(int64(c.Expires), 0))
		if c.Session || left < 55*time.Minute || left > 61*time.Minute {
			t.Fatalf("cookie expires in %s (session=%v), want about the token's 1h", left, c.Session)
		}
	})

	t.Run("document.cookie cannot read the session", func(t *testing.T) {
		jar := browseValue(t, tab, chromedp.Evaluate[string](`document.cookie`))
		if !strings.Contains(jar, "app_pref=blue") {
			t.Fatalf("document.cookie = %q: the app's own cookie should be readable", jar)
		}
		if strings.Contains(jar, cookieName+"=") {
			t.Fatalf("document.cookie = %q exposes the session", jar)
		}
		_, last := app.requests()
		if !strings.Contains(last.Cookie, "app_pref=blue") || strings.Contains(last.Cookie, cookieName+"=") {
			t.Fatalf("the app received Cookie %q: want its own cookie and not tokengate's", last.Cookie)
		}
	})

	t.Run("cross-site form post is refused", func(t *testing.T) {
		// Another origin on the same loopback address (another port) is
		// same-site, so SameSite=Lax still sends the cookie: only the
		// cross-origin check stands between this form and the app.
		attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><title>Win a prize</title>
<form method="post" action="%s/transfer"><input type="hidden" name="amount" value="1000000"><button id="go" type="submit">Claim</button></form>`, base)
		}))
		defer attacker.Close()
		_, port, _ := strings.Cut(strings.TrimPrefix(attacker.URL, "http://"), ":")
		for _, origin := range []string{attacker.URL, "http://localhost:" + port} {
			load(t, tab, chromedp.Navigate(origin+"/"))
			resp := load(t, tab, chromedp.Click(chromedp.CSS("#go")))
			if app.saw("POST", "/transfer") {
				t.Fatalf("a form on %s reached the app", origin)
			}
			switch {
			case resp.Status == http.StatusForbidden:
			case origin != attacker.URL && resp.Status == http.StatusUnauthorized:
				// localhost is another site: the Lax cookie is not
				// sent, so the post arrives unauthenticated.
			default:
				t.Fatalf("form post from %s: status %d, want 403", origin, resp.Status)
			}
		}
		// The same form on the app's own page goes through.
		load(t, tab, chromedp.Navigate(base+"/account"))
		if resp := load(t, tab, chromedp.Click(chromedp.CSS("#transfer"))); resp.Status != http.StatusOK {
			t.Fatalf("same-origin form post: status %d", resp.Status)
		}
		if _, last := app.requests(); last.Method != "POST" || last.Path != "/transfer" || last.User != "alice" {
			t.Fatalf("same-origin form post reached the app as %+v", last)
		}
	})

	t.Run("sign out ends the session and the old cookie is refused", func(t *testing.T) {
		if session == "" {
			t.Skip("not signed in")
		}
		load(t, tab, chromedp.Navigate(base+signOutPath))
		resp := load(t, tab, chromedp.Click(`//button[normalize-space()="Sign out"]`))
		if resp.Status != http.StatusOK {
			t.Fatalf("after signing out: status %d", resp.Status)
		}
		onSignInPage(t, tab, base)
		if notice := browseValue(t, tab, chromedp.Text(chromedp.CSS(".notice"))); notice != "You have signed out." {
			t.Errorf("the sign-in page after signing out says %q", notice)
		}
		if c := cookie(t, tab, base, cookieName); c != nil {
			t.Fatalf("the cookie survived signing out: %s", describeCookie(c))
		}
		n, _ := app.requests()
		load(t, tab, chromedp.Navigate(base+"/account"))
		if rd := onSignInPage(t, tab, base); rd != "/account" {
			t.Fatalf("after signing out /account led to rd=%q", rd)
		}
		// Replay the old cookie value, as someone who copied it would.
		for _, accept := range []string{"application/json", "text/html"} {
			req, _ := http.NewRequest("GET", base+"/account", nil)
			req.Header.Set("Accept", accept)
			req.AddCookie(&http.Cookie{Name: cookieName, Value: session})
			resp, err := noRedirects.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := map[string]int{"application/json": 401, "text/html": 302}[accept]; resp.StatusCode != want {
				t.Fatalf("old cookie replayed (Accept %s): status %d, want %d", accept, resp.StatusCode, want)
			}
		}
		if m, _ := app.requests(); m != n {
			t.Fatalf("a signed-out session reached the app (%d requests, was %d)", m, n)
		}
	})
}

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// writeScreenshot saves the sign-in page the tab shows as docs/sign-in.png
// when TOKENGATE_TEST_WRITE_SCREENSHOT=1 (the README shows it); plain test runs
// leave the tree alone.
func writeScreenshot(t *testing.T, tab context.Context) {
	t.Helper()
	if os.Getenv("TOKENGATE_TEST_WRITE_SCREENSHOT") != "1" {
		return
	}
	browse(t, tab, chromedp.EmulateViewport(640, 460))
	png := browseValue(t, tab, chromedp.CaptureScreenshot())
	path := filepath.Join("..", "..", "docs", "sign-in.png")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

// TestBrowserSignOutEverywhere also runs with the default cookie_secure:
// true, as in production. Chromium keeps Secure (and __Host-) cookies set
// by http://127.0.0.1 (a loopback origin counts as secure), so the whole
// flow works and the flag can be read back.
func TestBrowserSignOutEverywhere(t *testing.T) {
	laptop, phone := newTab(t), newTab(t) // two browser contexts: two devices
	in, app := startBrowserStack(t, "")
	base := in.Public
	for _, tab := range []context.Context{laptop, phone} {
		load(t, tab, chromedp.Navigate(base+"/inbox"))
		if resp := signIn(t, tab, "bob", testUsers["bob"]); resp.Status != http.StatusOK || location(t, tab) != base+"/inbox" {
			t.Fatalf("sign-in: status %d at %s", resp.Status, location(t, tab))
		}
	}
	// Secure and host-only: the __Host- name (a sibling subdomain cannot plant it).
	if c := cookie(t, laptop, base, "__Host-"+cookieName); c == nil || !c.Secure || !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax {
		t.Fatalf("cookie with cookie_secure: true: %s", describeCookie(c))
	}
	apiToken := login(t, base, "bob", testUsers["bob"])

	load(t, laptop, chromedp.Navigate(base+signOutPath))
	resp := load(t, laptop, chromedp.Click(`//button[normalize-space()="Sign out everywhere"]`))
	if resp.Status != http.StatusOK {
		t.Fatalf("after signing out everywhere: status %d", resp.Status)
	}
	onSignInPage(t, laptop, base)
	if notice := browseValue(t, laptop, chromedp.Text(chromedp.CSS(".notice"))); !strings.HasPrefix(notice, "You have signed out everywhere: every session") {
		t.Errorf("the sign-in page after signing out everywhere says %q", notice)
	}

	n, _ := app.requests()
	load(t, phone, chromedp.Reload())
	if rd := onSignInPage(t, phone, base); rd != "/inbox" {
		t.Fatalf("the other device reloaded to rd=%q", rd)
	}
	if r := call(t, "GET", base+"/inbox", apiToken, ""); r.Code != http.StatusUnauthorized {
		t.Fatalf("bob's API token after signing out everywhere: %d", r.Code)
	}
	if m, _ := app.requests(); m != n {
		t.Fatal("a session signed out everywhere reached the app")
	}
}

func TestBrowserOpenRedirects(t *testing.T) {
	tab := newTab(t)
	in, app := startBrowserStack(t, "browser:\n  cookie_secure: false\n")
	base := in.Public
	var evilHits sync.Map
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evilHits.Store(r.URL.Path, true)
		fmt.Fprint(w, "phished")
	}))
	defer evil.Close()
	host := strings.TrimPrefix(evil.URL, "http://") // 127.0.0.1:port

	signInWith := func(t *testing.T, rd string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(tab, browserActionTimeout)
		defer cancel()
		if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
		load(t, tab, chromedp.Navigate(base+signInPath+"?rd="+url.QueryEscape(rd)))
		if resp := signIn(t, tab, "alice", testUsers["alice"]); resp.Status != http.StatusOK {
			t.Fatalf("rd %q: status %d", rd, resp.Status)
		}
		return location(t, tab)
	}

	// A safe rd is honoured, so the variants below are refused for what
	// they are, not because rd is ignored.
	if loc := signInWith(t, "/inbox?page=2"); loc != base+"/inbox?page=2" {
		t.Fatalf("rd=/inbox?page=2 landed on %s", loc)
	}
	for _, rd := range []string{
		"//" + host + "/a",
		"///" + host + "/a",
		"/\\" + host + "/a",
		"\\\\" + host + "/a",
		"/\\/" + host + "/a",
		"http://" + host + "/a",
		"https://" + host + "/a",
		"http:" + host + "/a",
		" //" + host + "/a",
		"\t//" + host + "/a",
		"/\t/" + host + "/a",
		"%2F%2F" + host + "/a",
		"%5C%5C" + host + "/a",
		"/%2F%2F" + host + "/a",
		"/%5C" + host + "/a",
		"javascript:alert(document.domain)",
	} {
		t.Run(fmt.Sprintf("%q", rd), func(t *testing.T) {
			if loc := signInWith(t, rd); loc != base+"/" {
				t.Fatalf("landed on %s, want %s/", loc, base)
			}
		})
	}
	evilHits.Range(func(k, _ any) bool {
		t.Errorf("the browser was sent to the other host (%v)", k)
		return true
	})
	if !app.saw("GET", "/") {
		t.Error("the app never served /")
	}
}

// TestDemoInBrowser walks through the demo as its instructions tell a new
// user to: open the page, sign in as marco, be greeted, reload, sign out, be
// asked to sign in again.
func TestDemoInBrowser(t *testing.T) {
	tab := newTab(t)
	d := startDemo(t)
	load(t, tab, chromedp.Navigate(d.base+"/"))
	onSignInPage(t, tab, d.base)
	if resp := signIn(t, tab, demoUser, demoPassword); resp.Status != http.StatusOK {
		t.Fatalf("signing in as %s: status %d", demoUser, resp.Status)
	}
	greeting := func() string { return browseValue(t, tab, chromedp.Text(chromedp.CSS("h1"))) }
	if loc, h1 := location(t, tab), greeting(); loc != d.base+"/" || h1 != "Hello, "+demoUser {
		t.Fatalf("after signing in: %s says %q", loc, h1)
	}
	if c := cookie(t, tab, d.base, cookieName); c == nil || c.Secure {
		t.Fatalf("the demo runs on plain HTTP, its cookie must not be Secure: %s", describeCookie(c))
	}
	load(t, tab, chromedp.Reload())
	if h1 := greeting(); h1 != "Hello, "+demoUser {
		t.Fatalf("after a reload the page says %q", h1)
	}
	load(t, tab, chromedp.Click(chromedp.CSS("#sign-out")))
	if loc := location(t, tab); loc != d.base+signOutPath {
		t.Fatalf("the sign-out link led to %s", loc)
	}
	load(t, tab, chromedp.Click(`//button[normalize-space()="Sign out"]`))
	onSignInPage(t, tab, d.base)
	load(t, tab, chromedp.Navigate(d.base+"/"))
	onSignInPage(t, tab, d.base)
}
