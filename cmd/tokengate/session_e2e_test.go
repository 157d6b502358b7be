package main

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tokengate/authn"
	"tokengate/internal/testsvc"
)

// The session API of the second seed document, served beside the first.
func TestSessionAPI(t *testing.T) {
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), "TOKENGATE_TOKENS_REFRESH_WINDOW=1h")

	// POST /session logs in; the login name may arrive as "email".
	r := call(t, "POST", in.Public+"/session", "", `{"email":"alice","password":"`+testUsers["alice"]+`"}`)
	if r.Code != 200 {
		t.Fatalf("POST /session: %d %s", r.Code, r.Body)
	}
	tok := r.json(t)["token"].(string)

	r = call(t, "GET", in.Public+"/session", tok, "")
	if r.Code != 200 {
		t.Fatalf("GET /session: %d %s", r.Code, r.Body)
	}
	s := r.json(t)
	if s["id"] != "alice" || s["username"] != "alice" || s["issued_at"] == nil || s["expires_at"] == nil {
		t.Fatalf("GET /session body: %s", r.Body)
	}
	if r = call(t, "HEAD", in.Public+"/session", tok, ""); r.Code != 200 || r.Body != "" {
		t.Fatalf("HEAD /session: %d %q", r.Code, r.Body)
	}
	if r = call(t, "GET", in.Public+"/session", "", ""); r.Code != 401 {
		t.Fatalf("GET /session without token: %d", r.Code)
	}

	// PUT refreshes: a new token works, the old one is dead.
	r = call(t, "PUT", in.Public+"/session", tok, "")
	if r.Code != 200 {
		t.Fatalf("PUT /session: %d %s", r.Code, r.Body)
	}
	fresh := r.json(t)["token"].(string)
	if fresh == tok {
		t.Fatal("refresh returned the same token")
	}
	if r = call(t, "GET", in.Public+"/app", tok, ""); r.Code != 401 {
		t.Fatalf("old token after refresh: %d", r.Code)
	}
	if r = call(t, "PUT", in.Public+"/session", tok, ""); r.Code != 401 {
		t.Fatalf("refreshing a revoked token: %d", r.Code)
	}
	if r = call(t, "GET", in.Public+"/app", fresh, ""); r.Code != 200 {
		t.Fatalf("refreshed token: %d", r.Code)
	}

	// DELETE logs out.
	if r = call(t, "DELETE", in.Public+"/session", fresh, ""); r.Code != 204 {
		t.Fatalf("DELETE /session: %d %s", r.Code, r.Body)
	}
	if r = call(t, "GET", in.Public+"/session", fresh, ""); r.Code != 401 {
		t.Fatalf("GET /session after DELETE: %d", r.Code)
	}
	if r = call(t, "PATCH", in.Public+"/session", fresh, ""); r.Code != 405 || r.Header.Get("Allow") == "" {
		t.Fatalf("PATCH /session: %d Allow=%q", r.Code, r.Header.Get("Allow"))
	}
	if up.sawPath("/session") {
		t.Fatal("a /session request reached the upstream")
	}
	// Registration is off by default: 404.
	if r = call(t, "POST", in.Public+"/users", "", `{"username":"dave","password":"dave-password-1"}`); r.Code != 404 {
		t.Fatalf("POST /users with registration off: %d", r.Code)
	}
}

func TestLoginThrottling(t *testing.T) {
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), "TOKENGATE_LOGIN_THROTTLE_PER_USER=3", "TOKENGATE_LOGIN_THROTTLE_WINDOW=1m")
	for i := 0; i < 3; i++ {
		if r := call(t, "POST", in.Public+"/user/login", "", `{"username":"alice","password":"wrong-password"}`); r.Code != 401 {
			t.Fatalf("failure %d: %d", i, r.Code)
		}
	}
	r := call(t, "POST", in.Public+"/user/login", "", `{"username":"alice","password":"`+testUsers["alice"]+`"}`)
	if r.Code != 429 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("past the budget, even with the right password: %d Retry-After=%q", r.Code, r.Header.Get("Retry-After"))
	}
	login(t, in.Public, "bob", testUsers["bob"]) // other users unaffected
	if !strings.Contains(call(t, "GET", in.Admin+"/metrics", "", "").Body, `tokengate_logins_total{result="throttled"} 1`) {
		t.Error("throttled login not counted")
	}
}

func TestRegistrationBoltSurvivesRestart(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	env := []string{"TOKENGATE_USERS_BACKEND=bolt", "TOKENGATE_USERS_PATH=users.db", "TOKENGATE_USERS_REGISTRATION=open"}
	in := start(t, dir, env...)
	body := `{"username":"dave","password":"dave-password-1"}`
	r := call(t, "POST", in.Public+"/users", "", body)
	if r.Code != 201 || r.json(t)["username"] != "dave" || strings.Contains(r.Body, "password") {
		t.Fatalf("register: %d %s", r.Code, r.Body)
	}
	if r = call(t, "POST", in.Public+"/users", "", body); r.Code != 409 {
		t.Fatalf("register twice: %d", r.Code)
	}
	if r = call(t, "POST", in.Public+"/users", "", `{"username":"erin","password":"short"}`); r.Code != 400 {
		t.Fatalf("weak password: %d", r.Code)
	}
	if r = call(t, "POST", in.Public+"/users", "", `{"username":"erin"`); r.Code != 400 {
		t.Fatalf("malformed body: %d", r.Code)
	}
	in.signal(syscall.SIGTERM)
	in.wait(20 * time.Second)
	again := start(t, dir, env...)
	login(t, again.Public, "dave", "dave-password-1")
}

func TestRegistrationAuthenticated(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	open := start(t, dir, "TOKENGATE_USERS_BACKEND=bolt", "TOKENGATE_USERS_PATH=users.db", "TOKENGATE_USERS_REGISTRATION=open")
	if r := call(t, "POST", open.Public+"/users", "", `{"username":"admin1","password":"admin1-password"}`); r.Code != 201 {
		t.Fatalf("bootstrap user: %d %s", r.Code, r.Body)
	}
	open.signal(syscall.SIGTERM)
	open.wait(20 * time.Second)

	in := start(t, dir, "TOKENGATE_USERS_BACKEND=bolt", "TOKENGATE_USERS_PATH=users.db", "TOKENGATE_USERS_REGISTRATION=authenticated")
	body := `{"username":"dave","password":"dave-password-1"}`
	if r := call(t, "POST", in.Public+"/users", "", body); r.Code != 401 {
		t.Fatalf("register without a token: %d", r.Code)
	}
	tok := login(t, in.Public, "admin1", "admin1-password")
	if r := call(t, "POST", in.Public+"/users", tok, body); r.Code != 201 {
		t.Fatalf("register with a token: %d %s", r.Code, r.Body)
	}
	login(t, in.Public, "dave", "dave-password-1")
}

// Two instances on one PostgreSQL see each other's registrations; the
// legacy query mode logs in against the app's own table.
func TestPostgresUsers(t *testing.T) {
	url := testsvc.PostgresURL(t)
	table := testsvc.TempTable(t, url, "tg_e2e_users")
	legacy := testsvc.TempTable(t, url, "tg_e2e_users_legacy")
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	up := newEchoUpstream(t)
	env := []string{"TOKENGATE_USERS_BACKEND=postgres", "TOKENGATE_USERS_POSTGRES_URL=" + url,
		"TOKENGATE_USERS_TABLE=" + table, "TOKENGATE_USERS_MIGRATE=true", "TOKENGATE_USERS_REGISTRATION=open"}
	a := start(t, newDir(t, up.URL), env...)
	b := start(t, newDir(t, up.URL), env...)
	if r := call(t, "POST", a.Public+"/users", "", `{"username":"frank","password":"frank-password-1"}`); r.Code != 201 {
		t.Fatalf("register on A: %d %s", r.Code, r.Body)
	}
	login(t, b.Public, "frank", "frank-password-1")
	if r := call(t, "POST", b.Public+"/users", "", `{"username":"frank","password":"frank-password-2"}`); r.Code != 409 {
		t.Fatalf("same name on B: %d", r.Code)
	}
	if r := call(t, "GET", a.Admin+"/readyz", "", ""); r.Code != http.StatusOK {
		t.Fatalf("readyz with postgres: %d %s", r.Code, r.Body)
	}

	// Legacy mode: the app's own accounts table, read-only.
	hash, _ := authn.HashPassword("grace-password-1", authn.HashOptions{Algorithm: "argon2id"})
	if _, err := conn.Exec(t.Context(), `CREATE TABLE `+legacy+` (account_id bigint, email text, pw text)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(t.Context(), `INSERT INTO `+legacy+` VALUES (42, 'grace@example.com', $1)`, hash); err != nil {
		t.Fatal(err)
	}
	c := start(t, newDir(t, up.URL), "TOKENGATE_USERS_BACKEND=postgres", "TOKENGATE_USERS_POSTGRES_URL="+url,
		"TOKENGATE_USERS_QUERY=SELECT account_id, pw FROM "+legacy+" WHERE email = $1")
	r := call(t, "POST", c.Public+"/session", "", `{"email":"grace@example.com","password":"grace-password-1"}`)
	if r.Code != 200 {
		t.Fatalf("legacy login: %d %s", r.Code, r.Body)
	}
	if r = call(t, "GET", c.Public+"/app", r.json(t)["token"].(string), ""); !strings.Contains(r.Body, `"user_id":["42"]`) {
		t.Fatalf("legacy user id upstream: %d %s", r.Code, r.Body)
	}
}
