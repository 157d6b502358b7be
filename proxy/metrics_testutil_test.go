package proxy

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"tokengate/authn"
	"tokengate/revocation"

	"tokengate/internal/metricstest"
)

// The HELP lines are part of the exposition testutil compares.
const (
	helpRequests  = "# HELP tokengate_http_requests_total HTTP requests served, by route name and status code.\n# TYPE tokengate_http_requests_total counter\n"
	helpDuration  = "# HELP tokengate_http_request_duration_seconds Time to serve a request, by route name (proxied: until the response body is copied).\n# TYPE tokengate_http_request_duration_seconds histogram\n"
	helpDecisions = "# HELP tokengate_auth_decisions_total Bearer token decisions by result.\n# TYPE tokengate_auth_decisions_total counter\n"
	helpLogins    = "# HELP tokengate_logins_total Login attempts by result.\n# TYPE tokengate_logins_total counter\n"
	helpUpstream  = "# HELP tokengate_upstream_errors_total Proxied requests that got no response from the upstream, by kind.\n# TYPE tokengate_upstream_errors_total counter\n"
)

// contractRoutes is the route label's whole vocabulary (README, "Metrics").
var contractRoutes = []string{"backchannel_logout", "jwks", "login", "logout", "logout_all", "not_found", "oidc_callback", "oidc_sign_in", "proxy", "public", "session", "sign_in", "sign_out", "users", "verify"}

// durationCounts is the expected exposition of the duration histogram
// (through countsOnly) with n observations per route, 0 for the others.
func durationCounts(n map[string]int) string {
	return metricstest.HistogramCounts(helpDuration, "tokengate_http_request_duration_seconds", "route", contractRoutes, n)
}

func TestTestutilRequestsAndDecisions(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	good := e.issue("marco", "marco")
	revoked := e.issue("marco", "marco")
	expired, _, _ := e.otherTokens("tokengate", now.Add(-2*time.Hour)).Issue("marco", "marco")
	wrongIssuer, _, _ := e.otherTokens("someone-else", now).Issue("marco", "marco")

	steps := []struct {
		method, target string
		hdr            http.Header
		status         int
	}{
		{"POST", "/user/logout", bearer(revoked), 204},                       // logout: allowed
		{"GET", "/api/a", bearer(good), 200},                                 // allowed
		{"GET", "/api/b", bearer(good), 200},                                 // allowed (token cache)
		{"GET", "/api/c", nil, 401},                                          // missing
		{"GET", "/api/d", http.Header{"Authorization": {"Basic eDp5"}}, 401}, // malformed
		{"GET", "/api/e", bearer(wrongIssuer), 401},                          // invalid
		{"GET", "/api/f", bearer(expired), 401},                              // expired
		{"GET", "/api/g", bearer(revoked), 401},                              // revoked
		{"GET", "/healthz", nil, 200},                                        // public, no decision
		{"GET", "/static/app.css", bearer(good), 200},                        // public: allowed
		{"GET", "/.well-known/jwks.json", nil, 200},                          // jwks
		{"GET", "/user/login", nil, 405},                                     // login, wrong method
		{"GET", "/session", bearer(good), 200},                               // session: allowed
		{"POST", "/user/logout_all", nil, 401},                               // logout_all: missing
	}
	for _, s := range steps {
		if res := e.do(s.method, s.target, s.hdr, ""); res.StatusCode != s.status {
			t.Fatalf("%s %s: %d, want %d (%s)", s.method, s.target, res.StatusCode, s.status, res.body)
		}
	}
	// A token neither cache knows, with the store gone: decision error.
	e.store.Close()
	if res := e.do("GET", "/api/h", bearer(e.issue("u-alice", "alice")), ""); res.StatusCode != 503 {
		t.Fatalf("store down: %d %s, want 503", res.StatusCode, res.body)
	}

	metricstest.Want(t, e.reg, helpRequests+`
tokengate_http_requests_total{code="200",route="jwks"} 1
tokengate_http_requests_total{code="405",route="login"} 1
tokengate_http_requests_total{code="204",route="logout"} 1
tokengate_http_requests_total{code="401",route="logout_all"} 1
tokengate_http_requests_total{code="200",route="proxy"} 2
tokengate_http_requests_total{code="401",route="proxy"} 5
tokengate_http_requests_total{code="503",route="proxy"} 1
tokengate_http_requests_total{code="200",route="public"} 2
tokengate_http_requests_total{code="200",route="session"} 1
`, "tokengate_http_requests_total")

	metricstest.Want(t, e.reg, helpDecisions+`
tokengate_auth_decisions_total{result="allowed"} 5
tokengate_auth_decisions_total{result="missing"} 2
tokengate_auth_decisions_total{result="malformed"} 1
tokengate_auth_decisions_total{result="invalid"} 1
tokengate_auth_decisions_total{result="expired"} 1
tokengate_auth_decisions_total{result="forbidden"} 0
tokengate_auth_decisions_total{result="revoked"} 1
tokengate_auth_decisions_total{result="user_unknown"} 0
tokengate_auth_decisions_total{result="error"} 1
`, "tokengate_auth_decisions_total")

	// One duration series per route name, whatever was requested.
	if n, err := testutil.GatherAndCount(e.reg, "tokengate_http_request_duration_seconds"); err != nil || n != len(contractRoutes) {
		t.Errorf("duration series: %d (%v), want %d", n, err, len(contractRoutes))
	}
	metricstest.Want(t, metricstest.CountsOnly(e.reg), durationCounts(map[string]int{
		"jwks": 1, "login": 1, "logout": 1, "logout_all": 1, "proxy": 8, "public": 2, "session": 1,
	}), "tokengate_http_request_duration_seconds")
}

func TestTestutilLogins(t *testing.T) {
	users, err := authn.OpenBoltUsers(filepath.Join(t.TempDir(), "users.db"), authn.BoltUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { users.Close() })
	for name, pw := range map[string]string{"marco": marcoPassword, "alice": alicePassword} {
		hash, err := authn.HashPassword(pw, authn.HashOptions{BcryptCost: 4})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := users.CreateUser(context.Background(), authn.User{Username: name, PasswordHash: hash}); err != nil {
			t.Fatal(err)
		}
	}
	// A real user store that can be made to fail: the bolt file, closed.
	e := newEnv(t, envConfig{options: func(o *Options) {
		o.Auth = authn.NewAuthenticator(users, authn.AuthenticatorOptions{
			Throttle: authn.ThrottleOptions{PerUser: 2, PerAddress: 100, Window: time.Minute},
			Now:      o.Now, Hash: authn.HashOptions{BcryptCost: 4},
		})
	}})
	creds := func(user, pw string) string { return fmt.Sprintf(`{"username":%q,"password":%q}`, user, pw) }
	steps := []struct {
		target, body string
		status       int
	}{
		{"/user/login", creds("marco", marcoPassword), 200},      // success
		{"/session", creds("alice", alicePassword), 200},         // success, through the session route
		{"/user/login", `{"username":`, 400},                     // malformed
		{"/user/login", creds("marco", "wrong password 1"), 401}, // invalid_credentials
		{"/user/login", creds("marco", "wrong password 2"), 401}, // invalid_credentials
		{"/user/login", creds("marco", marcoPassword), 429},      // throttled
	}
	for _, s := range steps {
		if res := e.do("POST", s.target, jsonHeader(), s.body); res.StatusCode != s.status {
			t.Fatalf("POST %s %s: %d, want %d (%s)", s.target, s.body, res.StatusCode, s.status, res.body)
		}
	}
	users.Close()
	if res := e.do("POST", "/user/login", jsonHeader(), creds("alice", alicePassword)); res.StatusCode != 503 {
		t.Fatalf("store closed: %d %s, want 503", res.StatusCode, res.body)
	}

	metricstest.Want(t, e.reg, helpLogins+`
tokengate_logins_total{result="success"} 2
tokengate_logins_total{result="malformed"} 1
tokengate_logins_total{result="invalid_credentials"} 2
tokengate_logins_total{result="throttled"} 1
tokengate_logins_total{result="error"} 1
`, "tokengate_logins_total")
	metricstest.Want(t, e.reg, helpRequests+`
tokengate_http_requests_total{code="200",route="login"} 1
tokengate_http_requests_total{code="400",route="login"} 1
tokengate_http_requests_total{code="401",route="login"} 2
tokengate_http_requests_total{code="429",route="login"} 1
tokengate_http_requests_total{code="503",route="login"} 1
tokengate_http_requests_total{code="200",route="session"} 1
`, "tokengate_http_requests_total")
}

func TestTestutilUpstreamErrors(t *testing.T) {
	e := newEnv(t, envConfig{options: func(o *Options) { o.UpstreamTimeout = 100 * time.Millisecond }})
	tok := e.issue("marco", "marco")
	if res := e.do("GET", "/slow", bearer(tok), ""); res.StatusCode != 504 {
		t.Fatalf("slow upstream: %d %s, want 504", res.StatusCode, res.body)
	}
	metricstest.Want(t, e.reg, helpUpstream+`
tokengate_upstream_errors_total{kind="timeout"} 1
tokengate_upstream_errors_total{kind="unavailable"} 0
`, "tokengate_upstream_errors_total")

	e.up.srv.Close()
	if res := e.do("GET", "/api", bearer(tok), ""); res.StatusCode != 502 {
		t.Fatalf("upstream down: %d %s, want 502", res.StatusCode, res.body)
	}
	metricstest.Want(t, e.reg, helpUpstream+`
tokengate_upstream_errors_total{kind="timeout"} 1
tokengate_upstream_errors_total{kind="unavailable"} 1
`, "tokengate_upstream_errors_total")
	metricstest.Want(t, e.reg, helpRequests+`
tokengate_http_requests_total{code="502",route="proxy"} 1
tokengate_http_requests_total{code="504",route="proxy"} 1
`, "tokengate_http_requests_total")
}

func TestTestutilDurationBuckets(t *testing.T) {
	e := newEnv(t)
	// Before any request every route's histogram is there, empty, so the
	// buckets themselves can be compared.
	bounds := []string{"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "+Inf"}
	var b strings.Builder
	b.WriteString(helpDuration)
	for _, r := range contractRoutes {
		for _, le := range bounds {
			fmt.Fprintf(&b, "tokengate_http_request_duration_seconds_bucket{route=%q,le=%q} 0\n", r, le)
		}
		fmt.Fprintf(&b, "tokengate_http_request_duration_seconds_sum{route=%q} 0\n", r)
		fmt.Fprintf(&b, "tokengate_http_request_duration_seconds_count{route=%q} 0\n", r)
	}
	metricstest.Want(t, e.reg, b.String(), "tokengate_http_request_duration_seconds")

	// Sensible for a proxy: resolves sub-millisecond overhead, and slow
	// upstreams up to 10 s land in a finite bucket.
	e.do("GET", "/healthz", nil, "")
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	checked := false
	for _, mf := range mfs {
		if mf.GetName() != "tokengate_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			bk := m.GetHistogram().GetBucket()
			first, last := bk[0].GetUpperBound(), bk[len(bk)-1].GetUpperBound()
			if first >= 0.001 || last < 10 || math.IsInf(last, 1) {
				t.Errorf("buckets %v..%v, want the first under 1 ms and the last finite one at 10 s or more", first, last)
			}
			checked = true
		}
	}
	if !checked {
		t.Fatal("no tokengate_http_request_duration_seconds series")
	}
}

// newFullyMeteredEnv is newEnv with authn's and revocation's metrics on the
// handler's registry too, so a label fed by a user id would show.
func newFullyMeteredEnv(t *testing.T) (*env, *prometheus.Registry, *authn.Tokens) {
	t.Helper()
	reg := prometheus.NewRegistry()
	var tokens *authn.Tokens
	e := newEnv(t, envConfig{options: func(o *Options) {
		key, err := authn.LoadOrCreateSigningKey(filepath.Join(t.TempDir(), "signing.key"), "EdDSA")
		if err != nil {
			t.Fatal(err)
		}
		tokens, err = authn.NewTokens(key, nil, authn.TokenOptions{Issuer: "tokengate", TTL: time.Hour, Now: o.Now, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		store := revocation.NewMemoryStore(o.Now)
		t.Cleanup(func() { store.Close() })
		checker, err := revocation.NewChecker(store, revocation.CheckerOptions{
			Now: o.Now, UserCutoffTTL: tokens.MaxLifetime(), Registerer: reg, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { checker.Close() })
		o.Tokens, o.JWKS, o.Revocation, o.Registerer = tokens, tokens.JWKS, checker, reg
	}})
	return e, reg, tokens
}

func TestTestutilCardinality(t *testing.T) {
	e, reg, tokens := newFullyMeteredEnv(t)
	userIDs := make([]string, 50)
	userTokens := make([]string, 50)
	for i := range userIDs {
		userIDs[i] = "user-" + rand.Text()
		tok, _, err := tokens.Issue(userIDs[i], userIDs[i])
		if err != nil {
			t.Fatal(err)
		}
		userTokens[i] = tok
	}
	var paths []string
	get := func(path, token string, want int) {
		t.Helper()
		paths = append(paths, path)
		var hdr http.Header
		if token != "" {
			hdr = bearer(token)
		}
		if res := e.do("GET", path, hdr, ""); res.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d (%s)", path, res.StatusCode, want, res.body)
		}
	}
	randomPath := func(prefix string) string { return prefix + rand.Text() + "/" + rand.Text() }

	// Warm up every (route, code) this test produces.
	get(randomPath("/api/"), userTokens[0], 200)
	get(randomPath("/api/"), "", 401)
	get(randomPath("/static/"), "", 200)
	warm, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := e.srv.Config.Handler.(*handler)
	warmRequests := testutil.CollectAndCount(h.metrics.requests)

	for i := range 200 {
		get(randomPath("/api/"), userTokens[i%len(userTokens)], 200)
	}
	for range 20 {
		get(randomPath("/api/"), "", 401)
		get(randomPath("/static/"), userTokens[0], 200)
	}

	// Traffic volume, distinct paths and distinct users add no series.
	if n, err := testutil.GatherAndCount(reg); err != nil || n != warm {
		t.Errorf("%d series after 240 distinct paths and 50 users, %d after 3 requests (%v)", n, warm, err)
	}
	if n := testutil.CollectAndCount(h.metrics.requests); n != warmRequests || n != 3 {
		t.Errorf("tokengate_http_requests_total has %d series (%d after warm-up), want 3: proxy/200, proxy/401, public/200", n, warmRequests)
	}
	if n, _ := testutil.GatherAndCount(reg, "tokengate_http_request_duration_seconds"); n != len(contractRoutes) {
		t.Errorf("duration series: %d, want one per route name (%d)", n, len(contractRoutes))
	}
	// No label value anywhere is a raw path or a user id.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range paths {
		seen[p] = true
	}
	for _, u := range userIDs {
		seen[u] = true
	}
	bad := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v := lp.GetValue(); seen[v] || strings.HasPrefix(v, "/") || strings.HasPrefix(v, "user-") {
					if bad++; bad <= 3 {
						t.Errorf("%s{%s=%q}: a path or user id as a label value", mf.GetName(), lp.GetName(), v)
					}
				}
			}
		}
	}
	if bad > 3 {
		t.Errorf("... and %d more such label values", bad-3)
	}
}
