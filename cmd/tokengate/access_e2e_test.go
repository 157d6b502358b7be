package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tokengate/internal/testkit"
)

// accessRules is appended to the test config: the README's example with
// users instead of groups (the users file has none here), a deny rule, a
// public page and a method rule.
const accessRules = `access:
  rules:
    - name: admin
      paths: [/admin]
      users: [alice]
    - name: old
      paths: [/old]
      policy: deny
    - name: landing
      paths: ["=/"]
      policy: public
    - name: deletes
      methods: [DELETE]
      users: [alice]
`

// groupRules is the README's worked example: /admin for ops, /reports for
// finance, everything else for any signed-in user.
const groupRules = `access:
  rules:
    - name: admin
      paths: [/admin]
      groups: [ops]
    - name: reports
      paths: [/reports]
      groups: [finance]
`

// writeAccessUsers writes the users file by rename, each user with the
// password "<name>-password-1" and the groups after the name.
func writeAccessUsers(t *testing.T, path string, users ...[]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("users:\n")
	for _, u := range users {
		fmt.Fprintf(&b, "  - username: %s\n    password_hash: %q\n    groups: [%s]\n", u[0], testkit.BcryptHash(t, u[0]+"-password-1"), strings.Join(u[1:], ", "))
	}
	if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func appendConfig(t *testing.T, dir, extra string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "config.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
}

// rawCall sends a request line exactly as written (Go's client would
// normalise some of these paths) and returns the status code.
func rawCall(t *testing.T, base, method, target, token string, headers ...string) int {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n", method, target)
	if token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	b.WriteString("\r\n")
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestAccessRulesSidecarE2E runs the binary with rules: who reaches what,
// the path confusions, spoofed groups, the metrics and the access line.
func TestAccessRulesSidecarE2E(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	appendConfig(t, dir, accessRules)
	in := start(t, dir)
	alice := login(t, in.Public, "alice", testUsers["alice"])
	bob := login(t, in.Public, "bob", testUsers["bob"])

	for _, c := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/admin/users", alice, http.StatusOK},
		{"GET", "/admin/users", bob, http.StatusForbidden},
		{"GET", "/admin/users", "", http.StatusUnauthorized},
		{"GET", "/old", alice, http.StatusForbidden},
		{"GET", "/old", "", http.StatusForbidden},
		{"GET", "/", "", http.StatusOK},
		{"GET", "/app", "", http.StatusUnauthorized},
		{"GET", "/app", bob, http.StatusOK},
		{"DELETE", "/app", bob, http.StatusForbidden},
		{"DELETE", "/app", alice, http.StatusOK},
	} {
		r := call(t, c.method, in.Public+c.path, c.token, "")
		if r.Code != c.want {
			t.Errorf("%s %s (token %v): %d, want %d: %s", c.method, c.path, c.token != "", r.Code, c.want, r.Body)
		}
		if r.Code == http.StatusForbidden && !strings.Contains(r.Body, `"error":"forbidden"`) {
			t.Errorf("%s %s: 403 body %s", c.method, c.path, r.Body)
		}
	}

	// Path confusions: bob never reaches /admin however it is spelled.
	for _, target := range []string{
		"/%61dmin/users", "//admin/users", "/admin//users", "/admin;x=1/users", "/admin%3Bx=1/users",
		"/%2561dmin/users", "/x/%252e%252e/admin/users", "/ADMIN/../admin/users", "/x/..;/admin/users", "/x/%2e%2e/admin/users",
		"/admin%2fusers", "/admin/users/",
	} {
		code := rawCall(t, in.Public, "GET", target, bob)
		if code != http.StatusForbidden && code != http.StatusBadRequest {
			t.Errorf("GET %s as bob: %d, want 403 or 400", target, code)
		}
	}
	// HEAD is judged as GET; method overrides as the stricter method.
	if code := rawCall(t, in.Public, "HEAD", "/admin/users", bob); code != http.StatusForbidden {
		t.Errorf("HEAD /admin/users as bob: %d", code)
	}
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X_HTTP_Method_Override"} {
		if code := rawCall(t, in.Public, "POST", "/app", bob, h, "DELETE"); code != http.StatusForbidden {
			t.Errorf("POST /app with %s: DELETE as bob: %d, want 403", h, code)
		}
	}
	for _, p := range []string{"/admin/users", "/admin/users/"} {
		if seen, ok := up.headersSeen(p); ok && strings.Join(seen["X-Auth-Userid"], "") == "bob" {
			t.Errorf("bob reached %s", p)
		}
	}

	// No client-sent groups header reaches the app, public paths included.
	for _, p := range []string{"/healthz", "/app"} {
		tok := ""
		if p == "/app" {
			tok = bob
		}
		call(t, "GET", in.Public+p, tok, "", "X-Auth-Groups", "ops", "X_Auth_Groups", "ops", "x-auth-groups", "ops")
		h, ok := up.headersSeen(p)
		if !ok {
			t.Fatalf("%s did not reach the app", p)
		}
		for k := range h {
			if strings.ReplaceAll(strings.ToLower(k), "_", "-") == "x-auth-groups" {
				t.Errorf("%s: the app received %s: %v", p, k, h[k])
			}
		}
	}

	metrics := call(t, "GET", in.Admin+"/metrics", "", "").Body
	for _, want := range []string{
		`tokengate_auth_decisions_total{result="forbidden"}`,
		`tokengate_access_rule_matches_total{rule="admin"}`,
		`tokengate_access_rule_matches_total{rule="default"}`,
		`tokengate_access_rule_matches_total{rule="public_paths"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	eventually(t, 5*time.Second, "an access line naming the rule", func() bool {
		return strings.Contains(in.logs.String(), `"rule":"admin"`) && strings.Contains(in.logs.String(), `"rule":"old"`)
	})
}

// TestAccessCaseInsensitiveE2E: /ADMIN meets /admin's rule only when the
// app is said to treat paths case-insensitively.
func TestAccessCaseInsensitiveE2E(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	appendConfig(t, dir, accessRules)
	for _, c := range []struct {
		env  string
		want int
	}{
		{"TOKENGATE_ACCESS_CASE_INSENSITIVE_PATHS=false", http.StatusOK},
		{"TOKENGATE_ACCESS_CASE_INSENSITIVE_PATHS=true", http.StatusForbidden},
	} {
		in := start(t, dir, c.env)
		bob := login(t, in.Public, "bob", testUsers["bob"])
		if code := rawCall(t, in.Public, "GET", "/ADMIN/users", bob); code != c.want {
			t.Errorf("%s: GET /ADMIN/users as bob: %d, want %d", c.env, code, c.want)
		}
		if code := rawCall(t, in.Public, "GET", "/%41dmin", bob); code != c.want {
			t.Errorf("%s: GET /%%41dmin as bob: %d, want %d", c.env, code, c.want)
		}
		in.kill()
	}
}

// TestAccessVerifyE2E: forward auth's verify applies the same rules to the
// original request an ingress names.
func TestAccessVerifyE2E(t *testing.T) {
	dir := newDir(t, `""`)
	appendConfig(t, dir, `trusted_proxies: ["127.0.0.1/32"]
routes:
  verify: /tokengate/verify
`+accessRules)
	in := start(t, dir)
	alice := login(t, in.Public, "alice", testUsers["alice"])
	bob := login(t, in.Public, "bob", testUsers["bob"])
	for _, c := range []struct {
		uri, method, token string
		want               int
	}{
		{"/admin/x", "GET", alice, http.StatusOK},
		{"/admin/x", "GET", bob, http.StatusForbidden},
		{"/%61dmin/x", "GET", bob, http.StatusForbidden},
		{"/admin;a=b/x", "GET", bob, http.StatusForbidden},
		{"//admin/x", "GET", bob, http.StatusForbidden},
		{"/old", "GET", "", http.StatusForbidden},
		{"/", "GET", "", http.StatusOK},
		{"/app", "DELETE", bob, http.StatusForbidden},
		{"/app", "GET", bob, http.StatusOK},
		{"/app", "GET", "", http.StatusUnauthorized},
	} {
		r := call(t, "GET", in.Public+"/tokengate/verify", c.token, "", "X-Original-URI", c.uri, "X-Original-Method", c.method)
		if r.Code != c.want {
			t.Errorf("verify %s %s (token %v): %d, want %d: %s", c.method, c.uri, c.token != "", r.Code, c.want, r.Body)
		}
		if r.Code == http.StatusOK && c.token != "" {
			if _, ok := r.Header["X-Auth-Groups"]; !ok {
				t.Errorf("verify %s: the 200 lacks X-Auth-Groups (the ingress copies it to overwrite a client's)", c.uri)
			}
		}
	}
	// Envoy's style: the original path after the verify route.
	if r := call(t, "GET", in.Public+"/tokengate/verify/admin/x", bob, ""); r.Code != http.StatusForbidden {
		t.Errorf("verify/admin/x as bob: %d", r.Code)
	}
}

// TestAccessThroughIngressE2E: nginx and Caddy with the shipped configs
// enforce verify's 403 and never pass a client's X-Auth-Groups.
func TestAccessThroughIngressE2E(t *testing.T) {
	for _, kind := range ingresses {
		t.Run(kind.name, func(t *testing.T) {
			up := newEchoUpstream(t)
			tg := startAuthServerWith(t, accessRules)
			in := kind.start(t, strings.TrimPrefix(tg.Public, "http://"), strings.TrimPrefix(up.URL, "http://"))
			s := forwardAuthSetup{tg: tg, up: up, in: in}
			alice := s.login(t)
			r := call(t, "POST", in.base+"/tokengate/login", "", fmt.Sprintf(`{"username":"bob","password":%q}`, testUsers["bob"]))
			bob, _ := r.json(t)["token"].(string)
			spoof := [][2]string{{"X-Auth-Groups", "ops"}, {"X_Auth_Groups", "ops"}}
			auth := func(tok string) [][2]string { return append([][2]string{{"Authorization", "Bearer " + tok}}, spoof...) }
			if r := s.fetch(t, "GET", "/admin/a", auth(bob)); r.Code != http.StatusForbidden {
				t.Errorf("bob /admin/a: %d", r.Code)
			}
			if up.sawPath("/admin/a") {
				t.Error("bob's request reached the app")
			}
			if r := s.fetch(t, "GET", "/admin/b", auth(alice)); r.Code != http.StatusOK {
				t.Errorf("alice /admin/b: %d %s", r.Code, r.Body)
			}
			if r := s.fetch(t, "GET", "/healthz", spoof); r.Code != http.StatusOK {
				t.Errorf("anonymous /healthz: %d", r.Code)
			}
			for _, p := range []string{"/admin/b", "/healthz"} {
				h, ok := up.headersSeen(p)
				if !ok {
					t.Fatalf("%s did not reach the app\n%s", p, in.logs())
				}
				for k, v := range h {
					if strings.ReplaceAll(strings.ToLower(k), "_", "-") == "x-auth-groups" && strings.Join(v, "") != "" {
						t.Errorf("%s: the app received %s: %v", p, k, v)
					}
				}
			}
		})
	}
}

// startAuthServerWith is startAuthServer with more config appended.
func startAuthServerWith(t *testing.T, extra string, env ...string) *instance {
	t.Helper()
	dir := newDir(t, `""`)
	appendConfig(t, dir, `trusted_proxies: ["127.0.0.1/32"]
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
`+extra)
	return start(t, dir, env...)
}

// TestCheckAccessE2E runs check-access on the binary.
func TestCheckAccessE2E(t *testing.T) {
	dir := newDir(t, "http://127.0.0.1:9")
	appendConfig(t, dir, accessRules)
	cfg := filepath.Join(dir, "config.yaml")
	for _, c := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"--user", "alice", "GET", "/admin/x"}, 0, []string{`rule:     access.rules[0] "admin"`, "decision: allowed", "the user is in the rule's users", `user "alice"`}},
		{[]string{"--user", "bob", "GET", "https://app.example.com/admin/x"}, 1, []string{`access.rules[0] "admin"`, "refused (403 forbidden)"}},
		{[]string{"--anonymous", "GET", "/admin"}, 1, []string{"refused (401", "a credential is needed"}},
		{[]string{"GET", "/%61dmin;x=1"}, 1, []string{`access.rules[0] "admin"`}},
		{[]string{"--groups", "ops,staff", "GET", "/app"}, 0, []string{"no rule matched: access.default (authenticated)", "groups [ops, staff]"}},
		{[]string{"GET", "/healthz/x"}, 0, []string{"rule:     public_paths[0] /healthz", "public: no credential needed"}},
		{[]string{"--groups", "x", "GET", "/old"}, 1, []string{`access.rules[1] "old"`, "policy:   deny"}},
		{[]string{"--user", "bob", "--method-override", "DELETE", "POST", "/app"}, 1, []string{`access.rules[3] "deletes"`, "judged as DELETE"}},
		{[]string{"--user", "nobody", "GET", "/app"}, 1, []string{"401 user_unknown"}},
		{[]string{"GET", "/x/../admin"}, 1, []string{"400 malformed_path"}},
		{[]string{"--user", "alice", "--anonymous", "GET", "/"}, 2, nil},
		{[]string{"GET"}, 2, nil},
		{[]string{"GET", "ftp://x/y"}, 2, nil},
	} {
		args := append([]string{"check-access", "--config", cfg}, c.args...)
		out, errOut, code := runBin(t, dir, "", args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d\n%s%s", c.args, code, c.code, out, errOut)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", c.args, w, out)
			}
		}
	}
	// Groups from the users file: --user shows the store's groups.
	writeAccessUsers(t, filepath.Join(dir, "users.yaml"), []string{"olivia", "ops"}, []string{"frank", "finance"})
	groupsCfg := filepath.Join(dir, "groups.yaml")
	if err := os.WriteFile(groupsCfg, []byte(baseConfig("http://127.0.0.1:9")+groupRules), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, path string
		code       int
		want       string
	}{
		{"olivia", "/admin/x", 0, "one of the user's groups is in the rule's groups"},
		{"frank", "/admin/x", 1, "neither the user nor any of their groups"},
		{"frank", "/reports", 0, `user "frank" (groups [finance], from users.backend file)`},
	} {
		out, errOut, code := runBin(t, dir, "", "check-access", "--config", groupsCfg, "--user", c.user, "GET", c.path)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("--user %s %s: exit %d, want %d with %q\n%s%s", c.user, c.path, code, c.code, c.want, out, errOut)
		}
	}
	_, errOut, code := runBin(t, dir, "", "check-config", "--config", groupsCfg)
	if code != 0 || strings.Contains(errOut, "warning") {
		t.Errorf("groups every rule names exist: exit %d, warnings\n%s", code, errOut)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("access:\n  rules:\n    - name: x\n      paths: [admin]\n      policy: deny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runBin(t, dir, "", "check-access", "--config", bad, "GET", "/")
	if code != 2 || !strings.Contains(errOut, `access.rules[0].paths[0]: "admin" must start with / (line 4)`) {
		t.Errorf("bad config: exit %d\n%s", code, errOut)
	}
}

// TestCheckConfigAccessE2E: malformed rules are refused naming key and line;
// shadowed rules and unknown groups are warned about.
func TestCheckConfigAccessE2E(t *testing.T) {
	dir := newDir(t, "http://127.0.0.1:9")
	cfg := filepath.Join(dir, "config.yaml")
	appendConfig(t, dir, `access:
  rules:
    - name: admin
      paths: [/admin]
      groups: [ops]
    - name: admin-users
      paths: [/admin/users]
      policy: deny
    - name: health-check
      paths: ["=/healthz/deep"]
      policy: deny
`)
	out, errOut, code := runBin(t, dir, "", "check-config", "--config", cfg)
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, w := range []string{
		"warning: access.rules[1] (admin-users) can never match: rules[0] admin covers every request it matches",
		"warning: access.rules[2] (health-check) can never match: public_paths[0] /healthz covers",
		`warning: access.rules[0].groups[0]: no user in users.file has group "ops"`,
	} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
	if err := os.WriteFile(cfg, []byte(baseConfig("http://127.0.0.1:9")+`access:
  default: allow
  rules:
    - name: a
      paths: [/a/./b]
      policy: public
    - name: b
      paths: [/b]
      methods: [FETCH]
      groups: [x]
    - name: c
      paths: [/c]
      policy: everyone
    - name: d
      groups: [ops]
    - name: e
      paths: [/e]
      policy: deny
      groups: [ops]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runBin(t, dir, "", "check-config", "--config", cfg)
	if code != 2 {
		t.Fatalf("malformed rules: exit %d\n%s", code, errOut)
	}
	for _, w := range []string{
		"access.default: must be authenticated or deny",
		`access.rules[0].paths[0]: "/a/./b" must be a clean path`,
		`access.rules[1].methods[0]: unknown method "FETCH"`,
		`access.rules[2].policy: unknown policy "everyone"`,
		"access.rules[3]: matches every request",
		`access.rules[4].policy: "deny" cannot be combined with groups or users`,
		"(line 2",
	} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
}

// TestExampleRulesPassCheckConfig: the commented rule set in
// config.example.yaml, uncommented, passes check-config without warnings
// other than groups the example users file lacks.
func TestExampleRulesPassCheckConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	inRules := false
	for line := range strings.SplitSeq(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "  rules: []"):
			inRules = true
			continue
		case inRules && strings.HasPrefix(line, "  # "):
			line = "  " + line[len("  # "):]
		case inRules:
			inRules = false
		}
		lines = append(lines, line)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join("..", "..", "users.yaml"), filepath.Join(dir, "users.yaml"))
	out, errOut, code := runBin(t, dir, "", "check-config", "--config", "config.yaml")
	if code != 0 || strings.Contains(errOut, "can never match") {
		t.Fatalf("the example's rules: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = runBin(t, dir, "", "check-access", "--config", "config.yaml", "--groups", "finance", "GET", "/reports/2026")
	if code != 0 || !strings.Contains(out, `"reports"`) {
		t.Errorf("check-access on the example: exit %d\n%s", code, out)
	}
	out, _, code = runBin(t, dir, "", "check-access", "--config", "config.yaml", "--groups", "finance", "GET", "/admin")
	if code != 1 || !strings.Contains(out, `"admin"`) {
		t.Errorf("check-access on the example: exit %d\n%s", code, out)
	}
}

// TestAccessRulesReloadE2E: SIGHUP applies an edited rule set to the next
// request; a config that does not validate keeps the previous rules.
func TestAccessRulesReloadE2E(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	cfgPath := filepath.Join(dir, "config.yaml")
	appendConfig(t, dir, accessRules)
	in := start(t, dir)
	bob := login(t, in.Public, "bob", testUsers["bob"])
	if r := call(t, "GET", in.Public+"/admin", bob, ""); r.Code != http.StatusForbidden {
		t.Fatalf("before: %d", r.Code)
	}
	writeCfg := func(extra string) {
		t.Helper()
		if err := os.WriteFile(cfgPath+".tmp", []byte(baseConfig(up.URL)+extra), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgPath+".tmp", cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	// admin now lists bob; /public is no longer a public path.
	writeCfg(strings.Replace(accessRules, "users: [alice]", "users: [alice, bob]", 1))
	cfg, _ := os.ReadFile(cfgPath)
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(cfg), `public_paths: ["/healthz", "/public"]`, `public_paths: ["/healthz"]`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	in.signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "the reloaded rules", func() bool {
		return call(t, "GET", in.Public+"/admin", bob, "").Code == http.StatusOK
	})
	if r := call(t, "GET", in.Public+"/public/x", "", ""); r.Code != http.StatusUnauthorized {
		t.Errorf("/public after it left public_paths: %d, want 401", r.Code)
	}
	if strings.Contains(in.logs.String(), "need a restart") {
		t.Errorf("a rule change was reported as needing a restart:\n%s", in.logs)
	}
	// A broken rule: the reload fails, the previous rules stay.
	writeCfg(strings.Replace(accessRules, "paths: [/admin]", "paths: [admin]", 1))
	in.signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "the failed reload", func() bool {
		return strings.Contains(in.logs.String(), "reload failed")
	})
	if r := call(t, "GET", in.Public+"/admin", bob, ""); r.Code != http.StatusOK {
		t.Errorf("after a failed reload: %d, want the previous rules' 200", r.Code)
	}
}
