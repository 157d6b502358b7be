package authn

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// wantMetrics fails the test unless g exposes exactly expected for names.
func wantMetrics(t *testing.T, g prometheus.Gatherer, expected string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(g, strings.NewReader(expected), names...); err != nil {
		t.Errorf("%v:\n%v", names, err)
	}
}

const helpTokenCache = "# HELP tokengate_token_cache_requests_total Verified-token cache lookups by result (hit or miss).\n# TYPE tokengate_token_cache_requests_total counter\n"

func TestTestutilTokenCacheRequests(t *testing.T) {
	clock := newTestClock()
	reg := prometheus.NewRegistry()
	key := testKey(t, AlgEdDSA, 0)
	tk := newTestTokens(t, key, nil, TokenOptions{TTL: time.Minute, Leeway: time.Second, Now: clock.Now, Registerer: reg})

	// Both series exist before the first lookup.
	wantMetrics(t, reg, helpTokenCache+`
tokengate_token_cache_requests_total{result="hit"} 0
tokengate_token_cache_requests_total{result="miss"} 0
`, cacheMetricName)

	tok, _, err := tk.Issue("u", "name")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name, token string
		wantErr     error
		hit, miss   float64 // totals after the step
	}{
		{"first use", tok, nil, 0, 1},
		{"again", tok, nil, 1, 1},
		{"and again", tok, nil, 2, 1},
		{"garbage is a miss", "not.a.jwt", ErrMalformed, 2, 2},
		{"garbage is never cached", "not.a.jwt", ErrMalformed, 2, 3},
		{"over the size limit: no lookup", strings.Repeat("a", MaxTokenBytes+1), ErrMalformed, 2, 3},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if _, err := tk.Verify(s.token); !errors.Is(err, s.wantErr) {
				t.Fatalf("Verify: %v, want %v", err, s.wantErr)
			}
			if hit, miss := testutil.ToFloat64(tk.cache.hit), testutil.ToFloat64(tk.cache.miss); hit != s.hit || miss != s.miss {
				t.Fatalf("hit %v miss %v, want %v and %v", hit, miss, s.hit, s.miss)
			}
		})
	}

	// New keys: the old entry does not count as a hit.
	if err := tk.SetKeys(key, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Verify(tok); err != nil {
		t.Fatal(err)
	}
	// Past exp: the entry is found (a hit) but not served.
	clock.Advance(2 * time.Minute)
	if _, err := tk.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	wantMetrics(t, reg, helpTokenCache+`
tokengate_token_cache_requests_total{result="hit"} 3
tokengate_token_cache_requests_total{result="miss"} 4
`, cacheMetricName)

	// A second Tokens on the same registry adds to the same two series.
	other := newTestTokens(t, key, nil, TokenOptions{Now: clock.Now, Registerer: reg})
	fresh, _, _ := other.Issue("v", "v")
	other.Verify(fresh)
	wantMetrics(t, reg, helpTokenCache+`
tokengate_token_cache_requests_total{result="hit"} 3
tokengate_token_cache_requests_total{result="miss"} 5
`, cacheMetricName)
}

func TestTestutilUsersReloads(t *testing.T) {
	const help = "# HELP tokengate_users_reloads_total Users file reloads by result (success or error).\n# TYPE tokengate_users_reloads_total counter\n"
	path := writeFile(t, usersYAML(userEntry("a", marcoHash, "")))
	reg := prometheus.NewRegistry()
	f, err := LoadFileUsers(path, FileUsersOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	// The initial load is not a reload.
	wantMetrics(t, reg, help+`
tokengate_users_reloads_total{result="success"} 0
tokengate_users_reloads_total{result="error"} 0
`, "tokengate_users_reloads_total")

	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("users: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if ok, bad := testutil.ToFloat64(f.reloadOK), testutil.ToFloat64(f.reloadErr); ok != 1 || bad != 1 {
		t.Fatalf("after Reload: success %v error %v, want 1 and 1", ok, bad)
	}

	// Watch counts too: a good version, then a broken one (counted once,
	// however many polls see it).
	watch(t, f)
	replaceFile(t, path, usersYAML(userEntry("b", marcoHash, "")), time.Now())
	waitFor(t, "user b", func() bool { return hasUser(f, "b") })
	replaceFile(t, path, usersYAML(userEntry("c", "", "")), time.Now())
	waitFor(t, "the broken version to be counted", func() bool { return testutil.ToFloat64(f.reloadErr) == 2 })
	time.Sleep(50 * time.Millisecond) // several more polls of the same broken file
	wantMetrics(t, reg, help+`
tokengate_users_reloads_total{result="success"} 2
tokengate_users_reloads_total{result="error"} 2
`, "tokengate_users_reloads_total")
}
