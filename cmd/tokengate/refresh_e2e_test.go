package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"tokengate/internal/testkit"

	goredis "github.com/redis/go-redis/v9"

	"tokengate/internal/testsvc"
)

// refreshAll sends one PUT /session with tok to each base URL at once and
// returns the status codes and the new tokens of the 200s.
func refreshAll(t *testing.T, bases []string, tok string) (codes map[int]int, tokens []string) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
	)
	codes = map[int]int{}
	for _, base := range bases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("PUT", base+"/session", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			<-start
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var out struct {
				Token string `json:"token"`
				Error string `json:"error"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&out)
			mu.Lock()
			defer mu.Unlock()
			codes[resp.StatusCode]++
			switch {
			case resp.StatusCode == 200:
				tokens = append(tokens, out.Token)
			case resp.StatusCode != 401 || out.Error != "token_revoked":
				t.Errorf("a losing refresh: %d %q, want 401 token_revoked", resp.StatusCode, out.Error)
			}
		}()
	}
	close(start)
	wg.Wait()
	return codes, tokens
}

// Issue 13 point 3: twenty simultaneous PUT /session with one token get
// exactly one 200 (bolt: the check and the write are one transaction).
func TestConcurrentRefreshBolt(t *testing.T) {
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL))
	bases := make([]string, 20)
	for i := range bases {
		bases[i] = in.Public
	}
	oneRefreshWins(t, bases, "alice")
}

// oneRefreshWins logs user in on bases[0], sends 20 concurrent refreshes of
// that token spread over bases, and wants exactly one 200, whose new token
// works; three rounds.
func oneRefreshWins(t *testing.T, bases []string, user string) {
	t.Helper()
	for round := range 3 {
		tok := login(t, bases[0], user, testUsers[user])
		codes, tokens := refreshAll(t, bases, tok)
		if len(tokens) != 1 {
			t.Fatalf("round %d: %d concurrent refreshes answered %v; want exactly one 200", round, len(bases), codes)
		}
		if r := call(t, "GET", bases[0]+"/app", tokens[0], ""); r.Code != 200 {
			t.Fatalf("round %d: the one new token: %d", round, r.Code)
		}
		t.Logf("round %d: %v", round, codes)
	}
}

// The same across two replicas sharing Redis (SET NX decides).
func TestConcurrentRefreshRedisReplicas(t *testing.T) {
	addr := testsvc.RedisAddr(t)
	a, b := startReplicas(t, newEchoUpstream(t), redisEnv(addr)...)
	bases := make([]string, 20)
	for i := range bases {
		bases[i] = a.Public
		if i%2 == 1 {
			bases[i] = b.Public
		}
	}
	oneRefreshWins(t, bases, "bob")
}

// Issue 13 point 6: log in under tokens.ttl 60s, restart with 2s, log out
// everywhere, wait past the new lifetime (2s + 1s leeway), restart: the old
// token is still refused. The store remembers the 60s lifetime noted at the
// first start and keeps the cutoff that long.
func TestLogoutAllCutoffOutlivesLoweredTTL(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	os.WriteFile(filepath.Join(dir, "admin.token"), []byte(strings.Repeat("s3cret-", 8)+"\n"), 0o600)
	long := []string{"TOKENGATE_TOKENS_TTL=60s", "TOKENGATE_TOKENS_LEEWAY=1s"}
	short := []string{"TOKENGATE_TOKENS_TTL=2s", "TOKENGATE_TOKENS_LEEWAY=1s", "TOKENGATE_ADMIN_TOKEN_FILE=admin.token"}

	in := start(t, dir, long...)
	old := login(t, in.Public, "alice", testUsers["alice"])
	oldBob := login(t, in.Public, "bob", testUsers["bob"])
	in.signal(syscall.SIGTERM)
	in.wait(10 * time.Second)

	in = start(t, dir, short...)
	if r := call(t, "POST", in.Public+"/user/logout_all", old, ""); r.Code != 204 {
		t.Fatalf("logout_all: %d %s", r.Code, r.Body)
	}
	// The operator's revoke-user (its admin endpoint) the same.
	if r := call(t, "POST", in.Admin+"/admin/revoke_user", strings.Repeat("s3cret-", 8), `{"user":"bob"}`); r.Code/100 != 2 {
		t.Fatalf("admin revoke_user: %d %s", r.Code, r.Body)
	}
	loggedOutAt := time.Now()
	in.signal(syscall.SIGTERM)
	in.wait(10 * time.Second)
	// Not a race to win: the retention under the new settings (ttl 2s +
	// leeway 1s) must be over before the last check.
	time.Sleep(time.Until(loggedOutAt.Add(4 * time.Second)))

	in = start(t, dir, short...)
	if r := call(t, "GET", in.Public+"/app", old, ""); r.Code != 401 {
		t.Fatalf("a token issued under ttl 60s, 4s after logout_all under ttl 2s: %d %s", r.Code, r.Body)
	}
	if r := call(t, "GET", in.Public+"/app", oldBob, ""); r.Code != 401 {
		t.Fatalf("a token issued under ttl 60s, 4s after revoke_user under ttl 2s: %d %s", r.Code, r.Body)
	}
	if r := call(t, "GET", in.Public+"/app", login(t, in.Public, "alice", testUsers["alice"]), ""); r.Code != 200 {
		t.Fatalf("a new token: %d", r.Code)
	}
}

// Redis is down when the instance starts: it starts anyway and records its
// token lifetime once Redis answers.
func TestLifetimeNotedWhenRedisComesBack(t *testing.T) {
	rds := testsvc.StartRedis(t)
	rds.Stop()
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	in := &instance{t: t, dir: dir, logs: &testkit.LogBuffer{}, done: make(chan struct{})}
	in.cmd = exec.Command(binPath, "serve", "--config", filepath.Join(dir, "config.yaml"))
	in.cmd.Env = append(os.Environ(), redisEnv(rds.Addr)...)
	in.cmd.Stdout, in.cmd.Stderr = in.logs, in.logs
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = in.cmd.Wait()
		close(in.done)
	}()
	t.Cleanup(in.kill)
	eventually(t, 20*time.Second, "the instance says it will note the lifetime later", func() bool {
		return strings.Contains(in.logs.String(), "the token lifetime will be noted when it answers")
	})
	rds.Restart(t)
	eventually(t, 10*time.Second, "the lifetime is noted once Redis answers", func() bool {
		return strings.Contains(in.logs.String(), "token lifetime noted in the revocation store")
	})
	// This Redis is the test's own: whatever the key prefix, one key holds
	// tokens.ttl 1h + refresh_window 0 + leeway 5s, in milliseconds.
	c := goredis.NewClient(&goredis.Options{Addr: rds.Addr})
	defer c.Close()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*longest_lifetime").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("longest lifetime keys in Redis: %v, %v; want one", keys, err)
	}
	if v, err := c.Get(ctx, keys[0]).Result(); err != nil || v != "3605000" {
		t.Fatalf("longest lifetime in Redis: %q, %v; want 3605000", v, err)
	}
}
