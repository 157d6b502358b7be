package authn

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	bolterrors "go.etcd.io/bbolt/errors"

	"tokengate/internal/testsvc"
)

func TestRegistrarRegister(t *testing.T) {
	ctx := context.Background()
	store := openTestBolt(t, filepath.Join(t.TempDir(), "users.db"))
	r := NewRegistrar(store, UserPolicy{}, HashOptions{BcryptCost: 4})

	const password = "correct horse battery"
	u, err := r.Register(ctx, "marco@example.com", password)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if want := (User{ID: "marco@example.com", Username: "marco@example.com"}); !reflect.DeepEqual(u, want) {
		t.Fatalf("Register = %+v, want %+v (id = username, no hash)", u, want)
	}
	if strings.Contains(fmt.Sprintf("%+v", u), password) {
		t.Fatal("the returned user contains the password")
	}

	stored, err := store.LookupUser(ctx, "marco@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if stored.ID != "marco@example.com" || stored.PasswordHash == "" || strings.Contains(stored.PasswordHash, password) {
		t.Fatalf("stored user %+v: want id = username and a hash that is not the password", stored)
	}
	for _, tt := range []struct {
		password string
		want     bool
	}{{password, true}, {password + "x", false}} {
		ok, err := CheckPassword(stored.PasswordHash, tt.password)
		if err != nil || ok != tt.want {
			t.Fatalf("CheckPassword(stored hash, %q) = %v, %v; want %v", tt.password, ok, err, tt.want)
		}
	}
}

func TestRegistrarArgon2id(t *testing.T) {
	ctx := context.Background()
	store := openTestBolt(t, filepath.Join(t.TempDir(), "users.db"))
	r := NewRegistrar(store, UserPolicy{}, HashOptions{Algorithm: "argon2id"})
	// Over bcrypt's 72 bytes: fine when the hash is argon2id.
	password := strings.Repeat("long passphrase ", 6)
	if _, err := r.Register(ctx, "anna", password); err != nil {
		t.Fatalf("Register: %v", err)
	}
	stored, err := store.LookupUser(ctx, "anna")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored.PasswordHash, "$argon2id$") {
		t.Fatalf("stored hash %q is not argon2id", stored.PasswordHash[:min(10, len(stored.PasswordHash))])
	}
	// Not verified here: default argon2id costs seconds under -race, and
	// TestRegistrarRegister already checks a stored hash round trip.
}

func TestRegistrarErrors(t *testing.T) {
	ctx := context.Background()
	store := openTestBolt(t, filepath.Join(t.TempDir(), "users.db"))
	hash := HashOptions{BcryptCost: 4}
	if _, err := NewRegistrar(store, UserPolicy{}, hash).Register(ctx, "taken", "some password 1"); err != nil {
		t.Fatal(err)
	}
	closed, err := OpenBoltUsers(filepath.Join(t.TempDir(), "closed.db"), BoltUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close() // a store that fails every write
	tests := []struct {
		name               string
		store              UserCreator
		username, password string
		want               error
	}{
		{"bad name", store, "marco rossi", "correct horse battery", ErrInvalidUsername},
		{"short password", store, "marco", "secret!!!", ErrWeakPassword},
		{"password is name", store, "marco.rossi", "marco.rossi", ErrWeakPassword},
		{"bcrypt 73 bytes", store, "marco", strings.Repeat("p", 73), ErrWeakPassword},
		{"exists", store, "taken", "another password", ErrUserExists},
		{"store down", closed, "marco", "correct horse battery", bolterrors.ErrDatabaseNotOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRegistrar(tt.store, UserPolicy{}, hash).Register(ctx, tt.username, tt.password)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Register = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), tt.password) {
				t.Fatalf("error %q echoes the password", err)
			}
		})
	}
	// Refused registrations left nothing behind.
	for _, name := range []string{"marco", "marco.rossi"} {
		if _, err := store.LookupUser(ctx, name); !errors.Is(err, ErrUserNotFound) {
			t.Errorf("LookupUser(%q) = %v, want ErrUserNotFound", name, err)
		}
	}
}

func TestRegistrarReadOnlyStore(t *testing.T) {
	legacy := openTestPostgres(t, PostgresUsersOptions{URL: testsvc.PostgresURL(t),
		Query: "SELECT 1, 'h' WHERE $1::text = ''"})
	r := NewRegistrar(legacy, UserPolicy{}, HashOptions{BcryptCost: 4})
	if _, err := r.Register(context.Background(), "marco", "correct horse battery"); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Register on a legacy store = %v, want ErrReadOnly", err)
	}
}
