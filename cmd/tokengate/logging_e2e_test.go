package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"tokengate/internal/testsvc"
)

// During a Redis outage the log stays one JSON format (go-redis's own
// messages included) and repeated store errors are rate-limited: one ERROR
// per distinct error per 10 s instead of one per request.
func TestRedisOutageLogsOneFormatRateLimited(t *testing.T) {
	redis := testsvc.StartRedis(t)
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL), redisEnv(redis.Addr)...)
	var toks []string
	for range 10 {
		toks = append(toks, login(t, in.Public, "alice", testUsers["alice"]))
	}
	redis.Stop()
	start := time.Now()
	const requests = 30
	for i := range requests {
		// Each token is uncached at first: every request asks the store.
		if r := call(t, "GET", in.Public+"/app", toks[i%len(toks)], ""); r.Code != 503 {
			t.Fatalf("request %d with Redis down: %d %s", i, r.Code, r.Body)
		}
	}
	time.Sleep(500 * time.Millisecond) // let go-redis's background reconnects log too
	if time.Since(start) >= errorLogWindow {
		t.Skip("the requests took longer than the rate-limit window; nothing to conclude")
	}

	storeErrors, redisLines := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(in.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		switch rec["msg"] {
		case "revocation store unavailable":
			storeErrors++
		case "redis client":
			redisLines++
		}
	}
	t.Logf("%d requests: %d store ERROR lines, %d go-redis lines", requests, storeErrors, redisLines)
	if storeErrors == 0 || storeErrors > 3 {
		t.Errorf("%d 'revocation store unavailable' lines for %d failing requests within %s; want 1 to 3 (one per distinct error)",
			storeErrors, requests, errorLogWindow)
	}
}
