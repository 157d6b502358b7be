// Package testsvc finds the external services tests talk to (Redis,
// PostgreSQL) and starts private ones. A test that needs a service that is
// not reachable is skipped with a one-line reason, unless the environment
// sets TOKENGATE_TEST_REQUIRE_SERVICES=1 (as CI does), where it fails.
package testsvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Required reports whether missing services must fail tests instead of skipping them.
func Required() bool { return os.Getenv("TOKENGATE_TEST_REQUIRE_SERVICES") == "1" }

func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("required service unavailable (TOKENGATE_TEST_REQUIRE_SERVICES=1): %s", msg)
	}
	t.Skipf("skipping: %s", msg)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// RedisAddr returns the shared Redis's host:port (TOKENGATE_TEST_REDIS_ADDR,
// default 127.0.0.1:6379) after checking it answers PING.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := envOr("TOKENGATE_TEST_REDIS_ADDR", "127.0.0.1:6379")
	if err := pingRedis(addr, 2*time.Second); err != nil {
		unavailable(t, "redis at %s: %v", addr, err)
	}
	return addr
}

func pingRedis(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "+PONG\r\n" {
		return fmt.Errorf("unexpected PING reply %q", buf[:n])
	}
	return nil
}

// PostgresURL returns a URL for the shared PostgreSQL
// (TOKENGATE_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test)
// after checking it accepts a connection.
func PostgresURL(t testing.TB) string {
	t.Helper()
	url := envOr("TOKENGATE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		unavailable(t, "postgres: %v", err)
		return ""
	}
	defer conn.Close(context.Background())
	if err := conn.Ping(ctx); err != nil {
		unavailable(t, "postgres: %v", err)
	}
	return url
}

// Redis is a private redis-server started for one test.
type Redis struct {
	Addr string
	Port int
	dir  string
	args []string
	cmd  *exec.Cmd
}

// StartRedis starts a private redis-server on a free loopback port in a temp
// dir; it is stopped when the test ends. Use it for tests that kill Redis.
// By default it keeps nothing on disk; args are appended to the command line
// (e.g. "--appendonly", "yes" to keep data across Restart).
func StartRedis(t testing.TB, args ...string) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server not installed")
		return nil
	}
	r := &Redis{dir: t.TempDir(), args: args}
	r.Port = freePort(t)
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
	r.start(t, bin)
	t.Cleanup(func() { r.Stop() })
	return r
}

func (r *Redis) start(t testing.TB, bin string) {
	t.Helper()
	args := append([]string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--logfile", filepath.Join(r.dir, "redis.log")}, r.args...)
	r.cmd = exec.Command(bin, args...)
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for pingRedis(r.Addr, 200*time.Millisecond) != nil {
		if time.Now().After(deadline) {
			r.Stop()
			t.Fatalf("redis-server on %s did not answer within 10s", r.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL) and waits for it; safe to call twice.
func (r *Redis) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Restart starts the server again on the same port and dir (empty unless it
// was started with persistence arguments).
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.Stop()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	r.start(t, bin)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TempTable returns a PostgreSQL table name no other test uses
// (prefix_<random>) and drops that table when the test ends, on a connection
// of its own (the test's context and connections are gone by then). A DROP
// that fails, or a table still there afterwards, fails the test: a cleanup
// must neither be skipped nor fail silently.
func TempTable(t testing.TB, url, prefix string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := prefix + "_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("dropping table %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Errorf("dropping table %s: %v", name, err)
			return
		}
		var left bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&left); err != nil || left {
			t.Errorf("table %s is still in the database after the test (err %v)", name, err)
		}
	})
	return name
}
