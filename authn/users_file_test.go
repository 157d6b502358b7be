package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"tokengate/internal/testkit"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	marcoHash = "$2a$04$gcb3g3TxkIn49WlKv.WfUuOX0uYBX88pV6zJe43LMHyBO7P3jXFZa" // "marco-password"
	adaHash   = "$argon2id$v=19$m=65536,t=3,p=2$MPNXshzMR9u46WQHipbhzw$sWJ6ZtxL5wbgIVsuLRbXu3V/rg48cgupPlsivdi2HXE"
)

func usersYAML(entries ...string) string {
	return "users:\n" + strings.Join(entries, "")
}

func userEntry(name, hash, id string) string {
	s := fmt.Sprintf("  - username: %s\n    password_hash: %q\n", name, hash)
	if id != "" {
		s += "    id: " + id + "\n"
	}
	return s
}

func TestLoadFileUsers(t *testing.T) {
	f, err := LoadFileUsers("testdata/users.yaml", FileUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != 2 {
		t.Errorf("Len = %d, want 2", f.Len())
	}
	tests := []struct {
		name string
		want User
		err  error
	}{
		{"marco", User{ID: "marco", Username: "marco", PasswordHash: marcoHash}, nil}, // id defaults to username
		{"ada", User{ID: "user-0001", Username: "ada", PasswordHash: adaHash}, nil},
		{"nobody", User{}, ErrUserNotFound},
		{"Marco", User{ID: "marco", Username: "marco", PasswordHash: marcoHash}, nil}, // names ignore ASCII case
		{"ADA", User{ID: "user-0001", Username: "ada", PasswordHash: adaHash}, nil},
		{"marco ", User{}, ErrUserNotFound},
	}
	for _, tt := range tests {
		u, err := f.LookupUser(context.Background(), tt.name)
		if !reflect.DeepEqual(u, tt.want) || !errors.Is(err, tt.err) {
			t.Errorf("LookupUser(%q) = %+v, %v; want %+v, %v", tt.name, u, err, tt.want, tt.err)
		}
	}
	if _, err := LoadFileUsers(filepath.Join(t.TempDir(), "absent.yaml"), FileUsersOptions{}); err == nil {
		t.Error("missing file accepted")
	}
}

func TestLoadFileUsersErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"empty file", "", []string{"no users"}},
		{"empty list", "users: []\n", []string{"no users"}},
		{"unknown key", usersYAML(userEntry("a", marcoHash, "")) + "    role: admin\n", []string{"role"}},
		{"unknown top-level key", "user:\n  - username: a\n", []string{"user"}},
		{"empty hash", usersYAML(userEntry("alice", "", "")), []string{`users[0] ("alice")`, "empty password hash"}},
		{"plain-text password", usersYAML(userEntry("a", marcoHash, ""), userEntry("bob", "hunter2", "")),
			[]string{`users[1] ("bob")`, "unknown password hash format"}},
		{"broken bcrypt", usersYAML(userEntry("carol", marcoHash[:30], "")), []string{`users[0] ("carol")`, "bcrypt"}},
		{"duplicate username", usersYAML(userEntry("a", marcoHash, ""), userEntry("a", marcoHash, "other")),
			[]string{`users[1] ("a")`, "duplicate username"}},
		{"duplicate id", usersYAML(userEntry("a", marcoHash, "x"), userEntry("b", marcoHash, "x")),
			[]string{`users[1] ("b")`, `id "x" already used by users[0]`}},
		{"id clashes with a defaulted id", usersYAML(userEntry("a", marcoHash, ""), userEntry("b", marcoHash, "a")),
			[]string{`users[1] ("b")`, "already used"}},
		{"empty username", usersYAML(userEntry(`""`, marcoHash, "")), []string{"users[0]: username is empty"}},
		{"all problems at once", usersYAML(userEntry("a", "", ""), userEntry("b", "nope", "")),
			[]string{`users[0] ("a")`, `users[1] ("b")`}},
		{"not YAML", "users: [", []string{"yaml"}},
		{"names equal ignoring case", usersYAML(userEntry("dave", marcoHash, "d1"), userEntry("Dave", marcoHash, "d2")),
			[]string{`users[1] ("Dave")`, "duplicate username", "ignoring case"}},
		{"ids equal ignoring case", usersYAML(userEntry("a", marcoHash, "Admin"), userEntry("b", marcoHash, "admin")),
			[]string{`users[1] ("b")`, `id "admin" already used by users[0]`}},
		{"empty id", usersYAML(userEntry("a", marcoHash, `""`)), []string{`users[0] ("a")`, "id is empty"}},
		{"id key without a value", usersYAML(userEntry("a", marcoHash, "")) + "    id:\n", []string{`users[0] ("a")`, "id is empty"}},
		{"null id", usersYAML(userEntry("a", marcoHash, "~")), []string{`users[0] ("a")`, "id is empty"}},
		{"list id", usersYAML(userEntry("a", marcoHash, "[x]")), []string{`users[0] ("a")`, "not a string"}},
		{"cut mid-line", strings.TrimSuffix(usersYAML(userEntry("bob", marcoHash, "admin-bob")), "-bob\n"), []string{"half-written", "rename"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.yaml)
			_, err := LoadFileUsers(path, FileUsersOptions{})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v\nwant it to mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), marcoHash[7:]) {
				t.Errorf("err reveals a hash: %v", err)
			}
		})
	}
}

func reloadCount(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "tokengate_users_reloads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestFileUsersReload(t *testing.T) {
	path := writeFile(t, usersYAML(userEntry("a", marcoHash, "")))
	reg := prometheus.NewRegistry()
	var logs testkit.LogBuffer
	f, err := LoadFileUsers(path, FileUsersOptions{Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(usersYAML(userEntry("a", marcoHash, ""), userEntry("b", adaHash, ""))), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.LookupUser(context.Background(), "b"); err != nil {
		t.Errorf("new user after Reload: %v", err)
	}
	// A broken file keeps the previous users, and says so without hashes.
	os.WriteFile(path, []byte(usersYAML(userEntry("c", "", ""), userEntry("d", marcoHash, ""))), 0o600)
	if err := f.Reload(); err == nil {
		t.Fatal("Reload of a broken file returned nil")
	}
	if _, err := f.LookupUser(context.Background(), "b"); err != nil {
		t.Errorf("old users lost after a failed reload: %v", err)
	}
	if _, err := f.LookupUser(context.Background(), "d"); err == nil {
		t.Error("a broken file was partly applied")
	}
	if ok, bad := reloadCount(t, reg, "success"), reloadCount(t, reg, "error"); ok != 1 || bad != 1 {
		t.Errorf("reloads success %v error %v, want 1 and 1", ok, bad)
	}
	if !strings.Contains(logs.String(), "users[0]") || strings.Contains(logs.String(), marcoHash[7:]) {
		t.Errorf("log should name the entry and never a hash:\n%s", logs.String())
	}
	os.Remove(path)
	if err := f.Reload(); err == nil || f.Len() != 2 {
		t.Errorf("missing file: Reload = %v, Len %d; want an error and the old users", err, f.Len())
	}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hasUser(f *FileUsers, name string) bool {
	_, err := f.LookupUser(context.Background(), name)
	return err == nil
}

// watch runs f.Watch until the test ends and checks it returns.
func watch(t *testing.T, f *FileUsers) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Watch(ctx, 10*time.Millisecond); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return after its context was cancelled")
		}
	})
}

// replaceFile swaps in new content atomically (write, then rename), so a
// poll never sees a half-written file.
func replaceFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(tmp, mtime, mtime)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileUsersWatch(t *testing.T) {
	path := writeFile(t, usersYAML(userEntry("a", marcoHash, "")))
	reg := prometheus.NewRegistry()
	f, err := LoadFileUsers(path, FileUsersOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, f)
	// Same size, same mtime: only the content differs.
	st, _ := os.Stat(path)
	replaceFile(t, path, usersYAML(userEntry("b", marcoHash, "")), st.ModTime())
	waitFor(t, "user b", func() bool { return hasUser(f, "b") })
	if hasUser(f, "a") {
		t.Error("user a still there after it was removed from the file")
	}
	// A broken version is counted once, not at every poll, and keeps b.
	replaceFile(t, path, "users: [", time.Now())
	waitFor(t, "a reload error", func() bool { return reloadCount(t, reg, "error") == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := reloadCount(t, reg, "error"); n != 1 || !hasUser(f, "b") {
		t.Errorf("errors counted %v, user b kept %v; want 1 and true", n, hasUser(f, "b"))
	}
	replaceFile(t, path, usersYAML(userEntry("c", marcoHash, "")), time.Now())
	waitFor(t, "user c", func() bool { return hasUser(f, "c") })

	// A file that stays unreadable counts as one failed reload and keeps c;
	// when it comes back, it is loaded again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an unreadable file counted", func() bool { return reloadCount(t, reg, "error") == 2 })
	time.Sleep(50 * time.Millisecond)
	if n := reloadCount(t, reg, "error"); n != 2 || !hasUser(f, "c") {
		t.Errorf("errors counted %v, user c kept %v; want 2 and true", n, hasUser(f, "c"))
	}
	replaceFile(t, path, usersYAML(userEntry("c", marcoHash, "")), time.Now())
	waitFor(t, "the same users reloaded after the outage", func() bool { return reloadCount(t, reg, "success") >= 2 })
}

// TestFileUsersWatchSecretSwap updates the file the way the kubelet updates
// a mounted Secret: users.yaml -> ..data/users.yaml, ..data -> a timestamped
// directory, and an update renames a new ..data symlink over the old one.
func TestFileUsersWatchSecretSwap(t *testing.T) {
	dir := t.TempDir()
	writeVersion := func(name, content string) {
		os.Mkdir(filepath.Join(dir, name), 0o755)
		p := filepath.Join(dir, name, "users.yaml")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
		os.Chtimes(p, old, old) // the kubelet's copies need not differ in mtime
	}
	swapData := func(target string) {
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..2024_01_01", usersYAML(userEntry("a", marcoHash, "")))
	swapData("..2024_01_01")
	path := filepath.Join(dir, "users.yaml")
	if err := os.Symlink(filepath.Join("..data", "users.yaml"), path); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFileUsers(path, FileUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	watch(t, f)
	writeVersion("..2024_01_02", usersYAML(userEntry("b", marcoHash, "")))
	swapData("..2024_01_02")
	os.RemoveAll(filepath.Join(dir, "..2024_01_01"))
	waitFor(t, "user b from the new Secret version", func() bool { return hasUser(f, "b") })
	if hasUser(f, "a") {
		t.Error("user a survived the Secret update")
	}
}

// The issue 15 scenario: bob has id admin-bob; a writer that is not atomic
// leaves the file cut 5 bytes early, which parses, with bob's id "admin".
func TestUsersFileHalfWrittenNeverServed(t *testing.T) {
	full := usersYAML(userEntry("alice", marcoHash, ""), userEntry("bob", marcoHash, "admin-bob"))
	path := writeFile(t, usersYAML(userEntry("alice", marcoHash, "")))
	reg := prometheus.NewRegistry()
	f, err := LoadFileUsers(path, FileUsersOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	bobID := func() string {
		u, err := f.LookupUser(context.Background(), "bob")
		if err != nil {
			return ""
		}
		return u.ID
	}
	const interval = time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	// The writer stops 5 bytes short (crashed, disk full, a slow network
	// copy): however long it stays, bob is never served as "admin".
	cut := full[:len(full)-5]
	if !strings.HasSuffix(cut, "id: admin") {
		t.Fatalf("test setup: cut file ends %q", cut[len(cut)-20:])
	}
	os.WriteFile(path, []byte(cut), 0o600)
	for i := range 10 {
		f.poll(t0.Add(time.Duration(i)*interval), interval)
		if id := bobID(); id == "admin" {
			t.Fatalf("poll %d: bob served as %q from a half-written file", i, id)
		}
	}
	if n := reloadCount(t, reg, "error"); n != 1 {
		t.Errorf("half-written file counted %v times as a failed reload, want 1", n)
	}

	// The writer finishes: loaded once it has held still a full interval.
	os.WriteFile(path, []byte(full), 0o600)
	t1 := t0.Add(time.Hour)
	f.poll(t1, interval)
	f.poll(t1.Add(interval-time.Nanosecond), interval)
	if id := bobID(); id != "" {
		t.Fatalf("a changed file was loaded after %s, before it held still for %s (bob = %q)", interval-time.Nanosecond, interval, id)
	}
	f.poll(t1.Add(interval), interval)
	if id := bobID(); id != "admin-bob" {
		t.Fatalf("complete file not loaded after a stable interval: bob = %q", id)
	}
}

// A writer cut at a line boundary leaves valid YAML with the last line
// missing: bob without his id line would be "bob". While the writer keeps
// writing the version keeps changing, and no intermediate one is loaded.
func TestUsersFileChangingIsNotLoaded(t *testing.T) {
	full := usersYAML(userEntry("alice", marcoHash, ""), userEntry("bob", marcoHash, "admin-bob"))
	path := writeFile(t, usersYAML(userEntry("alice", marcoHash, "")))
	f, err := LoadFileUsers(path, FileUsersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const interval = time.Second
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lines := strings.SplitAfter(full, "\n")
	// The writer appends one line per half interval; tokengate polls every interval.
	var written string
	for i, line := range lines {
		written += line
		os.WriteFile(path, []byte(written), 0o600)
		now := t0.Add(time.Duration(i) * interval / 2)
		f.poll(now, interval)
		if u, err := f.LookupUser(context.Background(), "bob"); err == nil && written != full {
			t.Fatalf("after %d of %d lines: bob loaded as %q from a file still being written", i+1, len(lines), u.ID)
		}
	}
	end := t0.Add(time.Duration(len(lines)) * interval / 2)
	f.poll(end, interval)
	f.poll(end.Add(interval), interval)
	if u, err := f.LookupUser(context.Background(), "bob"); err != nil || u.ID != "admin-bob" {
		t.Fatalf("finished file: bob = %+v, %v", u, err)
	}
}
