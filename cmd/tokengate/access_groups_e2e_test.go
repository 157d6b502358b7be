package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tokengate/internal/testsvc"
)

// accessOutcome is what one replica answers a token on a path, as the
// sidecar and as forward auth's verify: "200 ops,staff", "403 forbidden",
// "401 user_unknown".
func accessOutcome(t *testing.T, in *instance, up *echoUpstream, token, path string) (sidecar, verify string) {
	t.Helper()
	describe := func(r reply, groups string) string {
		if r.Code == http.StatusOK {
			return "200 " + groups
		}
		code, _ := r.json(t)["error"].(string)
		return fmt.Sprintf("%d %s", r.Code, code)
	}
	r := call(t, "GET", in.Public+path, token, "")
	groups := ""
	if h, ok := up.headersSeen(path); ok && r.Code == http.StatusOK {
		groups = strings.Join(h["X-Auth-Groups"], "|")
	}
	sidecar = describe(r, groups)
	v := call(t, "GET", in.Public+"/tokengate/verify", token, "", "X-Original-URI", path, "X-Original-Method", "GET")
	verify = describe(v, strings.Join(v.Header["X-Auth-Groups"], "|"))
	return sidecar, verify
}

func wantAccess(t *testing.T, in *instance, up *echoUpstream, token, path, want string) {
	t.Helper()
	if s, v := accessOutcome(t, in, up, token, path); s != want || v != want {
		t.Fatalf("%s: sidecar %q, verify %q, want %q", path, s, v, want)
	}
}

// TestAccessGroupsUsersFileE2E: groups from the users file decide, and an
// edit of the file (a changed group, a removed user) applies on both
// replicas reading it, with no new sign-in: in the sidecar and in verify.
func TestAccessGroupsUsersFileE2E(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	appendConfig(t, dir, groupRules+"trusted_proxies: [\"127.0.0.1/32\"]\n")
	usersPath := filepath.Join(dir, "users.yaml")
	writeAccessUsers(t, usersPath, []string{"olivia", "ops", "staff"}, []string{"frank", "finance"}, []string{"carl"})
	// Two replicas over the same users file and signing key; revocation in
	// memory (a bolt file is one process's).
	var replicas []*instance
	for range 2 {
		replicas = append(replicas, start(t, dir, "TOKENGATE_REVOCATION_BACKEND=memory"))
	}
	a := replicas[0]
	olivia := login(t, a.Public, "olivia", "olivia-password-1")
	frank := login(t, a.Public, "frank", "frank-password-1")
	carl := login(t, a.Public, "carl", "carl-password-1")
	for _, in := range replicas {
		wantAccess(t, in, up, olivia, "/admin/users", "200 ops,staff")
		wantAccess(t, in, up, frank, "/admin/users", "403 forbidden")
		wantAccess(t, in, up, frank, "/reports/q1", "200 finance")
		wantAccess(t, in, up, olivia, "/reports/q1", "403 forbidden")
		wantAccess(t, in, up, carl, "/orders", "200 ")
		wantAccess(t, in, up, carl, "/admin", "403 forbidden")
	}

	// Frank joins ops, Olivia is removed, Carl is untouched.
	changed := time.Now()
	writeAccessUsers(t, usersPath, []string{"frank", "finance", "ops"}, []string{"carl"})
	for i, in := range replicas {
		eventually(t, 5*time.Second, fmt.Sprintf("replica %d applies the edit", i), func() bool {
			s, v := accessOutcome(t, in, up, frank, "/admin/users")
			return s == "200 finance,ops" && v == s
		})
		wantAccess(t, in, up, olivia, "/orders", "401 user_unknown")
		wantAccess(t, in, up, carl, "/orders", "200 ")
	}
	t.Logf("both replicas applied the edit after %s (users.reload_interval 100ms)", time.Since(changed))
	// The removed user cannot refresh their token either.
	if r := call(t, "PUT", a.Public+"/session", olivia, ""); r.Code != http.StatusUnauthorized || !strings.Contains(r.Body, "user_unknown") {
		t.Errorf("refresh by a removed user: %d %s", r.Code, r.Body)
	}
	eventually(t, 5*time.Second, "an access line naming the rule and the forbidden decision", func() bool {
		logs := a.logs.String()
		return strings.Contains(logs, `"rule":"admin"`) && strings.Contains(logs, `"auth":"forbidden"`) && strings.Contains(logs, `"auth":"user_unknown"`)
	})
}

// TestAccessGroupsPostgresE2E: groups from PostgreSQL decide on two
// replicas, and a change in the table (a group added, a row deleted) is
// applied by both within users.refresh_interval, no new sign-in.
func TestAccessGroupsPostgresE2E(t *testing.T) {
	pgURL := testsvc.PostgresURL(t)
	table := testsvc.TempTable(t, pgURL, "tg_e2e_access")
	up := newEchoUpstream(t)
	env := []string{"TOKENGATE_USERS_BACKEND=postgres", "TOKENGATE_USERS_POSTGRES_URL=" + pgURL,
		"TOKENGATE_USERS_TABLE=" + table, "TOKENGATE_USERS_MIGRATE=true", "TOKENGATE_USERS_REGISTRATION=open",
		"TOKENGATE_USERS_DEFAULT_GROUPS=finance", "TOKENGATE_USERS_REFRESH_INTERVAL=1s", "TOKENGATE_USERS_MAX_STALE=5s",
		"TOKENGATE_REVOCATION_BACKEND=memory"}
	dir := newDir(t, up.URL)
	appendConfig(t, dir, groupRules+"trusted_proxies: [\"127.0.0.1/32\"]\n")
	var replicas []*instance
	for range 2 {
		replicas = append(replicas, start(t, dir, env...))
	}
	a := replicas[0]
	for _, name := range []string{"dana", "eli"} {
		if r := call(t, "POST", a.Public+"/users", "", fmt.Sprintf(`{"username":%q,"password":"%s-password-1"}`, name, name)); r.Code != http.StatusCreated {
			t.Fatalf("register %s: %d %s", name, r.Code, r.Body)
		}
	}
	dana := login(t, a.Public, "dana", "dana-password-1")
	eli := login(t, a.Public, "eli", "eli-password-1")
	for _, in := range replicas {
		wantAccess(t, in, up, dana, "/reports/x", "200 finance")
		wantAccess(t, in, up, dana, "/admin/x", "403 forbidden")
		wantAccess(t, in, up, eli, "/orders", "200 finance")
	}

	conn, err := pgx.Connect(context.Background(), pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, stmt := range []string{
		"UPDATE " + table + " SET groups = '{finance,ops}' WHERE id = 'dana'",
		"DELETE FROM " + table + " WHERE id = 'eli'",
	} {
		if _, err := conn.Exec(context.Background(), stmt); err != nil {
			t.Fatal(err)
		}
	}
	changed := time.Now()
	for i, in := range replicas {
		eventually(t, 10*time.Second, fmt.Sprintf("replica %d applies the table change", i), func() bool {
			s, v := accessOutcome(t, in, up, dana, "/admin/x")
			s2, v2 := accessOutcome(t, in, up, eli, "/orders")
			return s == "200 finance,ops" && v == s && s2 == "401 user_unknown" && v2 == s2
		})
	}
	t.Logf("both replicas applied the table change after %s (users.refresh_interval 1s)", time.Since(changed))

	// check-access --user reads the same table.
	pgCfg := filepath.Join(dir, "pg.yaml")
	pgYAML := strings.Replace(baseConfig(up.URL)+groupRules, "users:\n  backend: file\n  file: users.yaml\n",
		fmt.Sprintf("users:\n  backend: postgres\n  postgres_url: %q\n  table: %s\n", pgURL, table), 1)
	if err := os.WriteFile(pgCfg, []byte(pgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runBin(t, dir, "", "check-access", "--config", pgCfg, "--user", "dana", "GET", "/admin/x")
	if code != 0 || !strings.Contains(out, `user "dana" (groups [finance, ops], from users.backend postgres)`) {
		t.Errorf("check-access --user dana (postgres): exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = runBin(t, dir, "", "check-access", "--config", pgCfg, "--user", "eli", "GET", "/orders")
	if code != 1 || !strings.Contains(out, "401 user_unknown") {
		t.Errorf("check-access --user eli (deleted): exit %d\n%s", code, out)
	}
}
