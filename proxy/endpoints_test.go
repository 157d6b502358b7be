package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tokengate/authn"
)

func formHeader() http.Header {
	return http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
}

func multipartBody(t *testing.T, fields map[string]string) (http.Header, string) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		w.WriteField(k, v)
	}
	w.Close()
	return http.Header{"Content-Type": {w.FormDataContentType()}}, b.String()
}

func TestLogin(t *testing.T) {
	e := newEnv(t)
	mpHdr, mpBody := multipartBody(t, map[string]string{"username": "marco", "password": marcoPassword})
	tests := []struct {
		name   string
		route  string
		hdr    http.Header
		body   string
		status int
		code   string
	}{
		{"json", "/user/login", jsonHeader(), `{"username":"marco","password":"` + marcoPassword + `"}`, 200, ""},
		{"json with charset (httpie)", "/user/login", http.Header{"Content-Type": {"application/json; charset=utf-8"}}, `{"username": "marco", "password": "` + marcoPassword + `"}`, 200, ""},
		{"email alias", "/user/login", jsonHeader(), `{"email":"marco","password":"` + marcoPassword + `"}`, 200, ""},
		{"form", "/user/login", formHeader(), "username=marco&password=" + strings.ReplaceAll(marcoPassword, " ", "+"), 200, ""},
		{"multipart", "/user/login", mpHdr, mpBody, 200, ""},
		{"session POST", "/session", jsonHeader(), `{"username":"marco","password":"` + marcoPassword + `"}`, 200, ""},
		{"user id differs from name", "/user/login", jsonHeader(), `{"username":"alice","password":"` + alicePassword + `"}`, 200, ""},
		{"wrong password", "/user/login", jsonHeader(), `{"username":"marco","password":"nope nope nope"}`, 401, "invalid_credentials"},
		{"unknown user", "/user/login", jsonHeader(), `{"username":"nobody","password":"nope nope nope"}`, 401, "invalid_credentials"},
		{"bad json", "/user/login", jsonHeader(), `{"username":"marco",`, 400, "malformed_request"},
		{"trailing json", "/user/login", jsonHeader(), `{"username":"marco","password":"x"} {}`, 400, "malformed_request"},
		{"number username", "/user/login", jsonHeader(), `{"username":7,"password":"x"}`, 400, "malformed_request"},
		{"missing password", "/user/login", jsonHeader(), `{"username":"marco"}`, 400, "malformed_request"},
		{"empty username", "/user/login", jsonHeader(), `{"username":"","password":"x"}`, 400, "malformed_request"},
		{"empty body", "/user/login", jsonHeader(), ``, 400, "malformed_request"},
		{"repeated form field", "/user/login", formHeader(), "username=marco&username=alice&password=x", 400, "malformed_request"},
		{"unknown content type", "/user/login", http.Header{"Content-Type": {"text/plain"}}, "marco:x", 400, "malformed_request"},
		{"too large", "/user/login", jsonHeader(), `{"username":"marco","password":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "request_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do("POST", tt.route, tt.hdr, tt.body)
			if res.StatusCode != tt.status {
				t.Fatalf("%d %s, want %d", res.StatusCode, res.body, tt.status)
			}
			if got := res.Header.Get("Content-Type"); got != "application/json; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
			if tt.status != 200 {
				if got := res.apiErr().Code; got != tt.code {
					t.Errorf("error %q, want %q", got, tt.code)
				}
				if strings.Contains(res.body, marcoPassword) {
					t.Error("the answer echoes the password")
				}
				return
			}
			if got := res.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control %q", got)
			}
			var out struct{ Token string }
			json.Unmarshal([]byte(res.body), &out)
			claims, err := e.tokens.Verify(out.Token)
			if err != nil {
				t.Fatalf("issued token: %v", err)
			}
			if want := map[bool]string{true: "u-alice", false: "marco"}[strings.Contains(tt.body, "alice")]; claims.Subject != want {
				t.Errorf("sub %q, want %q", claims.Subject, want)
			}
			if r := e.do("GET", "/api", bearer(out.Token), ""); r.StatusCode != 200 {
				t.Errorf("the new token is refused: %d", r.StatusCode)
			}
		})
	}
	t.Run("chunked too large", func(t *testing.T) {
		req, _ := http.NewRequest("POST", e.srv.URL+"/user/login", strings.NewReader(strings.Repeat("x", 70<<10)))
		req.ContentLength = -1 // chunked: the limit must hold without a Content-Length
		req.Header.Set("Content-Type", "application/json")
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 413 {
			t.Fatalf("%d, want 413", res.StatusCode)
		}
	})
	if got := metricValue(t, e.reg, "tokengate_logins_total", map[string]string{"result": "success"}); got != 7 {
		t.Errorf("logins{success} = %v, want 7", got)
	}
	if got := metricValue(t, e.reg, "tokengate_logins_total", map[string]string{"result": "malformed"}); got != 10 {
		t.Errorf("logins{malformed} = %v, want 10", got)
	}
}

func TestLoginThrottled(t *testing.T) {
	e := newEnv(t, envConfig{throttle: authn.ThrottleOptions{PerUser: 2, PerAddress: 100, Window: time.Minute}})
	bad := `{"username":"marco","password":"wrong password!"}`
	var res response
	for range 5 {
		if res = e.do("POST", "/user/login", jsonHeader(), bad); res.StatusCode == 429 {
			break
		}
	}
	if res.StatusCode != 429 || res.apiErr().Code != "too_many_attempts" {
		t.Fatalf("%d %s, want 429", res.StatusCode, res.body)
	}
	secs, err := strconv.Atoi(res.Header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 60 {
		t.Fatalf("Retry-After %q", res.Header.Get("Retry-After"))
	}
	if got := metricValue(t, e.reg, "tokengate_logins_total", map[string]string{"result": "throttled"}); got != 1 {
		t.Errorf("logins{throttled} = %v", got)
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	tok := e.login("marco", marcoPassword)
	other := e.login("marco", marcoPassword)
	alice := e.login("alice", alicePassword)

	if res := e.do("POST", "/user/logout", bearer(tok), ""); res.StatusCode != 204 || res.body != "" {
		t.Fatalf("logout: %d %q", res.StatusCode, res.body)
	}
	if res := e.do("GET", "/api", bearer(tok), ""); res.StatusCode != 401 || res.apiErr().Code != "token_revoked" {
		t.Fatalf("revoked token: %d %s", res.StatusCode, res.body)
	}
	for name, tk := range map[string]string{"same user's other token": other, "other user": alice} {
		if res := e.do("GET", "/api", bearer(tk), ""); res.StatusCode != 200 {
			t.Errorf("%s: %d after logout", name, res.StatusCode)
		}
	}
	for name, hdr := range map[string]http.Header{"again": bearer(tok), "no token": nil, "garbage": bearer("x.y.z")} {
		if res := e.do("POST", "/user/logout", hdr, ""); res.StatusCode != 401 {
			t.Errorf("logout %s: %d, want 401", name, res.StatusCode)
		}
	}
	t.Run("DELETE /session", func(t *testing.T) {
		tk := e.login("marco", marcoPassword)
		if res := e.do("DELETE", "/session", bearer(tk), ""); res.StatusCode != 204 {
			t.Fatalf("%d %s", res.StatusCode, res.body)
		}
		if res := e.do("GET", "/session", bearer(tk), ""); res.StatusCode != 401 {
			t.Fatalf("%d after DELETE /session", res.StatusCode)
		}
	})
	t.Run("store down", func(t *testing.T) {
		e := newEnv(t)
		tk := e.issue("marco", "marco")
		// Cache "not revoked" first, so the check passes and the revocation
		// itself is what fails.
		if res := e.do("GET", "/api", bearer(tk), ""); res.StatusCode != 200 {
			t.Fatal(res.StatusCode)
		}
		e.store.Close()
		if res := e.do("POST", "/user/logout", bearer(tk), ""); res.StatusCode != 503 || res.apiErr().Code != "revocation_unavailable" {
			t.Fatalf("%d %s, want 503", res.StatusCode, res.body)
		}
		if res := e.do("GET", "/api", bearer(tk), ""); res.StatusCode != 200 {
			t.Fatalf("%d: a failed logout must not claim anything", res.StatusCode)
		}
	})
}

func TestLogoutAll(t *testing.T) {
	e := newEnv(t)
	t1 := e.issue("marco", "marco")
	e.clock.Advance(time.Millisecond)
	t2 := e.issue("marco", "marco")
	alice := e.issue("u-alice", "alice")
	e.clock.Advance(time.Millisecond)

	if res := e.do("POST", "/user/logout_all", http.Header{"X-Auth-UserId": {"marco"}}, ""); res.StatusCode != 401 {
		t.Fatalf("identity header alone: %d, want 401", res.StatusCode)
	}
	hdr := bearer(t1)
	hdr["x_auth_userid"] = []string{"u-alice"}
	if res := e.do("POST", "/user/logout_all", hdr, ""); res.StatusCode != 403 || res.apiErr().Code != "forbidden" {
		t.Fatalf("naming another user: %d %s, want 403", res.StatusCode, res.body)
	}
	if res := e.do("GET", "/api", bearer(alice), ""); res.StatusCode != 200 {
		t.Fatal("the 403 revoked something")
	}
	hdr = bearer(t2)
	hdr["X-Auth-UserId"] = []string{"marco"} // the seed's own example: naming oneself is fine
	if res := e.do("POST", "/user/logout_all", hdr, ""); res.StatusCode != 204 {
		t.Fatalf("logout_all: %d %s", res.StatusCode, res.body)
	}
	for name, tk := range map[string]string{"t1": t1, "t2": t2} {
		if res := e.do("GET", "/api", bearer(tk), ""); res.StatusCode != 401 || res.apiErr().Code != "token_revoked" {
			t.Errorf("%s: %d after logout_all", name, res.StatusCode)
		}
	}
	if res := e.do("GET", "/api", bearer(alice), ""); res.StatusCode != 200 {
		t.Errorf("another user's token: %d after logout_all", res.StatusCode)
	}
	// Same second, a millisecond later: the new token works.
	e.clock.Advance(time.Millisecond)
	fresh := e.login("marco", marcoPassword)
	if res := e.do("GET", "/api", bearer(fresh), ""); res.StatusCode != 200 {
		t.Fatalf("token issued after logout_all: %d %s", res.StatusCode, res.body)
	}
	t.Run("store down", func(t *testing.T) {
		e := newEnv(t)
		tk := e.issue("marco", "marco")
		e.do("GET", "/api", bearer(tk), "")
		e.store.Close()
		if res := e.do("POST", "/user/logout_all", bearer(tk), ""); res.StatusCode != 503 {
			t.Fatalf("%d, want 503", res.StatusCode)
		}
	})
}

func TestSession(t *testing.T) {
	e := newEnv(t, envConfig{refreshWindow: 2 * time.Hour})
	tok := e.login("alice", alicePassword)

	t.Run("GET", func(t *testing.T) {
		res := e.do("GET", "/session", bearer(tok), "")
		if res.StatusCode != 200 {
			t.Fatalf("%d %s", res.StatusCode, res.body)
		}
		var got map[string]string
		if err := json.Unmarshal([]byte(res.body), &got); err != nil {
			t.Fatal(err)
		}
		c, _ := e.tokens.Verify(tok)
		want := map[string]string{
			"id": "u-alice", "username": "alice",
			"issued_at":  c.IssuedAt.UTC().Format(time.RFC3339Nano),
			"expires_at": c.ExpiresAt.UTC().Format(time.RFC3339Nano),
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
		if !strings.Contains(got["issued_at"], ".25") {
			t.Errorf("issued_at %q lost its sub-second part", got["issued_at"])
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		get := e.do("GET", "/session", bearer(tok), "")
		head := e.do("HEAD", "/session", bearer(tok), "")
		if head.StatusCode != 200 || head.body != "" {
			t.Fatalf("%d %q", head.StatusCode, head.body)
		}
		if head.ContentLength != get.ContentLength || head.Header.Get("Content-Type") != get.Header.Get("Content-Type") {
			t.Errorf("HEAD headers differ from GET: %d %q vs %d", head.ContentLength, head.Header.Get("Content-Type"), get.ContentLength)
		}
	})
	t.Run("no token", func(t *testing.T) {
		for _, m := range []string{"GET", "PUT", "DELETE"} {
			if res := e.do(m, "/session", nil, ""); res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("%s: %d", m, res.StatusCode)
			}
		}
	})
	t.Run("PUT refreshes", func(t *testing.T) {
		old := e.login("marco", marcoPassword)
		res := e.do("PUT", "/session", bearer(old), "")
		if res.StatusCode != 200 {
			t.Fatalf("%d %s", res.StatusCode, res.body)
		}
		var out struct{ Token string }
		json.Unmarshal([]byte(res.body), &out)
		if r := e.do("GET", "/api", bearer(out.Token), ""); r.StatusCode != 200 {
			t.Fatalf("new token: %d", r.StatusCode)
		}
		if r := e.do("GET", "/api", bearer(old), ""); r.StatusCode != 401 || r.apiErr().Code != "token_revoked" {
			t.Fatalf("old token: %d %s", r.StatusCode, r.body)
		}
		if r := e.do("PUT", "/session", bearer(old), ""); r.StatusCode != 401 {
			t.Fatalf("refreshing a revoked token: %d", r.StatusCode)
		}
	})
	t.Run("PUT within the refresh window", func(t *testing.T) {
		e := newEnv(t, envConfig{refreshWindow: 2 * time.Hour})
		old := e.issue("marco", "marco")
		loggedOut := e.issue("marco", "marco")
		if r := e.do("DELETE", "/session", bearer(loggedOut), ""); r.StatusCode != 204 {
			t.Fatal(r.StatusCode)
		}
		e.clock.Advance(90 * time.Minute) // expired, refreshable
		if r := e.do("GET", "/api", bearer(old), ""); r.StatusCode != 401 || r.apiErr().Code != "token_expired" {
			t.Fatalf("expired token on the proxy: %d %s", r.StatusCode, r.body)
		}
		if r := e.do("PUT", "/session", bearer(loggedOut), ""); r.StatusCode != 401 {
			t.Fatalf("a logged-out token came back through refresh after its exp: %d", r.StatusCode)
		}
		res := e.do("PUT", "/session", bearer(old), "")
		if res.StatusCode != 200 {
			t.Fatalf("refresh in window: %d %s", res.StatusCode, res.body)
		}
		if r := e.do("PUT", "/session", bearer(old), ""); r.StatusCode != 401 {
			t.Fatalf("second refresh of the same token: %d", r.StatusCode)
		}
		e.clock.Advance(2 * time.Hour)
		if r := e.do("PUT", "/session", bearer(old), ""); r.StatusCode != 401 {
			t.Fatalf("refresh past the window: %d", r.StatusCode)
		}
	})
}

func TestUsersRoute(t *testing.T) {
	newRegistrar := func(t *testing.T) (*authn.BoltUsers, *authn.Registrar) {
		users, err := authn.OpenBoltUsers(filepath.Join(t.TempDir(), "users.db"), authn.BoltUsersOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { users.Close() })
		return users, authn.NewRegistrar(users, authn.UserPolicy{}, authn.HashOptions{BcryptCost: 4})
	}
	body := func(name, pw string) string { return fmt.Sprintf(`{"username":%q,"password":%q}`, name, pw) }

	t.Run("off", func(t *testing.T) {
		e := newEnv(t)
		for _, m := range []string{"POST", "GET"} {
			if res := e.do(m, "/users", jsonHeader(), body("newbie", "a long enough password")); res.StatusCode != 404 || res.apiErr().Code != "not_found" {
				t.Errorf("%s: %d %s", m, res.StatusCode, res.body)
			}
		}
		if len(e.up.requests()) != 0 {
			t.Error("the users route was proxied")
		}
	})
	t.Run("open", func(t *testing.T) {
		users, reg := newRegistrar(t)
		e := newEnv(t, envConfig{options: func(o *Options) {
			o.Registration = "open"
			o.Registrar = reg
			o.Auth = authn.NewAuthenticator(users, authn.AuthenticatorOptions{Hash: authn.HashOptions{BcryptCost: 4}})
		}})
		tests := []struct {
			name    string
			hdr     http.Header
			body    string
			status  int
			code    string
			message string // what the client is told, when it says which rule failed
		}{
			{"created", jsonHeader(), body("newbie", "a long enough password"), 201, "", ""},
			{"email alias, form", formHeader(), "email=other%40example.com&password=another+long+password", 201, "", ""},
			{"exists", jsonHeader(), body("newbie", "a long enough password"), 409, "user_exists", ""},
			{"weak", jsonHeader(), body("shorty", "short"), 400, "weak_password", "password must have at least 10 characters"},
			{"equal to the name", jsonHeader(), body("longusername", "LongUserName"), 400, "weak_password", "password must differ from the username"},
			{"over bcrypt's 72 bytes", jsonHeader(), body("longpass", strings.Repeat("p", 73)), 400, "weak_password", "password must be at most 72 bytes (bcrypt ignores the rest)"},
			{"invalid name", jsonHeader(), body("bad name", "a long enough password"), 400, "invalid_username", ""},
			{"malformed", jsonHeader(), `{"username":"x"}`, 400, "malformed_request", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res := e.do("POST", "/users", tt.hdr, tt.body)
				if res.StatusCode != tt.status {
					t.Fatalf("%d %s, want %d", res.StatusCode, res.body, tt.status)
				}
				if tt.status != 201 {
					if res.apiErr().Code != tt.code {
						t.Errorf("error %q, want %q", res.apiErr().Code, tt.code)
					}
					if tt.message != "" && res.apiErr().Message != tt.message {
						t.Errorf("message %q, want %q", res.apiErr().Message, tt.message)
					}
					if strings.Contains(res.body, "short\"") || strings.Contains(res.body, "long enough") {
						t.Error("the answer echoes the password")
					}
				}
			})
		}
		res := e.do("POST", "/user/login", jsonHeader(), body("newbie", "a long enough password"))
		if res.StatusCode != 200 {
			t.Fatalf("login as the new user: %d %s", res.StatusCode, res.body)
		}
		if res := e.do("GET", "/users", nil, ""); res.StatusCode != 405 || res.Header.Get("Allow") != "POST" {
			t.Errorf("GET /users: %d Allow %q", res.StatusCode, res.Header.Get("Allow"))
		}
	})
	t.Run("authenticated", func(t *testing.T) {
		_, reg := newRegistrar(t)
		e := newEnv(t, envConfig{options: func(o *Options) {
			o.Registration = "authenticated"
			o.Registrar = reg
		}})
		if res := e.do("POST", "/users", jsonHeader(), body("newbie", "a long enough password")); res.StatusCode != 401 {
			t.Fatalf("without token: %d", res.StatusCode)
		}
		hdr := bearer(e.issue("marco", "marco"))
		hdr["Content-Type"] = []string{"application/json"}
		res := e.do("POST", "/users", hdr, body("newbie", "a long enough password"))
		if res.StatusCode != 201 {
			t.Fatalf("with token: %d %s", res.StatusCode, res.body)
		}
		var got map[string]string
		json.Unmarshal([]byte(res.body), &got)
		if got["id"] != "newbie" || got["username"] != "newbie" || len(got) != 2 {
			t.Errorf("body %v", got)
		}
	})
}

func TestJWKS(t *testing.T) {
	t.Run("public keys", func(t *testing.T) {
		e := newEnv(t)
		res := e.do("GET", "/.well-known/jwks.json", nil, "")
		if res.StatusCode != 200 || res.Header.Get("Cache-Control") != "public, max-age=300" {
			t.Fatalf("%d %q", res.StatusCode, res.Header.Get("Cache-Control"))
		}
		var doc struct{ Keys []map[string]any }
		if err := json.Unmarshal([]byte(res.body), &doc); err != nil || len(doc.Keys) == 0 {
			t.Fatalf("%s: %v", res.body, err)
		}
		if _, private := doc.Keys[0]["d"]; private {
			t.Fatal("the JWKS holds a private key")
		}
		if head := e.do("HEAD", "/.well-known/jwks.json", nil, ""); head.StatusCode != 200 || head.body != "" {
			t.Errorf("HEAD: %d %q", head.StatusCode, head.body)
		}
	})
	t.Run("HS256 only", func(t *testing.T) {
		e := newEnv(t, envConfig{algorithm: "HS256"})
		if res := e.do("GET", "/.well-known/jwks.json", nil, ""); res.StatusCode != 404 {
			t.Fatalf("%d %s", res.StatusCode, res.body)
		}
	})
	t.Run("no JWKS func: the path is the upstream's", func(t *testing.T) {
		e := newEnv(t, envConfig{options: func(o *Options) { o.JWKS = nil }})
		if res := e.do("GET", "/.well-known/jwks.json", nil, ""); res.StatusCode != 401 {
			t.Fatalf("%d", res.StatusCode)
		}
	})
}

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		method, path, allow string
	}{
		{"GET", "/user/login", "POST"},
		{"PUT", "/user/login", "POST"},
		{"GET", "/user/logout", "POST"},
		{"DELETE", "/user/logout_all", "POST"},
		{"PATCH", "/session", "GET, HEAD, POST, PUT, DELETE"},
		{"OPTIONS", "/session", "GET, HEAD, POST, PUT, DELETE"},
		{"POST", "/.well-known/jwks.json", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			res := e.do(tt.method, tt.path, nil, "")
			if res.StatusCode != 405 || res.Header.Get("Allow") != tt.allow || res.apiErr().Code != "method_not_allowed" {
				t.Fatalf("%d Allow %q %s", res.StatusCode, res.Header.Get("Allow"), res.body)
			}
		})
	}
	if len(e.up.requests()) != 0 {
		t.Error("an identity endpoint was proxied")
	}
}
