package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"tokengate/internal/testkit"
	"tokengate/internal/testsvc"
)

// The OpenID Connect tests run a real provider: oidc-provider (Node.js,
// OpenID Certified) from npm, pinned, installed once into a cache directory
// the tests own and reused across runs (.ci/run installs it ahead).
const oidcProviderVersion = "9.13.3"

var oidcInstall struct {
	once   sync.Once
	module string
	err    error
}

// oidcProviderModule returns the installed package's entry file, installing
// it on first use. Without node and npm the test is skipped (failed under
// TOKENGATE_TEST_REQUIRE_SERVICES=1).
func oidcProviderModule(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testsvc.Required() {
				t.Fatalf("required service unavailable (TOKENGATE_TEST_REQUIRE_SERVICES=1): %s not installed", tool)
			}
			t.Skipf("skipping: %s not installed (needed to run oidc-provider)", tool)
		}
	}
	oidcInstall.once.Do(func() { oidcInstall.module, oidcInstall.err = installOIDCProvider() })
	if oidcInstall.err != nil {
		if testsvc.Required() {
			t.Fatalf("installing oidc-provider: %v", oidcInstall.err)
		}
		t.Skipf("skipping: installing oidc-provider: %v", oidcInstall.err)
	}
	return oidcInstall.module
}

func oidcCacheDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		var err error
		if base, err = os.UserCacheDir(); err != nil {
			return "", err
		}
	}
	return filepath.Join(base, "tokengate-test", "oidc-provider-"+oidcProviderVersion), nil
}

func installOIDCProvider() (string, error) {
	dir, err := oidcCacheDir()
	if err != nil {
		return "", err
	}
	module := filepath.Join(dir, "node_modules", "oidc-provider", "lib", "index.js")
	if _, err := os.Stat(module); err == nil {
		return module, nil
	}
	// Install beside, then rename: a half-finished install is never used.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), []byte(`{"name":"tokengate-test-idp","private":true,"type":"module"}`), 0o644); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--silent", "oidc-provider@"+oidcProviderVersion)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install: %v: %s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(module); statErr == nil {
			return module, nil // another test binary won the race
		}
		return "", err
	}
	return module, nil
}

// idp is a running oidc-provider.
type idp struct {
	Issuer string
	logs   *testkit.LogBuffer
}

// startIDP runs testdata/oidc-provider.mjs with these clients and groups.
func startIDP(t *testing.T, clients []map[string]any, groups map[string][]string) *idp {
	t.Helper()
	module := oidcProviderModule(t)
	if clients == nil {
		clients = []map[string]any{}
	}
	cj, _ := json.Marshal(clients)
	if groups == nil {
		groups = map[string][]string{}
	}
	gj, _ := json.Marshal(groups)
	script, _ := filepath.Abs(filepath.Join("testdata", "oidc-provider.mjs"))
	cmd := exec.Command("node", script)
	cmd.Env = append(os.Environ(), "OIDC_PROVIDER_MODULE="+module, "OIDC_CLIENTS="+string(cj), "OIDC_GROUPS="+string(gj), "NODE_ENV=test")
	p := &idp{logs: &testkit.LogBuffer{}}
	cmd.Stderr = p.logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("oidc-provider's log:\n%s", p.logs)
		}
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var line struct{ Issuer string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Issuer != "" {
				ready <- line.Issuer
			}
			_, _ = p.logs.Write(append(sc.Bytes(), '\n'))
		}
	}()
	select {
	case p.Issuer = <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("oidc-provider did not start within 30s:\n%s", p.logs)
	}
	return p
}

// reservePort returns a free loopback port for a tokengate instance whose
// redirect URL must be registered at the provider before it starts.
func reservePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const (
	oidcClientID     = "tokengate"
	oidcClientSecret = "tokengate-test-client-secret-0123456789"
	oidcCallback     = "/tokengate/oidc/callback"
	oidcStart        = "/tokengate/oidc/sign_in"
)

// oidcClient is the provider's registration of tokengate at these ports;
// its back-channel logout URL is backchannel, or the first port's route.
func oidcClient(ports []int, backchannel string) map[string]any {
	var redirects, postLogout []string
	for _, p := range ports {
		redirects = append(redirects, fmt.Sprintf("http://127.0.0.1:%d%s", p, oidcCallback))
		postLogout = append(postLogout, fmt.Sprintf("http://127.0.0.1:%d/tokengate/sign_in", p))
	}
	c := map[string]any{
		"client_id":                 oidcClientID,
		"client_secret":             oidcClientSecret,
		"redirect_uris":             redirects,
		"post_logout_redirect_uris": postLogout,
		"grant_types":               []string{"authorization_code", "refresh_token"},
		"response_types":            []string{"code"},
	}
	if backchannel == "" {
		backchannel = fmt.Sprintf("http://127.0.0.1:%d/tokengate/oidc/backchannel_logout", ports[0])
	}
	// sid in the ID token and in the logout token.
	c["backchannel_logout_uri"] = backchannel
	c["backchannel_logout_session_required"] = true
	return c
}

// oidcEnv configures an instance on port for the provider.
func oidcEnv(issuer string, port int) []string {
	return []string{
		fmt.Sprintf("TOKENGATE_LISTEN=127.0.0.1:%d", port),
		"TOKENGATE_BROWSER_COOKIE_SECURE=false",
		"TOKENGATE_OIDC_ISSUER=" + issuer,
		"TOKENGATE_OIDC_CLIENT_ID=" + oidcClientID,
		"TOKENGATE_OIDC_CLIENT_SECRET=" + oidcClientSecret,
		fmt.Sprintf("TOKENGATE_OIDC_REDIRECT_URL=http://127.0.0.1:%d%s", port, oidcCallback),
		"TOKENGATE_OIDC_NAME=Test IdP",
	}
}

// newBrowserClient is an HTTP client with a cookie jar, as a browser has.
// Redirects are followed, except to a path in stopAt (the response with
// the redirect is returned, to look at or replay).
func newBrowserClient(t *testing.T, stopAt ...string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:     jar,
		Timeout: 20 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > 20 {
				return fmt.Errorf("too many redirects")
			}
			for _, p := range stopAt {
				if req.URL.Path == p {
					return http.ErrUseLastResponse
				}
			}
			return nil
		},
	}
}

var (
	formAction = regexp.MustCompile(`<form[^>]*action="([^"]+)"`)
	promptName = regexp.MustCompile(`name="prompt" value="(login|consent)"`)
)

// page is a response read whole.
type page struct {
	Code     int
	Body     string
	URL      *url.URL // the request that got it
	Location string
	Header   http.Header
}

func fetch(t *testing.T, c *http.Client, method, target string, form url.Values) page {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return page{Code: resp.StatusCode, Body: string(b), URL: resp.Request.URL, Location: resp.Header.Get("Location"), Header: resp.Header}
}

// signInAtProvider follows start (tokengate's sign-in link, or any URL that
// leads to the provider) through the provider's login and consent pages as
// login, and returns where it ends: the app's page, tokengate's error page,
// or (when c stops there) the redirect to the callback.
func signInAtProvider(t *testing.T, c *http.Client, start, login string) page {
	t.Helper()
	p := fetch(t, c, "GET", start, nil)
	for range 5 {
		m := promptName.FindStringSubmatch(p.Body)
		a := formAction.FindStringSubmatch(p.Body)
		if p.Code != 200 || m == nil || a == nil {
			return p
		}
		action, err := p.URL.Parse(html.UnescapeString(a[1]))
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{"prompt": {m[1]}}
		if m[1] == "login" {
			form.Set("login", login)
			form.Set("password", "any")
		}
		p = fetch(t, c, "POST", action.String(), form)
	}
	t.Fatalf("still at the provider after 5 forms: %d %s", p.Code, p.URL)
	return p
}

// logoutAtProvider ends the browser's session at the provider itself (its
// end_session page and confirmation form), as a user signing out of another
// app would; the provider then sends the back-channel logout tokens.
func logoutAtProvider(t *testing.T, c *http.Client, issuer string) page {
	t.Helper()
	p := fetch(t, c, "GET", issuer+"/session/end", nil)
	a := formAction.FindStringSubmatch(p.Body)
	x := regexp.MustCompile(`name="xsrf" value="([^"]+)"`).FindStringSubmatch(p.Body)
	if p.Code != 200 || a == nil || x == nil {
		t.Fatalf("provider's logout page: %d %s", p.Code, p.Body)
	}
	action, _ := p.URL.Parse(html.UnescapeString(a[1]))
	return fetch(t, c, "POST", action.String(), url.Values{"xsrf": {x[1]}, "logout": {"yes"}})
}

// cookieNamed is the jar's cookie name for u ("" when none).
func cookieNamed(c *http.Client, u, name string) string {
	pu, _ := url.Parse(u)
	for _, ck := range c.Jar.Cookies(pu) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}
