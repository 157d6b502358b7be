package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tokengate/authn"
	"tokengate/revocation"

	"tokengate/internal/testclock"
)

// replica is a second handler on the env's revocation store with its own,
// empty Checker (another pod, or this one after a restart) and its own clock.
func (e *env) replica(clock *fakeClock, wrap ...func(Revoker) Revoker) *httptest.Server {
	e.t.Helper()
	checker, err := revocation.NewChecker(e.store, revocation.CheckerOptions{Now: clock.Now, UserCutoffTTL: e.tokens.MaxLifetime()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { checker.Close() })
	opts := e.opts
	opts.Revocation = checker
	for _, w := range wrap {
		opts.Revocation = w(opts.Revocation)
	}
	opts.Registerer = prometheus.NewRegistry()
	opts.Now = clock.Now
	h, err := New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	e.t.Cleanup(srv.Close)
	return srv
}

func getStatus(t *testing.T, srv *httptest.Server, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+"/api", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body apiError
	_ = json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body.Code
}

// barrier holds revocations until n of them have arrived (or a second has
// passed): every concurrent refresh has then passed its revocation check
// before any revokes, the widest race window, reached without relying on
// luck.
type barrier struct {
	mu      sync.Mutex
	n       int
	arrived int
	release chan struct{}
}

func (b *barrier) reset(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n, b.arrived, b.release = n, 0, make(chan struct{})
}

func (b *barrier) wait() {
	b.mu.Lock()
	b.arrived++
	release := b.release
	if b.arrived == b.n {
		close(release)
	}
	b.mu.Unlock()
	select {
	case <-release:
	case <-time.After(time.Second):
	}
}

// barrierRevoker is a real Checker whose revocations wait at a barrier.
type barrierRevoker struct {
	Revoker
	b *barrier
}

func (r barrierRevoker) RevokeToken(ctx context.Context, jti string, exp time.Time) error {
	r.b.wait()
	return r.Revoker.RevokeToken(ctx, jti, exp)
}

func (r barrierRevoker) RevokeTokenOnce(ctx context.Context, jti string, exp time.Time) (bool, error) {
	r.b.wait()
	return r.Revoker.RevokeTokenOnce(ctx, jti, exp)
}

// Issue 13 point 3: twenty simultaneous refreshes of one token, on two
// replicas, give exactly one new token; the others are 401 token_revoked.
func TestConcurrentRefreshesOneWinner(t *testing.T) {
	const n = 20
	gate := &barrier{}
	wrap := func(r Revoker) Revoker { return barrierRevoker{r, gate} }
	e := newEnv(t, envConfig{refreshWindow: time.Hour, options: func(o *Options) { o.Revocation = wrap(o.Revocation) }})
	other := e.replica(e.clock, wrap)
	for round := range 5 {
		tok := e.login("alice", alicePassword)
		gate.reset(n)
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			mu      sync.Mutex
			winners []string
			codes   = map[int]int{}
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				base := e.srv
				if i%2 == 1 {
					base = other
				}
				req, _ := http.NewRequest("PUT", base.URL+"/session", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				<-start
				res, err := base.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer res.Body.Close()
				var out struct {
					Token string `json:"token"`
					Code  string `json:"error"`
				}
				_ = json.NewDecoder(res.Body).Decode(&out)
				mu.Lock()
				defer mu.Unlock()
				codes[res.StatusCode]++
				switch {
				case res.StatusCode == 200:
					winners = append(winners, out.Token)
				case res.StatusCode != 401 || out.Code != "token_revoked" ||
					res.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"`:
					t.Errorf("a losing refresh: %d %q", res.StatusCode, out.Code)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: statuses %v; want exactly one 200", round, codes)
		}
		if code, _ := getStatus(t, other, winners[0]); code != 200 {
			t.Fatalf("round %d: the winning token: %d", round, code)
		}
		if code, reason := getStatus(t, e.srv, tok); code != 401 || reason != "token_revoked" {
			t.Fatalf("round %d: the refreshed token: %d %s", round, code, reason)
		}
	}
}

// Issue 15 point 4: a token whose iat is ahead of this replica's clock
// (issued by a replica whose clock is 2s ahead, within leeway) logs out
// everywhere here; a replica that never saw it refuses it afterwards.
func TestLogoutAllCoversTokenFromClockAhead(t *testing.T) {
	e := newEnv(t)
	ahead := e.otherTokens("tokengate", e.clock.Now().Add(2*time.Second))
	tok, claims, err := ahead.Issue("marco", "marco")
	if err != nil {
		t.Fatal(err)
	}
	if !claims.IssuedAt.After(e.clock.Now()) {
		t.Fatal("test setup: the token's iat is not ahead of the replica's clock")
	}
	if res := e.do("POST", "/user/logout_all", bearer(tok), ""); res.StatusCode != 204 {
		t.Fatalf("logout_all: %d %s", res.StatusCode, res.body)
	}
	other := e.replica(testclock.New(e.clock.Now()))
	if code, reason := getStatus(t, other, tok); code != 401 || reason != "token_revoked" {
		t.Fatalf("the token that logged out everywhere, on a replica that never saw it: %d %s", code, reason)
	}
	if code, _ := getStatus(t, e.srv, tok); code != 401 {
		t.Fatalf("the token that logged out everywhere, on the replica that did it: %d", code)
	}
	// The cutoff is the token's iat: once the clock passes it, new
	// tokens work again.
	e.clock.Advance(2*time.Second + time.Microsecond)
	if code, _ := getStatus(t, other, e.login("marco", marcoPassword)); code != 200 {
		t.Fatalf("a token issued after the cutoff: %d", code)
	}
}

// Issue 17 point 2 through HTTP: the clock stands still, so the token and
// its logout-all share one tick; a replica that never saw the token (its
// answer comes from the store) refuses it.
func TestLogoutAllSameTickOnFreshReplica(t *testing.T) {
	e := newEnv(t)
	tok := e.login("marco", marcoPassword)
	if res := e.do("POST", "/user/logout_all", bearer(tok), ""); res.StatusCode != 204 {
		t.Fatalf("logout_all: %d %s", res.StatusCode, res.body)
	}
	other := e.replica(e.clock)
	if code, reason := getStatus(t, other, tok); code != 401 || reason != "token_revoked" {
		t.Fatalf("same-tick token on a fresh replica: %d %s", code, reason)
	}
}

// A logout keeps the token revoked for its own lifetime (refresh window and
// leeway included) even when today's TTL is shorter than the one it was
// issued with.
func TestLogoutOutlivesLoweredTTL(t *testing.T) {
	e := newEnv(t, envConfig{refreshWindow: time.Minute})
	// The env's TTL is 1h; this token was issued under a 10h TTL.
	long := e.otherTokensTTL(10 * time.Hour)
	tok, _, err := long.Issue("marco", "marco")
	if err != nil {
		t.Fatal(err)
	}
	if res := e.do("POST", "/user/logout", bearer(tok), ""); res.StatusCode != 204 {
		t.Fatalf("logout: %d %s", res.StatusCode, res.body)
	}
	// Past exp, still inside the leeway (5s) and the refresh window (1m):
	// the token is still accepted by signature and claims alone.
	e.clock.Advance(10*time.Hour + 2*time.Second)
	other := e.replica(e.clock)
	if code, reason := getStatus(t, other, tok); code != 401 || reason != "token_revoked" {
		t.Fatalf("a logged-out token issued under a longer TTL, within leeway after exp: %d %s", code, reason)
	}
	e.clock.Advance(30 * time.Second)
	if res := e.do("PUT", "/session", bearer(tok), ""); res.StatusCode != 401 || res.apiErr().Code != "token_revoked" {
		t.Fatalf("refreshing a logged-out token issued under a longer TTL: %d %s", res.StatusCode, res.body)
	}
}

// otherTokensTTL is a Tokens sharing the env's key and clock with its own TTL.
func (e *env) otherTokensTTL(ttl time.Duration) *authn.Tokens {
	e.t.Helper()
	key, err := authn.LoadSigningKey(e.keyPath, "EdDSA")
	if err != nil {
		e.t.Fatal(err)
	}
	tk, err := authn.NewTokens(key, nil, authn.TokenOptions{Issuer: "tokengate", TTL: ttl, RefreshWindow: time.Minute, Leeway: 5 * time.Second, Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	return tk
}
