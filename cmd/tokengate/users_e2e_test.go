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

	"github.com/jackc/pgx/v5"

	"tokengate/authn"
	"tokengate/internal/testsvc"
)

// pgTable creates a uniquely named table with columns cols and drops it when
// the test ends; a failed DROP fails the test.
func pgTable(t *testing.T, pgURL, prefix, cols string) (string, *pgx.Conn) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pgURL)
	if err != nil {
		t.Fatal(err)
	}
	table := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
			t.Errorf("drop %s: %v", table, err)
		}
		conn.Close(ctx)
	})
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
	if !strings.Contains(in.logs.String(), "half-written") {
		t.Errorf("the log does not say the file may be half-written:\n%s", in.logs)
	}

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
