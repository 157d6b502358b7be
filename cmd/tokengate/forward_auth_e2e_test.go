package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tokengate/internal/testkit"
	"tokengate/internal/testsvc"
)

// The forward-auth tests put the real nginx and Caddy, configured with the
// files in deploy/forward-auth/ exactly as shipped (placeholders filled
// in), in front of a real upstream, with the real tokengate binary in
// auth-server mode answering their auth subrequests.

const (
	nginxPath = "/usr/sbin/nginx"
	caddyPath = "/usr/bin/caddy"
)

// needBinary skips (or, with TOKENGATE_TEST_REQUIRE_SERVICES=1, fails)
// when an ingress is not installed.
func needBinary(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if testsvc.Required() {
			t.Fatalf("required service unavailable (TOKENGATE_TEST_REQUIRE_SERVICES=1): %s: %v", path, err)
		}
		t.Skipf("skipping: %s not installed", path)
	}
}

func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// startAuthServer runs tokengate with upstream "" and the routes of
// deploy/forward-auth/tokengate.yaml, trusting loopback (the ingress);
// env overrides settings (TOKENGATE_...).
func startAuthServer(t *testing.T, env ...string) *instance {
	t.Helper()
	dir := newDir(t, `""`)
	extra := `trusted_proxies: ["127.0.0.1/32"]
routes:
  login: /tokengate/login
  logout: /tokengate/logout
  logout_all: /tokengate/logout_all
  session: /tokengate/session
  users: /tokengate/users
  jwks: /tokengate/jwks.json
  sign_in: /tokengate/sign_in
  sign_out: /tokengate/sign_out
  verify: /tokengate/verify
browser:
  cookie_secure: false
  allowed_redirect_hosts: ["127.0.0.1"]
`
	f, err := os.OpenFile(filepath.Join(dir, "config.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return start(t, dir, env...)
}

func shippedFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "forward-auth", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ingress is a running nginx or Caddy.
type ingress struct {
	base string // http://127.0.0.1:port
	logs func() string
}

func waitListening(t *testing.T, addr string, cmd *exec.Cmd, exited chan struct{}, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before listening:\n%s", cmd.Path, logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s within 20s:\n%s", cmd.Path, addr, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runIngress starts cmd, stops it (by its pid) when the test ends, and
// waits for port.
func runIngress(t *testing.T, cmd *exec.Cmd, port string, logs func() string) ingress {
	t.Helper()
	// Its own process group: nginx's workers are stopped with their master.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // both stop at once on SIGTERM
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group we created
			<-exited
		}
	})
	waitListening(t, "127.0.0.1:"+port, cmd, exited, logs)
	return ingress{base: "http://127.0.0.1:" + port, logs: logs}
}

// startNginx renders nginx.conf.template into an http {} of a minimal main
// config in a temp prefix and runs nginx in the foreground.
func startNginx(t *testing.T, tokengateAddr, upstreamAddr string) ingress {
	t.Helper()
	needBinary(t, nginxPath)
	dir := t.TempDir()
	port := freeLoopbackPort(t)
	site := strings.NewReplacer(
		"${LISTEN_PORT}", "127.0.0.1:"+port,
		"${TOKENGATE_ADDR}", tokengateAddr,
		"${UPSTREAM_ADDR}", upstreamAddr,
	).Replace(shippedFile(t, "nginx.conf.template"))
	if strings.Contains(site, "${") {
		t.Fatal("nginx.conf.template has a placeholder the test does not fill")
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers read and write the temp dirs below
	}
	main := fmt.Sprintf(`%s
worker_processes 1;
events { worker_connections 128; }
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/site.conf;
}
`, user, dir)
	for name, text := range map[string]string{"site.conf": site, "nginx.conf": main} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	errLog := filepath.Join(dir, "error.log")
	cmd := exec.Command(nginxPath, "-p", dir, "-e", errLog, "-c", filepath.Join(dir, "nginx.conf"),
		"-g", fmt.Sprintf("daemon off; pid %s/nginx.pid; error_log %s;", dir, errLog))
	out := &testkit.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	logs := func() string {
		b, _ := os.ReadFile(errLog)
		return out.String() + string(b)
	}
	return runIngress(t, cmd, port, logs)
}

// startCaddy runs the shipped Caddyfile; Caddy fills its {$VAR}
// placeholders from the environment. HOME and XDG dirs are temp dirs.
func startCaddy(t *testing.T, tokengateAddr, upstreamAddr string) ingress {
	t.Helper()
	needBinary(t, caddyPath)
	dir := t.TempDir()
	port := freeLoopbackPort(t)
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(shippedFile(t, "Caddyfile")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyPath, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"XDG_DATA_HOME=" + filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"LISTEN_PORT=" + port,
		"TOKENGATE_ADDR=" + tokengateAddr,
		"UPSTREAM_ADDR=" + upstreamAddr,
	}
	out := &testkit.LogBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return runIngress(t, cmd, port, out.String)
}

type ingressKind struct {
	name  string
	start func(t *testing.T, tokengateAddr, upstreamAddr string) ingress
	// verifyCookie: the app's Cookie header is verify's answer, exactly
	// (nginx); otherwise the config filters it itself (Caddy's regex leaves
	// empty pairs behind).
	verifyCookie bool
	// renewsCookie: the config copies a renewed session cookie from
	// verify's 200 to the app's response (both shipped configs do).
	renewsCookie bool
	// proxiesWebSocket: the config forwards a WebSocket upgrade to the app
	// (the nginx template does not: the app gets a plain request).
	proxiesWebSocket bool
}

var ingresses = []ingressKind{{"nginx", startNginx, true, true, false}, {"caddy", startCaddy, false, true, true}}

// forwardAuthSetup is tokengate, an upstream and one ingress in front.
type forwardAuthSetup struct {
	tg *instance
	up *echoUpstream
	in ingress
}

func newForwardAuth(t *testing.T, kind ingressKind, env ...string) forwardAuthSetup {
	t.Helper()
	up := newEchoUpstream(t)
	tg := startAuthServer(t, env...)
	in := kind.start(t, strings.TrimPrefix(tg.Public, "http://"), strings.TrimPrefix(up.URL, "http://"))
	return forwardAuthSetup{tg: tg, up: up, in: in}
}

// fetch sends one request through the ingress without following
// redirects; headers are sent with exactly the spelling given.
func (s forwardAuthSetup) fetch(t *testing.T, method, path string, hdr [][2]string) reply {
	t.Helper()
	req, err := http.NewRequest(method, s.in.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range hdr {
		req.Header[kv[0]] = append(req.Header[kv[0]], kv[1])
	}
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{Code: res.StatusCode, Header: res.Header, Body: string(b)}
}

// identitySeen is every value of every spelling of X-Auth-UserId that the
// upstream received for path.
func (s forwardAuthSetup) identitySeen(path string) (values []string, reached bool) {
	s.up.mu.Lock()
	defer s.up.mu.Unlock()
	for i, p := range s.up.paths {
		if p != path {
			continue
		}
		reached = true
		for k, vv := range s.up.seen[i] {
			if strings.ReplaceAll(strings.ToLower(k), "_", "-") == "x-auth-userid" {
				values = append(values, vv...)
			}
		}
	}
	return values, reached
}

// cookieSeen is the Cookie header values the upstream received for path.
func (s forwardAuthSetup) cookieSeen(path string) (values []string, reached bool) {
	s.up.mu.Lock()
	defer s.up.mu.Unlock()
	for i, p := range s.up.paths {
		if p == path {
			values, reached = append(values, s.up.seen[i]["Cookie"]...), true
		}
	}
	return values, reached
}

// cookiePairs is the name=value pairs of Cookie header values, in order,
// empty ones dropped.
func cookiePairs(values []string) []string {
	var pairs []string
	for _, v := range values {
		for part := range strings.SplitSeq(v, ";") {
			if p := strings.TrimSpace(part); p != "" {
				pairs = append(pairs, p)
			}
		}
	}
	return pairs
}

func (s forwardAuthSetup) login(t *testing.T) string {
	t.Helper()
	r := call(t, "POST", s.in.base+"/tokengate/login", "", fmt.Sprintf(`{"username":"alice","password":%q}`, testUsers["alice"]))
	tok, _ := r.json(t)["token"].(string)
	if r.Code != http.StatusOK || tok == "" {
		t.Fatalf("login through the ingress: %d %s\n%s\n%s", r.Code, r.Body, s.in.logs(), s.tg.logs.String())
	}
	return tok
}

func TestForwardAuthIngress(t *testing.T) {
	for _, kind := range ingresses {
		t.Run(kind.name, func(t *testing.T) {
			s := newForwardAuth(t, kind)
			logs := func() string { return s.in.logs() + "\n" + s.tg.logs.String() }
			token := s.login(t)
			api := [2]string{"Accept", "application/json"}
			html := [2]string{"Accept", "text/html,application/xhtml+xml,*/*;q=0.8"}

			t.Run("no credentials: refused, upstream never reached", func(t *testing.T) {
				r := s.fetch(t, "GET", "/app/anon", [][2]string{api})
				if r.Code != http.StatusUnauthorized || !strings.Contains(r.Header.Get("Content-Type"), "json") || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%d %q %q %s\n%s", r.Code, r.Header.Get("Content-Type"), r.Header.Get("WWW-Authenticate"), r.Body, logs())
				}
				if _, reached := s.identitySeen("/app/anon"); reached {
					t.Error("the upstream was reached")
				}
			})
			t.Run("valid bearer: the upstream sees the identity", func(t *testing.T) {
				r := s.fetch(t, "GET", "/app/bearer", [][2]string{{"Authorization", "Bearer " + token}})
				ids, _ := s.identitySeen("/app/bearer")
				if r.Code != http.StatusOK || strings.Join(ids, ",") != "alice" {
					t.Errorf("%d, identity %q\n%s", r.Code, ids, logs())
				}
			})
			t.Run("the app never receives a Bearer token, other schemes pass", func(t *testing.T) {
				for _, c := range []struct{ path, auth, want string }{
					{"/app/authz-bearer", "Bearer " + token, ""},
					{"/app/authz-lower", "bearer " + token, ""},
					{"/public/authz-bearer", "Bearer " + token, ""},
					{"/public/authz-bad", "Bearer not-a-token", ""},
					{"/public/authz-basic", "Basic YXBwOnNlY3JldA==", "Basic YXBwOnNlY3JldA=="},
				} {
					r := s.fetch(t, "GET", c.path, [][2]string{api, {"Authorization", c.auth}})
					s.up.mu.Lock()
					var got []string
					reached := false
					for i, p := range s.up.paths {
						if p == c.path {
							got, reached = s.up.seen[i]["Authorization"], true
						}
					}
					s.up.mu.Unlock()
					if r.Code != http.StatusOK || !reached || strings.Join(got, ",") != c.want {
						t.Errorf("%s: %d, reached %v, the app received Authorization %q, want %q\n%s", c.path, r.Code, reached, got, c.want, logs())
					}
				}
			})
			t.Run("public path without credentials: anonymous", func(t *testing.T) {
				r := s.fetch(t, "GET", "/public/page", [][2]string{api})
				ids, reached := s.identitySeen("/public/page")
				if r.Code != http.StatusOK || !reached || len(ids) != 0 {
					t.Errorf("%d reached %v identity %q\n%s", r.Code, reached, ids, logs())
				}
			})
			t.Run("client identity header in any spelling never reaches the upstream", func(t *testing.T) {
				spellings := []string{"X-Auth-UserId", "x-auth-userid", "X-AUTH-USERID", "X_Auth_UserId", "x_auth_userid", "X-Auth_UserId", "X_Auth-UserId"}
				for i, sp := range spellings {
					for _, c := range []struct {
						path, token, want string
					}{
						{"/public/spoof%d", "", ""},
						{"/public/spoof-token%d", token, "alice"},
						{"/app/spoof%d", token, "alice"},
						{"/app/spoof-anon%d", "", "-"}, // refused: must not be reached at all
					} {
						path := fmt.Sprintf(c.path, i)
						hdr := [][2]string{api, {sp, "mallory"}}
						if c.token != "" {
							hdr = append(hdr, [2]string{"Authorization", "Bearer " + c.token})
						}
						r := s.fetch(t, "GET", path, hdr)
						ids, reached := s.identitySeen(path)
						switch {
						case c.want == "-":
							if r.Code != http.StatusUnauthorized || reached {
								t.Errorf("%s with %s and no token: %d, reached %v", path, sp, r.Code, reached)
							}
						case r.Code != http.StatusOK || strings.Join(ids, ",") != c.want:
							t.Errorf("%s with %s: %d, the upstream saw identity %q, want %q\n%s", path, sp, r.Code, ids, c.want, logs())
						}
					}
				}
			})
			t.Run("spoofed original URI naming a public path is refused", func(t *testing.T) {
				for i, h := range [][2]string{
					{"X-Forwarded-Uri", "/public/x"}, {"X-Original-URI", "/public/x"},
					{"X-Forwarded-Uri", "/healthz"}, {"X-Original-URI", "/healthz"},
				} {
					path := fmt.Sprintf("/app/secret%d", i)
					r := s.fetch(t, "GET", path, [][2]string{api, h, {"X-Forwarded-Method", "GET"}, {"X-Original-Method", "GET"}})
					if _, reached := s.identitySeen(path); r.Code != http.StatusUnauthorized || reached {
						t.Errorf("%s with %s: %s: %d, reached %v\n%s", path, h[0], h[1], r.Code, reached, logs())
					}
				}
			})
			t.Run("API clients get 401, browsers the sign-in page", func(t *testing.T) {
				r := s.fetch(t, "GET", "/app/page?a=1&b=2", [][2]string{api})
				if r.Code != http.StatusUnauthorized {
					t.Errorf("API: %d", r.Code)
				}
				r = s.fetch(t, "GET", "/app/page?a=1&b=2", [][2]string{html})
				want := "/tokengate/sign_in?rd=" + url.QueryEscape(s.in.base+"/app/page?a=1&b=2")
				if r.Code != http.StatusFound || r.Header.Get("Location") != want {
					t.Errorf("browser: %d Location %q, want 302 %q\n%s", r.Code, r.Header.Get("Location"), want, logs())
				}
				r = s.fetch(t, "POST", "/app/page", [][2]string{html})
				if r.Code != http.StatusUnauthorized {
					t.Errorf("browser POST: %d, want 401", r.Code)
				}
			})
			t.Run("revoked token: refused", func(t *testing.T) {
				tok := s.login(t)
				if r := call(t, "POST", s.in.base+"/tokengate/logout", tok, ""); r.Code != http.StatusNoContent {
					t.Fatalf("logout through the ingress: %d %s", r.Code, r.Body)
				}
				r := s.fetch(t, "GET", "/app/revoked", [][2]string{api, {"Authorization", "Bearer " + tok}})
				if _, reached := s.identitySeen("/app/revoked"); r.Code != http.StatusUnauthorized || reached {
					t.Errorf("%d, reached %v", r.Code, reached)
				}
			})
			t.Run("refusals carry tokengate's own code", func(t *testing.T) {
				refusalCodes(t, s, token, logs)
			})
			t.Run("a dead session cookie is cleared in the browser", func(t *testing.T) {
				deadCookieCleared(t, s, logs)
			})
			t.Run("the app's own cookies, never tokengate's", func(t *testing.T) {
				big := "big=" + strings.Repeat("x", 6000) // past nginx's default proxy buffer (one page)
				for i, c := range []struct {
					name, path, cookie string
					hdr                [][2]string
					want               string // the app's Cookie; "" none at all
				}{
					{"session and CSRF cookies among the app's", "/app/cookie%d", "app=1; tokengate=" + token + "; tokengate_csrf=x; __Host-tokengate_csrf=y; other=2", nil, "app=1; other=2"},
					{"only tokengate's cookies", "/app/cookie%d", "tokengate=" + token + "; __Host-tokengate_csrf=y", nil, ""},
					{"OpenID Connect cookies among the app's", "/app/cookie%d", "app=1; tokengate=" + token + "; tokengate_oidc=s; __Host-tokengate_oidc_state=t; other=2", nil, "app=1; other=2"},
					{"bearer, only the app's cookies", "/app/cookie%d", "a=1; b=2", [][2]string{{"Authorization", "Bearer " + token}}, "a=1; b=2"},
					{"public path, anonymous with a bad session cookie", "/public/cookie%d", "a=1; tokengate=garbage", nil, "a=1"},
					{"a large app cookie beside the session cookie", "/app/cookie%d", big + "; tokengate=" + token, nil, big},
				} {
					path := fmt.Sprintf(c.path, i)
					r := s.fetch(t, "GET", path, append([][2]string{api, {"Cookie", c.cookie}}, c.hdr...))
					got, reached := s.cookieSeen(path)
					if r.Code != http.StatusOK || !reached {
						t.Errorf("%s: %d, reached %v\n%s", c.name, r.Code, reached, logs())
						continue
					}
					if gotPairs, wantPairs := strings.Join(cookiePairs(got), "; "), strings.Join(cookiePairs([]string{c.want}), "; "); gotPairs != wantPairs {
						t.Errorf("%s: the app received cookies %q, want %q", c.name, redactCookies(gotPairs), redactCookies(wantPairs))
					}
					if kind.verifyCookie && strings.Join(got, "\n") != c.want {
						t.Errorf("%s: the app received Cookie %q (%d lines), want exactly verify's %q", c.name, redactCookies(strings.Join(got, "; ")), len(got), redactCookies(c.want))
					}
					if strings.Contains(strings.Join(got, ";"), token) {
						t.Errorf("%s: the app received the session token", c.name)
					}
				}
			})
			t.Run("cookie WebSocket handshake: cross-site refused, same-origin and Bearer pass", func(t *testing.T) {
				webSocketHandshakes(t, s, token, logs)
			})
			t.Run("browser sign-in and sign-out through the ingress", func(t *testing.T) {
				browserSignInFlow(t, s, logs)
			})
			t.Run("only a WebSocket upgrade reaches the app, never h2c or HTTP2-Settings", func(t *testing.T) {
				upgradeOffers(t, s, kind, token, logs)
			})
		})
	}
}

// TestForwardAuthCookieRenewal: with tokens living 4s, a session cookie
// past half its life gets a fresh one on the app's response through nginx
// (verify's Set-Cookie, add_header); the app never sees either token.
// Behind Caddy the same: forward_auth copies verify's Set-Cookie into the
// request as X-Tokengate-Set-Cookie, the Caddyfile's header directive puts
// it on the response and removes it from the request before the app
// (before, no cookie was renewed behind Caddy and sessions ended at exp).
func TestForwardAuthCookieRenewal(t *testing.T) {
	for _, kind := range ingresses {
		t.Run(kind.name, func(t *testing.T) {
			s := newForwardAuth(t, kind, "TOKENGATE_TOKENS_TTL=4s", "TOKENGATE_TOKENS_LEEWAY=1s")
			logs := func() string { return s.in.logs() + "\n" + s.tg.logs.String() }
			token := s.login(t)
			get := func(path string) reply {
				t.Helper()
				return s.fetch(t, "GET", path, [][2]string{{"Accept", "application/json"}, {"Cookie", "app=1; tokengate=" + token}})
			}
			if r := get("/app/young"); r.Code != http.StatusOK || len(r.Header["Set-Cookie"]) != 0 {
				t.Fatalf("before half-life: %d, %d Set-Cookie\n%s", r.Code, len(r.Header["Set-Cookie"]), logs())
			}
			// A client cannot plant a cookie through the header the
			// Caddyfile carries the renewed one in.
			r := s.fetch(t, "GET", "/app/planted", [][2]string{{"Accept", "application/json"}, {"Cookie", "tokengate=" + token},
				{"X-Tokengate-Set-Cookie", "planted=1; Path=/"}})
			s.up.mu.Lock()
			for i, sp := range s.up.paths {
				// (nginx passes it as any other client header: it means nothing there.)
				if sp == "/app/planted" && s.up.seen[i]["X-Tokengate-Set-Cookie"] != nil && kind.name == "caddy" {
					t.Errorf("the app received the client's X-Tokengate-Set-Cookie")
				}
			}
			s.up.mu.Unlock()
			if r.Code != http.StatusOK || len(r.Header["Set-Cookie"]) != 0 {
				t.Fatalf("a planted X-Tokengate-Set-Cookie: %d, Set-Cookie %q\n%s", r.Code, r.Header["Set-Cookie"], logs())
			}
			time.Sleep(2100 * time.Millisecond) // past half of 4s, well before exp
			r = get("/app/old")
			res := http.Response{Header: r.Header}
			var fresh *http.Cookie
			for _, c := range res.Cookies() {
				if c.Name == "tokengate" {
					fresh = c
				}
			}
			if r.Code != http.StatusOK {
				t.Fatalf("past half-life: %d\n%s", r.Code, logs())
			}
			if !kind.renewsCookie {
				if fresh != nil {
					t.Errorf("%s passed a renewed cookie: update renewsCookie and the README", kind.name)
				}
				return
			}
			if fresh == nil || fresh.Value == token || !fresh.HttpOnly || fresh.Path != "/" || fresh.MaxAge < 1 || fresh.MaxAge > 4 {
				t.Fatalf("past half-life: want a fresh HttpOnly session cookie for 4s, got %d Set-Cookie (fresh %v)\n%s", len(r.Header["Set-Cookie"]), fresh != nil, logs())
			}
			for _, p := range []string{"/app/young", "/app/old"} {
				got, _ := s.cookieSeen(p)
				if kind.verifyCookie && strings.Join(got, "; ") != "app=1" || strings.Join(cookiePairs(got), "; ") != "app=1" {
					t.Errorf("%s: the app received Cookie %q, want app=1", p, redactCookies(strings.Join(got, "; ")))
				}
				// Nor the fresh token in any other header (Caddy's copy
				// travels in the request until the response has it).
				s.up.mu.Lock()
				for i, sp := range s.up.paths {
					if sp != p {
						continue
					}
					for k, vv := range s.up.seen[i] {
						if k != "Cookie" && fresh != nil && strings.Contains(strings.Join(vv, ","), fresh.Value) {
							t.Errorf("%s: the app received the fresh token in %s", p, k)
						}
					}
				}
				s.up.mu.Unlock()
			}
			// The fresh cookie works through the ingress, and is young.
			r = s.fetch(t, "GET", "/app/fresh", [][2]string{{"Accept", "application/json"}, {"Cookie", "tokengate=" + fresh.Value}})
			if ids, _ := s.identitySeen("/app/fresh"); r.Code != http.StatusOK || strings.Join(ids, ",") != "alice" || len(r.Header["Set-Cookie"]) != 0 {
				t.Errorf("the fresh cookie: %d, identity %q, %d Set-Cookie", r.Code, ids, len(r.Header["Set-Cookie"]))
			}
		})
	}
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
var rdInput = regexp.MustCompile(`name="rd" value="([^"]*)"`)

// browserSignInFlow is what a browser does: the page, the redirect to the
// form, the form with its CSRF field, the cookie, back to the page; the
// app sees the user and its own cookie but never tokengate's; sign-out.
func browserSignInFlow(t *testing.T, s forwardAuthSetup, logs func() string) {
	jar, _ := cookiejar.New(nil)
	base, _ := url.Parse(s.in.base)
	jar.SetCookies(base, []*http.Cookie{{Name: "appsession", Value: "app-value", Path: "/"}})
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.in.base+path, nil)
		req.Header.Set("Accept", "text/html")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	post := func(path string, form url.Values) (*http.Response, string) {
		t.Helper()
		res, err := c.PostForm(s.in.base+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}

	res, body := get("/app/home?tab=2&x=y")
	if res.Request.URL.Path != "/tokengate/sign_in" || res.StatusCode != http.StatusOK {
		t.Fatalf("not sent to the sign-in page: %d at %s\n%s", res.StatusCode, res.Request.URL, logs())
	}
	csrf, rd := csrfInput.FindStringSubmatch(body), rdInput.FindStringSubmatch(body)
	if csrf == nil || rd == nil {
		t.Fatalf("no CSRF or rd field in the sign-in page:\n%s", body)
	}
	res, body = post("/tokengate/sign_in", url.Values{
		"csrf": {csrf[1]}, "rd": {htmlUnescape(rd[1])}, "username": {"alice"}, "password": {testUsers["alice"]},
	})
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/app/home" || res.Request.URL.RawQuery != "tab=2&x=y" {
		t.Fatalf("after signing in: %d at %s, want /app/home?tab=2&x=y\n%s\n%s", res.StatusCode, res.Request.URL, body, logs())
	}
	ids, _ := s.identitySeen("/app/home")
	if strings.Join(ids, ",") != "alice" {
		t.Errorf("the app saw identity %q, want alice", ids)
	}
	s.up.mu.Lock()
	cookieHeader := strings.Join(s.up.seen[len(s.up.seen)-1]["Cookie"], "; ")
	s.up.mu.Unlock()
	if !strings.Contains(cookieHeader, "appsession=app-value") || strings.Contains(cookieHeader, "tokengate") {
		t.Errorf("the app received Cookie %q: want its own cookie and none of tokengate's", redactCookies(cookieHeader))
	}

	// Sign out: the confirmation page's form, then the app wants sign-in again.
	res, body = get("/tokengate/sign_out")
	csrf = csrfInput.FindStringSubmatch(body)
	if res.StatusCode != http.StatusOK || csrf == nil {
		t.Fatalf("sign-out page: %d\n%s", res.StatusCode, body)
	}
	res, body = post("/tokengate/sign_out", url.Values{"csrf": {csrf[1]}, "scope": {"this"}})
	if res.StatusCode >= 400 {
		t.Fatalf("sign-out: %d\n%s", res.StatusCode, body)
	}
	res, _ = get("/app/after-sign-out")
	if res.Request.URL.Path != "/tokengate/sign_in" {
		t.Errorf("after sign-out, /app/after-sign-out ended at %s, want the sign-in page", res.Request.URL)
	}
	if _, reached := s.identitySeen("/app/after-sign-out"); reached {
		t.Error("after sign-out the app was reached")
	}
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#39;", "'", "&#34;", `"`, "&lt;", "<", "&gt;", ">").Replace(s)
}

// redactCookies keeps cookie names, never values (a token must not reach a log).
func redactCookies(h string) string {
	var names []string
	for part := range strings.SplitSeq(h, ";") {
		name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
		names = append(names, name+"=…")
	}
	return strings.Join(names, "; ")
}

// webSocketHandshakes sends WebSocket opening handshakes through the
// ingress, as a browser sends them (RFC 6455 section 4.1, with Fetch
// metadata where the browser has it): with the session cookie from another
// site (cross-site WebSocket hijacking) verify must refuse with 403 and the
// app must never be reached, whatever the ingress passes to the auth
// request; from the app's own origin, and with a Bearer token from any
// origin (not an ambient credential), verify must allow it, so the app is
// reached with the identity. The app here does not speak WebSocket: that
// it was reached with the identity is verify's allowing answer.
func webSocketHandshakes(t *testing.T, s forwardAuthSetup, token string, logs func() string) {
	handshake := [][2]string{
		{"Connection", "Upgrade"}, {"Upgrade", "websocket"},
		{"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, {"Sec-WebSocket-Version", "13"},
	}
	fetchMetadata := func(site string) [][2]string {
		return [][2]string{{"Sec-Fetch-Site", site}, {"Sec-Fetch-Mode", "websocket"}, {"Sec-Fetch-Dest", "empty"}}
	}
	cookie := [2]string{"Cookie", "tokengate=" + token}
	own := [2]string{"Origin", s.in.base}
	evil := [2]string{"Origin", "https://evil.example"}
	otherPort := [2]string{"Origin", "http://127.0.0.1:1"} // same site, another origin
	with := func(parts ...[][2]string) [][2]string {
		var out [][2]string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for i, c := range []struct {
		name    string
		hdr     [][2]string
		allowed bool
	}{
		{"cookie, cross-site (Fetch metadata and Origin)", with(handshake, fetchMetadata("cross-site"), [][2]string{cookie, evil}), false},
		{"cookie, same-site but another origin", with(handshake, fetchMetadata("same-site"), [][2]string{cookie, otherPort}), false},
		{"cookie, foreign Origin only (a browser without Fetch metadata)", with(handshake, [][2]string{cookie, evil}), false},
		{"cookie, same origin", with(handshake, fetchMetadata("same-origin"), [][2]string{cookie, own}), true},
		{"cookie, own Origin only (a browser without Fetch metadata)", with(handshake, [][2]string{cookie, own}), true},
		{"bearer, cross-site", with(handshake, fetchMetadata("cross-site"), [][2]string{{"Authorization", "Bearer " + token}, evil}), true},
	} {
		path := fmt.Sprintf("/app/ws%d", i)
		r := s.fetch(t, "GET", path, c.hdr)
		ids, reached := s.identitySeen(path)
		if !c.allowed {
			// The body is verify's JSON behind Caddy, nginx's own 403 page behind nginx.
			if r.Code != http.StatusForbidden || reached {
				t.Errorf("%s: %d %s, the app reached %v (identity %q): want 403 and the app never reached\n%s",
					c.name, r.Code, strings.TrimSpace(r.Body), reached, ids, logs())
			}
			continue
		}
		if !reached || strings.Join(ids, ",") != "alice" {
			t.Errorf("%s: %d %s, the app reached %v with identity %q: want it reached as alice\n%s",
				c.name, r.Code, strings.TrimSpace(r.Body), reached, ids, logs())
		}
	}
}

// upgradeOffers sends protocol upgrade offers through the ingress and
// checks what the app receives. Once an app answers 101 to an h2c offer,
// the connection is an HTTP/2 tunnel the ingress no longer reads: any
// request on any path, without verify. So an h2c offer (however spelled,
// with HTTP2-Settings named in Connection or not) must reach the app as a
// plain HTTP/1.1 request: no Upgrade other than "websocket", no Connection
// asking for one, never HTTP2-Settings. The request itself is not refused
// (Java's HttpClient offers h2c on every plain-HTTP request), on a public
// path without credentials and on a private one with a Bearer token alike.
// A WebSocket upgrade still reaches the app with its Upgrade where the
// config proxies WebSockets at all; HTTP2-Settings never does.
func upgradeOffers(t *testing.T, s forwardAuthSetup, kind ingressKind, token string, logs func() string) {
	const settings = "AAMAAABkAAQAAP__"
	h2c := [][2]string{{"Connection", "Upgrade, HTTP2-Settings"}, {"Upgrade", "h2c"}, {"HTTP2-Settings", settings}}
	ws := [][2]string{{"Connection", "Upgrade"}, {"Upgrade", "websocket"}, {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, {"Sec-WebSocket-Version", "13"}}
	bearer := [2]string{"Authorization", "Bearer " + token}
	sameOrigin := [][2]string{{"Cookie", "tokengate=" + token}, {"Origin", s.in.base}, {"Sec-Fetch-Site", "same-origin"}, {"Sec-Fetch-Mode", "websocket"}}
	with := func(parts ...[][2]string) [][2]string {
		var out [][2]string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	// What the app may receive: plainOnly, no upgrade at all; webSocket,
	// exactly a WebSocket upgrade where the config proxies WebSockets (else
	// a plain request); either, one of the two (the client offered
	// WebSocket among other protocols), never anything else.
	const (
		plainOnly = iota
		webSocket
		either
	)
	type offer struct {
		name string
		path string // a public path is reached anonymously
		hdr  [][2]string
		want int
	}
	offers := []offer{
		{"h2c, public path, no credentials", "/public/h2c", h2c, plainOnly},
		{"h2c, private path, Bearer", "/app/h2c", with(h2c, [][2]string{bearer}), plainOnly},
		{"h2c, HTTP2-Settings not named in Connection", "/app/h2c-unnamed", [][2]string{{"Connection", "Upgrade"}, {"Upgrade", "h2c"}, {"HTTP2-Settings", settings}, bearer}, plainOnly},
		{"H2C in capitals", "/public/h2c-caps", [][2]string{{"Connection", "Upgrade, HTTP2-Settings"}, {"Upgrade", "H2C"}, {"HTTP2-Settings", settings}}, plainOnly},
		{"websocket, h2c in one line", "/public/h2c-list", [][2]string{{"Connection", "Upgrade, HTTP2-Settings"}, {"Upgrade", "websocket, h2c"}, {"HTTP2-Settings", settings}}, plainOnly},
		{"a protocol of the client's own", "/public/own-protocol", [][2]string{{"Connection", "Upgrade"}, {"Upgrade", "mine/1"}}, plainOnly},
		{"h2c line, then websocket line", "/public/h2c-lines", [][2]string{{"Connection", "Upgrade, HTTP2-Settings"}, {"Upgrade", "h2c"}, {"Upgrade", "websocket"}, {"HTTP2-Settings", settings}}, either},
		{"HTTP2-Settings alone", "/app/settings-alone", [][2]string{{"HTTP2-Settings", settings}, bearer}, plainOnly},
		{"websocket, Bearer", "/app/ws-bearer", with(ws, [][2]string{bearer}), webSocket},
		{"websocket, session cookie, same origin", "/app/ws-cookie", with(ws, sameOrigin), webSocket},
		{"WebSocket in capitals, Bearer", "/app/ws-caps", [][2]string{{"Connection", "Upgrade"}, {"Upgrade", "WebSocket"}, {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, {"Sec-WebSocket-Version", "13"}, bearer}, webSocket},
		{"websocket with HTTP2-Settings, Bearer", "/app/ws-settings", with(ws, [][2]string{{"HTTP2-Settings", settings}, bearer}), webSocket},
	}
	for _, o := range offers {
		r := s.fetch(t, "GET", o.path, o.hdr)
		seen, reached := s.up.headersSeen(o.path)
		if r.Code != http.StatusOK || !reached {
			t.Errorf("%s: %d %s, the app reached %v: want the request to pass\n%s", o.name, r.Code, strings.TrimSpace(r.Body), reached, logs())
			continue
		}
		got := fmt.Sprintf("Connection %q, Upgrade %q, HTTP2-Settings %q", seen.Values("Connection"), seen.Values("Upgrade"), seen.Values("Http2-Settings"))
		if len(seen.Values("Http2-Settings")) > 0 {
			t.Errorf("%s: the app received HTTP2-Settings (%s)", o.name, got)
		}
		upgrade, asks := seen.Values("Upgrade"), headerHasToken(seen.Values("Connection"), "upgrade")
		plain := len(upgrade) == 0 && !asks
		webSocketOnly := len(upgrade) == 1 && strings.EqualFold(upgrade[0], "websocket") && asks
		switch {
		case o.want == webSocket && kind.proxiesWebSocket:
			if !webSocketOnly {
				t.Errorf("%s: the app received %s: want the WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)", o.name, got)
			}
		case o.want == either:
			if !plain && !webSocketOnly {
				t.Errorf("%s: the app received %s: want a plain request or exactly a WebSocket upgrade", o.name, got)
			}
		case !plain:
			t.Errorf("%s: the app received an upgrade offer: %s", o.name, got)
		}
		if ids, _ := s.identitySeen(o.path); strings.HasPrefix(o.path, "/app/") && strings.Join(ids, ",") != "alice" {
			t.Errorf("%s: the app saw identity %q, want alice", o.name, ids)
		}
	}
}

// headerHasToken reports whether comma-separated header values name token,
// case-insensitively.
func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// TestForwardAuthNoUpgradeTunnel puts each ingress in front of an app that
// switches to any protocol it is offered on Upgrade alone, as an h2c app
// would. A client offering h2c on a public path without a token must get a
// plain answer: had the ingress forwarded the offer, the app's 101 would
// open a tunnel in which the client reaches a private path as anyone (with
// the previous Caddyfile it did: 101, then /app/secret as "admin" through
// the tunnel, verify never asked).
func TestForwardAuthNoUpgradeTunnel(t *testing.T) {
	for _, kind := range ingresses {
		t.Run(kind.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen []string
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				up := r.Header.Get("Upgrade")
				mu.Lock()
				seen = append(seen, fmt.Sprintf("%s %s (Upgrade %q)", r.Method, r.URL.Path, up))
				mu.Unlock()
				if up == "" {
					fmt.Fprint(w, "plain")
					return
				}
				switchAnyProtocol(w, up, func(brw *bufio.ReadWriter) {
					req, err := http.ReadRequest(brw.Reader)
					if err != nil {
						return
					}
					mu.Lock()
					seen = append(seen, fmt.Sprintf("through the tunnel: %s %s as %q", req.Method, req.URL.Path, req.Header.Get("X-Auth-Userid")))
					mu.Unlock()
					fmt.Fprint(brw, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
					brw.Flush()
				})
			}))
			t.Cleanup(app.Close)
			tg := startAuthServer(t)
			in := kind.start(t, strings.TrimPrefix(tg.Public, "http://"), strings.TrimPrefix(app.URL, "http://"))

			conn, err := net.Dial("tcp", strings.TrimPrefix(in.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, "GET /public/h2c HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
				"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
			br := bufio.NewReader(conn)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the answer: %v\n%s", err, in.logs())
			}
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode == http.StatusSwitchingProtocols {
				io.WriteString(conn, "GET /app/secret HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-UserId: admin\r\n\r\n")
				if res2, err := http.ReadResponse(br, nil); err == nil {
					res2.Body.Close()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if res.StatusCode != http.StatusOK || string(body) != "plain" {
				t.Errorf("an h2c offer on a public path: %s %q, want 200 and the app's plain answer; the app saw %q", res.Status, body, seen)
			}
		})
	}
}

// refusalCodes: behind either ingress a client reads the same error codes
// as from tokengate directly (README, "Endpoints"), so a revoked token can
// be told from an expired or missing one. nginx's auth_request passes no
// body: the template rebuilds it from X-Tokengate-Error(-Message); before,
// every nginx refusal was {"error":"unauthorized"}.
func refusalCodes(t *testing.T, s forwardAuthSetup, token string, logs func() string) {
	t.Helper()
	api := [2]string{"Accept", "application/json"}
	revoked := s.login(t)
	if r := call(t, "POST", s.in.base+"/tokengate/logout", revoked, ""); r.Code != http.StatusNoContent {
		t.Fatalf("logout through the ingress: %d %s", r.Code, r.Body)
	}
	for i, c := range []struct {
		name   string
		hdr    [][2]string
		status int
		code   string
	}{
		{"no credentials", nil, http.StatusUnauthorized, "missing_token"},
		{"a token that is not one", [][2]string{{"Authorization", "Bearer not-a-token"}}, http.StatusUnauthorized, "invalid_token"},
		{"a revoked token", [][2]string{{"Authorization", "Bearer " + revoked}}, http.StatusUnauthorized, "token_revoked"},
		{"two Authorization headers", [][2]string{{"Authorization", "Bearer " + token}, {"Authorization", "Bearer " + token}}, http.StatusBadRequest, "malformed_request"},
		{"a cross-site cookie POST", [][2]string{{"Cookie", "tokengate=" + token}, {"Sec-Fetch-Site", "cross-site"}, {"Origin", "https://evil.example"}}, http.StatusForbidden, "cross_origin_request"},
	} {
		path := fmt.Sprintf("/app/refused%d", i)
		method := "GET"
		if c.code == "cross_origin_request" {
			method = "POST"
		}
		r := s.fetch(t, method, path, append([][2]string{api}, c.hdr...))
		if c.code == "malformed_request" && strings.Contains(r.Body, "<center>nginx") {
			// nginx itself refuses a repeated Authorization header before
			// asking verify: its own 400 page.
			if r.Code != http.StatusBadRequest {
				t.Errorf("%s: %d from nginx, want 400", c.name, r.Code)
			}
			continue
		}
		var body struct{ Error, Message string }
		_ = json.Unmarshal([]byte(r.Body), &body)
		if r.Code != c.status || body.Error != c.code || body.Message == "" || !strings.Contains(r.Header.Get("Content-Type"), "json") {
			t.Errorf("%s: %d %q %s, want %d with error %q and a message\n%s", c.name, r.Code, r.Header.Get("Content-Type"), r.Body, c.status, c.code, logs())
		}
		if c.status == http.StatusUnauthorized && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", c.name, r.Header.Get("WWW-Authenticate"))
		}
		if _, reached := s.identitySeen(path); reached {
			t.Errorf("%s: the app was reached", c.name)
		}
	}
}

// deadCookieCleared: a revoked session cookie is removed from the browser
// (Set-Cookie with Max-Age=0) on the answer the browser gets, the redirect
// to the sign-in page or the API's 401, so it is not sent forever. nginx
// drops the auth subrequest's Set-Cookie on a 401 unless the config adds
// it; before the template did, the revoked cookie stayed.
func deadCookieCleared(t *testing.T, s forwardAuthSetup, logs func() string) {
	t.Helper()
	tok := s.login(t)
	if r := call(t, "POST", s.in.base+"/tokengate/logout", tok, ""); r.Code != http.StatusNoContent {
		t.Fatalf("logout through the ingress: %d %s", r.Code, r.Body)
	}
	for i, c := range []struct {
		accept string
		status int
	}{
		{"text/html", http.StatusFound},
		{"application/json", http.StatusUnauthorized},
	} {
		path := fmt.Sprintf("/app/dead-cookie%d", i)
		r := s.fetch(t, "GET", path, [][2]string{{"Accept", c.accept}, {"Cookie", "app=1; tokengate=" + tok}})
		var cleared bool
		for _, ck := range (&http.Response{Header: r.Header}).Cookies() {
			if ck.Name == "tokengate" && ck.Value == "" && ck.MaxAge < 0 && ck.Path == "/" {
				cleared = true
			}
		}
		if r.Code != c.status || !cleared {
			t.Errorf("Accept %s with a revoked cookie: %d, Set-Cookie %q: want %d clearing the session cookie\n%s", c.accept, r.Code, r.Header["Set-Cookie"], c.status, logs())
		}
		if _, reached := s.identitySeen(path); reached {
			t.Errorf("Accept %s: the app was reached", c.accept)
		}
	}
	// No cookie, nothing to clear: no Set-Cookie at all.
	if r := s.fetch(t, "GET", "/app/no-cookie", [][2]string{{"Accept", "text/html"}}); len(r.Header["Set-Cookie"]) != 0 {
		t.Errorf("a refusal without a cookie set cookies: %q", r.Header["Set-Cookie"])
	}
}

// TestForwardAuthStoreDownCode: with the revocation store unreachable,
// verify answers 503 revocation_unavailable; nginx's auth_request turns any
// such answer into its own 500, and the template gives the client
// tokengate's 503 and code back (Caddy passes the answer as it is).
func TestForwardAuthStoreDownCode(t *testing.T) {
	for _, kind := range ingresses {
		t.Run(kind.name, func(t *testing.T) {
			redis := testsvc.StartRedis(t) // private: this test stops it
			s := newForwardAuth(t, kind, redisEnv(redis.Addr)...)
			logs := func() string { return s.in.logs() + "\n" + s.tg.logs.String() }
			token := s.login(t)
			redis.Stop()
			r := s.fetch(t, "GET", "/app/store-down", [][2]string{{"Accept", "application/json"}, {"Authorization", "Bearer " + token}})
			var body struct{ Error, Message string }
			_ = json.Unmarshal([]byte(r.Body), &body)
			if r.Code != http.StatusServiceUnavailable || body.Error != "revocation_unavailable" || body.Message == "" {
				t.Errorf("store down: %d %s, want 503 revocation_unavailable\n%s", r.Code, r.Body, logs())
			}
			if _, reached := s.identitySeen("/app/store-down"); reached {
				t.Error("the app was reached with the store down")
			}
		})
	}
}
