package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tokengate/internal/testsvc"
)

// ldapEnv points the base config at slapd (ldaps with the test CA); the
// bind password comes from the environment, as a Secret would give it.
func ldapEnv(s *testsvc.Slapd, extra ...string) []string {
	return append([]string{
		"TOKENGATE_USERS_BACKEND=ldap",
		"TOKENGATE_USERS_LDAP_URL=" + s.LDAPSURL,
		"TOKENGATE_USERS_LDAP_CA_FILE=" + s.CAFile,
		"TOKENGATE_USERS_LDAP_BIND_DN=cn=tokengate,ou=services,dc=example,dc=com",
		"TOKENGATE_USERS_LDAP_BIND_PASSWORD=service-secret",
		"TOKENGATE_USERS_LDAP_BASE_DN=dc=example,dc=com",
		"TOKENGATE_USERS_LDAP_GROUPS_BASE_DN=ou=groups,dc=example,dc=com",
		"TOKENGATE_USERS_LDAP_TIMEOUT=500ms",
		"TOKENGATE_USERS_LDAP_DIAL_TIMEOUT=500ms",
		"TOKENGATE_BROWSER_COOKIE_SECURE=false",
	}, extra...)
}

func loginReply(t *testing.T, in *instance, user, password string) reply {
	t.Helper()
	return call(t, "POST", in.Public+"/user/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
}

// metricSum adds the samples of a metric on the admin listener: name, or
// name{first label...} for the series whose labels start so.
func metricSum(t *testing.T, in *instance, name string) float64 {
	t.Helper()
	var sum float64
	for _, line := range strings.Split(call(t, "GET", in.Admin+"/metrics", "", "").Body, "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " ")) && !strings.HasPrefix(line, "#") {
			f := strings.Fields(rest)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				sum += v
			}
		}
	}
	return sum
}

// Sign-in through the API against a real directory: users, groups, the
// names and passwords an attacker tries, and a read-only store.
func TestLDAPLoginEndToEnd(t *testing.T) {
	s := testsvc.StartSlapd(t)
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), ldapEnv(s)...)

	token := login(t, in.Public, "alice", "alice-password-1")
	if r := call(t, "GET", in.Public+"/app", token, ""); r.Code != http.StatusOK || !strings.Contains(r.Body, `"user_id":["alice"]`) {
		t.Fatalf("proxied with alice's token: %d %s", r.Code, r.Body)
	}
	if r := call(t, "GET", in.Public+"/session", token, ""); r.Code != http.StatusOK || !strings.Contains(r.Body, "alice") {
		t.Errorf("GET /session: %d %s", r.Code, r.Body)
	}
	// Case-folded like the other stores: the token keeps the directory's spelling.
	login(t, in.Public, "ALICE", "alice-password-1")

	wrong := loginReply(t, in, "alice", "not-her-password")
	if wrong.Code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d %s", wrong.Code, wrong.Body)
	}
	for _, c := range []struct{ name, user, password string }{
		{"unknown name", "mallory", "alice-password-1"},
		{"duplicate entry", "dave", "dave-password-1"},
		{"star", "*", "admin-password-1"},
		{"prefix star", "adm*", "admin-password-1"},
		{"filter break-out", "admin)(|(uid=*", "admin-password-1"},
		{"escaped star", `\2a`, "admin-password-1"},
	} {
		if r := loginReply(t, in, c.user, c.password); r.Code != wrong.Code || r.Body != wrong.Body {
			t.Errorf("%s: %d %s, want what a wrong password gets (%d %s)", c.name, r.Code, r.Body, wrong.Code, wrong.Body)
		}
	}
	// Each scrape pings the directory (whoami, for tokengate_dependency_up):
	// count only the requests a login makes.
	userRequests := func() float64 {
		return metricSum(t, in, `tokengate_ldap_request_duration_seconds_count{op="search_user"}`) +
			metricSum(t, in, `tokengate_ldap_request_duration_seconds_count{op="bind_user"}`)
	}
	before := userRequests()
	if r := loginReply(t, in, "admin\x00", "admin-password-1"); r.Code != http.StatusBadRequest {
		t.Errorf("NUL in the name: %d %s, want 400", r.Code, r.Body)
	}
	if r := loginReply(t, in, "bob", ""); r.Code == http.StatusOK {
		t.Errorf("empty password: %d %s", r.Code, r.Body)
	}
	if after := userRequests(); after != before {
		t.Errorf("a NUL name and an empty password cost %v directory requests, want 0", after-before)
	}
	if metricSum(t, in, "tokengate_ldap_errors_total") != 0 {
		t.Errorf("directory errors counted:\n%s", in.logs)
	}
	// Read-only: registration is off (the config refuses turning it on).
	if r := call(t, "POST", in.Public+"/users", "", `{"username":"newbie","password":"newbie-password-1"}`); r.Code != http.StatusNotFound {
		t.Errorf("POST /users: %d %s", r.Code, r.Body)
	}
	if strings.Contains(in.logs.String(), "alice-password-1") || strings.Contains(in.logs.String(), "service-secret") {
		t.Error("a password reached the log")
	}
}

// The browser form signs in against the directory too, and a directory
// outage shows the "unavailable" page, not "wrong password".
func TestLDAPBrowserSignIn(t *testing.T) {
	s := testsvc.StartSlapd(t)
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), ldapEnv(s)...)
	noFollow := &http.Client{Timeout: client.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	signIn := func(user, password string) (*http.Response, string) {
		t.Helper()
		res, err := noFollow.Get(in.Public + "/tokengate/sign_in?rd=%2Freports")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(string(body))
		if m == nil {
			t.Fatalf("no CSRF field:\n%s", body)
		}
		form := url.Values{"username": {user}, "password": {password}, "csrf": {m[1]}, "rd": {"/reports"}}
		req, _ := http.NewRequest("POST", in.Public+"/tokengate/sign_in", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range res.Cookies() {
			req.AddCookie(c)
		}
		res, err = noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ = io.ReadAll(res.Body)
		return res, string(body)
	}
	res, body := signIn("bob", "bob-password-1")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/reports" {
		t.Fatalf("sign-in: %d %q\n%s", res.StatusCode, res.Header.Get("Location"), body)
	}
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "tokengate" {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("no session cookie: %v", res.Header["Set-Cookie"])
	}
	req, _ := http.NewRequest("GET", in.Public+"/reports", nil)
	req.AddCookie(session)
	if r, err := client.Do(req); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("with the cookie: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	if res, body := signIn("bob", "wrong-password"); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %d\n%s", res.StatusCode, body)
	}
	s.Stop()
	if res, body := signIn("bob", "bob-password-1"); res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "unavailable") {
		t.Errorf("directory down: %d\n%s", res.StatusCode, body)
	}
}

// A directory that stops answering (SIGSTOP) or dies during logins: every
// login answers 503 users_unavailable within the timeout, the same for
// known and unknown names; readiness stays local; logins work again once
// the directory is back.
func TestLDAPOutageDuringLogins(t *testing.T) {
	s := testsvc.StartSlapd(t)
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), ldapEnv(s)...)
	token := login(t, in.Public, "carol", "carol-password-1")
	// Her identity is cached by her first request; within the refresh
	// interval (and past it, until users.max_stale) an outage does not
	// touch her.
	if r := call(t, "GET", in.Public+"/app", token, ""); r.Code != http.StatusOK {
		t.Fatalf("signed-in user: %d %s", r.Code, r.Body)
	}

	outage := func(what string) {
		t.Helper()
		var wg sync.WaitGroup
		replies := make([]reply, 6)
		started := time.Now()
		for i := range replies {
			user := []string{"carol", "mallory", "alice"}[i%3]
			wg.Go(func() {
				r := call(t, "POST", in.Public+"/user/login", "", fmt.Sprintf(`{"username":%q,"password":"carol-password-1"}`, user))
				replies[i] = r
			})
		}
		wg.Wait()
		if d := time.Since(started); d > 5*time.Second {
			t.Errorf("%s: logins took %s", what, d)
		}
		for i, r := range replies {
			if r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body, `"error":"users_unavailable"`) {
				t.Errorf("%s, login %d: %d %s, want 503 users_unavailable", what, i, r.Code, r.Body)
			}
			if r.Body != replies[0].Body {
				t.Errorf("%s: answers differ by name: %s vs %s", what, r.Body, replies[0].Body)
			}
		}
		if r := call(t, "GET", in.Admin+"/readyz", "", ""); r.Code != http.StatusOK {
			t.Errorf("%s: /readyz %d, want 200 (readiness is local)", what, r.Code)
		}
		// A signed-in user keeps working.
		if r := call(t, "GET", in.Public+"/app", token, ""); r.Code != http.StatusOK {
			t.Errorf("%s: signed-in user got %d", what, r.Code)
		}
	}

	s.Pause(t)
	outage("SIGSTOP")
	s.Resume()
	eventually(t, 5*time.Second, "login after SIGCONT", func() bool { return loginReply(t, in, "carol", "carol-password-1").Code == http.StatusOK })

	s.Stop()
	outage("killed")
	s.Restart(t)
	eventually(t, 5*time.Second, "login after restart", func() bool { return loginReply(t, in, "carol", "carol-password-1").Code == http.StatusOK })
	if metricSum(t, in, "tokengate_ldap_errors_total") == 0 {
		t.Error("tokengate_ldap_errors_total did not count the outage")
	}
	if v := loginCount(t, in, "error"); v == "0" {
		t.Error(`tokengate_logins_total{result="error"} did not count the outage`)
	}
}

// check-config --probe binds as the service account: with the right CA
// (ldaps or StartTLS) it passes; a certificate from another CA, or a wrong
// service password, is refused and named. (Logins through a refused
// certificate: TestLDAPTransportSecurity in authn.)
func TestLDAPCheckConfigProbe(t *testing.T) {
	s := testsvc.StartSlapd(t)
	dir := t.TempDir()
	passwordFile := filepath.Join(dir, "ldap-password")
	if err := os.WriteFile(passwordFile, []byte("service-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(url, ca, extra string) {
		t.Helper()
		cfg := fmt.Sprintf(`tokens:
  signing_key_file: signing.key
revocation:
  backend: memory
users:
  backend: ldap
  ldap:
    url: %s
    ca_file: %s
    bind_dn: cn=tokengate,ou=services,dc=example,dc=com
    bind_password_file: ldap-password
    base_dn: dc=example,dc=com
    timeout: 1s
%s`, url, ca, extra)
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(s.LDAPSURL, s.CAFile, "")
	if out, errOut, code := runBin(t, dir, "", "check-config", "--config", "config.yaml", "--probe"); code != 0 {
		t.Fatalf("probe with the right CA: %d\n%s%s", code, out, errOut)
	}
	write(s.URL, s.CAFile, "    start_tls: true\n")
	if out, errOut, code := runBin(t, dir, "", "check-config", "--config", "config.yaml", "--probe"); code != 0 {
		t.Fatalf("probe over StartTLS: %d\n%s%s", code, out, errOut)
	}
	write(s.LDAPSURL, s.WrongCAFile, "")
	if _, _, code := runBin(t, dir, "", "check-config", "--config", "config.yaml"); code != 0 {
		t.Fatalf("without --probe the directory is not contacted, want exit 0, got %d", code)
	}
	_, errOut, code := runBin(t, dir, "", "check-config", "--config", "config.yaml", "--probe")
	if code != 2 || !strings.Contains(errOut, "users.ldap") || !strings.Contains(errOut, "certificate") {
		t.Fatalf("probe with the wrong CA: %d\n%s", code, errOut)
	}
	// A wrong service password is named too, and never printed.
	write(s.LDAPSURL, s.CAFile, "")
	if err := os.WriteFile(passwordFile, []byte("not-the-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runBin(t, dir, "", "check-config", "--config", "config.yaml", "--probe")
	if code != 2 || !strings.Contains(errOut, "bind_dn") || strings.Contains(errOut, "not-the-secret") {
		t.Fatalf("probe with a wrong password: %d\n%s", code, errOut)
	}
	if err := os.WriteFile(passwordFile, []byte("service-secret"), 0o600); err != nil {
		t.Fatal(err)
	}

}

// Plain ldap:// to another host is refused unless insecure: true, which
// check-config then warns about.
func TestLDAPInsecureWarning(t *testing.T) {
	dir := t.TempDir()
	base := "tokens:\n  signing_key_file: signing.key\nusers:\n  backend: ldap\n  ldap:\n    url: ldap://ldap.example.com\n    bind_dn: cn=x\n    base_dn: dc=x\n"
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"TOKENGATE_USERS_LDAP_BIND_PASSWORD=x"}
	cmd := func() (string, int) {
		t.Helper()
		c := execCommand(binPath, "check-config", "--config", "config.yaml", "--config-only")
		c.Dir, c.Env = dir, append(os.Environ(), env...)
		out, err := c.CombinedOutput()
		return string(out), exitCode(err)
	}
	if out, code := cmd(); code != 2 || !strings.Contains(out, "users.ldap.url: plain ldap:// to ldap.example.com would send passwords in clear text") {
		t.Fatalf("plain ldap:// without insecure: %d\n%s", code, out)
	}
	env = append(env, "TOKENGATE_USERS_LDAP_INSECURE=true")
	if out, code := cmd(); code != 0 || !strings.Contains(out, "warning: users.ldap.insecure: passwords go to ldap.example.com in clear text") {
		t.Fatalf("with insecure: %d\n%s", code, out)
	}
}

// The README's OpenLDAP and Active Directory examples are valid configs.
func TestLDAPREADMEExamplesPassCheckConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "### LDAP and Active Directory")
	if !ok {
		t.Fatal("README.md has no LDAP section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) != 2 {
		t.Fatalf("want the OpenLDAP and the AD example, found %d yaml blocks", len(blocks))
	}
	for i, b := range blocks {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("tokens:\n  signing_key_file: signing.key\n"+b[1]), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, errOut, code := runBin(t, dir, "", "check-config", "--config", "config.yaml", "--config-only"); code != 0 {
			t.Errorf("example %d: exit %d\n%s%s\n%s", i, code, out, errOut, b[1])
		}
	}
}

// The live refresh against the directory, through the running binary: the
// directory's groups decide an access rule; a user removed from a group, a
// disabled and a deleted user lose that access within
// users.refresh_interval with no new sign-in (their old tokens get 403 and
// 401 user_unknown); during an outage the last answer serves until
// users.max_stale, then 503.
func TestLDAPLiveRefresh(t *testing.T) {
	s := testsvc.StartSlapd(t)
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	cfgPath := withAdminToken(t, dir)
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The directory's groups decide access: /ops is for the ops group.
	if _, err := f.WriteString("access:\n  rules:\n    - name: ops\n      paths: [/ops]\n      groups: [ops]\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	in := start(t, dir, ldapEnv(s,
		"TOKENGATE_USERS_REFRESH_INTERVAL=1s",
		"TOKENGATE_USERS_MAX_STALE=3s",
		"TOKENGATE_USERS_LDAP_USER_FILTER=(&(uid={username})(!(description=disabled)))",
	)...)
	tokens := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol"} {
		tokens[u] = login(t, in.Public, u, u+"-password-1")
	}
	wantIdentity(t, in, "alice", "finance", "ops")
	wantIdentity(t, in, "bob", "finance")
	if r := call(t, "GET", in.Public+"/ops/x", tokens["alice"], ""); r.Code != http.StatusOK {
		t.Fatalf("alice (ops) on /ops: %d %s, want 200", r.Code, r.Body)
	}
	if h, _ := up.headersSeen("/ops/x"); h.Get("X-Auth-Groups") != "finance,ops" {
		t.Errorf("the app got X-Auth-Groups %q, want the directory's finance,ops", h.Get("X-Auth-Groups"))
	}
	if r := call(t, "GET", in.Public+"/ops/x", tokens["bob"], ""); r.Code != http.StatusForbidden {
		t.Fatalf("bob (not ops) on /ops: %d %s, want 403", r.Code, r.Body)
	}

	s.Leavers(t)
	took := eventually(t, 5*time.Second, "alice leaves ops", func() bool {
		g, code := identityOf(t, in, "alice")
		return code == "" && slices.Equal(g, []string{"finance"})
	})
	t.Logf("group removal seen after %s (refresh_interval 1s)", took.Round(time.Millisecond))
	for _, id := range []string{"bob", "carol"} {
		eventually(t, 5*time.Second, id+" removed", func() bool {
			_, code := identityOf(t, in, id)
			return code == "404 user_unknown"
		})
	}
	if r := loginReply(t, in, "carol", "carol-password-1"); r.Code != http.StatusUnauthorized {
		t.Errorf("disabled carol signing in: %d %s", r.Code, r.Body)
	}
	// Through the proxy, with the tokens issued before the changes.
	if r := call(t, "GET", in.Public+"/ops/x", tokens["alice"], ""); r.Code != http.StatusForbidden {
		t.Errorf("alice after leaving ops, on /ops: %d %s, want 403", r.Code, r.Body)
	}
	if r := call(t, "GET", in.Public+"/reports", tokens["alice"], ""); r.Code != http.StatusOK {
		t.Errorf("alice elsewhere: %d %s, want 200", r.Code, r.Body)
	}
	for _, id := range []string{"bob", "carol"} {
		if r := call(t, "GET", in.Public+"/reports", tokens[id], ""); r.Code != http.StatusUnauthorized || !strings.Contains(r.Body, "user_unknown") {
			t.Errorf("%s's token after removal: %d %s, want 401 user_unknown", id, r.Code, r.Body)
		}
	}

	s.Stop()
	wantIdentity(t, in, "alice", "finance") // within max_stale: the last answer
	eventually(t, 10*time.Second, "503 past max_stale", func() bool {
		_, code := identityOf(t, in, "alice")
		return code == "503 users_unavailable"
	})
}

// The directory metrics the README's table lists are exported by a server
// on the ldap backend, on its own registry.
func TestLDAPMetricsExported(t *testing.T) {
	s := testsvc.StartSlapd(t)
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), ldapEnv(s)...)
	login(t, in.Public, "alice", "alice-password-1")
	names := exportedMetrics(t, in.Admin)
	for _, name := range []string{"tokengate_ldap_request_duration_seconds", "tokengate_ldap_errors_total", "tokengate_ldap_referrals_ignored_total", "tokengate_dependency_up"} {
		if !names[name] {
			t.Errorf("metric %s is not exported", name)
		}
	}
	if v := metricSum(t, in, `tokengate_dependency_up{dependency="user_store"}`); v != 1 {
		t.Errorf(`tokengate_dependency_up{dependency="user_store"} = %v, want 1`, v)
	}
}

// add-user refuses the read-only directory with a message that says where
// users are made.
func TestLDAPAddUserRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := "tokens:\n  signing_key_file: signing.key\nusers:\n  backend: ldap\n  ldap:\n    url: ldaps://ldap.example.com\n    bind_dn: cn=x\n    bind_password_file: pw\n    base_dn: dc=x\n"
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runBin(t, dir, "a-long-password-1\n", "add-user", "--config", "config.yaml", "--user", "newbie")
	if code == 0 || !strings.Contains(errOut, "the LDAP directory is read-only") {
		t.Fatalf("add-user on ldap: exit %d\n%s", code, errOut)
	}
}
