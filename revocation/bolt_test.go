package revocation

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	helperDBEnv     = "TOKENGATE_REVOCATION_HELPER_DB"
	helperRevokeEnv = "TOKENGATE_REVOCATION_HELPER_REVOKE" // revoke before saying ready
)

func openBolt(t *testing.T, path string, opts BoltOptions) *BoltStore {
	t.Helper()
	s, err := OpenBoltStore(path, opts)
	if err != nil {
		t.Fatalf("OpenBoltStore: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestBoltSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "revocations.db")
	cutoff := time.Now().Add(-time.Minute).Truncate(time.Second).Add(987654321)
	s := openBolt(t, path, BoltOptions{})
	if err := s.RevokeToken(ctx, "j1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeUser(ctx, "u1", cutoff, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openBolt(t, path, BoltOptions{})
	st := mustStatus(t, s, "j1", "u1")
	if !st.TokenRevoked || !st.UserCutoff.Equal(cutoff) {
		t.Fatalf("after reopen: %+v, want j1 revoked and cutoff %v", st, cutoff)
	}
}

func TestBoltFilePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	openBolt(t, filepath.Join(dir, "revocations.db"), BoltOptions{})
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "revocations.db"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
	}
}

func TestBoltSweepDeletesExpired(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s := openBolt(t, filepath.Join(t.TempDir(), "r.db"), BoltOptions{Now: clock.Now, SweepInterval: time.Hour})
	now := clock.Now()
	for _, err := range []error{
		s.RevokeToken(ctx, "short", now.Add(time.Minute)),
		s.RevokeToken(ctx, "long", now.Add(time.Hour)),
		s.RevokeUser(ctx, "short", now, now.Add(time.Minute)),
		s.RevokeUser(ctx, "long", now, now.Add(time.Hour)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Minute)
	if n, err := s.sweep(); err != nil || n != 2 {
		t.Fatalf("sweep deleted %d (%v), want the 2 expired entries", n, err)
	}
	if n, _ := s.count(); n != 2 {
		t.Fatalf("%d entries left, want 2", n)
	}
	if st := mustStatus(t, s, "long", "long"); !st.TokenRevoked || st.UserCutoff.IsZero() {
		t.Fatalf("live entries lost: %+v", st)
	}
}

func TestBoltSweeperRunsInBackground(t *testing.T) {
	clock := newFakeClock()
	s := openBolt(t, filepath.Join(t.TempDir(), "r.db"), BoltOptions{Now: clock.Now, SweepInterval: 10 * time.Millisecond})
	if err := s.RevokeToken(context.Background(), "j", clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	eventually(t, 5*time.Second, "background sweep", func() bool {
		n, err := s.count()
		return err == nil && n == 0
	})
}

func TestBoltCloseStopsSweeper(t *testing.T) {
	const fn = "revocation.(*BoltStore).sweepLoop"
	s, err := OpenBoltStore(filepath.Join(t.TempDir(), "r.db"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "goroutine started", func() bool { return goroutineRunning(fn) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutineGone(t, fn)
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// startHelper runs TestHelperProcess in a child holding the store at path
// and waits for it to say ready; closing the returned stdin lets it exit.
func startHelper(t *testing.T, path string, env ...string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(append(os.Environ(), helperDBEnv+"="+path), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	return cmd, stdin
}

// A revocation that returned is on disk: kill -9 right after loses nothing.
func TestBoltSurvivesKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	cmd, _ := startHelper(t, path, helperRevokeEnv+"=1")
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	s := openBolt(t, path, BoltOptions{})
	st := mustStatus(t, s, "j-killed", "u-killed")
	if !st.TokenRevoked || !st.UserCutoff.Equal(time.Unix(0, 1700000000123456789)) {
		t.Fatalf("after kill -9: %+v", st)
	}
}

// TestBoltLockedByAnotherProcess runs a child process (this test binary, see
// TestHelperProcess) that holds the store, and checks that a second opener
// gives up after LockTimeout with a clear error instead of hanging.
func TestBoltLockedByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	cmd, stdin := startHelper(t, path)

	_, err := OpenBoltStore(path, BoltOptions{LockTimeout: 200 * time.Millisecond})
	want := fmt.Sprintf("revocation store %s is in use by another process", path)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("open while held: %v, want an error containing %q", err, want)
	}

	_ = stdin.Close() // the helper closes its store and exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	openBolt(t, path, BoltOptions{LockTimeout: 200 * time.Millisecond})
}

// bbolt's flock is per open file description, so a second open in the same
// process is refused the same way.
func TestBoltLockedInProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	openBolt(t, path, BoltOptions{})
	if _, err := OpenBoltStore(path, BoltOptions{LockTimeout: 100 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v, want an in-use error", err)
	}
}

// TestHelperProcess is not a test: TestBoltLockedByAnotherProcess runs it in
// a child process to hold a store open until its stdin closes.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperDBEnv)
	if path == "" {
		return
	}
	s, err := OpenBoltStore(path, BoltOptions{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if os.Getenv(helperRevokeEnv) != "" {
		err = errors.Join(
			s.RevokeToken(context.Background(), "j-killed", time.Now().Add(time.Hour)),
			s.RevokeUser(context.Background(), "u-killed", time.Unix(0, 1700000000123456789), time.Now().Add(time.Hour)))
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := s.Close(); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// Issue 17 point 3: the store as opened fsyncs every commit (the kill -9
// test in cmd/tokengate shows the effect; this pins the setting, which no
// test could otherwise tell apart from NoSync on a machine that does not
// crash).
func TestBoltSyncsEveryCommit(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), "r.db"), BoltOptions{})
	if s.db.NoSync {
		t.Fatal("the bolt store is opened with NoSync: a 204 would not mean the revocation is on disk")
	}
	if s.db.IsReadOnly() {
		t.Fatal("the bolt store is opened read-only")
	}
}
