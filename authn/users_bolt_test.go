package authn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTestBolt(t *testing.T, path string) *BoltUsers {
	t.Helper()
	s, err := OpenBoltUsers(path, BoltUsersOptions{})
	if err != nil {
		t.Fatalf("OpenBoltUsers: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBoltUsersCreateLookup(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "dir", "users.db")
	s := openTestBolt(t, path)

	for _, p := range []struct {
		path string
		mode os.FileMode
	}{{path, 0o600}, {filepath.Dir(path), 0o700}} {
		fi, err := os.Stat(p.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != p.mode {
			t.Errorf("%s mode = %v, want %v", p.path, got, p.mode)
		}
	}

	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, err := s.LookupUser(ctx, "marco"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("LookupUser before create = %v, want ErrUserNotFound", err)
	}

	tests := []struct {
		name string
		in   User
		want User
	}{
		{"id defaults to username", User{Username: "marco", PasswordHash: "$2a$10$x"}, User{ID: "marco", Username: "marco", PasswordHash: "$2a$10$x"}},
		{"explicit id", User{ID: "u-42", Username: "anna@example.com", PasswordHash: "$argon2id$y"}, User{ID: "u-42", Username: "anna@example.com", PasswordHash: "$argon2id$y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.CreateUser(ctx, tt.in)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("CreateUser = %+v, %v; want %+v", got, err, tt.want)
			}
			got, err = s.LookupUser(ctx, tt.want.Username)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("LookupUser = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	if u, err := s.LookupUser(ctx, "Marco"); err != nil || u.Username != "marco" {
		t.Fatalf("LookupUser(Marco) = %+v, %v; want marco (names ignore ASCII case)", u, err)
	}
}

func TestBoltUsersDuplicates(t *testing.T) {
	ctx := context.Background()
	s := openTestBolt(t, filepath.Join(t.TempDir(), "users.db"))
	first := User{ID: "id-1", Username: "marco", PasswordHash: "h1"}
	if _, err := s.CreateUser(ctx, first); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		u    User
	}{
		{"same username", User{ID: "id-2", Username: "marco", PasswordHash: "h2"}},
		{"same id", User{ID: "id-1", Username: "other", PasswordHash: "h2"}},
		// A default id that equals an existing id.
		{"username equal to a taken id", User{Username: "id-1", PasswordHash: "h2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.CreateUser(ctx, tt.u); !errors.Is(err, ErrUserExists) {
				t.Fatalf("CreateUser = %v, want ErrUserExists", err)
			}
			// The loser must leave nothing behind.
			if _, err := s.LookupUser(ctx, tt.u.Username); tt.u.Username != "marco" && !errors.Is(err, ErrUserNotFound) {
				t.Fatalf("LookupUser(%q) after refused create = %v, want ErrUserNotFound", tt.u.Username, err)
			}
		})
	}
	got, err := s.LookupUser(ctx, "marco")
	if err != nil || !reflect.DeepEqual(got, first) {
		t.Fatalf("original user = %+v, %v; want %+v untouched", got, err, first)
	}
}

func TestBoltUsersRejectsIncompleteUser(t *testing.T) {
	s := openTestBolt(t, filepath.Join(t.TempDir(), "users.db"))
	for _, u := range []User{{Username: "", PasswordHash: "h"}, {Username: "marco"}} {
		if _, err := s.CreateUser(context.Background(), u); err == nil {
			t.Errorf("CreateUser(%+v) = nil error, want refusal", u)
		}
	}
}

func TestBoltUsersPersistAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "users.db")
	s, err := OpenBoltUsers(path, BoltUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := User{ID: "7", Username: "marco", PasswordHash: "h"}
	if _, err := s.CreateUser(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestBolt(t, path)
	got, err := s.LookupUser(ctx, "marco")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen LookupUser = %+v, %v; want %+v", got, err, want)
	}
	// The id index survived too.
	if _, err := s.CreateUser(ctx, User{ID: "7", Username: "other", PasswordHash: "h"}); !errors.Is(err, ErrUserExists) {
		t.Fatalf("CreateUser with taken id after reopen = %v, want ErrUserExists", err)
	}
}

func TestBoltUsersConcurrentCreateSameName(t *testing.T) {
	ctx := context.Background()
	s := openTestBolt(t, filepath.Join(t.TempDir(), "users.db"))
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.CreateUser(ctx, User{Username: "marco", PasswordHash: fmt.Sprintf("h%d", i)})
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

// bbolt locks with flock(2), which belongs to the open file description, so
// a second bolt.Open in the same process conflicts just like another process
// would. Both are tested: in-process, and a real child process.
func TestBoltUsersFileInUseInProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	openTestBolt(t, path)
	_, err := OpenBoltUsers(path, BoltUsersOptions{LockTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open = %v, want an 'in use' error", err)
	}
}

const holdBoltEnv = "TOKENGATE_TEST_HOLD_BOLT"

// TestHelperHoldBolt is not a test: run as a child process with holdBoltEnv
// set, it opens that file, says "ready" and holds it until stdin closes.
func TestHelperHoldBolt(t *testing.T) {
	path := os.Getenv(holdBoltEnv)
	if path == "" {
		t.Skip("helper process for TestBoltUsersFileInUseByOtherProcess")
	}
	s, err := OpenBoltUsers(path, BoltUsersOptions{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	s.Close()
}

func TestBoltUsersFileInUseByOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldBolt$")
	cmd.Env = append(os.Environ(), holdBoltEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // lets the child exit
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("child said %q, %v; want ready", line, err)
	}

	_, err = OpenBoltUsers(path, BoltUsersOptions{LockTimeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") || !strings.Contains(err.Error(), path) {
		t.Fatalf("open while another process holds the file = %v, want an 'in use' error naming the path", err)
	}

	// Once the child lets go, the file opens.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	openTestBolt(t, path)
}
