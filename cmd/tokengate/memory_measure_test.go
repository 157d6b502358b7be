package main

import (
	"bufio"
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

	"github.com/golang-jwt/jwt/v5"
)

// TestMeasureFullCacheRSS measures what the Kubernetes kit's memory request
// must hold: the resident memory of tokengate with both caches full at the
// kit's sizes (tokens.cache_size 10000, revocation.cache_size 100000). It
// sends 120000 requests, each with a token of its own (distinct jti and
// user), and logs RSS and heap. A measurement, not a check: it runs only with
// MEASURE_RSS=1:
//
//	MEASURE_RSS=1 go test -count=1 -run TestMeasureFullCacheRSS -v ./cmd/tokengate
func TestMeasureFullCacheRSS(t *testing.T) {
	if os.Getenv("MEASURE_RSS") != "1" {
		t.Skip("a measurement: set MEASURE_RSS=1 to run it")
	}
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	in := start(t, dir, "TOKENGATE_TOKENS_CACHE_SIZE=10000", "TOKENGATE_REVOCATION_CACHE_SIZE=100000")
	gauge := func(name string) float64 {
		body := call(t, "GET", in.Admin+"/metrics", "", "").Body
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		t.Fatalf("no %s", name)
		return 0
	}
	mib := func(name string) string { return fmt.Sprintf("%.1f MiB", gauge(name)/(1<<20)) }
	t.Logf("idle: RSS %s, heap in use %s", mib("process_resident_memory_bytes"), mib("go_memstats_heap_inuse_bytes"))

	pemKey, err := os.ReadFile(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwt.ParseEdPrivateKeyFromPEM(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	// The kid and the claims tokengate expects, from a real login token.
	parsed, _, err := jwt.NewParser().ParseUnverified(login(t, in.Public, "alice", testUsers["alice"]), jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := parsed.Header["kid"].(string)
	const requests = 120000
	var next, ok atomic.Int64
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	var wg sync.WaitGroup
	began := time.Now()
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1); i <= requests; i = next.Add(1) {
				claims := jwt.MapClaims{}
				for k, v := range parsed.Claims.(jwt.MapClaims) {
					claims[k] = v
				}
				claims["jti"], claims["sub"] = fmt.Sprintf("measure-%d", i), fmt.Sprintf("user-%d", i)
				tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
				tok.Header["kid"] = kid
				s, err := tok.SignedString(key)
				if err != nil {
					t.Error(err)
					return
				}
				// Twice: the verified-token cache admits a token on its
				// second sighting.
				for range 2 {
					req, _ := http.NewRequest("GET", in.Public+"/app", nil)
					req.Header.Set("Authorization", "Bearer "+s)
					resp, err := c.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ok.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 2*requests {
		t.Fatalf("%d of %d requests allowed", ok.Load(), 2*requests)
	}
	t.Logf("%d distinct tokens, each sent twice, in %s", requests, time.Since(began).Round(time.Second))
	t.Logf("caches full: RSS %s, heap in use %s, heap from the OS %s",
		mib("process_resident_memory_bytes"), mib("go_memstats_heap_inuse_bytes"), mib("go_memstats_heap_sys_bytes"))
}
