package authn

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"

	"tokengate/internal/testsvc"
)

// Issue 12 point 2: dave, Dave and DAVE are one user. Registration refuses
// the second spelling (409), login finds the user however the case was
// typed, and the id keeps the registered spelling; in every writable store.
func TestLookAlikeNames(t *testing.T) {
	ctx := context.Background()
	stores := map[string]func(t *testing.T) interface {
		UserStore
		UserCreator
	}{
		"bolt": func(t *testing.T) interface {
			UserStore
			UserCreator
		} {
			return openTestBolt(t, filepath.Join(t.TempDir(), "users.db"))
		},
		"postgres": func(t *testing.T) interface {
			UserStore
			UserCreator
		} {
			url := testsvc.PostgresURL(t)
			return openTestPostgres(t, PostgresUsersOptions{URL: url, Table: pgTestTable(t, url, "tg_case"), Migrate: true})
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			r := NewRegistrar(s, UserPolicy{}, HashOptions{BcryptCost: 4})
			if _, err := r.Register(ctx, "Dave", "dave-password-1"); err != nil {
				t.Fatal(err)
			}
			for _, other := range []string{"dave", "DAVE", "Dave", "dAVE"} {
				if _, err := r.Register(ctx, other, "other-password-1"); !errors.Is(err, ErrUserExists) {
					t.Errorf("Register(%q) after Dave = %v, want ErrUserExists", other, err)
				}
			}
			a := NewAuthenticator(s, AuthenticatorOptions{Hash: HashOptions{BcryptCost: 4}})
			for _, typed := range []string{"Dave", "dave", "DAVE"} {
				u, err := a.Authenticate(ctx, typed, "dave-password-1", "")
				if err != nil || u.ID != "Dave" || u.Username != "Dave" {
					t.Errorf("login as %q = %+v, %v; want id and name Dave as registered", typed, u, err)
				}
			}
			if _, err := a.Authenticate(ctx, "davé", "dave-password-1", ""); !errors.Is(err, ErrInvalidCredentials) {
				t.Errorf("non-ASCII look-alike logged in: %v", err)
			}
			// Concurrent registrations of two spellings: exactly one wins.
			var wg sync.WaitGroup
			var mu sync.Mutex
			won := 0
			for _, n := range []string{"erin", "Erin", "ERIN", "eRin"} {
				wg.Go(func() {
					if _, err := s.CreateUser(ctx, User{Username: n, PasswordHash: marcoHash}); err == nil {
						mu.Lock()
						won++
						mu.Unlock()
					} else if !errors.Is(err, ErrUserExists) {
						t.Errorf("CreateUser(%q): %v", n, err)
					}
				})
			}
			wg.Wait()
			if won != 1 {
				t.Errorf("%d of 4 spellings of erin registered, want 1", won)
			}
		})
	}
}

// A bolt file from before case folding may hold two spellings of one name:
// each still logs in by its exact spelling, no other spelling picks one, and
// no third spelling can be registered.
func TestBoltUsersOlderFileWithLookAlikes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		users, _ := tx.CreateBucket(boltUsersBucket)
		ids, _ := tx.CreateBucket(boltIDsBucket)
		for _, n := range []string{"dave", "Dave", "carol"} {
			users.Put([]byte(n), []byte(`{"id":"`+n+`","username":"`+n+`","password_hash":"`+marcoHash+`"}`))
			ids.Put([]byte(n), []byte(n))
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := openTestBolt(t, path)
	for typed, want := range map[string]string{"dave": "dave", "Dave": "Dave", "CAROL": "carol"} {
		if u, err := s.LookupUser(ctx, typed); err != nil || u.ID != want {
			t.Errorf("LookupUser(%q) = %+v, %v; want id %q", typed, u, err, want)
		}
	}
	if _, err := s.LookupUser(ctx, "DAVE"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("LookupUser(DAVE) with two candidates = %v, want ErrUserNotFound", err)
	}
	if _, err := s.CreateUser(ctx, User{Username: "DaVe", PasswordHash: marcoHash}); !errors.Is(err, ErrUserExists) {
		t.Errorf("CreateUser(DaVe) = %v, want ErrUserExists", err)
	}
}

// A table filled before case folding may hold two spellings of one name:
// each logs in by its exact spelling, and no other spelling picks one.
func TestPostgresUsersOlderTableWithLookAlikes(t *testing.T) {
	url := testsvc.PostgresURL(t)
	table := pgTestTable(t, url, "tg_case_old")
	s := openTestPostgres(t, PostgresUsersOptions{URL: url, Table: table, Migrate: true})
	pgExec(t, url, "INSERT INTO "+pgx.Identifier{table}.Sanitize()+" (id, username, password_hash) VALUES ('d1', 'dave', $1), ('d2', 'Dave', $1)", marcoHash)
	ctx := context.Background()
	for typed, want := range map[string]string{"dave": "d1", "Dave": "d2"} {
		if u, err := s.LookupUser(ctx, typed); err != nil || u.ID != want {
			t.Errorf("LookupUser(%q) = %+v, %v; want id %q", typed, u, err, want)
		}
	}
	if _, err := s.LookupUser(ctx, "DAVE"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("LookupUser(DAVE) with two candidates = %v, want ErrUserNotFound", err)
	}
}

// Names match ignoring case, so the per-name budget does too: changing the
// case of a name does not buy more guesses.
func TestThrottleIgnoresCase(t *testing.T) {
	a, _ := newTestAuthenticator(t, ThrottleOptions{PerUser: 3, PerAddress: 100, Window: time.Minute})
	ctx := context.Background()
	for i, typed := range []string{"marco", "Marco", "MARCO"} {
		if _, err := a.Authenticate(ctx, typed, "wrong", fmt.Sprintf("192.0.2.%d", i)); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	_, err := a.Authenticate(ctx, "mArCo", "marco-password", "192.0.2.9")
	wantThrottled(t, err, time.Minute)
}
