package proxy

import (
	"bufio"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"tokengate/internal/testkit"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"tokengate/authn"
	"tokengate/revocation"

	"tokengate/internal/testclock"
)

// fakeClock is the injected clock shared by authn, revocation and proxy.
type fakeClock = testclock.Clock

// seenRequest is what the upstream received.
type seenRequest struct {
	method, path, requestURI string
	header                   http.Header
}

// upstream is a real httptest server that records what reaches it.
type upstream struct {
	srv     *httptest.Server
	release chan struct{} // lets /stream send its second chunk

	mu   sync.Mutex
	seen []seenRequest
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{release: make(chan struct{})}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, seenRequest{method: r.Method, path: r.URL.Path, requestURI: r.RequestURI, header: r.Header.Clone()})
	u.mu.Unlock()
	switch r.URL.Path {
	case "/slow":
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	case "/stream":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-u.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second\n")
	case "/ws":
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "no upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Seen-User: %s\r\n\r\n", r.Header.Get("X-Auth-UserId"))
		brw.Flush()
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		brw.WriteString("echo: " + line)
		brw.Flush()
	default:
		w.Header().Set("X-Request-Id", "the-upstreams-own")
		io.WriteString(w, "ok "+r.URL.Path)
	}
}

func (u *upstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

func (u *upstream) last(t *testing.T) seenRequest {
	t.Helper()
	s := u.requests()
	if len(s) == 0 {
		t.Fatal("the upstream received nothing")
	}
	return s[len(s)-1]
}

const (
	marcoPassword = "correct horse battery staple"
	alicePassword = "alice's own passphrase"
)

// env is tokengate's handler over real authn and revocation components,
// served by a real listener in front of a recording upstream.
type env struct {
	t       testing.TB
	clock   *fakeClock
	keyPath string
	tokens  *authn.Tokens
	store   *revocation.MemoryStore
	checker *revocation.Checker
	up      *upstream
	srv     *httptest.Server
	reg     *prometheus.Registry
	logs    *testkit.LogBuffer
	opts    Options
}

type envConfig struct {
	algorithm     string
	refreshWindow time.Duration
	throttle      authn.ThrottleOptions
	options       func(*Options)
	// revocationMetrics registers the Checker's metrics on the env's
	// registry too (tokengate_revocations_total and friends).
	revocationMetrics bool
}

func defaultRoutes() Routes {
	return Routes{
		Login:     "/user/login",
		Logout:    "/user/logout",
		LogoutAll: "/user/logout_all",
		Session:   "/session",
		Users:     "/users",
		JWKS:      "/.well-known/jwks.json",
	}
}

func newEnv(t testing.TB, cfgs ...envConfig) *env {
	t.Helper()
	var cfg envConfig
	if len(cfgs) > 0 {
		cfg = cfgs[0]
	}
	if cfg.algorithm == "" {
		cfg.algorithm = "EdDSA"
	}
	if cfg.throttle == (authn.ThrottleOptions{}) {
		cfg.throttle = authn.ThrottleOptions{PerUser: 5, PerAddress: 100}
	}
	dir := t.TempDir()
	e := &env{
		t:       t,
		clock:   testclock.New(time.Date(2025, 3, 1, 12, 0, 0, 250_000_000, time.UTC)),
		keyPath: filepath.Join(dir, "signing.key"),
		reg:     prometheus.NewRegistry(),
		logs:    &testkit.LogBuffer{},
		up:      newUpstream(t),
	}
	key, err := authn.LoadOrCreateSigningKey(e.keyPath, cfg.algorithm)
	if err != nil {
		t.Fatal(err)
	}
	e.tokens, err = authn.NewTokens(key, nil, authn.TokenOptions{
		Issuer: "tokengate", TTL: time.Hour, RefreshWindow: cfg.refreshWindow, Leeway: 5 * time.Second, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	usersFile := filepath.Join(dir, "users.yaml")
	writeUsersFile(t, usersFile, map[string][2]string{"marco": {"marco", marcoPassword}, "alice": {"u-alice", alicePassword}})
	users, err := authn.LoadFileUsers(usersFile, authn.FileUsersOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	e.store = revocation.NewMemoryStore(e.clock.Now)
	checkerOpts := revocation.CheckerOptions{Now: e.clock.Now, UserCutoffTTL: e.tokens.MaxLifetime()}
	if cfg.revocationMetrics {
		checkerOpts.Registerer = e.reg
	}
	e.checker, err = revocation.NewChecker(e.store, checkerOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.checker.Close() })

	upURL, _ := url.Parse(e.up.srv.URL)
	e.opts = Options{
		Upstream:    upURL,
		PublicPaths: []string{"/healthz", "/static/"},
		Routes:      defaultRoutes(),
		Tokens:      e.tokens,
		JWKS:        e.tokens.JWKS,
		Auth: authn.NewAuthenticator(users, authn.AuthenticatorOptions{
			Throttle: cfg.throttle, Now: e.clock.Now, Hash: authn.HashOptions{BcryptCost: 4},
		}),
		Revocation: e.checker,
		Logger:     slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: e.reg,
		Now:        e.clock.Now,
	}
	if cfg.options != nil {
		cfg.options(&e.opts)
	}
	h, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

func writeUsersFile(t testing.TB, path string, users map[string][2]string) {
	t.Helper()
	var list []testkit.User
	for name, u := range users {
		list = append(list, testkit.User{Name: name, ID: u[0], Password: u[1]})
	}
	testkit.WriteUsersFile(t, path, list...)
}

// response is a fully read answer.
type response struct {
	*http.Response
	body string
}

// apiErr decodes a JSON error body.
func (r response) apiErr() apiError {
	var e apiError
	_ = json.Unmarshal([]byte(r.body), &e)
	return e
}

// do sends a request to tokengate. hdr keys are sent exactly as spelled.
func (e *env) do(method, target string, hdr http.Header, body string) response {
	e.t.Helper()
	return e.request(e.srv.Client(), method, target, hdr, body)
}

// request sends a request with client and reads the whole answer.
func (e *env) request(client *http.Client, method, target string, hdr http.Header, body string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+target, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vv := range hdr {
		req.Header[k] = vv
	}
	res, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{res, string(b)}
}

// raw sends a request line exactly as written (paths Go's client would
// leave alone anyway, but this makes it obvious).
func (e *env) raw(requestTarget string, hdr http.Header) response {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: tokengate.test\r\nConnection: close\r\n", requestTarget)
	for k, vv := range hdr {
		for _, v := range vv {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		e.t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return response{res, string(body)}
}

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

// issue signs a token for a user directly.
func (e *env) issue(subject, username string) string {
	e.t.Helper()
	tok, _, err := e.tokens.Issue(subject, username)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// login logs in through the endpoint and returns the token.
func (e *env) login(username, password string) string {
	e.t.Helper()
	res := e.do("POST", "/user/login", jsonHeader(), fmt.Sprintf(`{"username":%q,"password":%q}`, username, password))
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("login %s: %d %s", username, res.StatusCode, res.body)
	}
	var out struct{ Token string }
	if err := json.Unmarshal([]byte(res.body), &out); err != nil || out.Token == "" {
		e.t.Fatalf("login body %q: %v", res.body, err)
	}
	return out.Token
}

// otherTokens is a Tokens sharing the env's key, with its own clock/issuer.
func (e *env) otherTokens(issuer string, now time.Time) *authn.Tokens {
	e.t.Helper()
	key, err := authn.LoadSigningKey(e.keyPath, "EdDSA")
	if err != nil {
		e.t.Fatal(err)
	}
	tk, err := authn.NewTokens(key, nil, authn.TokenOptions{Issuer: issuer, TTL: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		e.t.Fatal(err)
	}
	return tk
}

// publicKeyPEM is the env's public key as PEM, the HS256 "secret" of the
// classic algorithm-confusion attack.
func (e *env) publicKeyPEM() []byte {
	e.t.Helper()
	data, err := os.ReadFile(e.keyPath)
	if err != nil {
		e.t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		e.t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
	if err != nil {
		e.t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
}

// tokenHeader decodes a token's JOSE header.
func tokenHeader(t *testing.T, token string) map[string]any {
	t.Helper()
	seg, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// identityValues is every value of every spelling of the identity header.
func identityValues(h http.Header) []string {
	id := newHeaderName("X-Auth-UserId")
	var out []string
	for k, vv := range h {
		if id.matches(k) {
			out = append(out, vv...)
		}
	}
	return out
}

// metricValue reads a counter (or a histogram's count) from the registry.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// eventually polls cond with a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
