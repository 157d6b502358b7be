package testsvc

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"html"
	"io"
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
)

// The OpenID Connect tests run a real provider: oidc-provider (Node.js,
// OpenID Certified) from npm, pinned, installed once into a cache directory
// the tests own ($XDG_CACHE_HOME or the user cache dir, under
// tokengate-test/) and reused across runs; .ci/run installs it ahead.
const OIDCProviderVersion = "9.13.3"

//go:embed oidc-provider.mjs
var oidcProviderScript []byte

var oidcInstall struct {
	once   sync.Once
	module string
	err    error
}

// OIDCProviderDir is where the pinned oidc-provider is installed.
func OIDCProviderDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		var err error
		if base, err = os.UserCacheDir(); err != nil {
			return "", err
		}
	}
	return filepath.Join(base, "tokengate-test", "oidc-provider-"+OIDCProviderVersion), nil
}

// oidcProviderModule returns the installed package's entry file, installing
// it on first use. Without node and npm the test is skipped (failed under
// TOKENGATE_TEST_REQUIRE_SERVICES=1).
func oidcProviderModule(t testing.TB) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "%s not installed (needed to run oidc-provider)", tool)
		}
	}
	oidcInstall.once.Do(func() { oidcInstall.module, oidcInstall.err = installOIDCProvider() })
	if oidcInstall.err != nil {
		unavailable(t, "installing oidc-provider: %v", oidcInstall.err)
	}
	return oidcInstall.module
}

func installOIDCProvider() (string, error) {
	dir, err := OIDCProviderDir()
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
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--silent", "oidc-provider@"+OIDCProviderVersion)
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

// OIDCProvider is a running oidc-provider on 127.0.0.1.
type OIDCProvider struct {
	Issuer string
	mu     sync.Mutex
	logs   bytes.Buffer
}

// Logs is what the provider printed.
func (p *OIDCProvider) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *OIDCProvider) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.Write(b)
}

// StartOIDCProvider runs oidc-provider with these clients (client
// metadata: client_id, client_secret, redirect_uris, ...) and accounts'
// groups; it stops when the test ends. Sign-in goes through its
// development pages: any login name is accepted (it becomes sub), any
// password.
func StartOIDCProvider(t testing.TB, clients []map[string]any, groups map[string][]string) *OIDCProvider {
	t.Helper()
	module := oidcProviderModule(t)
	if clients == nil {
		clients = []map[string]any{}
	}
	if groups == nil {
		groups = map[string][]string{}
	}
	cj, _ := json.Marshal(clients)
	gj, _ := json.Marshal(groups)
	script := filepath.Join(t.TempDir(), "oidc-provider.mjs")
	if err := os.WriteFile(script, oidcProviderScript, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", script)
	cmd.Env = append(os.Environ(), "OIDC_PROVIDER_MODULE="+module, "OIDC_CLIENTS="+string(cj), "OIDC_GROUPS="+string(gj), "NODE_ENV=test")
	p := &OIDCProvider{}
	cmd.Stderr = p
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
			t.Logf("oidc-provider's log:\n%s", p.Logs())
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
			_, _ = p.Write(append(sc.Bytes(), '\n'))
		}
	}()
	select {
	case p.Issuer = <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("oidc-provider did not start within 30s:\n%s", p.Logs())
	}
	return p
}

// ChangeAccount changes an account while the provider runs:
// {"id": ..., "groups": [...]} or {"id": ..., "removed": true}.
func (p *OIDCProvider) ChangeAccount(t testing.TB, change map[string]any) {
	t.Helper()
	b, _ := json.Marshal(change)
	resp, err := http.Post(p.Issuer+"/test/account", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("changing an account at the provider: %d", resp.StatusCode)
	}
}

// NewBrowserClient is an HTTP client with a cookie jar, as a browser has.
// Redirects are followed, except to a path in stopAt (the response with
// the redirect is returned, to look at or replay).
func NewBrowserClient(stopAt ...string) *http.Client {
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

// Page is a response read whole.
type Page struct {
	Code     int
	Body     string
	URL      *url.URL // the request that got it
	Location string
	Header   http.Header
}

// Fetch sends a browser-like request (Accept: text/html; form: a posted form).
func Fetch(t testing.TB, c *http.Client, method, target string, form url.Values) Page {
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
	return Page{Code: resp.StatusCode, Body: string(b), URL: resp.Request.URL, Location: resp.Header.Get("Location"), Header: resp.Header}
}

var (
	// FormAction finds a page's first form's action.
	FormAction = regexp.MustCompile(`<form[^>]*action="([^"]+)"`)
	promptName = regexp.MustCompile(`name="prompt" value="(login|consent)"`)
	xsrfField  = regexp.MustCompile(`name="xsrf" value="([^"]+)"`)
)

// SignInAtProvider follows start (tokengate's sign-in link, or any URL
// that leads to the provider) through the provider's login and consent
// pages as login, and returns where it ends: the app's page, tokengate's
// error page, or (when c stops there) the redirect to the callback.
func SignInAtProvider(t testing.TB, c *http.Client, start, login string) Page {
	t.Helper()
	p := Fetch(t, c, "GET", start, nil)
	for range 5 {
		m := promptName.FindStringSubmatch(p.Body)
		a := FormAction.FindStringSubmatch(p.Body)
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
		p = Fetch(t, c, "POST", action.String(), form)
	}
	t.Fatalf("still at the provider after 5 forms: %d %s", p.Code, p.URL)
	return p
}

// ConfirmProviderLogout answers the provider's logout page p (its
// confirmation form): the provider ends its session, sends the back-channel
// logout tokens and redirects where the logout request said.
func ConfirmProviderLogout(t testing.TB, c *http.Client, p Page) Page {
	t.Helper()
	a := FormAction.FindStringSubmatch(p.Body)
	x := xsrfField.FindStringSubmatch(p.Body)
	if p.Code != 200 || a == nil || x == nil {
		t.Fatalf("provider's logout page: %d %s", p.Code, p.Body)
	}
	action, _ := p.URL.Parse(html.UnescapeString(a[1]))
	return Fetch(t, c, "POST", action.String(), url.Values{"xsrf": {x[1]}, "logout": {"yes"}})
}

// LogoutAtProvider ends c's session at the provider itself (its
// end_session page and confirmation), as signing out of another app would.
func LogoutAtProvider(t testing.TB, c *http.Client, issuer string) Page {
	t.Helper()
	return ConfirmProviderLogout(t, c, Fetch(t, c, "GET", issuer+"/session/end", nil))
}
