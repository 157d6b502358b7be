package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// startBare starts the upstream and the bare proxy in-process.
func startBare(t *testing.T) (upstream, bare *httptest.Server) {
	t.Helper()
	upstream = httptest.NewServer(upstreamHandler())
	t.Cleanup(upstream.Close)
	u, _ := url.Parse(upstream.URL)
	bare = httptest.NewServer(bareProxy(u))
	t.Cleanup(bare.Close)
	return upstream, bare
}

func TestBareProxyForwards(t *testing.T) {
	_, bare := startBare(t)
	resp, err := http.Get(bare.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, upstreamBody) {
		t.Errorf("bare proxy answered %d %q, want 200 %q", resp.StatusCode, body, upstreamBody)
	}
}

// The core of the run against a bare upstream, bare vs bare: both sides
// answer, nothing fails, and the ratio is computed from the medians. No
// bound on the ratio itself: that would be a timed assertion.
func TestRunTurnBareVsBare(t *testing.T) {
	upstream, bare := startBare(t)
	client := newLoadClient(4)
	defer client.CloseIdleConnections()
	var results []turnResult
	for round := 1; round <= 2; round++ {
		for _, sc := range []scenario{{name: "direct", url: upstream.URL + "/"}, {name: scenarioBare, url: bare.URL + "/"}} {
			r := runTurn(context.Background(), client, sc, 4, 100*time.Millisecond)
			r.round = round
			if r.ok == 0 || r.errors != 0 || r.hist.n != r.ok {
				t.Fatalf("%s: ok %d errors %d (%s) recorded %d", sc.name, r.ok, r.errors, r.firstErr, r.hist.n)
			}
			if r.hist.quantile(0.99) <= 0 || r.elapsed < 100*time.Millisecond {
				t.Errorf("%s: p99 %v elapsed %v", sc.name, r.hist.quantile(0.99), r.elapsed)
			}
			results = append(results, r)
		}
	}
	sums := summarize(results, []string{scenarioBare, "direct"}, scenarioBare, map[string]budget{"direct": {minThroughput: 0}})
	bareRPS := median([]float64{results[1].rps(), results[3].rps()})
	directRPS := median([]float64{results[0].rps(), results[2].rps()})
	if sums[0].rps != bareRPS || sums[1].rps != directRPS {
		t.Errorf("median rps %v/%v, want %v/%v", sums[0].rps, sums[1].rps, bareRPS, directRPS)
	}
	if sums[1].tputRatio != directRPS/bareRPS {
		t.Errorf("throughput ratio %v, want %v", sums[1].tputRatio, directRPS/bareRPS)
	}
	if sums[1].verdict != verdictPass || sums[0].verdict != verdictBaseline {
		t.Errorf("verdicts %q %q", sums[0].verdict, sums[1].verdict)
	}
}

// Non-2xx answers are errors, every request carries the scenario's token,
// and the unique-token schedule sends distinct tokens.
func TestRunTurnSendsTokensAndCountsErrors(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("Authorization")]++
		mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	client := newLoadClient(3)
	defer client.CloseIdleConnections()
	const pool = 1 << 20 // larger than any count reached: no repeats expected
	sc := scenario{name: "errors", url: srv.URL, auth: func(w, i int) string {
		return "Bearer t" + strconv.Itoa((w+i*3)%pool)
	}}
	r := runTurn(context.Background(), client, sc, 3, 50*time.Millisecond)
	if r.ok != 0 || r.errors == 0 || r.firstErr != "status 401" {
		t.Fatalf("ok %d errors %d first %q, want only 401 errors", r.ok, r.errors, r.firstErr)
	}
	mu.Lock()
	defer mu.Unlock()
	var total int
	for tok, n := range seen {
		if !strings.HasPrefix(tok, "Bearer t") || n != 1 {
			t.Fatalf("token %q sent %d times, want once each", tok, n)
		}
		total += n
	}
	if uint64(total) != r.errors {
		t.Errorf("server saw %d requests, generator counted %d", total, r.errors)
	}
}

func TestRunTurnStopsOnCancel(t *testing.T) {
	_, bare := startBare(t)
	client := newLoadClient(2)
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := runTurn(ctx, client, scenario{name: scenarioBare, url: bare.URL}, 2, time.Hour)
	if r.ok != 0 || r.errors != 0 {
		t.Errorf("cancelled turn: ok %d errors %d, want nothing sent", r.ok, r.errors)
	}
}

func TestMintTokens(t *testing.T) {
	secret := []byte(strings.Repeat("s", 40))
	base := jwt.MapClaims{"iss": "tokengate", "sub": "u1", "name": "loadbench", "jti": "old", "iat": 1.0, "exp": 2.0}
	now := time.Now()
	tokens, err := mintTokens(50, jwt.SigningMethodHS256, secret, "kid-1", base, now)
	if err != nil {
		t.Fatal(err)
	}
	jtis := map[string]bool{}
	for _, tok := range tokens {
		parsed, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return secret, nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer("tokengate"), jwt.WithExpirationRequired())
		if err != nil {
			t.Fatalf("minted token does not verify: %v", err)
		}
		if parsed.Header["kid"] != "kid-1" {
			t.Errorf("kid %v, want kid-1", parsed.Header["kid"])
		}
		c := parsed.Claims.(jwt.MapClaims)
		if c["sub"] != "u1" || c["name"] != "loadbench" {
			t.Errorf("claims not copied: %v", c)
		}
		exp, _ := c.GetExpirationTime()
		if exp.Unix() != now.Add(time.Hour).Unix() {
			t.Errorf("exp %v, want now+1h", exp)
		}
		jti, _ := c["jti"].(string)
		if jti == "old" || jtis[jti] {
			t.Fatalf("jti %q reused", jti)
		}
		jtis[jti] = true
	}
	if base["jti"] != "old" {
		t.Error("minting changed the base claims")
	}
	header, claims, err := decodeJWT(tokens[0])
	if err != nil || header["kid"] != "kid-1" || header["alg"] != "HS256" || claims["sub"] != "u1" {
		t.Errorf("decodeJWT: %v %v %v", header, claims, err)
	}
	if _, _, err := decodeJWT("a.b"); err == nil {
		t.Error("decodeJWT accepted a two-part token")
	}
}

func TestCycleSpreadsThePool(t *testing.T) {
	tests := []struct{ pool, concurrency int }{{12, 3}, {10, 4}, {20000, 32}, {20000, 24}, {3, 5}}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.pool)+"/"+strconv.Itoa(tt.concurrency), func(t *testing.T) {
			pool := make([]string, tt.pool)
			for i := range pool {
				pool[i] = strconv.Itoa(i)
			}
			next := cycle(pool, tt.concurrency)
			// Workers in lockstep: within one lap of the usable pool no value repeats.
			seg := max(tt.pool/tt.concurrency, 1)
			lap := min(seg*tt.concurrency, tt.pool)
			seen := map[string]bool{}
			for k := 0; k < 3*seg; k++ {
				for w := 0; w < tt.concurrency && len(seen) < lap; w++ {
					v := next(w, k)
					if seen[v] {
						t.Fatalf("value %s repeated after %d of %d", v, len(seen), lap)
					}
					seen[v] = true
				}
			}
			if len(seen) != lap {
				t.Errorf("%d distinct values, want %d", len(seen), lap)
			}
		})
	}
}
