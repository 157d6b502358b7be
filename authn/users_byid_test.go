package authn

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"tokengate/internal/testsvc"
)

// byIDStore is what revoke-user resolves ids through.
type byIDStore interface {
	UserStore
	LookupUserByID(ctx context.Context, id string) (User, error)
}

// Every writable store and the users file find a user by id (the token's
// sub) as well as by login name; the legacy query cannot, and says so.
func TestLookupUserByID(t *testing.T) {
	ctx := context.Background()
	stores := map[string]func(t *testing.T) byIDStore{
		"file": func(t *testing.T) byIDStore {
			f, err := LoadFileUsers(writeFile(t, usersYAML(userEntry("marco", marcoHash, ""), userEntry("anna@example.com", marcoHash, "u-42"))), FileUsersOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return f
		},
		"bolt": func(t *testing.T) byIDStore {
			b := openTestBolt(t, filepath.Join(t.TempDir(), "users.db"))
			createBoth(t, b)
			return b
		},
		"postgres": func(t *testing.T) byIDStore {
			url := testsvc.PostgresURL(t)
			p := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: pgTestTable(t, url, "tg_byid"), Migrate: true})
			createBoth(t, p)
			return p
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			for id, username := range map[string]string{"marco": "marco", "u-42": "anna@example.com"} {
				u, err := s.LookupUserByID(ctx, id)
				if err != nil || u.ID != id || u.Username != username {
					t.Errorf("LookupUserByID(%q) = %+v, %v; want username %q", id, u, err, username)
				}
			}
			for _, id := range []string{"anna@example.com", "nobody", "U-42", ""} {
				if _, err := s.LookupUserByID(ctx, id); !errors.Is(err, ErrUserNotFound) {
					t.Errorf("LookupUserByID(%q) = %v, want ErrUserNotFound", id, err)
				}
			}
		})
	}
	t.Run("postgres legacy", func(t *testing.T) {
		url := testsvc.PostgresURL(t)
		s := openTestPostgres(t, PostgresUsersOptions{URL: url, Query: "SELECT 1, 'h' WHERE $1::text = 'x'"})
		if _, err := s.LookupUserByID(ctx, "1"); !errors.Is(err, ErrNoIDLookup) {
			t.Errorf("legacy LookupUserByID = %v, want ErrNoIDLookup", err)
		}
	})
}

func createBoth(t *testing.T, s UserCreator) {
	t.Helper()
	for _, u := range []User{{Username: "marco", PasswordHash: marcoHash}, {ID: "u-42", Username: "anna@example.com", PasswordHash: marcoHash}} {
		if _, err := s.CreateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
}
