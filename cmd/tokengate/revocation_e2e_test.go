package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"tokengate/authn"
	"tokengate/internal/testsvc"
)

// A logout survives kill -9 with the bolt backend: the 204 went out only
// after the revocation was fsynced.
func TestBoltRevocationsSurviveKill9(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	in := start(t, dir)
	alice := login(t, in.Public, "alice", testUsers["alice"])
	bob := login(t, in.Public, "bob", testUsers["bob"])
	if r := call(t, "POST", in.Public+"/user/logout", alice, ""); r.Code != 204 {
		t.Fatalf("logout: %d %s", r.Code, r.Body)
	}
	if r := call(t, "POST", in.Public+"/user/logout_all", bob, ""); r.Code != 204 {
		t.Fatalf("logout_all: %d %s", r.Code, r.Body)
	}
	in.signal(syscall.SIGKILL)
	in.wait(10 * time.Second)

	again := start(t, dir)
	for name, tok := range map[string]string{"logout": alice, "logout_all": bob} {
		if r := call(t, "GET", again.Public+"/app", tok, ""); r.Code != 401 {
			t.Fatalf("%s token after kill -9 and restart: %d %s", name, r.Code, r.Body)
		}
	}
	if r := call(t, "GET", again.Public+"/app", login(t, again.Public, "bob", testUsers["bob"]), ""); r.Code != 200 {
		t.Fatalf("new token after restart: %d", r.Code)
	}
}

// A second process on the same bolt file fails clearly instead of hanging.
func TestBoltFileInUse(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	start(t, dir)
	out, err := runFor(t, 20*time.Second, binPath, "serve", "--config", filepath.Join(dir, "config.yaml"))
	if exitCode(err) == 0 || !strings.Contains(out, "in use") {
		t.Fatalf("second instance on the same bolt file: %v\n%s", err, out)
	}
}

func redisEnv(addr string) []string {
	return []string{
		"TOKENGATE_REVOCATION_BACKEND=redis",
		"TOKENGATE_REVOCATION_REDIS_URL=redis://" + addr + "/0",
		"TOKENGATE_REVOCATION_MAX_STALENESS=30s", // so only pub/sub can explain fast propagation
	}
}

// startReplicas starts two instances in front of up with env, signing with
// one key (A creates it, B gets a copy), as replicas of one deployment do.
func startReplicas(t *testing.T, up *echoUpstream, env ...string) (a, b *instance) {
	t.Helper()
	dir := newDir(t, up.URL)
	a = start(t, dir, env...)
	dirB := newDir(t, up.URL)
	key, err := os.ReadFile(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "signing.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	return a, start(t, dirB, env...)
}

// Two replicas sharing Redis: a logout on A is refused by B within 1 s.
func TestReplicasShareRevocations(t *testing.T) {
	addr := testsvc.RedisAddr(t)
	a, b := startReplicas(t, newEchoUpstream(t), redisEnv(addr)...)

	var took []time.Duration
	for i := 0; i < 5; i++ {
		tok := login(t, a.Public, "alice", testUsers["alice"])
		// B has the token cached as "not revoked".
		if r := call(t, "GET", b.Public+"/app", tok, ""); r.Code != 200 {
			t.Fatalf("B before logout: %d %s", r.Code, r.Body)
		}
		if r := call(t, "POST", a.Public+"/user/logout", tok, ""); r.Code != 204 {
			t.Fatalf("logout on A: %d %s", r.Code, r.Body)
		}
		took = append(took, eventually(t, time.Second, "B refuses the token logged out on A", func() bool {
			return call(t, "GET", b.Public+"/app", tok, "").Code == 401
		}))
	}
	bob := login(t, a.Public, "bob", testUsers["bob"])
	if r := call(t, "GET", b.Public+"/app", bob, ""); r.Code != 200 {
		t.Fatalf("B before logout_all: %d", r.Code)
	}
	if r := call(t, "POST", a.Public+"/user/logout_all", bob, ""); r.Code != 204 {
		t.Fatalf("logout_all on A: %d %s", r.Code, r.Body)
	}
	took = append(took, eventually(t, time.Second, "B refuses tokens after logout_all on A", func() bool {
		return call(t, "GET", b.Public+"/app", bob, "").Code == 401
	}))
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("cross-replica propagation over %d revocations: min %s, median %s, max %s (poll step 10ms)",
		len(took), took[0], took[len(took)/2], took[len(took)-1])
}

// Redis down: an uncached token is refused with 503, never let through;
// logout claims nothing; readiness stays (local state only) while the
// dependency metric and /readyz?verbose show the outage; all recovers when
// Redis returns.
func TestRedisOutage(t *testing.T) {
	// Redis with an fsync-always AOF, as production should run it: a
	// restart keeps what was stored before the outage.
	redis := testsvc.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	in := start(t, dir, append(redisEnv(redis.Addr), "TOKENGATE_REVOCATION_MAX_STALENESS=200ms")...)
	revoked := login(t, in.Public, "alice", testUsers["alice"])
	if r := call(t, "POST", in.Public+"/user/logout", revoked, ""); r.Code != 204 {
		t.Fatalf("logout: %d", r.Code)
	}
	fresh := login(t, in.Public, "bob", testUsers["bob"])

	redis.Stop()
	if r := call(t, "GET", in.Public+"/app", fresh, ""); r.Code != 503 {
		t.Fatalf("uncached check with Redis down: %d %s", r.Code, r.Body)
	}
	if r := call(t, "GET", in.Public+"/app", revoked, ""); r.Code == 200 {
		t.Fatalf("revoked token let through with Redis down")
	}
	if r := call(t, "POST", in.Public+"/user/logout", fresh, ""); r.Code == 204 {
		t.Fatalf("logout claimed success with Redis down")
	}
	if r := call(t, "GET", in.Admin+"/readyz", "", ""); r.Code != 200 {
		t.Fatalf("readyz with Redis down: %d %s (readiness must not follow a shared dependency)", r.Code, r.Body)
	}
	if r := call(t, "GET", in.Admin+"/readyz?verbose", "", ""); r.Code != 200 ||
		!strings.HasPrefix(r.json(t)["dependencies"].(map[string]any)["revocation_store"].(string), "down: ") {
		t.Fatalf("readyz?verbose with Redis down: %d %s", r.Code, r.Body)
	}
	if m := call(t, "GET", in.Admin+"/metrics", "", "").Body; !strings.Contains(m, "\ntokengate_ready 1\n") ||
		!strings.Contains(m, "\ntokengate_dependency_up{dependency=\"revocation_store\"} 0\n") {
		t.Fatal("with Redis down, want tokengate_ready 1 and tokengate_dependency_up{dependency=\"revocation_store\"} 0")
	}

	redis.Restart(t)
	eventually(t, 15*time.Second, "the revocation store dependency recovers", func() bool {
		return strings.Contains(call(t, "GET", in.Admin+"/metrics", "", "").Body, "\ntokengate_dependency_up{dependency=\"revocation_store\"} 1\n")
	})
	time.Sleep(300 * time.Millisecond) // past max_staleness: answers come from the store again
	if r := call(t, "GET", in.Public+"/app", revoked, ""); r.Code != 401 {
		t.Fatalf("revocation stored before the outage, after it: %d %s", r.Code, r.Body)
	}
	if r := call(t, "GET", in.Public+"/app", fresh, ""); r.Code != 200 {
		t.Fatalf("after recovery: %d %s", r.Code, r.Body)
	}
	if r := call(t, "POST", in.Public+"/user/logout", fresh, ""); r.Code != 204 {
		t.Fatalf("logout after recovery: %d", r.Code)
	}
}

func TestOperatorRevokeUser(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	os.WriteFile(filepath.Join(dir, "admin.token"), []byte(strings.Repeat("s3cret-", 8)+"\n"), 0o600)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg, _ := os.ReadFile(cfgPath)
	in := start(t, dir, "TOKENGATE_ADMIN_TOKEN_FILE=admin.token")
	tok := login(t, in.Public, "alice", testUsers["alice"])
	other := login(t, in.Public, "bob", testUsers["bob"])

	// Without the admin token the endpoint refuses.
	if r := call(t, "POST", in.Admin+"/admin/revoke_user", "wrong", `{"user":"alice"}`); r.Code != 401 {
		t.Fatalf("admin endpoint with a wrong token: %d", r.Code)
	}
	if r := call(t, "GET", in.Public+"/app", tok, ""); r.Code != 200 {
		t.Fatal("token died without a revocation")
	}
	// The CLI reaches the running instance's admin listener.
	os.WriteFile(cfgPath, append(cfg, []byte("admin_token_file: admin.token\n")...), 0o600)
	out, err := runFor(t, 20*time.Second, binPath, "revoke-user", "--config", cfgPath, "--user", "alice",
		"--admin-url", in.Admin)
	if err != nil {
		t.Fatalf("revoke-user: %v\n%s", err, out)
	}
	if r := call(t, "GET", in.Public+"/app", tok, ""); r.Code != 401 {
		t.Fatalf("token after operator revocation: %d", r.Code)
	}
	if r := call(t, "GET", in.Public+"/app", other, ""); r.Code != 200 {
		t.Fatalf("other user's token after operator revocation: %d", r.Code)
	}
	if r := call(t, "GET", in.Public+"/app", login(t, in.Public, "alice", testUsers["alice"]), ""); r.Code != 200 {
		t.Fatal("new login after operator revocation refused")
	}
}

func TestSIGHUPReloadsUsersAndKeys(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	in := start(t, dir, "TOKENGATE_USERS_RELOAD_INTERVAL=1h") // only SIGHUP reloads here
	old := login(t, in.Public, "alice", testUsers["alice"])
	// alice stays: a removed user's tokens are refused (user_unknown).
	writeUsersFile(t, filepath.Join(dir, "users.yaml"), map[string]string{"alice": testUsers["alice"], "carol": "carol-password-1"})
	in.signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "carol can log in after SIGHUP", func() bool {
		return call(t, "POST", in.Public+"/user/login", "", `{"username":"carol","password":"carol-password-1"}`).Code == 200
	})
	if r := call(t, "GET", in.Public+"/app", old, ""); r.Code != 200 {
		t.Fatalf("a token issued before the reload: %d", r.Code)
	}
	// A broken file keeps the previous users and the reload gauge says so.
	os.WriteFile(filepath.Join(dir, "users.yaml"), []byte("users: [oops"), 0o600)
	in.signal(syscall.SIGHUP)
	eventually(t, 5*time.Second, "reload failure is exported", func() bool {
		return strings.Contains(call(t, "GET", in.Admin+"/metrics", "", "").Body, "tokengate_config_last_reload_success 0")
	})
	if r := call(t, "POST", in.Public+"/user/login", "", `{"username":"carol","password":"carol-password-1"}`); r.Code != 200 {
		t.Fatalf("users kept after a broken reload: %d", r.Code)
	}
}

func runFor(t *testing.T, d time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	done := make(chan struct{})
	var out []byte
	var err error
	cmd := execCommand(name, args...)
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
		return string(out), err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return string(out), fmt.Errorf("timed out after %s", d)
	}
}

// Key rotation without a restart: the new key signs, the old one keeps
// verifying, the JWKS lists both.
func TestSIGHUPRotatesKeys(t *testing.T) {
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	in := start(t, dir)
	old := login(t, in.Public, "alice", testUsers["alice"])
	if _, err := authn.LoadOrCreateSigningKey(filepath.Join(dir, "new.key"), "EdDSA"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "signing.key"), filepath.Join(dir, "old.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "new.key"), filepath.Join(dir, "signing.key")); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(filepath.Join(dir, "config.yaml"))
	cfg = []byte(strings.Replace(string(cfg), "  signing_key_file: signing.key\n",
		"  signing_key_file: signing.key\n  verification_key_files: [old.key]\n", 1))
	os.WriteFile(filepath.Join(dir, "config.yaml"), cfg, 0o600)
	in.signal(syscall.SIGHUP)

	var fresh string
	eventually(t, 5*time.Second, "tokens are signed with the new key", func() bool {
		fresh = login(t, in.Public, "alice", testUsers["alice"])
		return kidOf(t, fresh) != kidOf(t, old)
	})
	for name, tok := range map[string]string{"old key": old, "new key": fresh} {
		if r := call(t, "GET", in.Public+"/app", tok, ""); r.Code != 200 {
			t.Fatalf("token signed with the %s after rotation: %d %s", name, r.Code, r.Body)
		}
	}
	jwks := call(t, "GET", in.Public+"/.well-known/jwks.json", "", "")
	for _, kid := range []string{kidOf(t, old), kidOf(t, fresh)} {
		if !strings.Contains(jwks.Body, kid) {
			t.Fatalf("JWKS lacks kid %s: %s", kid, jwks.Body)
		}
	}
	if strings.Contains(call(t, "GET", in.Admin+"/metrics", "", "").Body, "tokengate_config_last_reload_success 0") {
		t.Fatal("reload reported as failed")
	}
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	header, _, _ := strings.Cut(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil || h.Kid == "" {
		t.Fatalf("token header %s: %v", b, err)
	}
	return h.Kid
}
