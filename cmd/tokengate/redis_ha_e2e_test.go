package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tokengate/internal/testsvc"
)

// TestFailoverUnderLoad (issue 11.3): two tokengate replicas on a Sentinel
// setup with revocation.redis_min_replicas 1 take logins, proxied requests
// and logouts while the Redis primary is killed (SIGKILL), the sentinels
// promote the replica and the old primary comes back as a replica. Shown:
// no logout answered 204 is ever lost (every such token is refused by both
// replicas at the end, and any proxied request with it more than
// max_staleness after the 204 is refused); requests and logouts recover
// without restarting tokengate. The figures are logged (RELIABILITY.md).
func TestFailoverUnderLoad(t *testing.T) {
	sentinel := testsvc.StartRedisSentinel(t)
	up := newEchoUpstream(t)
	const maxStaleness = time.Second
	env := []string{
		"TOKENGATE_REVOCATION_BACKEND=redis",
		"TOKENGATE_REVOCATION_REDIS_ADDRS=" + strings.Join(sentinel.SentinelAddrs(), ","),
		"TOKENGATE_REVOCATION_REDIS_MASTER_NAME=" + sentinel.MasterName,
		"TOKENGATE_REVOCATION_REDIS_MIN_REPLICAS=1",
		"TOKENGATE_REVOCATION_REDIS_PREFIX=tgfail:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":",
		"TOKENGATE_REVOCATION_MAX_STALENESS=" + maxStaleness.String(),
	}
	a := start(t, newDir(t, up.URL), env...)
	dirB := newDir(t, up.URL)
	key, err := os.ReadFile(filepath.Join(a.dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, "signing.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := start(t, dirB, env...)
	replicas := []*instance{a, b}

	type revoked struct {
		token string
		at    time.Time
	}
	var (
		mu        sync.Mutex
		confirmed []revoked
		stats     = map[string]int{}
		lateOK    atomic.Int64             // a confirmed-revoked token accepted past max_staleness
		lastErr   = map[string]time.Time{} // per kind: the last 5xx
	)
	count := func(what string, code int) {
		mu.Lock()
		stats[fmt.Sprintf("%s %d", what, code)]++
		if code >= 500 {
			lastErr[what] = time.Now()
		}
		mu.Unlock()
	}
	do := func(method, url, token, body string) int {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	stopWorkers := runWorkers(4, func(w, i int) {
		in, other := replicas[(w+i)%2], replicas[(w+i+1)%2]
		name := []string{"alice", "bob"}[w%2]
		code, tok := tryLogin(in.Public, name)
		count("login", code)
		if tok == "" {
			return
		}
		for range 3 {
			count("request", do("GET", other.Public+"/app", tok, ""))
		}
		code = do("POST", in.Public+"/user/logout", tok, "")
		count("logout", code)
		if code == http.StatusNoContent {
			mu.Lock()
			confirmed = append(confirmed, revoked{tok, time.Now()})
			mu.Unlock()
		}
		// Earlier confirmed logouts, once past max_staleness, must be refused.
		mu.Lock()
		var old []revoked
		for _, c := range confirmed {
			if time.Since(c.at) > maxStaleness+200*time.Millisecond {
				old = append(old, c)
			}
		}
		mu.Unlock()
		if len(old) > 0 {
			c := old[i%len(old)]
			if do("GET", other.Public+"/app", c.token, "") == http.StatusOK {
				lateOK.Add(1)
			}
		}
	})

	time.Sleep(2 * time.Second)
	primary := sentinel.Primary(t, time.Second)
	primary.Stop() // SIGKILL
	killed := time.Now()
	promoted := sentinel.Primary(t, 60*time.Second)
	promotedAt := time.Now()
	primary.Restart(t) // comes back; the sentinels make it a replica of the new primary
	_ = promoted

	// Recovery: a full login / request / logout cycle succeeds on both replicas.
	var recovered time.Time
	eventually(t, 30*time.Second, "a confirmed logout through each replica", func() bool {
		for _, in := range replicas {
			tok := login(t, in.Public, "alice", testUsers["alice"])
			if do("GET", in.Public+"/app", tok, "") != http.StatusOK || do("POST", in.Public+"/user/logout", tok, "") != http.StatusNoContent {
				return false
			}
		}
		recovered = time.Now()
		return true
	})
	time.Sleep(3 * time.Second) // steady load after recovery
	stopWorkers()

	// Nothing confirmed was lost: every 204'd token is refused everywhere.
	time.Sleep(maxStaleness)
	lost := 0
	for _, c := range confirmed {
		for _, in := range replicas {
			if code := do("GET", in.Public+"/app", c.token, ""); code != http.StatusUnauthorized {
				lost++
				t.Errorf("a token logged out with 204 at %s answers %d on %s", c.at.Format(time.StampMilli), code, in.Public)
			}
		}
	}
	if n := lateOK.Load(); n > 0 {
		t.Errorf("%d requests with a logged-out token were accepted past max_staleness", n)
	}
	if len(confirmed) == 0 {
		t.Fatal("no logout was confirmed: the load did not run")
	}
	since := func(what string) string {
		if lastErr[what].IsZero() {
			return "none"
		}
		return lastErr[what].Sub(killed).Round(time.Millisecond).String()
	}
	t.Logf("failover under load: primary killed; promotion after %s; both replicas fully working %s after the kill; last 5xx after the kill: request %s, logout %s; confirmed logouts %d (lost %d); late accepts %d",
		promotedAt.Sub(killed).Round(time.Millisecond), recovered.Sub(killed).Round(time.Millisecond),
		since("request"), since("logout"), len(confirmed), lost, lateOK.Load())
	t.Logf("answers: %v", stats)
}

// tryLogin logs in without failing the test (it runs on load goroutines).
func tryLogin(base, user string) (int, string) {
	body := fmt.Sprintf(`{"username":%q,"password":%q}`, user, testUsers[user])
	resp, err := client.Post(base+"/user/login", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return resp.StatusCode, ""
	}
	return resp.StatusCode, out.Token
}

// TestMinReplicasNotConfirmed: with revocation.redis_min_replicas 1 and the
// replica paused (SIGSTOP), logout and logout_all answer 503
// revocation_unavailable saying "not confirmed", never 204; once the replica
// runs again, a logout is 204 and the replica already holds it.
func TestMinReplicasNotConfirmed(t *testing.T) {
	primary := testsvc.StartRedis(t)
	replica := testsvc.StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	rc := replica.Client(t)
	eventually(t, 20*time.Second, "replica in sync", func() bool {
		info, _ := rc.Info(t.Context(), "replication").Result()
		return strings.Contains(info, "master_link_status:up")
	})
	up := newEchoUpstream(t)
	prefix := "tgmin:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	in := start(t, newDir(t, up.URL),
		"TOKENGATE_REVOCATION_BACKEND=redis",
		"TOKENGATE_REVOCATION_REDIS_URL=redis://"+primary.Addr+"/0",
		"TOKENGATE_REVOCATION_REDIS_PREFIX="+prefix,
		"TOKENGATE_REVOCATION_REDIS_MIN_REPLICAS=1")

	tok := login(t, in.Public, "alice", testUsers["alice"])
	replica.Pause(t)
	for _, path := range []string{"/user/logout", "/user/logout_all"} {
		r := call(t, "POST", in.Public+path, tok, "")
		if r.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s with the replica paused: %d %s, want 503", path, r.Code, r.Body)
		}
		body := r.json(t)
		if body["error"] != "revocation_unavailable" || !strings.Contains(fmt.Sprint(body["message"]), "not confirmed") {
			t.Errorf("%s: body %s, want revocation_unavailable saying \"not confirmed\"", path, r.Body)
		}
	}
	replica.Resume()

	tok = login(t, in.Public, "bob", testUsers["bob"])
	eventually(t, 20*time.Second, "a confirmed logout", func() bool {
		return call(t, "POST", in.Public+"/user/logout", tok, "").Code == http.StatusNoContent
	})
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.JTI == "" {
		t.Fatalf("no jti in %s: %v", payload, err)
	}
	if err := rc.Get(t.Context(), prefix+"jti:"+claims.JTI).Err(); err != nil {
		t.Fatalf("the replica does not hold the logout right after the 204: %v", err)
	}
}
