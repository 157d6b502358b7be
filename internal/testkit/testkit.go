// Package testkit holds the small helpers tests of several packages share:
// a log sink that is safe to read while it is written, and users files.
// It imports no tokengate package, so any package's tests can use it.
package testkit

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// LogBuffer collects log output written from several goroutines; tests read
// it with String while it is written.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// User is one entry of a users file written by WriteUsersFile.
type User struct {
	Name     string
	ID       string // "" = no id line (the id defaults to the name)
	Password string
}

// hashes caches bcrypt hashes by password: tests write the same passwords
// again and again, and even cost 4 adds up under -race.
var hashes sync.Map

// BcryptHash returns a bcrypt hash of password at cost 4 (fast, for tests).
func BcryptHash(t testing.TB, password string) string {
	t.Helper()
	if h, ok := hashes.Load(password); ok {
		return h.(string)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), 4)
	if err != nil {
		t.Fatal(err)
	}
	hashes.Store(password, string(h))
	return string(h)
}

// WriteUsersFile writes a users file (mode 0600) holding users, in order.
func WriteUsersFile(t testing.TB, path string, users ...User) {
	t.Helper()
	var b strings.Builder
	b.WriteString("users:\n")
	for _, u := range users {
		fmt.Fprintf(&b, "  - username: %s\n    password_hash: %q\n", u.Name, BcryptHash(t, u.Password))
		if u.ID != "" {
			fmt.Fprintf(&b, "    id: %s\n", u.ID)
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}
