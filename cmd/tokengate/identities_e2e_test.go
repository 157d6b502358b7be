package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tokengate/internal/testkit"
	"tokengate/internal/testsvc"
)

// identityOf asks the admin listener who id is now: the groups, or the
// error code.
func identityOf(t *testing.T, in *instance, id string) (groups []string, code string) {
	t.Helper()
	r := call(t, "GET", in.Admin+"/admin/identity?user="+id, strings.Repeat("s3cret-", 8), "")
	m := r.json(t)
	if r.Code != http.StatusOK {
		code, _ := m["error"].(string)
		return nil, fmt.Sprintf("%d %s", r.Code, code)
	}
	raw, ok := m["groups"].([]any)
	if !ok {
		t.Fatalf("identity %s: no groups list in %s", id, r.Body)
	}
	groups = []string{}
	for _, g := range raw {
		groups = append(groups, g.(string))
	}
	return groups, ""
}

func wantIdentity(t *testing.T, in *instance, id string, want ...string) {
	t.Helper()
	groups, code := identityOf(t, in, id)
	if code != "" || !slices.Equal(groups, append([]string{}, want...)) {
		t.Fatalf("identity %s = %q %s, want groups %q", id, groups, code, want)
	}
}

// writeGroupsUsersFile writes the users file atomically (temporary file,
// rename), each user with the password "<name>-password-1" and groups.
func writeGroupsUsersFile(t *testing.T, path string, users ...[]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("users:\n")
	for _, u := range users {
		fmt.Fprintf(&b, "  - username: %s\n    password_hash: %q\n    groups: [%s]\n", u[0], testkit.BcryptHash(t, u[0]+"-password-1"), strings.Join(u[1:], ", "))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Issue 22 point 5 through the binary, users file: an edit that changes a
// user's groups and removes another is what tokengate answers once the
// watcher has reloaded the file, with no restart and no sign-in.
func TestIdentitiesUsersFileReloadE2E(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	withAdminToken(t, dir)
	usersPath := filepath.Join(dir, "users.yaml")
	writeGroupsUsersFile(t, usersPath, []string{"alice", "ops"}, []string{"bob", "finance", "ops"}, []string{"carol"})
	in := start(t, dir) // reload_interval 100ms (baseConfig)

	wantIdentity(t, in, "alice", "ops")
	wantIdentity(t, in, "bob", "finance", "ops")
	wantIdentity(t, in, "carol")
	if _, code := identityOf(t, in, "nobody"); code != "404 user_unknown" {
		t.Fatalf("identity of an unknown id: %s, want 404 user_unknown", code)
	}
	if r := call(t, "GET", in.Admin+"/admin/identity?user=alice", "wrong", ""); r.Code != http.StatusUnauthorized {
		t.Fatalf("identity with a wrong admin token: %d", r.Code)
	}

	changed := time.Now()
	writeGroupsUsersFile(t, usersPath, []string{"alice", "finance", "ops"}, []string{"carol", "reports"})
	took := eventually(t, 5*time.Second, "the reloaded groups", func() bool {
		groups, _ := identityOf(t, in, "alice")
		return slices.Equal(groups, []string{"finance", "ops"})
	})
	wantIdentity(t, in, "carol", "reports")
	if _, code := identityOf(t, in, "bob"); code != "404 user_unknown" {
		t.Fatalf("identity of a user removed from the file: %s, want 404 user_unknown", code)
	}
	// Three polls at 100ms bound it; allow for a loaded machine.
	if d := time.Since(changed); d > 2*time.Second {
		t.Fatalf("the change took %s to be seen (reload_interval 100ms)", d)
	}
	t.Logf("users file change seen after %s (reload_interval 100ms)", took)

	// A broken edit keeps the last good groups.
	if err := os.WriteFile(usersPath, []byte("users:\n  - username: alice\n    password_hash: \"x\"\n    groups: [\"a,b\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // five polls: long enough to have been loaded, were it good
	wantIdentity(t, in, "alice", "finance", "ops")

	metrics := call(t, "GET", in.Admin+"/metrics", "", "").Body
	if !strings.Contains(metrics, `tokengate_identity_cache_requests_total{result="hit"}`) {
		t.Fatal("metrics lack tokengate_identity_cache_requests_total")
	}
}

// The PostgreSQL store through the binary: users registered through POST
// /users get users.default_groups; a change of groups in the table and a
// deleted row are seen by two replicas within users.refresh_interval.
func TestIdentitiesPostgresE2E(t *testing.T) {
	pgURL := testsvc.PostgresURL(t)
	table := testsvc.TempTable(t, pgURL, "tg_e2e_ident")
	up := newEchoUpstream(t)
	env := []string{"TOKENGATE_USERS_BACKEND=postgres", "TOKENGATE_USERS_POSTGRES_URL=" + pgURL,
		"TOKENGATE_USERS_TABLE=" + table, "TOKENGATE_USERS_MIGRATE=true", "TOKENGATE_USERS_REGISTRATION=open",
		"TOKENGATE_USERS_DEFAULT_GROUPS=members", "TOKENGATE_USERS_REFRESH_INTERVAL=1s", "TOKENGATE_USERS_MAX_STALE=5s"}
	var replicas []*instance
	for range 2 {
		dir := newDir(t, up.URL)
		withAdminToken(t, dir)
		replicas = append(replicas, start(t, dir, env...))
	}
	a := replicas[0]
	for _, name := range []string{"dana", "eli"} {
		if r := call(t, "POST", a.Public+"/users", "", fmt.Sprintf(`{"username":%q,"password":"%s-password-1"}`, name, name)); r.Code != http.StatusCreated {
			t.Fatalf("register %s: %d %s", name, r.Code, r.Body)
		}
	}
	for _, in := range replicas {
		wantIdentity(t, in, "dana", "members")
		wantIdentity(t, in, "eli", "members")
	}

	conn := identPgConn(t, pgURL)
	if _, err := conn.Exec(context.Background(), "UPDATE "+table+" SET groups = '{ops,members}' WHERE id = 'dana'"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), "DELETE FROM "+table+" WHERE id = 'eli'"); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	for i, in := range replicas {
		eventually(t, 5*time.Second, fmt.Sprintf("replica %d sees the change", i), func() bool {
			groups, _ := identityOf(t, in, "dana")
			_, code := identityOf(t, in, "eli")
			return slices.Equal(groups, []string{"ops", "members"}) && code == "404 user_unknown"
		})
	}
	// refresh_interval 1s bounds it; allow for a loaded machine.
	if d := time.Since(changed); d > 3*time.Second {
		t.Fatalf("both replicas saw the change after %s (refresh_interval 1s)", d)
	}
	t.Logf("both replicas saw the table change after %s (refresh_interval 1s)", time.Since(changed))
}

func identPgConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Legacy query mode with users.id_query: groups from the operator's own
// table (a comma-separated column), looked up by id, so changes and
// removals are seen; the operator's revoke-user resolves ids again.
func TestIdentitiesLegacyIDQueryE2E(t *testing.T) {
	pgURL := testsvc.PostgresURL(t)
	table, conn := pgTable(t, pgURL, "tg_e2e_ident_legacy", "account_id bigint, email text, pw text, roles text")
	if _, err := conn.Exec(context.Background(), "INSERT INTO "+table+" VALUES (42, 'grace@example.com', $1, 'ops, finance')",
		testkit.BcryptHash(t, "grace-password-1")); err != nil {
		t.Fatal(err)
	}
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	withAdminToken(t, dir)
	in := start(t, dir, "TOKENGATE_USERS_BACKEND=postgres", "TOKENGATE_USERS_POSTGRES_URL="+pgURL,
		"TOKENGATE_USERS_QUERY=SELECT account_id, pw, roles FROM "+table+" WHERE email = $1",
		"TOKENGATE_USERS_ID_QUERY=SELECT account_id, pw, roles FROM "+table+" WHERE account_id::text = $1",
		"TOKENGATE_USERS_REFRESH_INTERVAL=1s")
	login(t, in.Public, "grace@example.com", "grace-password-1")
	wantIdentity(t, in, "42", "ops", "finance")

	if _, err := conn.Exec(context.Background(), "UPDATE "+table+" SET roles = 'reports' WHERE account_id = 42"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the changed roles", func() bool {
		groups, _ := identityOf(t, in, "42")
		return slices.Equal(groups, []string{"reports"})
	})
	// Disabling the account (NULL password) is a removal.
	if _, err := conn.Exec(context.Background(), "UPDATE "+table+" SET pw = NULL WHERE account_id = 42"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the disabled account", func() bool {
		_, code := identityOf(t, in, "42")
		return code == "404 user_unknown"
	})
	if _, err := conn.Exec(context.Background(), "UPDATE "+table+" SET pw = $1 WHERE account_id = 42", testkit.BcryptHash(t, "grace-password-1")); err != nil {
		t.Fatal(err)
	}
	if r := adminRevoke(t, in, `{"user":"42"}`); r.Code != http.StatusOK || r.json(t)["matched"] != "id" {
		t.Fatalf("legacy revoke by id with users.id_query: %d %s, want 200 matched id", r.Code, r.Body)
	}
}

// Without users.id_query legacy mode has no identity lookups; the admin
// endpoint says so and the log explains what is lost.
func TestIdentitiesLegacyWithoutIDQueryE2E(t *testing.T) {
	pgURL := testsvc.PostgresURL(t)
	table, _ := pgTable(t, pgURL, "tg_e2e_ident_noid", "account_id bigint, email text, pw text")
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	withAdminToken(t, dir)
	in := start(t, dir, "TOKENGATE_USERS_BACKEND=postgres", "TOKENGATE_USERS_POSTGRES_URL="+pgURL,
		"TOKENGATE_USERS_QUERY=SELECT account_id, pw FROM "+table+" WHERE email = $1")
	if _, code := identityOf(t, in, "42"); code != "404 identity_lookups_off" {
		t.Fatalf("identity in legacy mode without id_query: %s, want 404 identity_lookups_off", code)
	}
	if !strings.Contains(in.logs.String(), "users.query without users.id_query") {
		t.Fatalf("the log does not explain the missing id_query:\n%s", in.logs)
	}
}

// A users file polled less often than refresh_interval cannot keep that
// bound: serve says so at start (the config stays valid: SIGHUP-only
// setups poll rarely on purpose).
func TestIdentitiesSlowUsersFilePollWarns(t *testing.T) {
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), "TOKENGATE_USERS_RELOAD_INTERVAL=1h")
	if !strings.Contains(in.logs.String(), "users file changes (groups, removed users) are seen within 3 × users.reload_interval") {
		t.Fatalf("no warning about the slow users file poll:\n%s", in.logs)
	}
	in2 := start(t, newDir(t, up.URL))
	if strings.Contains(in2.logs.String(), "users file changes (groups, removed users)") {
		t.Fatal("warned with the default poll")
	}
}

// check-config catches group mistakes before a deploy: a bad group in the
// users file (entry and line named), and default groups for a PostgreSQL
// table that has no groups column.
func TestIdentitiesCheckConfig(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	users := "users:\n  - username: alice\n    password_hash: " + fmt.Sprintf("%q", testkit.BcryptHash(t, "alice-password-1")) + "\n    groups: [ops, \"fin,ance\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "users.yaml"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runBin(t, dir, "", "check-config", "--config", "config.yaml")
	if code != 2 || !strings.Contains(errOut, `users[0] ("alice"): groups[1] (line 4): "fin,ance" contains a comma`) {
		t.Fatalf("check-config with a bad group: exit %d\n%s", code, errOut)
	}

	pgURL := testsvc.PostgresURL(t)
	table, _ := pgTable(t, pgURL, "tg_e2e_nogroups", "id text PRIMARY KEY, username text UNIQUE NOT NULL, password_hash text NOT NULL")
	cfg := baseConfig(up.URL)
	cfg = strings.Replace(cfg, "  backend: file\n  file: users.yaml\n", fmt.Sprintf("  backend: postgres\n  postgres_url: %s\n  table: %s\n  registration: open\n  default_groups: [members]\n", pgURL, table), 1)
	if err := os.WriteFile(filepath.Join(dir, "pg.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runBin(t, dir, "", "check-config", "--config", "pg.yaml")
	if code != 2 || !strings.Contains(errOut, "users.default_groups: the users table has no groups column") {
		t.Fatalf("check-config with default groups and no groups column: exit %d\n%s", code, errOut)
	}
}
