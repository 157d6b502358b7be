package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
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
