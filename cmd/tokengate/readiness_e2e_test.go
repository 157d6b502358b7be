package main

import (
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tokengate/internal/testsvc"
)

// tcpForwarder relays connections to a real server until cut, which closes
// the listener and every relayed connection: an outage of that server as
// tokengate sees it, without touching the shared server itself.
type tcpForwarder struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newTCPForwarder(t *testing.T, target string) *tcpForwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &tcpForwarder{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, s)
			f.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(f.cut)
	return f
}

func (f *tcpForwarder) cut() {
	f.ln.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// Readiness is local state only: with Redis (revocation store) and
// PostgreSQL (user store) both down the instance stays ready, so the
// Service keeps routing to it and clients get tokengate's own fail-closed
// answers; the outage shows in /readyz?verbose and tokengate_dependency_up.
// Shutting down is what makes it not ready.
func TestReadinessIgnoresSharedDependencies(t *testing.T) {
	redis := testsvc.StartRedis(t)
	pgURL := testsvc.PostgresURL(t)
	u, err := url.Parse(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	pg := newTCPForwarder(t, u.Host)
	u.Host = pg.ln.Addr().String()
	table := testsvc.TempTable(t, pgURL, "tg_e2e_ready")

	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), append(redisEnv(redis.Addr),
		"TOKENGATE_USERS_BACKEND=postgres", "TOKENGATE_USERS_POSTGRES_URL="+u.String(),
		"TOKENGATE_USERS_TABLE="+table, "TOKENGATE_USERS_MIGRATE=true", "TOKENGATE_USERS_REGISTRATION=open",
		"TOKENGATE_SERVER_SHUTDOWN_DELAY=2s")...)
	if r := call(t, "POST", in.Public+"/users", "", `{"username":"rita","password":"rita-password-1"}`); r.Code != 201 {
		t.Fatalf("register: %d %s", r.Code, r.Body)
	}
	tok := login(t, in.Public, "rita", "rita-password-1")

	redis.Stop()
	pg.cut()

	if r := call(t, "GET", in.Admin+"/readyz", "", ""); r.Code != 200 || r.json(t)["status"] != "ready" {
		t.Fatalf("readyz with Redis and PostgreSQL down: %d %s; want 200 ready", r.Code, r.Body)
	}
	r := call(t, "GET", in.Admin+"/readyz?verbose", "", "")
	if r.Code != 200 {
		t.Fatalf("readyz?verbose: %d %s", r.Code, r.Body)
	}
	deps, _ := r.json(t)["dependencies"].(map[string]any)
	for _, d := range []string{"revocation_store", "user_store"} {
		if s, _ := deps[d].(string); !strings.HasPrefix(s, "down: ") {
			t.Errorf("readyz?verbose %s = %q, want down: ...; body %s", d, s, r.Body)
		}
	}
	m := call(t, "GET", in.Admin+"/metrics", "", "").Body
	for _, want := range []string{
		"\ntokengate_ready 1\n",
		"\ntokengate_dependency_up{dependency=\"revocation_store\"} 0\n",
		"\ntokengate_dependency_up{dependency=\"user_store\"} 0\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}

	// The answers clients get are tokengate's, and fail closed as before.
	if r := call(t, "GET", in.Public+"/app", tok, ""); r.Code != 503 || r.json(t)["error"] != "revocation_unavailable" {
		t.Errorf("proxied request with Redis down: %d %s; want 503 revocation_unavailable", r.Code, r.Body)
	}
	if r := call(t, "POST", in.Public+"/user/login", "", `{"username":"rita","password":"rita-password-1"}`); r.Code != 503 || r.json(t)["error"] != "service_unavailable" {
		t.Errorf("login with PostgreSQL down: %d %s; want 503 service_unavailable", r.Code, r.Body)
	}

	// Shutting down is local state: readiness fails at once.
	in.signal(syscall.SIGTERM)
	eventually(t, 2*time.Second, "readyz fails after SIGTERM", func() bool {
		r := call(t, "GET", in.Admin+"/readyz", "", "")
		return r.Code == 503 && r.json(t)["reason"] == "shutting down"
	})
	if code := in.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, in.logs)
	}
}
