package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tokengate/authn"
)

func TestNewValidatesOptions(t *testing.T) {
	e := newEnv(t)
	valid := e.opts
	valid.Registerer = nil
	tests := []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"duplicate verify route", func(o *Options) { o.Routes.Verify = "/session" }, "Routes.verify"},
		{"upstream without scheme", func(o *Options) { o.Upstream = &url.URL{Host: "x"} }, "scheme"},
		{"no tokens", func(o *Options) { o.Tokens = nil }, "Tokens is required"},
		{"no auth", func(o *Options) { o.Auth = nil }, "Auth is required"},
		{"no revocation", func(o *Options) { o.Revocation = nil }, "Revocation is required"},
		{"registration without registrar", func(o *Options) { o.Registration = "open" }, "Registrar is required"},
		{"unknown registration", func(o *Options) { o.Registration = "sometimes" }, "Registration"},
		{"duplicate route", func(o *Options) { o.Routes.Logout = "/session" }, "already used by"},
		{"relative route", func(o *Options) { o.Routes.Login = "user/login" }, "Routes.login"},
		{"dotted route", func(o *Options) { o.Routes.Login = "/user/../login" }, "Routes.login"},
		{"bad public path", func(o *Options) { o.PublicPaths = []string{"/a/../b"} }, "PublicPaths"},
		{"bad identity header", func(o *Options) { o.IdentityHeader = "X Auth" }, "IdentityHeader"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid
			tt.mutate(&o)
			_, err := New(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	t.Run("several problems at once", func(t *testing.T) {
		_, err := New(Options{})
		for _, want := range []string{"Tokens", "Auth", "Revocation"} { // no Upstream: auth-server mode
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("New(Options{}): %v, want it to name %s", err, want)
			}
		}
	})
	t.Run("disabled routes are fine", func(t *testing.T) {
		o := valid
		o.Routes = Routes{}
		if _, err := New(o); err != nil {
			t.Fatal(err)
		}
	})
}

func TestProxyTokens(t *testing.T) {
	e := newEnv(t)
	good := e.issue("marco", "marco")
	revoked := e.issue("marco", "marco")
	if res := e.do("POST", "/user/logout", bearer(revoked), ""); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %s", res.StatusCode, res.body)
	}
	now := e.clock.Now()
	kid := tokenHeader(t, good)["kid"]

	tampered := func() string {
		parts := strings.Split(good, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var claims map[string]any
		json.Unmarshal(payload, &claims)
		claims["sub"] = "admin"
		b, _ := json.Marshal(claims)
		parts[1] = base64.RawURLEncoding.EncodeToString(b)
		return strings.Join(parts, ".")
	}()
	mapClaims := jwt.MapClaims{"iss": "tokengate", "sub": "marco", "jti": "forged-jti", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	algNone := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, mapClaims)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	hsWithPublicKey := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, mapClaims)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(e.publicKeyPEM())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	otherKey := func() string {
		key, err := authn.LoadOrCreateSigningKey(t.TempDir()+"/other.key", "EdDSA")
		if err != nil {
			t.Fatal(err)
		}
		tk, err := authn.NewTokens(key, nil, authn.TokenOptions{Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		s, _, _ := tk.Issue("marco", "marco")
		return s
	}()
	expired, _, _ := e.otherTokens("tokengate", now.Add(-2*time.Hour)).Issue("marco", "marco")
	notYet, _, _ := e.otherTokens("tokengate", now.Add(time.Hour)).Issue("marco", "marco")
	wrongIss, _, _ := e.otherTokens("someone-else", now).Issue("marco", "marco")

	tests := []struct {
		name     string
		hdr      http.Header
		status   int
		code     string
		decision string
	}{
		{"valid", bearer(good), 200, "", decisionAllowed},
		{"lower-case scheme", http.Header{"Authorization": {"bearer " + good}}, 200, "", decisionAllowed},
		{"upper-case scheme", http.Header{"Authorization": {"BEARER " + good}}, 200, "", decisionAllowed},
		{"no header", nil, 401, "missing_token", decisionMissing},
		{"two headers", http.Header{"Authorization": {"Bearer " + good, "Bearer " + good}}, 400, "malformed_request", decisionMalformed},
		{"basic scheme", http.Header{"Authorization": {"Basic bWFyY286cGFzcw=="}}, 401, "invalid_token", decisionMalformed},
		{"scheme only", http.Header{"Authorization": {"Bearer"}}, 401, "invalid_token", decisionMalformed},
		{"over 8 KiB", bearer(strings.Repeat("a", authn.MaxTokenBytes+1)), 401, "invalid_token", decisionMalformed},
		{"garbage", bearer("not.a.jwt"), 401, "invalid_token", ""},
		{"tampered", bearer(tampered), 401, "invalid_token", decisionInvalid},
		{"alg none", bearer(algNone), 401, "invalid_token", ""},
		{"HS256 with the public key", bearer(hsWithPublicKey), 401, "invalid_token", decisionInvalid},
		{"other key", bearer(otherKey), 401, "invalid_token", decisionInvalid},
		{"expired", bearer(expired), 401, "token_expired", decisionExpired},
		{"nbf in the future", bearer(notYet), 401, "invalid_token", decisionInvalid},
		{"wrong issuer", bearer(wrongIss), 401, "invalid_token", decisionInvalid},
		{"revoked", bearer(revoked), 401, "token_revoked", decisionRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.up.requests())
			var decisionsBefore float64
			if tt.decision != "" {
				decisionsBefore = metricValue(t, e.reg, "tokengate_auth_decisions_total", map[string]string{"result": tt.decision})
			}
			res := e.do("GET", "/api/things", tt.hdr, "")
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", res.StatusCode, tt.status, res.body)
			}
			after := len(e.up.requests())
			if tt.status == 200 {
				if after != before+1 {
					t.Fatal("not proxied")
				}
				if got := identityValues(e.up.last(t).header); len(got) != 1 || got[0] != "marco" {
					t.Errorf("upstream identity %q, want [marco]", got)
				}
			} else {
				if after != before {
					t.Fatal("a refused request reached the upstream")
				}
				if got := res.apiErr().Code; got != tt.code {
					t.Errorf("error %q, want %q", got, tt.code)
				}
				if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type %q", ct)
				}
				wantChallenge := `Bearer error="invalid_token"`
				switch tt.status {
				case 400:
					wantChallenge = `Bearer error="invalid_request"`
				case 401:
					if tt.code == "missing_token" {
						wantChallenge = "Bearer"
					}
				}
				if got := res.Header.Get("WWW-Authenticate"); got != wantChallenge {
					t.Errorf("WWW-Authenticate %q, want %q", got, wantChallenge)
				}
			}
			if tt.decision != "" {
				if got := metricValue(t, e.reg, "tokengate_auth_decisions_total", map[string]string{"result": tt.decision}); got != decisionsBefore+1 {
					t.Errorf("auth decision %s: %v -> %v", tt.decision, decisionsBefore, got)
				}
			}
		})
	}
}

func TestRevocationStoreDown(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow=%v", allow), func(t *testing.T) {
			e := newEnv(t, envConfig{options: func(o *Options) { o.AllowOnStoreError = allow }})
			tok := e.issue("marco", "marco")
			e.store.Close()
			res := e.do("GET", "/api", bearer(tok), "")
			if !allow {
				if res.StatusCode != 503 || res.apiErr().Code != "revocation_unavailable" {
					t.Fatalf("%d %s, want 503 revocation_unavailable", res.StatusCode, res.body)
				}
				if len(e.up.requests()) != 0 {
					t.Fatal("proxied with the store down")
				}
				if got := metricValue(t, e.reg, "tokengate_auth_decisions_total", map[string]string{"result": "error"}); got != 1 {
					t.Errorf("error decisions %v", got)
				}
				return
			}
			if res.StatusCode != 200 {
				t.Fatalf("%d %s, want 200 with AllowOnStoreError", res.StatusCode, res.body)
			}
		})
	}
}

func TestIdentitySpoofing(t *testing.T) {
	e := newEnv(t)
	tok := e.issue("marco", "marco")
	spoofs := map[string]http.Header{
		"canonical":            {"X-Auth-Userid": {"admin"}},
		"configured spelling":  {"X-Auth-UserId": {"admin"}},
		"lower case":           {"x-auth-userid": {"admin"}},
		"upper case":           {"X-AUTH-USERID": {"admin"}},
		"underscores":          {"X_Auth_UserId": {"admin"}},
		"lower underscores":    {"x_auth_userid": {"admin"}},
		"several copies":       {"X-Auth-Userid": {"admin", "root"}, "x_auth_userid": {"admin"}},
		"named in Connection":  {"X-Auth-Userid": {"admin"}, "Connection": {"X-Auth-UserId"}},
		"Connection, no value": {"Connection": {"X-Auth-UserId, keep-alive"}},
	}
	for name, spoof := range spoofs {
		t.Run(name+"/with token", func(t *testing.T) {
			hdr := bearer(tok)
			for k, v := range spoof {
				hdr[k] = v
			}
			if res := e.do("GET", "/api/x", hdr, ""); res.StatusCode != 200 {
				t.Fatalf("%d %s", res.StatusCode, res.body)
			}
			if got := identityValues(e.up.last(t).header); len(got) != 1 || got[0] != "marco" {
				t.Fatalf("upstream saw identity %q, want exactly [marco]", got)
			}
		})
		t.Run(name+"/public path without token", func(t *testing.T) {
			if res := e.do("GET", "/healthz", spoof, ""); res.StatusCode != 200 {
				t.Fatalf("%d %s", res.StatusCode, res.body)
			}
			if got := identityValues(e.up.last(t).header); len(got) != 0 {
				t.Fatalf("upstream saw identity %q on an anonymous request", got)
			}
		})
		t.Run(name+"/without token", func(t *testing.T) {
			before := len(e.up.requests())
			if res := e.do("GET", "/api/x", spoof, ""); res.StatusCode != 401 {
				t.Fatalf("%d, want 401: a client identity header is no credential", res.StatusCode)
			}
			if len(e.up.requests()) != before {
				t.Fatal("reached the upstream")
			}
		})
	}
	t.Run("identity endpoint ignores it", func(t *testing.T) {
		hdr := bearer(tok)
		hdr["X-Auth-Userid"] = []string{"admin"}
		res := e.do("GET", "/session", hdr, "")
		var got struct{ ID string }
		json.Unmarshal([]byte(res.body), &got)
		if res.StatusCode != 200 || got.ID != "marco" {
			t.Fatalf("%d %s", res.StatusCode, res.body)
		}
	})
	t.Run("configured name", func(t *testing.T) {
		e := newEnv(t, envConfig{options: func(o *Options) { o.IdentityHeader = "X-User" }})
		tok := e.issue("marco", "marco")
		hdr := bearer(tok)
		hdr["x_user"] = []string{"admin"}
		if res := e.do("GET", "/api", hdr, ""); res.StatusCode != 200 {
			t.Fatal(res.StatusCode)
		}
		h := e.up.last(t).header
		if got := h.Values("X-User"); len(got) != 1 || got[0] != "marco" {
			t.Fatalf("X-User %q", got)
		}
		if _, ok := h["X_user"]; ok {
			t.Fatal("x_user reached the upstream")
		}
	})
}

func TestPublicPaths(t *testing.T) {
	e := newEnv(t)
	tok := e.issue("marco", "marco")

	t.Run("anonymous", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/healthz/", "/healthz/live", "/static/app.js", "/static"} {
			res := e.raw(p, nil)
			if res.StatusCode != 200 {
				t.Fatalf("%s: %d %s", p, res.StatusCode, res.body)
			}
			if got := e.up.last(t); got.requestURI != p || len(identityValues(got.header)) != 0 {
				t.Fatalf("%s: upstream saw %q with identity %q", p, got.requestURI, identityValues(got.header))
			}
		}
	})
	t.Run("valid token sets the identity", func(t *testing.T) {
		if res := e.do("GET", "/healthz", bearer(tok), ""); res.StatusCode != 200 {
			t.Fatal(res.StatusCode)
		}
		if got := identityValues(e.up.last(t).header); len(got) != 1 || got[0] != "marco" {
			t.Fatalf("identity %q", got)
		}
	})
	t.Run("invalid token goes on anonymously", func(t *testing.T) {
		hdr := bearer("garbage")
		hdr["X-Auth-Userid"] = []string{"admin"}
		if res := e.do("GET", "/healthz", hdr, ""); res.StatusCode != 200 {
			t.Fatal(res.StatusCode)
		}
		if got := identityValues(e.up.last(t).header); len(got) != 0 {
			t.Fatalf("identity %q", got)
		}
	})

	// No trick may carry a request to a private path without a token.
	tricks := []struct {
		target string
		status int
	}{
		{"/healthz/../admin", 400},
		{"/healthz/./x", 400},
		{"/healthz/%2e%2e/admin", 400},
		{"/healthz/%2E%2E/admin", 400},
		{"/healthz/.%2e/admin", 400},
		{"/healthz%2f..%2fadmin", 400},
		{"/healthz%2F..%2Fadmin", 400},
		{"/healthz/..;/admin", 400},
		{"/healthz/..%3b/admin", 400},
		{"/healthz%5c..%5cadmin", 400},
		{`/healthz/..\admin`, 400},
		{"/healthz%2fadmin", 401},
		{"/healthzX", 401},
		{"/HEALTHZ", 401},
		{"/Healthz/x", 401},
		{"//healthz", 401},
		{"/healthz//admin", 401},
		{"/healthz;/admin", 401},
		{"/healthz/%252e%252e/admin", 401},
		{"/static/../admin", 400},
		{"/staticX/app.js", 401},
	}
	for _, tt := range tricks {
		t.Run("trick "+tt.target, func(t *testing.T) {
			before := len(e.up.requests())
			res := e.raw(tt.target, nil)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", res.StatusCode, tt.status, res.body)
			}
			if len(e.up.requests()) != before {
				t.Fatalf("reached the upstream without a token as %q", e.up.last(t).requestURI)
			}
		})
	}
	t.Run("unclean private path proxied with a token", func(t *testing.T) {
		res := e.raw("/healthz%2fadmin", bearer(tok))
		if res.StatusCode != 200 {
			t.Fatalf("%d %s", res.StatusCode, res.body)
		}
		if got := identityValues(e.up.last(t).header); len(got) != 1 || got[0] != "marco" {
			t.Fatalf("identity %q", got)
		}
	})
}

func TestUpstreamErrors(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := &url.URL{Scheme: "http", Host: ln.Addr().String()}
		ln.Close()
		e := newEnv(t, envConfig{options: func(o *Options) { o.Upstream = dead }})
		res := e.do("GET", "/api", bearer(e.issue("marco", "marco")), "")
		if res.StatusCode != 502 || res.apiErr().Code != "upstream_unavailable" {
			t.Fatalf("%d %s", res.StatusCode, res.body)
		}
		if got := metricValue(t, e.reg, "tokengate_upstream_errors_total", map[string]string{"kind": "unavailable"}); got != 1 {
			t.Errorf("upstream_errors{unavailable} = %v", got)
		}
	})
	t.Run("slow", func(t *testing.T) {
		e := newEnv(t, envConfig{options: func(o *Options) { o.UpstreamTimeout = 100 * time.Millisecond }})
		res := e.do("GET", "/slow", bearer(e.issue("marco", "marco")), "")
		if res.StatusCode != 504 || res.apiErr().Code != "upstream_timeout" {
			t.Fatalf("%d %s", res.StatusCode, res.body)
		}
		if got := metricValue(t, e.reg, "tokengate_upstream_errors_total", map[string]string{"kind": "timeout"}); got != 1 {
			t.Errorf("upstream_errors{timeout} = %v", got)
		}
	})
	t.Run("client gone", func(t *testing.T) {
		e := newEnv(t)
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/slow", nil)
		req.Header.Set("Authorization", "Bearer "+e.issue("marco", "marco"))
		done := make(chan error, 1)
		go func() {
			res, err := e.srv.Client().Do(req)
			if err == nil {
				res.Body.Close()
			}
			done <- err
		}()
		eventually(t, "the upstream to get the request", func() bool { return len(e.up.requests()) == 1 })
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("client: %v", err)
		}
		eventually(t, "the request to be counted", func() bool {
			return metricValue(t, e.reg, "tokengate_http_requests_total", map[string]string{"route": "proxy", "code": "499"}) == 1
		})
		for _, kind := range []string{"timeout", "unavailable"} {
			if got := metricValue(t, e.reg, "tokengate_upstream_errors_total", map[string]string{"kind": kind}); got != 0 {
				t.Errorf("a client going away counted as upstream error %s", kind)
			}
		}
	})
}

func TestStreaming(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest("GET", e.srv.URL+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+e.issue("marco", "marco"))
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	r := bufio.NewReader(res.Body)
	// The upstream holds the second chunk until we read the first one: the
	// read would block forever if tokengate buffered the response.
	line, err := r.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk %q, %v", line, err)
	}
	close(e.up.release)
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	e := newEnv(t)
	tok := e.issue("marco", "marco")
	tests := []struct {
		name   string
		token  string
		status int
	}{
		{"with token", tok, 101},
		{"without token", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			req := "GET /ws HTTP/1.1\r\nHost: tokengate.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Auth-UserId: admin\r\n"
			if tt.token != "" {
				req += "Authorization: Bearer " + tt.token + "\r\n"
			}
			io.WriteString(conn, req+"\r\n")
			br := bufio.NewReader(conn)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if tt.status != 101 {
				return
			}
			if got := res.Header.Get("X-Seen-User"); got != "marco" {
				t.Errorf("the upstream saw identity %q", got)
			}
			io.WriteString(conn, "hello\n")
			line, err := br.ReadString('\n')
			if err != nil || line != "echo: hello\n" {
				t.Fatalf("echo %q, %v", line, err)
			}
			conn.Close()
			eventually(t, "the upgrade to be counted", func() bool {
				return metricValue(t, e.reg, "tokengate_http_requests_total", map[string]string{"route": "proxy", "code": "101"}) == 1
			})
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	spoofed := http.Header{
		"X-Forwarded-For":   {"6.6.6.6"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Forwarded-Proto": {"https"},
	}
	t.Run("untrusted peer", func(t *testing.T) {
		e := newEnv(t)
		if res := e.do("GET", "/healthz", spoofed, ""); res.StatusCode != 200 {
			t.Fatal(res.StatusCode)
		}
		h := e.up.last(t).header
		if got := h.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("X-Forwarded-For %q, want only the peer", got)
		}
		if got := h.Get("X-Forwarded-Host"); got != e.srv.Listener.Addr().String() {
			t.Errorf("X-Forwarded-Host %q", got)
		}
		if got := h.Get("X-Forwarded-Proto"); got != "http" {
			t.Errorf("X-Forwarded-Proto %q", got)
		}
	})
	t.Run("trusted peer", func(t *testing.T) {
		e := newEnv(t, envConfig{options: func(o *Options) {
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		}})
		if res := e.do("GET", "/healthz", spoofed, ""); res.StatusCode != 200 {
			t.Fatal(res.StatusCode)
		}
		h := e.up.last(t).header
		if got := h.Get("X-Forwarded-For"); got != "6.6.6.6, 127.0.0.1" {
			t.Errorf("X-Forwarded-For %q", got)
		}
		if got := h.Get("X-Forwarded-Host"); got != "evil.example" {
			t.Errorf("X-Forwarded-Host %q", got)
		}
		if got := h.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("X-Forwarded-Proto %q", got)
		}
	})
}

func TestClientAddr(t *testing.T) {
	h := &handler{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"untrusted peer ignores the header", "192.0.2.7:1234", []string{"6.6.6.6"}, "192.0.2.7"},
		{"trusted peer, one hop", "127.0.0.1:1234", []string{"203.0.113.9"}, "203.0.113.9"},
		{"rightmost untrusted, not leftmost", "127.0.0.1:1", []string{"6.6.6.6, 203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"several headers", "127.0.0.1:1", []string{"6.6.6.6", "203.0.113.9", "10.1.2.3"}, "203.0.113.9"},
		{"all trusted", "127.0.0.1:1", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"no header", "127.0.0.1:1", nil, "127.0.0.1"},
		{"garbage stops the walk", "127.0.0.1:1", []string{"6.6.6.6, junk, 10.0.0.2"}, "10.0.0.2"},
		{"ipv6 peer", "[2001:db8::1]:443", nil, "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			if tt.xff != nil {
				r.Header["X-Forwarded-For"] = tt.xff
			}
			if got := h.clientAddr(r); got != tt.want {
				t.Errorf("clientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	e := newEnv(t)
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	tests := []struct {
		name string
		sent []string
		keep bool
	}{
		{"none", nil, false},
		{"well formed", []string{"abc-123_X.y"}, true},
		{"128 chars", []string{strings.Repeat("a", 128)}, true},
		{"129 chars", []string{strings.Repeat("a", 129)}, false},
		{"bad characters", []string{"abc def"}, false},
		{"injection", []string{`a"b`}, false},
		{"two values", []string{"one", "two"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr http.Header
			if tt.sent != nil {
				hdr = http.Header{"X-Request-Id": tt.sent}
			}
			res := e.do("GET", "/healthz", hdr, "")
			got := res.Header.Values("X-Request-Id")
			if len(got) != 1 {
				t.Fatalf("response X-Request-Id %q, want one value", got)
			}
			if tt.keep && got[0] != tt.sent[0] {
				t.Errorf("id %q, want the client's %q", got[0], tt.sent[0])
			}
			if !tt.keep && !hex32.MatchString(got[0]) {
				t.Errorf("generated id %q is not 32 hex digits", got[0])
			}
			if up := e.up.last(t).header.Values("X-Request-Id"); len(up) != 1 || up[0] != got[0] {
				t.Errorf("upstream saw %q, client got %q", up, got[0])
			}
		})
	}
	t.Run("errors carry it too", func(t *testing.T) {
		res := e.do("GET", "/api", nil, "")
		if res.StatusCode != 401 || !hex32.MatchString(res.Header.Get("X-Request-Id")) {
			t.Fatalf("%d %q", res.StatusCode, res.Header.Get("X-Request-Id"))
		}
	})
	t.Run("unique", func(t *testing.T) {
		a := e.do("GET", "/healthz", nil, "").Header.Get("X-Request-Id")
		b := e.do("GET", "/healthz", nil, "").Header.Get("X-Request-Id")
		if a == b {
			t.Fatal("two requests got the same id")
		}
	})
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	tok := e.issue("marco", "marco")
	e.do("GET", "/api/a", bearer(tok), "")
	e.do("GET", "/api/b", bearer(tok), "")
	e.do("GET", "/api/c", nil, "")
	e.do("GET", "/healthz", nil, "")
	e.do("POST", "/user/login", jsonHeader(), `{"username":"marco","password":"wrong password"}`)
	e.do("GET", "/user/login", nil, "")

	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tokengate_http_requests_total", map[string]string{"route": "proxy", "code": "200"}, 2},
		{"tokengate_http_requests_total", map[string]string{"route": "proxy", "code": "401"}, 1},
		{"tokengate_http_requests_total", map[string]string{"route": "public", "code": "200"}, 1},
		{"tokengate_http_requests_total", map[string]string{"route": "login", "code": "401"}, 1},
		{"tokengate_http_requests_total", map[string]string{"route": "login", "code": "405"}, 1},
		{"tokengate_http_request_duration_seconds", map[string]string{"route": "proxy"}, 3},
		{"tokengate_http_request_duration_seconds", map[string]string{"route": "login"}, 2},
		{"tokengate_auth_decisions_total", map[string]string{"result": "allowed"}, 2},
		{"tokengate_auth_decisions_total", map[string]string{"result": "missing"}, 1},
		{"tokengate_logins_total", map[string]string{"result": "invalid_credentials"}, 1},
	} {
		if got := metricValue(t, e.reg, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	// The route label never holds a raw path.
	mfs, _ := e.reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "route" && strings.HasPrefix(lp.GetValue(), "/") {
					t.Errorf("%s has route=%q", mf.GetName(), lp.GetValue())
				}
			}
		}
	}
}

func TestAccessLog(t *testing.T) {
	e := newEnv(t)
	tok := e.login("marco", marcoPassword)
	e.do("GET", "/api/things?token=query-secret&x=1", bearer(tok), "")
	e.do("POST", "/user/login", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "username=marco&password=a-wrong-password-123")
	e.do("POST", "/user/logout", http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"session=cookie-secret"}}, "")

	logs := e.logs.String()
	for _, secret := range []string{tok, marcoPassword, "a-wrong-password-123", "query-secret", "cookie-secret", "Bearer"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" && m["path"] == "/api/things" {
			line = m
		}
	}
	if line == nil {
		t.Fatalf("no access log line for /api/things in:\n%s", logs)
	}
	for k, want := range map[string]any{"route": "proxy", "method": "GET", "status": float64(200), "user_id": "marco", "level": "INFO"} {
		if line[k] != want {
			t.Errorf("%s = %v, want %v", k, line[k], want)
		}
	}
	for _, k := range []string{"request_id", "duration_ms", "upstream_ms", "bytes"} {
		if _, ok := line[k]; !ok {
			t.Errorf("no %s in %v", k, line)
		}
	}
}
