package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
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

// soakSample is one reading of the binary's own metrics.
type soakSample struct {
	at         time.Duration
	goroutines float64
	heap       float64 // go_memstats_heap_alloc_bytes
	rss        float64 // process_resident_memory_bytes
}

// TestSoak (issue 11.5) runs only under `make soak` (SOAK_DURATION=<duration>,
// 5m by default there): steady load on the real binary with the Redis
// backend (logins, requests with a reused token and with fresh tokens,
// logouts, logouts everywhere), goroutines, heap and RSS sampled every 10s
// from /metrics. It fails if, in the second half, any of them grows past a
// bound over its value at half time: goroutines +20% +10, heap +50% +8 MiB,
// RSS +30% +16 MiB (room for GC cycles and caches filling, not for a leak
// that grows with traffic).
func TestSoak(t *testing.T) {
	raw := os.Getenv("SOAK_DURATION")
	if raw == "" {
		t.Skip("soak test: run with `make soak` (SOAK_DURATION=<duration>)")
	}
	duration, err := time.ParseDuration(raw)
	if err != nil || duration < 20*time.Second {
		t.Fatalf("SOAK_DURATION=%q: want a duration of at least 20s", raw)
	}
	interval := 10 * time.Second
	redis := testsvc.StartRedis(t)
	up := newEchoUpstream(t)
	// One user per worker: a worker's logout-all must not cut another
	// worker's tokens (that would count as failures).
	dir := newDir(t, up.URL)
	users := map[string]string{"alice": testUsers["alice"]}
	for w := 1; w <= 3; w++ {
		users["soak"+strconv.Itoa(w)] = "soak-password-" + strconv.Itoa(w)
	}
	writeUsersFile(t, filepath.Join(dir, "users.yaml"), users)
	in := start(t, dir,
		"TOKENGATE_REVOCATION_BACKEND=redis",
		"TOKENGATE_REVOCATION_REDIS_URL=redis://"+redis.Addr+"/0")

	reused := login(t, in.Public, "alice", testUsers["alice"])
	var ops, failures atomic.Int64
	get := func(method, url, token string) int {
		req, _ := http.NewRequest(method, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			failures.Add(1)
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ops.Add(1)
		return resp.StatusCode
	}
	stopWorkers := runWorkers(4, func(w, i int) {
		if w == 0 { // the reused token: cache hits
			if get("GET", in.Public+"/app/"+strconv.Itoa(i%50), reused) != http.StatusOK {
				failures.Add(1)
			}
			return
		}
		name := "soak" + strconv.Itoa(w)
		tok := soakLogin(in.Public, name, users[name])
		if tok == "" {
			failures.Add(1)
			return
		}
		ops.Add(1)
		for j := range 5 {
			if get("GET", in.Public+"/app/"+strconv.Itoa(j), tok) != http.StatusOK {
				failures.Add(1)
			}
		}
		switch {
		case i%50 == 49: // logout everywhere: this worker's user only
			if get("POST", in.Public+"/user/logout_all", tok) != http.StatusNoContent {
				failures.Add(1)
			}
		default:
			if get("POST", in.Public+"/user/logout", tok) != http.StatusNoContent {
				failures.Add(1)
			}
			if get("GET", in.Public+"/app/x", tok) != http.StatusUnauthorized {
				failures.Add(1)
			}
		}
	})

	var samples []soakSample
	begin := time.Now()
	tick := time.NewTicker(interval)
	for time.Since(begin) < duration {
		<-tick.C
		s := scrapeSoak(t, in.Admin)
		s.at = time.Since(begin)
		samples = append(samples, s)
		t.Logf("t=%3.0fs goroutines=%.0f heap=%.1fMiB rss=%.1fMiB ops=%d failures=%d",
			s.at.Seconds(), s.goroutines, s.heap/(1<<20), s.rss/(1<<20), ops.Load(), failures.Load())
	}
	tick.Stop()
	stopWorkers()

	if f := failures.Load(); f > 0 {
		t.Errorf("%d failed operations under steady load", f)
	}
	half := samples[len(samples)/2-1]
	for _, s := range samples[len(samples)/2:] {
		check := func(what string, v, base, frac, slack float64) {
			if v > base*(1+frac)+slack {
				t.Errorf("t=%.0fs: %s %.0f grew past %.0f (half-time value %.0f)", s.at.Seconds(), what, v, base*(1+frac)+slack, base)
			}
		}
		check("goroutines", s.goroutines, half.goroutines, 0.2, 10)
		check("heap bytes", s.heap, half.heap, 0.5, 8<<20)
		check("RSS bytes", s.rss, half.rss, 0.3, 16<<20)
	}
	t.Logf("soak: %s, %d operations (%.0f/s), %d failures", duration, ops.Load(), float64(ops.Load())/time.Since(begin).Seconds(), failures.Load())
}

func soakLogin(base, user, password string) string {
	body := fmt.Sprintf(`{"username":%q,"password":%q}`, user, password)
	resp, err := client.Post(base+"/user/login", "application/json", strings.NewReader(body))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return ""
	}
	return out.Token
}

func scrapeSoak(t *testing.T, admin string) soakSample {
	t.Helper()
	resp, err := client.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s soakSample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "go_goroutines":
			dst = &s.goroutines
		case "go_memstats_heap_alloc_bytes":
			dst = &s.heap
		case "process_resident_memory_bytes":
			dst = &s.rss
		default:
			continue
		}
		if _, err := fmt.Sscan(value, dst); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if s.goroutines == 0 || s.heap == 0 || s.rss == 0 {
		t.Fatalf("metrics lack goroutines, heap or RSS: %+v", s)
	}
	return s
}

// runWorkers runs n goroutines, each calling work(worker, iteration) in a
// loop, until the returned stop is called (which waits for them).
func runWorkers(n int, work func(w, i int)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				work(w, i)
			}
		})
	}
	return func() { close(done); wg.Wait() }
}
