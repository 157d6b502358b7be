package authn

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"tokengate/internal/testsvc"
)

func wantStoreGroups(t *testing.T, s *PostgresUsers, byName, byID string, want ...string) {
	t.Helper()
	ctx := context.Background()
	if byName != "" {
		u, err := s.LookupUser(ctx, byName)
		if err != nil || !slices.Equal(u.Groups, want) {
			t.Errorf("LookupUser(%q) groups = %q, %v; want %q", byName, u.Groups, err, want)
		}
	}
	if byID != "" {
		u, err := s.LookupUserByID(ctx, byID)
		if err != nil || !slices.Equal(u.Groups, want) || u.PasswordHash == "" {
			t.Errorf("LookupUserByID(%q) = %+v, %v; want groups %q", byID, u, err, want)
		}
	}
}

func TestPostgresUsersGroupsTable(t *testing.T) {
	url := testsvc.PostgresURL(t)
	table := pgTestTable(t, url, "tg_groups")
	ident := pgx.Identifier{table}.Sanitize()
	s := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table, Migrate: true})
	if !s.HasGroups() || !s.CanLookupByID() {
		t.Fatal("a migrated table: HasGroups and CanLookupByID want true")
	}
	ctx := context.Background()
	if _, err := s.CreateUser(ctx, User{ID: "u1", Username: "alice", PasswordHash: marcoHash, Groups: []string{"ops", "finance"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, User{ID: "u2", Username: "bob", PasswordHash: marcoHash}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, User{ID: "u3", Username: "eve", PasswordHash: marcoHash, Groups: []string{"a,b"}}); err == nil {
		t.Fatal("CreateUser accepted a group with a comma")
	}
	wantStoreGroups(t, s, "alice", "u1", "ops", "finance")
	wantStoreGroups(t, s, "bob", "u2")

	// A change in the table is what the next lookup sees.
	pgExec(t, url, "UPDATE "+ident+" SET groups = ARRAY['reports'] WHERE id = 'u1'")
	wantStoreGroups(t, s, "", "u1", "reports")
	// Unusable names and NULL elements someone wrote by hand are left out
	// (a group less can only take access away).
	pgExec(t, url, "UPDATE "+ident+" SET groups = ARRAY['ops', NULL, '', 'a,b', 'ops', E'x\\ny', 'finance'] WHERE id = 'u1'")
	wantStoreGroups(t, s, "alice", "u1", "ops", "finance")
	pgExec(t, url, "DELETE FROM "+ident+" WHERE id = 'u1'")
	if _, err := s.LookupUserByID(ctx, "u1"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("LookupUserByID of a deleted row = %v, want ErrUserNotFound", err)
	}
}

// Tables made before groups existed keep working: without migrate their
// users simply have no groups; with migrate the column is added.
func TestPostgresUsersTableWithoutGroups(t *testing.T) {
	url := testsvc.PostgresURL(t)
	table := pgTestTable(t, url, "tg_oldschema")
	ident := pgx.Identifier{table}.Sanitize()
	pgExec(t, url, "CREATE TABLE "+ident+` (
	id            text PRIMARY KEY,
	username      text UNIQUE NOT NULL,
	password_hash text NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now())`)
	pgExec(t, url, "INSERT INTO "+ident+" (id, username, password_hash) VALUES ('u1', 'alice', $1)", marcoHash)

	old := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table})
	if old.HasGroups() {
		t.Fatal("HasGroups on a table without the column")
	}
	wantStoreGroups(t, old, "alice", "u1")
	ctx := context.Background()
	if _, err := old.CreateUser(ctx, User{Username: "bob", PasswordHash: marcoHash}); err != nil {
		t.Fatalf("CreateUser without groups: %v", err)
	}
	if _, err := old.CreateUser(ctx, User{Username: "carol", PasswordHash: marcoHash, Groups: []string{"ops"}}); err == nil || !strings.Contains(err.Error(), "no groups column") {
		t.Fatalf("CreateUser with groups in a table without the column = %v, want an error saying so", err)
	}

	migrated := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table, Migrate: true})
	if !migrated.HasGroups() {
		t.Fatal("migrate did not add the groups column")
	}
	wantStoreGroups(t, migrated, "alice", "u1")
	pgExec(t, url, "UPDATE "+ident+" SET groups = '{ops}' WHERE id = 'u1'")
	wantStoreGroups(t, migrated, "alice", "u1", "ops")
	// The store opened before the migration still answers (without groups).
	wantStoreGroups(t, old, "alice", "u1")
}

func TestPostgresUsersGroupsColumnTypes(t *testing.T) {
	url := testsvc.PostgresURL(t)
	for _, tt := range []struct {
		typ, value string
		want       []string
	}{
		{"varchar(64)[]", "ARRAY['ops','finance']", []string{"ops", "finance"}},
		{"text", "'ops, finance'", []string{"ops", "finance"}},
		{"text", "NULL", nil},
	} {
		t.Run(tt.typ+" "+tt.value, func(t *testing.T) {
			table := pgTestTable(t, url, "tg_gtypes")
			ident := pgx.Identifier{table}.Sanitize()
			pgExec(t, url, "CREATE TABLE "+ident+" (id text PRIMARY KEY, username text UNIQUE NOT NULL, password_hash text NOT NULL, groups "+tt.typ+")")
			pgExec(t, url, "INSERT INTO "+ident+" VALUES ('u1', 'alice', $1, "+tt.value+")", marcoHash)
			s := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table})
			wantStoreGroups(t, s, "alice", "u1", tt.want...)
		})
	}
	table := pgTestTable(t, url, "tg_gtypes")
	ident := pgx.Identifier{table}.Sanitize()
	pgExec(t, url, "CREATE TABLE "+ident+" (id text PRIMARY KEY, username text UNIQUE NOT NULL, password_hash text NOT NULL, groups integer[])")
	s, err := OpenPostgresUsers(context.Background(), PostgresUsersOptions{URL: url, Table: table})
	if err == nil {
		s.Close()
		t.Fatal("opened a table whose groups column is integer[]")
	}
	if !errors.Is(err, ErrUsersTable) || !strings.Contains(err.Error(), "column groups must be text[]") {
		t.Fatalf("error = %v, want ErrUsersTable naming the groups column", err)
	}
}

func TestPostgresUsersLegacyGroupsAndIDQuery(t *testing.T) {
	url := testsvc.PostgresURL(t)
	table := pgTestTable(t, url, "tg_legacy_groups")
	ident := pgx.Identifier{table}.Sanitize()
	pgExec(t, url, "CREATE TABLE "+ident+" (account_id bigint PRIMARY KEY, email text, pw text, roles text, role_list text[])")
	pgExec(t, url, "INSERT INTO "+ident+" VALUES (1001, 'alice@example.com', $1, 'ops, finance', ARRAY['ops','finance']), (1002, 'bob@example.com', $1, NULL, NULL), (1003, 'gone@example.com', NULL, 'ops', ARRAY['ops'])", marcoHash)
	ctx := context.Background()

	for _, tt := range []struct{ name, col string }{{"delimited text", "roles"}, {"text array", "role_list"}} {
		t.Run(tt.name, func(t *testing.T) {
			s := openTestPostgres(t, PostgresUsersOptions{URL: url,
				Query:   "SELECT account_id, pw, " + tt.col + " FROM " + ident + " WHERE email = $1",
				IDQuery: "SELECT account_id, pw, " + tt.col + " FROM " + ident + " WHERE account_id::text = $1",
			})
			if !s.HasGroups() || !s.CanLookupByID() {
				t.Fatal("HasGroups and CanLookupByID want true")
			}
			u, err := s.LookupUser(ctx, "alice@example.com")
			if err != nil || u.ID != "1001" || u.Username != "alice@example.com" || !slices.Equal(u.Groups, []string{"ops", "finance"}) {
				t.Fatalf("LookupUser = %+v, %v", u, err)
			}
			u, err = s.LookupUserByID(ctx, "1001")
			if err != nil || u.ID != "1001" || u.PasswordHash != marcoHash || !slices.Equal(u.Groups, []string{"ops", "finance"}) {
				t.Fatalf("LookupUserByID = %+v, %v", u, err)
			}
			wantStoreGroups(t, s, "bob@example.com", "1002")
			// A NULL hash (a disabled account) is nobody, by name and by id.
			for _, f := range []func() error{
				func() error { _, err := s.LookupUser(ctx, "gone@example.com"); return err },
				func() error { _, err := s.LookupUserByID(ctx, "1003"); return err },
				func() error { _, err := s.LookupUserByID(ctx, "9999"); return err },
			} {
				if err := f(); !errors.Is(err, ErrUserNotFound) {
					t.Errorf("lookup = %v, want ErrUserNotFound", err)
				}
			}
		})
	}

	t.Run("without id_query", func(t *testing.T) {
		s := openTestPostgres(t, PostgresUsersOptions{URL: url, Query: "SELECT account_id, pw FROM " + ident + " WHERE email = $1"})
		if s.HasGroups() || s.CanLookupByID() {
			t.Fatal("two-column query without id_query: HasGroups and CanLookupByID want false")
		}
		if _, err := s.LookupUserByID(ctx, "1001"); !errors.Is(err, ErrNoIDLookup) {
			t.Fatalf("LookupUserByID = %v, want ErrNoIDLookup", err)
		}
	})

	t.Run("id_query returning another id", func(t *testing.T) {
		s := openTestPostgres(t, PostgresUsersOptions{URL: url,
			Query:   "SELECT account_id, pw FROM " + ident + " WHERE email = $1",
			IDQuery: "SELECT account_id + 1, pw FROM " + ident + " WHERE account_id::text = $1",
		})
		_, err := s.LookupUserByID(ctx, "1001")
		if err == nil || errors.Is(err, ErrUserNotFound) || !strings.Contains(err.Error(), "users.id_query returned id") {
			t.Fatalf("LookupUserByID = %v, want an error naming users.id_query", err)
		}
	})

	for _, tt := range []struct{ name, query, idQuery, want string }{
		{"id_query shape", "SELECT account_id, pw FROM " + ident + " WHERE email = $1", "SELECT account_id FROM " + ident + " WHERE account_id::text = $1", "users.id_query must take one parameter ($1, a user id)"},
		{"id_query syntax", "SELECT account_id, pw FROM " + ident + " WHERE email = $1", "SELEC 1", "users.id_query"},
		{"groups of another type", "SELECT account_id, pw, 42 FROM " + ident + " WHERE email = $1", "", "users.query: the third column (groups) must be text[]"},
		{"id_query without query", "", "SELECT 1, 'h' WHERE $1::text = ''", "users.id_query is only used with users.query"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenPostgresUsers(ctx, PostgresUsersOptions{URL: url, Query: tt.query, IDQuery: tt.idQuery, Table: table})
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
