package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
	"tokengate/internal/testkit"

	"tokengate/internal/accesslog"
)

// accessLines decodes the JSON access lines ("msg":"request") of logs.
func accessLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if m["msg"] == accesslog.Message {
			out = append(out, m)
		}
	}
	return out
}

// Access and login lines say who connected, with what, and why a request
// was refused, through either sink (slog, or the accesslog fast path), and
// never carry a token, a password or a query string.
func TestAccessLogIncidentFields(t *testing.T) {
	for _, sink := range []string{"slog", "accesslog"} {
		t.Run(sink, func(t *testing.T) {
			logs := &testkit.LogBuffer{}
			var opt func(*Options)
			if sink == "accesslog" {
				opt = func(o *Options) { o.AccessLog = accesslog.NewLogger(logs, "json") }
			}
			e := newEnv(t, envConfig{options: opt})
			if sink == "slog" {
				logs = e.logs
			}
			ua := http.Header{"User-Agent": {"incident-test/1.0"}}
			with := func(h http.Header, kv ...string) http.Header {
				out := http.Header{"User-Agent": ua["User-Agent"]}
				for k, v := range h {
					out[k] = v
				}
				for i := 0; i+1 < len(kv); i += 2 {
					out[kv[i]] = []string{kv[i+1]}
				}
				return out
			}

			good := e.login("alice", alicePassword) // id u-alice
			e.do("POST", "/user/login", with(nil, "Content-Type", "application/json"), `{"username":"alice","password":"wrong-password-77"}`)
			e.do("GET", "/api/ok?access_token=query-secret", with(bearer(good)), "")
			e.do("GET", "/api/missing", with(nil), "")
			e.do("GET", "/api/invalid", with(bearer(good[:len(good)-4]+"AAAA")), "")
			revoked := e.login("marco", marcoPassword)
			e.do("POST", "/user/logout", with(bearer(revoked)), "")
			e.do("GET", "/api/revoked", with(bearer(revoked)), "")
			e.clock.Advance(2 * time.Hour)
			e.do("GET", "/api/expired", with(bearer(good)), "")

			lines := accessLines(t, logs.String())
			byPath := map[string]map[string]any{}
			var logins []map[string]any
			for _, l := range lines {
				if l["route"] == "login" {
					logins = append(logins, l)
				} else {
					byPath[l["path"].(string)] = l
				}
			}
			for path, want := range map[string]map[string]any{
				"/api/ok":      {"status": 200.0, "auth": "allowed", "user_id": "u-alice"},
				"/api/missing": {"status": 401.0, "auth": "missing"},
				"/api/invalid": {"status": 401.0, "auth": "invalid"},
				"/api/revoked": {"status": 401.0, "auth": "revoked"},
				"/api/expired": {"status": 401.0, "auth": "expired"},
			} {
				l := byPath[path]
				if l == nil {
					t.Errorf("no access line for %s", path)
					continue
				}
				want["client"] = "127.0.0.1"
				want["user_agent"] = "incident-test/1.0"
				for k, v := range want {
					if l[k] != v {
						t.Errorf("%s: %s = %v, want %v", path, k, l[k], v)
					}
				}
				if path != "/api/ok" && l["user_id"] != nil {
					t.Errorf("%s: user_id %v on a refused request", path, l["user_id"])
				}
			}
			if len(logins) != 3 {
				t.Fatalf("%d login lines, want 3", len(logins))
			}
			for i, want := range []map[string]any{
				{"login": "alice", "auth": "success", "user_id": "u-alice", "status": 200.0},
				{"login": "alice", "auth": "invalid_credentials", "user_id": nil, "status": 401.0},
				{"login": "marco", "auth": "success", "user_id": "marco", "status": 200.0},
			} {
				for k, v := range want {
					if logins[i][k] != v {
						t.Errorf("login line %d: %s = %v, want %v", i, k, logins[i][k], v)
					}
				}
				if logins[i]["client"] != "127.0.0.1" {
					t.Errorf("login line %d: client = %v", i, logins[i]["client"])
				}
			}
			all := logs.String()
			for _, secret := range []string{good, revoked, alicePassword, marcoPassword, "wrong-password-77", "query-secret", "access_token", "Bearer"} {
				if strings.Contains(all, secret) {
					t.Errorf("the log contains %q", secret)
				}
			}
		})
	}
}

// Behind a trusted proxy the client is the address throttling uses (the
// rightmost untrusted X-Forwarded-For hop), not the proxy and not the
// client-written leftmost hop.
func TestAccessLogClientBehindTrustedProxy(t *testing.T) {
	e := newEnv(t, envConfig{options: func(o *Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	}})
	e.do("GET", "/api/x", http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.9, 10.1.2.3"}}, "")
	e.do("GET", "/api/y", nil, "")
	got := map[string]any{}
	for _, l := range accessLines(t, e.logs.String()) {
		got[l["path"].(string)] = l["client"]
	}
	if got["/api/x"] != "203.0.113.9" {
		t.Errorf("client behind trusted proxies = %v, want 203.0.113.9", got["/api/x"])
	}
	if got["/api/y"] != "127.0.0.1" {
		t.Errorf("client without X-Forwarded-For = %v, want 127.0.0.1", got["/api/y"])
	}
}

// A log reader that stops reading (a pipe nobody drains) never holds up a
// request: many times more requests than the buffer and the pipe can hold
// all complete while the writer is stuck, and the lines that did not fit
// are counted as dropped.
func TestAccessLogStalledPipeDoesNotBlockRequests(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	w := accesslog.NewWriter(pw, accesslog.WriterOptions{BufferBytes: 8 << 10, BatchBytes: 1 << 10})
	e := newEnv(t, envConfig{options: func(o *Options) { o.AccessLog = accesslog.NewLogger(w, "json") }})
	tok := e.login("marco", marcoPassword)

	// Each line is about 350 bytes; the kernel pipe holds 64 KiB and the
	// buffer 8 KiB, so after a few hundred requests the writer is stuck.
	const n = 2000
	done := make(chan error, 1)
	go func() {
		for i := range n {
			res, err := e.srv.Client().Do(mustRequest("GET", e.srv.URL+fmt.Sprintf("/api/%d", i), bearer(tok)))
			if err != nil {
				done <- err
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				done <- fmt.Errorf("request %d: %d", i, res.StatusCode)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("requests are blocked behind the stalled log reader")
	}
	if w.Dropped() == 0 {
		t.Fatal("no line counted as dropped although the reader stalled")
	}
	// Drain the pipe so Close can finish, and check the lines are whole.
	got := make(chan string)
	go func() { b, _ := io.ReadAll(pr); got <- string(b) }()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	out := <-got
	lines := accessLines(t, out)
	if len(lines)+int(w.Dropped()) != n+1 { // +1: the login
		t.Errorf("%d lines written + %d dropped, want %d", len(lines), w.Dropped(), n+1)
	}
}

func mustRequest(method, url string, hdr http.Header) *http.Request {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		panic(err)
	}
	req.Header = hdr
	return req
}

// Browser sign-in lines carry the login name, the result and the user id;
// cookie-authenticated requests the auth decision, like Bearer ones. The
// cookie's token and the password never appear.
func TestAccessLogBrowserSignIn(t *testing.T) {
	e := newBrowserEnv(t)
	p := e.getPage(signInPath)
	e.postForm(signInPath, url.Values{"username": {"alice"}, "password": {"not-her-password-9"}, "csrf": {p.csrf}}, nil, p.csrfCookie)
	c := e.signIn("alice", alicePassword)
	e.send("GET", "/app/page", session(c, "Accept", "application/json"), "")

	var signIns []map[string]any
	var page map[string]any
	for _, l := range accessLines(t, e.logs.String()) {
		switch {
		case l["path"] == signInPath && l["method"] == "POST":
			signIns = append(signIns, l)
		case l["path"] == "/app/page":
			page = l
		}
	}
	if len(signIns) != 2 {
		t.Fatalf("%d sign-in lines, want 2", len(signIns))
	}
	for i, want := range []map[string]any{
		{"login": "alice", "auth": "invalid_credentials", "user_id": nil},
		{"login": "alice", "auth": "success", "user_id": "u-alice"},
	} {
		for k, v := range want {
			if signIns[i][k] != v {
				t.Errorf("sign-in line %d: %s = %v, want %v", i, k, signIns[i][k], v)
			}
		}
	}
	if page == nil || page["auth"] != "allowed" || page["user_id"] != "u-alice" {
		t.Errorf("cookie-authenticated line: %v", page)
	}
	for _, secret := range []string{c.Value, alicePassword, "not-her-password-9"} {
		if strings.Contains(e.logs.String(), secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}
