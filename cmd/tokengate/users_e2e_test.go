package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"tokengate/internal/testkit"

	"github.com/jackc/pgx/v5"

	"tokengate/authn"
	"tokengate/internal/testsvc"
)

// pgTable creates a uniquely named table with columns cols and drops it when
// the test ends (testsvc.TempTable); a failed DROP fails the test.
func pgTable(t *testing.T, pgURL, prefix, cols string) (string, *pgx.Conn) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	table := testsvc.TempTable(t, pgURL, prefix) // registered after: dropped first, on its own connection
	if _, err := conn.Exec(context.Background(), "CREATE TABLE "+table+" ("+cols+")"); err != nil {
		t.Fatal(err)
	}
	return table, conn
}

// loginCount reads tokengate_logins_total{result} from an instance.
func loginCount(t *testing.T, in *instance, result string) string {
	t.Helper()
	for _, line := range strings.Split(call(t, "GET", in.Admin+"/metrics", "", "").Body, "\n") {
		if v, ok := strings.CutPrefix(line, `tokengate_logins_total{result="`+result+`"} `); ok {
			return v
		}
	}
	return "0"
}

// Issue 15 point 3, through the real binary and a real PostgreSQL: rows
// nobody can log in as answer 401 like an unknown name (never 503), names
// PostgreSQL cannot hold answer 400 before any lookup and are not counted
// as store errors; a store that is really down still answers 503.
func TestLoginUnusableAccountsAndNamesPostgres(t *testing.T) {
	pgURL := testsvc.PostgresURL(t)
	table, conn := pgTable(t, pgURL, "tg_e2e_unusable", "id text, login text, pw text")
	good, err := authn.HashPassword("good-password-1", authn.HashOptions{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(context.Background(), "INSERT INTO "+table+` VALUES
		('1', 'empty', ''), ('2', 'disabled', '!'), ('3', 'star', '*'), ('4', 'md5', 'md5'||repeat('ab', 16)),
		('5', 'twin', $1), ('6', 'twin', $1), ('7', 'good', $1)`, good)
	if err != nil {
		t.Fatal(err)
	}
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), "TOKENGATE_USERS_BACKEND=postgres", "TOKENGATE_USERS_POSTGRES_URL="+pgURL,
		"TOKENGATE_USERS_QUERY=SELECT id, pw FROM "+table+" WHERE login = $1")

	for _, name := range []string{"empty", "disabled", "star", "md5", "twin", "nobody"} {
		r := call(t, "POST", in.Public+"/user/login", "", fmt.Sprintf(`{"username":%q,"password":"good-password-1"}`, name))
		if r.Code != http.StatusUnauthorized || !strings.Contains(r.Body, "invalid_credentials") {
			t.Errorf("login %s: %d %s, want 401 invalid_credentials like an unknown name", name, r.Code, r.Body)
		}
	}
	login(t, in.Public, "good", "good-password-1")

	bad := []struct{ name, contentType, body string }{
		{"NUL in JSON", "application/json", `{"username":"good\u0000","password":"good-password-1"}`},
		{"newline in JSON", "application/json", `{"username":"go\nod","password":"good-password-1"}`},
		{"invalid UTF-8 in a form", "application/x-www-form-urlencoded", "username=go%FFod&password=good-password-1"},
		{"NUL in a form", "application/x-www-form-urlencoded", "username=" + url.QueryEscape("x\x00") + "&password=p"},
	}
	for _, tt := range bad {
		req, _ := http.NewRequest("POST", in.Public+"/user/login", strings.NewReader(tt.body))
		req.Header.Set("Content-Type", tt.contentType)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", tt.name, resp.StatusCode)
		}
	}
	if got := loginCount(t, in, "error"); got != "0" {
		t.Errorf(`logins_total{result="error"} = %s, want 0 (no store error happened)`, got)
	}
	if got := loginCount(t, in, "malformed"); got != fmt.Sprint(len(bad)) {
		t.Errorf(`logins_total{result="malformed"} = %s, want %d`, got, len(bad))
	}
	if strings.Contains(in.logs.String(), `"level":"ERROR"`) {
		t.Errorf("error log lines without a store failure:\n%s", in.logs)
	}

	// A store that is really gone: 503, counted as an error.
	if _, err := conn.Exec(context.Background(), "ALTER TABLE "+table+" RENAME COLUMN pw TO pw_gone"); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "POST", in.Public+"/user/login", "", `{"username":"good","password":"good-password-1"}`); r.Code != http.StatusServiceUnavailable {
		t.Errorf("broken store: %d %s, want 503", r.Code, r.Body)
	}
	if got := loginCount(t, in, "error"); got != "1" {
		t.Errorf(`logins_total{result="error"} after a store failure = %s, want 1`, got)
	}
}

// Issue 15 point 1 through the real binary: a users file rewritten in place
// and cut 5 bytes early (bob's "id: admin-bob" becomes "id: admin") is never
// loaded, by the watcher or by SIGHUP; bob keeps reaching the app as
// admin-bob. The complete file written by rename is loaded.
func TestHalfWrittenUsersFileNeverServed(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	hash, err := authn.HashPassword("bob-password-1", authn.HashOptions{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "users.yaml")
	entry := func(name, id string) string {
		return fmt.Sprintf("  - username: %s\n    password_hash: %q\n    id: %s\n", name, hash, id)
	}
	if err := os.WriteFile(path, []byte("users:\n"+entry("bob", "admin-bob")), 0o600); err != nil {
		t.Fatal(err)
	}
	in := start(t, dir) // reload_interval 100ms
	bobSeenAs := func() string {
		t.Helper()
		r := call(t, "GET", in.Public+"/app", login(t, in.Public, "bob", "bob-password-1"), "")
		ids, _ := r.json(t)["user_id"].([]any)
		if len(ids) != 1 {
			t.Fatalf("upstream saw identities %v", ids)
		}
		return ids[0].(string)
	}
	if got := bobSeenAs(); got != "admin-bob" {
		t.Fatalf("bob reaches the app as %q", got)
	}

	// A writer that is not atomic (cat >, an editor) dies 5 bytes short.
	full := "users:\n" + entry("carol", "carol") + entry("bob", "admin-bob")
	cut := full[:len(full)-5]
	if !strings.HasSuffix(cut, "id: admin") {
		t.Fatalf("test setup: %q", cut[len(cut)-15:])
	}
	if err := os.WriteFile(path, []byte(cut), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the half-written file refused", func() bool {
		return strings.Contains(call(t, "GET", in.Admin+"/metrics", "", "").Body, `tokengate_users_reloads_total{result="error"} 1`)
	})
	in.signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "SIGHUP refuses it too", func() bool {
		return strings.Contains(call(t, "GET", in.Admin+"/metrics", "", "").Body, "tokengate_config_last_reload_success 0")
	})
	if got := bobSeenAs(); got != "admin-bob" {
		t.Fatalf("after a half-written users file bob reaches the app as %q", got)
	}
	// Log lines are written in batches: wait for the reload error's.
	eventually(t, 10*time.Second, "the log says the file may be half-written", func() bool {
		return strings.Contains(in.logs.String(), "half-written")
	})

	// The same content written completely, by rename: loaded.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the complete file loaded", func() bool {
		return strings.Contains(call(t, "GET", in.Admin+"/metrics", "", "").Body, `tokengate_users_reloads_total{result="success"} 1`)
	})
	login(t, in.Public, "carol", "bob-password-1")
	if got := bobSeenAs(); got != "admin-bob" {
		t.Fatalf("bob reaches the app as %q", got)
	}
}

// writeUsers writes a users file whose entries are {username, id}, all
// with password pw.
func writeUsers(t *testing.T, path, pw string, entries ...[2]string) {
	t.Helper()
	list := make([]testkit.User, len(entries))
	for i, e := range entries {
		list[i] = testkit.User{Name: e[0], ID: e[1], Password: pw}
	}
	testkit.WriteUsersFile(t, path, list...)
}

// withAdminToken adds admin_token_file to dir's config and returns the
// config path.
func withAdminToken(t *testing.T, dir string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(strings.Repeat("s3cret-", 8)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, append(cfg, "admin_token_file: admin.token\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

func adminRevoke(t *testing.T, in *instance, body string) reply {
	t.Helper()
	return call(t, "POST", in.Admin+"/admin/revoke_user", strings.Repeat("s3cret-", 8), body)
}

// Issue 15 point 2: revoke-user and POST /admin/revoke_user resolve the
// argument through the user store (id, else login name), say which id was
// revoked, refuse (404, exit 1) when nobody matches, and revoke an unknown
// id only when forced.
func TestOperatorRevokeUserResolves(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	const pw = "the-password-1"
	writeUsers(t, filepath.Join(dir, "users.yaml"), pw,
		[2]string{"alice", "alice"}, [2]string{"bob", "u-bob"}, [2]string{"carol", "c-123"}, [2]string{"dave", "bob"})
	cfgPath := withAdminToken(t, dir)
	in := start(t, dir)
	tokens := map[string]string{}
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		tokens[name] = login(t, in.Public, name, pw)
	}
	alive := func(name string) bool {
		t.Helper()
		return call(t, "GET", in.Public+"/app", tokens[name], "").Code == http.StatusOK
	}
	cli := func(args ...string) (string, int) {
		t.Helper()
		out, err := runFor(t, 20*time.Second, binPath, append([]string{"revoke-user", "--config", cfgPath, "--admin-url", in.Admin}, args...)...)
		return out, exitCode(err)
	}

	// By login name: the CLI names the id it revoked.
	out, code := cli("--user", "carol")
	if code != 0 || !strings.Contains(out, `user id "c-123"`) || !strings.Contains(out, `login name "carol"`) {
		t.Fatalf("revoke-user --user carol: exit %d\n%s", code, out)
	}
	if alive("carol") {
		t.Fatal("carol's token works after revoke-user by login name")
	}
	// By id, on the admin endpoint: a JSON body says which.
	r := adminRevoke(t, in, `{"user":"u-bob"}`)
	if r.Code != http.StatusOK || r.json(t)["revoked_user_id"] != "u-bob" || r.json(t)["matched"] != "id" {
		t.Fatalf("admin revoke by id: %d %s", r.Code, r.Body)
	}
	if alive("bob") {
		t.Fatal("bob's token works after revocation by id")
	}

	// Nobody: 404 and exit 1, and nothing is revoked.
	if r := adminRevoke(t, in, `{"user":"ghost"}`); r.Code != http.StatusNotFound || r.json(t)["error"] != "user_not_found" {
		t.Fatalf("admin revoke of an unknown user: %d %s", r.Code, r.Body)
	}
	out, code = cli("--user", "ghost")
	if code != exitError || !strings.Contains(out, "no user has the id or login name") || !strings.Contains(out, "pass --force-id") || strings.Contains(out, "force: true") {
		t.Fatalf("revoke-user --user ghost: exit %d, want 1 and a clear message\n%s", code, out)
	}
	// An id both of one user and the login name of another: refused.
	if r := adminRevoke(t, in, `{"user":"bob"}`); r.Code != http.StatusConflict {
		t.Fatalf(`admin revoke of "bob" (dave's id, u-bob's login name): %d %s`, r.Code, r.Body)
	}
	if !alive("alice") || !alive("dave") {
		t.Fatal("a refused revocation revoked somebody")
	}
	// Forced: an id the store does not hold (a deleted user), and the
	// literal id of the ambiguous case.
	out, code = cli("--user", "ghost", "--force-id")
	if code != 0 || !strings.Contains(out, `user id "ghost"`) {
		t.Fatalf("revoke-user --force-id: exit %d\n%s", code, out)
	}
	if r := adminRevoke(t, in, `{"user":"bob","force":true}`); r.Code != http.StatusOK || r.json(t)["matched"] != "forced" {
		t.Fatalf("forced admin revoke: %d %s", r.Code, r.Body)
	}
	if alive("dave") {
		t.Fatal(`dave (id "bob") survived a forced revocation of "bob"`)
	}
	if !alive("alice") {
		t.Fatal("alice was revoked by somebody else's revocation")
	}
	if r := adminRevoke(t, in, `{"user":"x\u0000y"}`); r.Code != http.StatusBadRequest {
		t.Fatalf("control character in the argument: %d", r.Code)
	}
}

// In legacy query mode the login name resolves through the operator's
// query; an id cannot be looked up, which the 404 says, and force revokes it.
func TestOperatorRevokeUserLegacyPostgres(t *testing.T) {
	pgURL := testsvc.PostgresURL(t)
	table, conn := pgTable(t, pgURL, "tg_e2e_revoke_legacy", "account_id bigint, email text, pw text")
	hash, err := authn.HashPassword("grace-password-1", authn.HashOptions{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), "INSERT INTO "+table+" VALUES (42, 'grace@example.com', $1)", hash); err != nil {
		t.Fatal(err)
	}
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	withAdminToken(t, dir)
	in := start(t, dir, "TOKENGATE_USERS_BACKEND=postgres", "TOKENGATE_USERS_POSTGRES_URL="+pgURL,
		"TOKENGATE_USERS_QUERY=SELECT account_id, pw FROM "+table+" WHERE email = $1")
	tok := login(t, in.Public, "grace@example.com", "grace-password-1")

	r := adminRevoke(t, in, `{"user":"42"}`)
	if r.Code != http.StatusNotFound || !strings.Contains(r.Body, "legacy") || !strings.Contains(r.Body, "force") {
		t.Fatalf("legacy revoke by id: %d %s, want 404 explaining ids cannot be looked up", r.Code, r.Body)
	}
	r = adminRevoke(t, in, `{"user":"grace@example.com"}`)
	if r.Code != http.StatusOK || r.json(t)["revoked_user_id"] != "42" {
		t.Fatalf("legacy revoke by login name: %d %s", r.Code, r.Body)
	}
	if r := call(t, "GET", in.Public+"/app", tok, ""); r.Code != http.StatusUnauthorized {
		t.Fatalf("token after revocation by login name: %d", r.Code)
	}
	if r := adminRevoke(t, in, `{"user":"42","force":true}`); r.Code != http.StatusOK || r.json(t)["revoked_user_id"] != "42" {
		t.Fatalf("forced legacy revoke: %d %s", r.Code, r.Body)
	}
}

// Issue 12 point 2 through the binary: Dave, dave and DAVE are one user;
// the app sees the registered spelling whatever the case typed at login.
func TestLookAlikeNamesEndToEnd(t *testing.T) {
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), "TOKENGATE_USERS_BACKEND=bolt", "TOKENGATE_USERS_PATH=users.db", "TOKENGATE_USERS_REGISTRATION=open")
	if r := call(t, "POST", in.Public+"/users", "", `{"username":"Dave","password":"dave-password-1"}`); r.Code != http.StatusCreated {
		t.Fatalf("register Dave: %d %s", r.Code, r.Body)
	}
	for _, other := range []string{"dave", "DAVE"} {
		if r := call(t, "POST", in.Public+"/users", "", fmt.Sprintf(`{"username":%q,"password":"other-password-1"}`, other)); r.Code != http.StatusConflict {
			t.Errorf("register %s after Dave: %d %s, want 409", other, r.Code, r.Body)
		}
	}
	for _, typed := range []string{"dave", "DAVE"} {
		r := call(t, "GET", in.Public+"/app", login(t, in.Public, typed, "dave-password-1"), "")
		if !strings.Contains(r.Body, `"user_id":["Dave"]`) {
			t.Errorf("logged in as %s, the app saw %s; want the registered spelling Dave", typed, r.Body)
		}
	}
}
