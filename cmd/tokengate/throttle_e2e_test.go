package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"tokengate/authn"
)

// TestLoginThrottleConcurrent sends 40 wrong passwords for one name at once
// to the binary with per_user 10: at most 10 are checked (401), the rest are
// refused before any hash (429). Issue 13 got 36 answers of 401 here. The
// user's hash has bcrypt's default cost, so the checks really overlap.
func TestLoginThrottleConcurrent(t *testing.T) {
	const n, budget = 40, 10
	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	hash, err := authn.HashPassword("carol-password-1", authn.HashOptions{BcryptCost: 10})
	if err != nil {
		t.Fatal(err)
	}
	users := fmt.Sprintf("users:\n  - username: carol\n    password_hash: %q\n", hash)
	if err := os.WriteFile(filepath.Join(dir, "users.yaml"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	in := start(t, dir, fmt.Sprintf("TOKENGATE_LOGIN_THROTTLE_PER_USER=%d", budget), "TOKENGATE_LOGIN_THROTTLE_PER_ADDRESS=1000")

	// One connection per attempt, all released together.
	tr := &http.Transport{MaxConnsPerHost: n, MaxIdleConnsPerHost: n, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: client.Timeout * 3}
	var (
		wg    sync.WaitGroup
		begin = make(chan struct{})
		mu    sync.Mutex
		codes = map[int]int{}
	)
	for range n {
		wg.Go(func() {
			<-begin
			res, err := hc.Post(in.Public+"/user/login", "application/json",
				strings.NewReader(`{"username":"carol","password":"wrong-password"}`))
			code := 0
			if err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				code = res.StatusCode
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	close(begin)
	wg.Wait()
	if codes[401] > budget || codes[401]+codes[429] != n {
		t.Fatalf("%d concurrent wrong passwords with per_user %d: answers %v; want at most %d of 401, the rest 429",
			n, budget, codes, budget)
	}
	metrics := call(t, "GET", in.Admin+"/metrics", "", "").Body
	want := fmt.Sprintf(`tokengate_logins_total{result="invalid_credentials"} %d`, codes[401])
	if !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s", want)
	}
	t.Logf("answers: %v", codes)
}
