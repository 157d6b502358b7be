package proxy

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

const (
	signInPath  = "/tokengate/sign_in"
	signOutPath = "/tokengate/sign_out"
	htmlAccept  = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" // Chromium's navigation Accept
)

var testCSRFKey = []byte("a test CSRF key of 32 bytes, ok.")

// newBrowserEnv is an env with browser sign-in on, at the default routes.
// Cookies are Secure unless a test's options say otherwise.
func newBrowserEnv(t *testing.T, cfgs ...envConfig) *env {
	t.Helper()
	var cfg envConfig
	if len(cfgs) > 0 {
		cfg = cfgs[0]
	}
	more := cfg.options
	cfg.options = func(o *Options) {
		o.Routes.SignIn = signInPath
		o.Routes.SignOut = signOutPath
		o.Browser.CSRFKey = testCSRFKey
		if more != nil {
			more(o)
		}
	}
	return newEnv(t, cfg)
}

// send is do without following redirects: the tests look at the 302/303.
func (e *env) send(method, target string, hdr http.Header, body string) response {
	e.t.Helper()
	client := *e.srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return e.request(&client, method, target, hdr, body)
}

// page is a rendered form: its CSRF field and the CSRF cookie it came with.
type page struct {
	res        response
	csrf       string
	csrfCookie *http.Cookie
}

var csrfFieldRe = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// getPage GETs a sign-in or sign-out page, sending cookies.
func (e *env) getPage(target string, cookies ...*http.Cookie) page {
	e.t.Helper()
	res := e.send("GET", target, withCookies(http.Header{"Accept": {htmlAccept}}, cookies...), "")
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", target, res.StatusCode, res.body)
	}
	p := page{res: res}
	if m := csrfFieldRe.FindStringSubmatch(res.body); m != nil {
		p.csrf = html.UnescapeString(m[1])
	}
	p.csrfCookie = csrfCookieIn(res.Cookies())
	if p.csrfCookie == nil {
		// The browser already had one: it is reused.
		p.csrfCookie = csrfCookieIn(cookies)
	}
	if p.csrf == "" || p.csrfCookie == nil {
		e.t.Fatalf("GET %s: no CSRF field or cookie\n%s", target, res.body)
	}
	return p
}

// postForm posts form to target with cookies and extra headers.
func (e *env) postForm(target string, form url.Values, hdr http.Header, cookies ...*http.Cookie) response {
	e.t.Helper()
	h := withCookies(http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, cookies...)
	for k, vv := range hdr {
		h[k] = vv
	}
	return e.send("POST", target, h, form.Encode())
}

// signIn signs in through the page like a browser and returns the session
// cookie.
func (e *env) signIn(username, password string) *http.Cookie {
	e.t.Helper()
	p := e.getPage(signInPath)
	res := e.postForm(signInPath, url.Values{"username": {username}, "password": {password}, "csrf": {p.csrf}}, nil, p.csrfCookie)
	if res.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("sign in %s: %d %s", username, res.StatusCode, res.body)
	}
	var c *http.Cookie // __Host-tokengate, or tokengate when it cannot be prefixed
	for _, sc := range res.Cookies() {
		if (sc.Name == sessionCookieName || sc.Name == "tokengate") && sc.Value != "" {
			c = sc
		}
	}
	if c == nil {
		e.t.Fatalf("sign in %s: no session cookie in %v", username, res.Header["Set-Cookie"])
	}
	return c
}

// withCookies adds a Cookie header (name=value pairs only, as browsers send).
func withCookies(h http.Header, cookies ...*http.Cookie) http.Header {
	var pairs []string
	for _, c := range cookies {
		if c != nil {
			pairs = append(pairs, c.Name+"="+c.Value)
		}
	}
	if len(pairs) > 0 {
		h["Cookie"] = append(h["Cookie"], strings.Join(pairs, "; "))
	}
	return h
}

func csrfCookieIn(cs []*http.Cookie) *http.Cookie {
	for _, c := range cs {
		if c != nil && strings.HasSuffix(c.Name, "_csrf") {
			return c
		}
	}
	return nil
}

func cookieNamed(cs []*http.Cookie, names ...string) *http.Cookie {
	for _, c := range cs {
		for _, n := range names {
			if c.Name == n {
				return c
			}
		}
	}
	return nil
}

// session is a request header carrying only the session cookie.
func session(c *http.Cookie, more ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(more); i += 2 {
		h[more[i]] = append(h[more[i]], more[i+1])
	}
	return withCookies(h, c)
}
