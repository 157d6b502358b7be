package authn

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/argon2"

	"tokengate/internal/testsvc"
)

// pgTestTable returns a table name no other test uses, dropped at cleanup.
func pgTestTable(t *testing.T, url, prefix string) string {
	return testsvc.TempTable(t, url, prefix)
}

func pgExec(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func pgQueryInt(t *testing.T, url, sql string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func openTestPostgres(t *testing.T, opts PostgresUsersOptions) *PostgresUsers {
	t.Helper()
	s, err := OpenPostgresUsers(context.Background(), opts)
	if err != nil {
		t.Fatalf("OpenPostgresUsers: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestPostgresUsersMigrate(t *testing.T) {
	url := testsvc.PostgresURL(t)
	table := pgTestTable(t, url, "tg_users")
	ctx := context.Background()

	_, err := OpenPostgresUsers(ctx, PostgresUsersOptions{URL: url, Table: table})
	if err == nil || !strings.Contains(err.Error(), "users.migrate: true") || !strings.Contains(err.Error(), table) {
		t.Fatalf("open without table or migrate = %v, want an error naming the table and users.migrate", err)
	}

	openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table, Migrate: true})
	// Idempotent, and the table is now there for stores that do not migrate.
	openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table, Migrate: true})
	openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table})

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT column_name, data_type, is_nullable FROM information_schema.columns
		WHERE table_name = $1 ORDER BY ordinal_position`, table)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var name, typ, nullable string
		if err := rows.Scan(&name, &typ, &nullable); err != nil {
			t.Fatal(err)
		}
		got = append(got, name+" "+typ+" "+nullable)
	}
	want := []string{"id text NO", "username text NO", "password_hash text NO", "created_at timestamp with time zone NO", "groups ARRAY NO"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("columns = %q, want %q", got, want)
	}
}

func TestPostgresUsersConcurrentMigrate(t *testing.T) {
	url := testsvc.PostgresURL(t)
	table := pgTestTable(t, url, "tg_users")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := OpenPostgresUsers(context.Background(), PostgresUsersOptions{URL: url, Table: table, Migrate: true})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("replicas migrating at once: %v", err)
		}
	}
}

func TestPostgresUsersBadOptions(t *testing.T) {
	url := testsvc.PostgresURL(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close() // nothing listens there now
	// The kernel completes the TCP handshake; the server never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	tests := []struct {
		name   string
		opts   PostgresUsersOptions
		wantIn string
	}{
		{"injection in table", PostgresUsersOptions{URL: url, Table: "users; DROP TABLE x", Migrate: true}, "plain identifier"},
		{"quote in table", PostgresUsersOptions{URL: url, Table: `us"ers`, Migrate: true}, "plain identifier"},
		{"leading digit", PostgresUsersOptions{URL: url, Table: "1users", Migrate: true}, "plain identifier"},
		{"three parts", PostgresUsersOptions{URL: url, Table: "a.b.c", Migrate: true}, "schema.table"},
		{"empty schema", PostgresUsersOptions{URL: url, Table: ".users", Migrate: true}, "plain identifier"},
		{"bad URL hides password", PostgresUsersOptions{URL: "postgres://u:s3cr3tpw@127.0.0.1:notaport/db"}, "cannot parse"},
		{"server down hides password", PostgresUsersOptions{URL: "postgres://u:s3cr3tpw@" + deadAddr + "/db?sslmode=disable", Migrate: true}, "connect"},
		{"server silent", PostgresUsersOptions{URL: "postgres://u@" + silent.Addr().String() + "/db?sslmode=disable", Timeout: 300 * time.Millisecond}, "connect"},
		{"override password hidden", PostgresUsersOptions{URL: "postgres://u@" + deadAddr + "/db?sslmode=disable", Password: "s3cr3tpw", Migrate: true}, "connect"},
		{"legacy query syntax error", PostgresUsersOptions{URL: url, Query: "SELEC id, pw FROM nowhere WHERE x = $1"}, "users.query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenPostgresUsers(context.Background(), tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("OpenPostgresUsers succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantIn) || strings.Contains(err.Error(), "s3cr3tpw") {
				t.Fatalf("error = %q, want it to contain %q and no password", err, tt.wantIn)
			}
		})
	}
}

func TestPostgresUsersCreateLookup(t *testing.T) {
	url := testsvc.PostgresURL(t)
	table := pgTestTable(t, url, "tg_users")
	ctx := context.Background()
	s := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table, Migrate: true})
	// A second pool on the same table: another replica.
	replica := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table})

	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := s.LookupUser(ctx, "marco"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("LookupUser before create = %v, want ErrUserNotFound", err)
	}
	marco := User{ID: "marco", Username: "marco", PasswordHash: "$2a$10$x"}
	if got, err := s.CreateUser(ctx, User{Username: "marco", PasswordHash: "$2a$10$x"}); err != nil || !reflect.DeepEqual(got, marco) {
		t.Fatalf("CreateUser = %+v, %v; want %+v (id defaulted)", got, err, marco)
	}
	anna := User{ID: "u-42", Username: "anna@example.com", PasswordHash: "$argon2id$y"}
	if _, err := replica.CreateUser(ctx, anna); err != nil {
		t.Fatal(err)
	}
	for _, store := range []*PostgresUsers{s, replica} {
		for _, want := range []User{marco, anna} {
			if got, err := store.LookupUser(ctx, want.Username); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("LookupUser(%q) = %+v, %v; want %+v", want.Username, got, err, want)
			}
		}
	}

	dups := []struct {
		name string
		u    User
	}{
		{"same username", User{ID: "other", Username: "marco", PasswordHash: "h"}},
		{"same id", User{ID: "u-42", Username: "someone", PasswordHash: "h"}},
	}
	for _, tt := range dups {
		t.Run(tt.name, func(t *testing.T) {
			for _, store := range []*PostgresUsers{s, replica} {
				if _, err := store.CreateUser(ctx, tt.u); !errors.Is(err, ErrUserExists) {
					t.Fatalf("CreateUser = %v, want ErrUserExists", err)
				}
			}
		})
	}
}

func TestPostgresUsersConcurrentCreate(t *testing.T) {
	url := testsvc.PostgresURL(t)
	table := pgTestTable(t, url, "tg_users")
	ctx := context.Background()
	// Small pools so goroutines queue for connections too.
	stores := []*PostgresUsers{
		openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table, Migrate: true, MaxConns: 2}),
		openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table, MaxConns: 1}),
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = stores[i%2].CreateUser(ctx, User{Username: "marco", PasswordHash: fmt.Sprintf("h%d", i)})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrUserExists):
			t.Errorf("CreateUser = %v, want nil or ErrUserExists", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d creates succeeded, want exactly 1", ok)
	}
}

func TestPostgresUsersContext(t *testing.T) {
	url := testsvc.PostgresURL(t)
	table := pgTestTable(t, url, "tg_users")
	s := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table, Migrate: true})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.LookupUser(ctx, "marco"); !errors.Is(err, context.Canceled) {
		t.Fatalf("LookupUser with cancelled ctx = %v, want context.Canceled", err)
	}
	if _, err := s.CreateUser(ctx, User{Username: "marco", PasswordHash: "h"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateUser with cancelled ctx = %v, want context.Canceled", err)
	}
	// The store still works after a cancelled call.
	if _, err := s.LookupUser(context.Background(), "marco"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("LookupUser = %v, want ErrUserNotFound", err)
	}
}

// Without a deadline on the caller's ctx, Timeout bounds each statement.
func TestPostgresUsersDefaultTimeout(t *testing.T) {
	url := testsvc.PostgresURL(t)
	s := openTestPostgres(t, PostgresUsersOptions{URL: url, Timeout: 200 * time.Millisecond,
		Query: "SELECT 1, pg_sleep(30)::text WHERE $1::text <> ''"})
	if _, err := s.LookupUser(context.Background(), "marco"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LookupUser on a stuck query = %v, want context.DeadlineExceeded", err)
	}
}

// A connection the server dropped is discarded, not reused. pgxpool pings a
// connection before reuse only when it has been idle over a second, so one
// dropped right after use fails the next statement once (pgx does not retry
// it); one that sat idle, as across a server restart, costs no failed lookup.
func TestPostgresUsersSurvivesDroppedConnections(t *testing.T) {
	base := testsvc.PostgresURL(t)
	table := pgTestTable(t, base, "tg_users")
	tests := []struct {
		name        string
		idle        time.Duration // between the last use and the drop
		maxFailures int
	}{
		{"just used", 0, 1},
		{"idle", 1100 * time.Millisecond, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := make([]byte, 6)
			rand.Read(b)
			app := "tg_test_" + hex.EncodeToString(b)
			url := base + "&application_name=" + app
			if !strings.Contains(base, "?") {
				url = base + "?application_name=" + app
			}
			// One connection, so a failure can only come from the dropped one.
			s := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table, Migrate: true, MaxConns: 1})
			ctx := context.Background()
			login := fmt.Sprintf("marco%d", i)
			if _, err := s.CreateUser(ctx, User{Username: login, PasswordHash: "h"}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(tt.idle)
			// The timeout makes the server wait until the backend is gone.
			if n := pgQueryInt(t, base, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE application_name = $1", app); n != 1 {
				t.Fatalf("terminated %d backends, want the pool's one connection", n)
			}
			var err error
			for attempt := 0; attempt <= tt.maxFailures; attempt++ {
				if _, err = s.LookupUser(ctx, login); err == nil {
					break
				}
				t.Logf("LookupUser attempt %d after the drop: %v", attempt+1, err)
			}
			if err != nil {
				t.Fatalf("LookupUser after the server dropped the connection, %d failure(s) allowed: %v", tt.maxFailures, err)
			}
		})
	}
}

func TestPostgresUsersClose(t *testing.T) {
	s := openTestPostgres(t, PostgresUsersOptions{URL: testsvc.PostgresURL(t), Query: "SELECT 1, 'h' WHERE $1::text = 'x'"})
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	s.Close()
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
	if _, err := s.LookupUser(ctx, "x"); err == nil {
		t.Fatal("LookupUser after Close succeeded")
	}
}

func TestPostgresUsersLegacyQuery(t *testing.T) {
	url := testsvc.PostgresURL(t)
	ctx := context.Background()
	table := pgTestTable(t, url, "app_accounts")
	ident := pgx.Identifier{table}.Sanitize()
	pgExec(t, url, "CREATE TABLE "+ident+" (account_id bigint, email text, pw text)")

	bcryptHash, err := HashPassword("bcrypt password", HashOptions{Algorithm: "bcrypt", BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	// A legacy app's own argon2id hash, with cheap parameters so the test
	// stays fast under -race (CheckPassword reads them from the hash).
	salt := []byte("legacy-app-salt!")
	argonHash := fmt.Sprintf("$argon2id$v=%d$m=1024,t=1,p=1$%s$%s", argon2.Version,
		base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(argon2.IDKey([]byte("argon2id password"), salt, 1, 1024, 1, 32)))
	pgExec(t, url, "INSERT INTO "+ident+" VALUES (1001, 'marco@example.com', $1), (1002, 'anna@example.com', $2), (1003, 'nopw@example.com', NULL), (1004, 'twin@example.com', 'h'), (1005, 'twin@example.com', 'h')",
		bcryptHash, argonHash)

	s := openTestPostgres(t, PostgresUsersOptions{URL: url, Query: "SELECT account_id, pw FROM " + ident + " WHERE email = $1"})

	found := []struct {
		login, password, wantID, wantHash string
	}{
		{"marco@example.com", "bcrypt password", "1001", bcryptHash},
		{"anna@example.com", "argon2id password", "1002", argonHash},
	}
	for _, tt := range found {
		t.Run(tt.login, func(t *testing.T) {
			u, err := s.LookupUser(ctx, tt.login)
			if err != nil {
				t.Fatal(err)
			}
			want := User{ID: tt.wantID, Username: tt.login, PasswordHash: tt.wantHash}
			if !reflect.DeepEqual(u, want) {
				t.Fatalf("LookupUser = %+v, want %+v", u, want)
			}
			if ok, err := CheckPassword(u.PasswordHash, tt.password); !ok || err != nil {
				t.Fatalf("CheckPassword(stored hash) = %v, %v; want true", ok, err)
			}
		})
	}

	notFound := []string{"nobody@example.com", "nopw@example.com"}
	for _, login := range notFound {
		if _, err := s.LookupUser(ctx, login); !errors.Is(err, ErrUserNotFound) {
			t.Errorf("LookupUser(%q) = %v, want ErrUserNotFound", login, err)
		}
	}
	if _, err := s.LookupUser(ctx, "twin@example.com"); !errors.Is(err, ErrUserNotFound) || !strings.Contains(err.Error(), "more than one row") {
		t.Errorf("LookupUser of a login matching two rows = %v, want ErrUserNotFound saying 'more than one row'", err)
	}
	if _, err := s.CreateUser(ctx, User{Username: "new", PasswordHash: "h"}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("CreateUser in legacy mode = %v, want ErrReadOnly", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestPostgresUsersLegacyIDFormats(t *testing.T) {
	url := testsvc.PostgresURL(t)
	tests := []struct{ query, want string }{
		{"SELECT 'a1b2c3d4-0000-4000-8000-00000000002a'::uuid, 'h' WHERE $1::text = 'x'", "a1b2c3d4-0000-4000-8000-00000000002a"},
		{"SELECT 12.50::numeric, 'h' WHERE $1::text = 'x'", "12.50"},
		{"SELECT 9007199254740993::bigint, 'h' WHERE $1::text = 'x'", "9007199254740993"},
		{"SELECT 'plain', 'h' WHERE $1::text = 'x'", "plain"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			s := openTestPostgres(t, PostgresUsersOptions{URL: url, Query: tt.query})
			u, err := s.LookupUser(context.Background(), "x")
			if err != nil || u.ID != tt.want {
				t.Fatalf("LookupUser = %+v, %v; want id %q", u, err, tt.want)
			}
		})
	}
}

func TestPostgresUsersLegacyQueryShape(t *testing.T) {
	url := testsvc.PostgresURL(t)
	tests := []struct{ name, query string }{
		{"one column", "SELECT 'h' WHERE $1::text <> ''"},
		{"four columns", "SELECT 1, 'h', 'x', 'y' WHERE $1::text <> ''"},
		{"no parameter", "SELECT 1, 'h'"},
		{"two parameters", "SELECT 1, 'h' WHERE $1::text <> $2::text"},
		{"no result columns", "DELETE FROM pg_class WHERE relname = $1 AND false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenPostgresUsers(context.Background(), PostgresUsersOptions{URL: url, Query: tt.query})
			if err == nil {
				s.Close()
				t.Fatal("OpenPostgresUsers accepted the query")
			}
			if !strings.Contains(err.Error(), "one parameter") || !strings.Contains(err.Error(), "two columns (id, password_hash) or three (id, password_hash, groups)") {
				t.Fatalf("error = %q, want it to explain the expected shape", err)
			}
		})
	}
}

// Issue 15 point 3: rows nobody can log in as (no usable hash, two rows
// for one login, no id) answer like a missing user, after a dummy check;
// names PostgreSQL would refuse never reach it; only a store that cannot
// answer is an error.
func TestPostgresAuthenticateUnusableRows(t *testing.T) {
	url := testsvc.PostgresURL(t)
	ctx := context.Background()
	good, err := HashPassword("good password", HashOptions{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	unusable := map[string]string{
		"empty": "", "bang": "!", "star": "*", "locked": "!" + good, "md5": "md5" + strings.Repeat("0a", 16),
		"crypt": "$1$salt$hash", "short": "$2a$04$short", "argon-bad": "$argon2id$v=19$m=1,t=1,p=1$x$y",
	}

	table := pgTestTable(t, url, "tg_unusable")
	tableStore := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table, Migrate: true})
	ident := pgx.Identifier{table}.Sanitize()
	for name, h := range unusable {
		pgExec(t, url, "INSERT INTO "+ident+" (id, username, password_hash) VALUES ($1, $1, $2)", name, h)
	}
	pgExec(t, url, "INSERT INTO "+ident+" (id, username, password_hash) VALUES ('', 'noid', $1), ('good', 'good', $1)", good)

	legacyTable := pgTestTable(t, url, "tg_unusable_legacy")
	lident := pgx.Identifier{legacyTable}.Sanitize()
	pgExec(t, url, "CREATE TABLE "+lident+" (id text, login text, pw text)")
	for name, h := range unusable {
		pgExec(t, url, "INSERT INTO "+lident+" VALUES ($1, $1, $2)", name, h)
	}
	pgExec(t, url, "INSERT INTO "+lident+" VALUES ('t1', 'twin', $1), ('t2', 'twin', $1), ('', 'noid', $1), (NULL, 'nullid', $1), ('good', 'good', $1)", good)
	legacyStore := openTestPostgres(t, PostgresUsersOptions{URL: url, Query: "SELECT id, pw FROM " + lident + " WHERE login = $1"})

	for mode, store := range map[string]*PostgresUsers{"table": tableStore, "legacy": legacyStore} {
		t.Run(mode, func(t *testing.T) {
			a := NewAuthenticator(store, AuthenticatorOptions{Hash: HashOptions{BcryptCost: 4}, Throttle: ThrottleOptions{PerUser: -1, PerAddress: -1}})
			checks := countChecks(a)
			names := []string{"noid", "nobody"}
			for name := range unusable {
				names = append(names, name)
			}
			if mode == "legacy" {
				names = append(names, "twin", "nullid")
			}
			for _, name := range names {
				*checks = nil
				_, err := a.Authenticate(ctx, name, "good password", "192.0.2.1")
				if err != ErrInvalidCredentials {
					t.Errorf("%s: %v, want ErrInvalidCredentials (like a missing user)", name, err)
				}
				if len(*checks) != 1 {
					t.Errorf("%s: %d hash checks, want 1 (the dummy)", name, len(*checks))
				}
			}
			if u, err := a.Authenticate(ctx, "good", "good password", ""); err != nil || u.ID != "good" {
				t.Errorf("good user: %+v, %v", u, err)
			}
			for _, name := range []string{"bob\x00", "b\xffob"} {
				if _, err := a.Authenticate(ctx, name, "good password", ""); !errors.Is(err, ErrMalformedLoginName) {
					t.Errorf("name %q: %v, want ErrMalformedLoginName", name, err)
				}
				// What PostgreSQL itself says about such names: the reason
				// they must never reach it.
				if _, err := store.LookupUser(ctx, name); err == nil || errors.Is(err, ErrUserNotFound) {
					t.Errorf("LookupUser(%q) straight to PostgreSQL = %v, want an error", name, err)
				}
			}
		})
	}

	// A store that cannot answer stays an error (503), not a 401.
	down := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table})
	down.Close()
	a := NewAuthenticator(down, AuthenticatorOptions{Hash: HashOptions{BcryptCost: 4}})
	if _, err := a.Authenticate(ctx, "good", "good password", ""); err == nil || errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("closed store: %v, want a store error", err)
	}
}
