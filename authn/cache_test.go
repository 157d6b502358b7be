package authn

import (
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func cacheCounts(t *testing.T, reg *prometheus.Registry) (hit, miss float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != cacheMetricName {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch m.GetLabel()[0].GetValue() {
			case "hit":
				hit = m.GetCounter().GetValue()
			case "miss":
				miss = m.GetCounter().GetValue()
			}
		}
	}
	return hit, miss
}

func TestCacheHitSkipsParsing(t *testing.T) {
	clock := newTestClock()
	reg := prometheus.NewRegistry()
	key := testKey(t, AlgEdDSA, 0)
	tk := newTestTokens(t, key, nil, TokenOptions{TTL: time.Minute, Leeway: 5 * time.Second, Now: clock.Now, Registerer: reg})
	tok, issued, _ := tk.Issue("u", "name")

	if _, err := tk.Verify(tok); err != nil {
		t.Fatal(err)
	}
	if hit, miss := cacheCounts(t, reg); hit != 0 || miss != 1 {
		t.Fatalf("after first Verify: hit %v miss %v, want 0/1", hit, miss)
	}
	c, err := tk.Verify(tok)
	if err != nil || c != issued {
		t.Fatalf("cached Verify = %+v, %v", c, err)
	}
	if hit, miss := cacheCounts(t, reg); hit != 1 || miss != 1 {
		t.Fatalf("after second Verify: hit %v miss %v, want 1/1", hit, miss)
	}

	// The cache keys on the token's hash and never holds the token itself.
	var sum = hashToken(tok)
	if _, ok := tk.cache.get(sum, tk.keys.Load().gen); !ok {
		t.Fatal("token not cached under its SHA-256")
	}

	// A hit still honours exp: after exp+leeway the cached entry is refused
	// and dropped.
	clock.Advance(time.Minute + 5*time.Second)
	if _, err := tk.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("cached token after exp: %v, want ErrExpired", err)
	}
	if n := tk.cache.len(); n != 0 {
		t.Errorf("expired entry still cached (%d entries)", n)
	}
}

func TestCacheNeverServesAfterExp(t *testing.T) {
	clock := newTestClock()
	tk := newTestTokens(t, testKey(t, AlgEdDSA, 0), nil, TokenOptions{TTL: time.Minute, Leeway: 5 * time.Second, Now: clock.Now})
	tok, _, _ := tk.Issue("u", "u")
	tk.Verify(tok)
	// Between exp and exp+leeway the token is still valid, as without a
	// cache, but the answer comes from a full check, not the entry.
	clock.Advance(time.Minute + 2*time.Second)
	if _, err := tk.Verify(tok); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	if n := tk.cache.len(); n != 0 {
		t.Errorf("a token past exp was (re)cached: %d entries", n)
	}
}

func TestCacheEntryFromOldKeysNotServed(t *testing.T) {
	// An entry verified under an older key generation is ignored even if it
	// slipped into the cache after SetKeys purged it.
	clock := newTestClock()
	oldKey, newKey := testKey(t, AlgEdDSA, 0), testKey(t, AlgEdDSA, 1)
	tk := newTestTokens(t, oldKey, nil, TokenOptions{Now: clock.Now})
	tok, claims, _ := tk.Issue("u", "u")
	gen := tk.keys.Load().gen
	if err := tk.SetKeys(newKey, nil); err != nil {
		t.Fatal(err)
	}
	tk.cache.add(hashToken(tok), gen, claims) // a late insert by a concurrent Verify
	if _, err := tk.Verify(tok); !errors.Is(err, ErrInvalid) {
		t.Errorf("stale-generation entry served: %v", err)
	}
}

func TestCacheDisabledAndBounded(t *testing.T) {
	clock := newTestClock()
	reg := prometheus.NewRegistry()
	tk := newTestTokens(t, testKey(t, AlgHS256, 0), nil, TokenOptions{CacheSize: -1, Now: clock.Now, Registerer: reg})
	tok, _, _ := tk.Issue("u", "u")
	for range 3 {
		if _, err := tk.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if tk.cache != nil {
		t.Error("CacheSize -1 still made a cache")
	}
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Errorf("disabled cache registered %d metrics", len(mfs))
	}

	small := newTestTokens(t, testKey(t, AlgHS256, 0), nil, TokenOptions{CacheSize: 3, Now: clock.Now})
	for range 10 {
		tok, _, _ := small.Issue("u", "u")
		small.Verify(tok)
	}
	if n := small.cache.len(); n != 3 {
		t.Errorf("cache of size 3 holds %d entries", n)
	}
	big := newTestTokens(t, testKey(t, AlgHS256, 0), nil, TokenOptions{Now: clock.Now})
	if len(big.cache.shards) != cacheShards {
		t.Errorf("default cache has %d shards, want %d", len(big.cache.shards), cacheShards)
	}
}

func TestCacheMetricRegisteredTwice(t *testing.T) {
	// A second Tokens on the same registry (a test harness, a re-init)
	// shares the counter instead of failing.
	reg := prometheus.NewRegistry()
	k := testKey(t, AlgEdDSA, 0)
	newTestTokens(t, k, nil, TokenOptions{Registerer: reg})
	newTestTokens(t, k, nil, TokenOptions{Registerer: reg})
}

func TestVerifyCachedAllocations(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts are meaningless under -race or -cover")
	}
	clock := newTestClock()
	tk := newTestTokens(t, testKey(t, AlgEdDSA, 0), nil, TokenOptions{Now: clock.Now, Registerer: prometheus.NewRegistry()})
	tok, _, _ := tk.Issue(strings.Repeat("s", 40), "name")
	tk.Verify(tok)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := tk.Verify(tok); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("cached Verify allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	tk := newTestTokens(b, testKey(b, AlgEdDSA, 0), nil, TokenOptions{Registerer: prometheus.NewRegistry()})
	tok, _, _ := tk.Issue("user-1234", "user")
	tk.Verify(tok)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := tk.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerifyUncached(b *testing.B) {
	for _, alg := range allAlgorithms {
		b.Run(alg, func(b *testing.B) {
			tk := newTestTokens(b, testKey(b, alg, 0), nil, TokenOptions{CacheSize: -1})
			tok, _, _ := tk.Issue("user-1234", "user")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tk.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkIssue(b *testing.B) {
	for _, alg := range allAlgorithms {
		b.Run(alg, func(b *testing.B) {
			tk := newTestTokens(b, testKey(b, alg, 0), nil, TokenOptions{})
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := tk.Issue("user-1234", "user"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The cache keeps claims packed; what it gives back must be exactly what
// was verified, and what it cannot give back exactly it does not keep.
func TestCachedClaimsRoundTrip(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)
	cases := []struct {
		name  string
		c     Claims
		packs bool
	}{
		{"as issued", Claims{Subject: "u-1", Username: "marco", ID: "q3Z8mJ0bVxWc1n2Yk5dTgA", IssuedAt: at, NotBefore: at, ExpiresAt: at.Add(time.Hour)}, true},
		{"name is the subject", Claims{Subject: "marco", Username: "marco", ID: "j", IssuedAt: at, NotBefore: at, ExpiresAt: at.Add(time.Hour)}, true},
		{"no name", Claims{Subject: "s", ID: "j", ExpiresAt: at}, true},
		{"no iat and nbf", Claims{Subject: "s", Username: "n", ID: "j", ExpiresAt: at}, true},
		{"name is a prefix of the subject", Claims{Subject: "marco", Username: "mar", ID: "co", ExpiresAt: at}, true},
		{"before 1970, far future", Claims{Subject: "s", ID: "j", IssuedAt: time.Unix(-5, 7).UTC(), ExpiresAt: time.Unix(1e11, 999999999).UTC()}, true},
		{"not UTC", Claims{Subject: "s", ID: "j", ExpiresAt: at.In(time.FixedZone("x", 3600))}, false},
		{"monotonic reading", Claims{Subject: "s", ID: "j", ExpiresAt: time.Now().Add(time.Hour)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := packClaims(7, tc.c)
			if ok != tc.packs {
				t.Fatalf("packs = %v, want %v", ok, tc.packs)
			}
			if !ok {
				return
			}
			if got := p.claims(); got != tc.c || p.gen != 7 {
				t.Fatalf("unpacked %+v (gen %d), want %+v", got, p.gen, tc.c)
			}
			if tc.c.Username == tc.c.Subject && len(p.text) != len(tc.c.Subject)+len(tc.c.ID) {
				t.Errorf("a name equal to the subject is stored twice: %q", p.text)
			}
		})
	}

	// A time the cache cannot keep exactly is not cached at all.
	cache, err := newTokenCache(4, nil)
	if err != nil {
		t.Fatal(err)
	}
	cache.add(tokenHash{1}, 0, cases[len(cases)-2].c)
	if cache.len() != 0 {
		t.Error("claims that do not pack were cached")
	}
}

// A token whose name is its subject comes back from the cache unchanged.
func TestCacheHitNameIsSubject(t *testing.T) {
	clock := newTestClock()
	tk := newTestTokens(t, testKey(t, AlgHS256, 0), nil, TokenOptions{Now: clock.Now})
	tok, issued, _ := tk.Issue("marco", "marco")
	for i := range 2 {
		c, err := tk.Verify(tok)
		if err != nil || c != issued {
			t.Fatalf("Verify %d = %+v, %v; want %+v", i+1, c, err, issued)
		}
	}
	if tk.cache.len() != 1 {
		t.Fatal("not cached")
	}
}

// BenchmarkTokenCacheEntry reports the heap one verified-token cache entry
// holds (B/entry): the default 10,000 distinct tokens verified into an
// empty cache. Run it with -benchtime 1x; it is a memory figure, not a
// timing.
func BenchmarkTokenCacheEntry(b *testing.B) {
	const n = DefaultTokenCacheSize
	key := testKey(b, AlgHS256, 0)
	issuer := newTestTokens(b, key, nil, TokenOptions{CacheSize: -1})
	toks := make([]string, n)
	for i := range toks {
		toks[i], _, _ = issuer.Issue("user-"+strconv.Itoa(i%1000), "user")
	}
	for b.Loop() {
		tk := newTestTokens(b, key, nil, TokenOptions{CacheSize: n})
		before := heapAlloc()
		for _, tok := range toks {
			for range 2 { // the cache admits a token on its second sighting
				if _, err := tk.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		}
		// The shards fill unevenly: a few entries are evicted before the
		// cache as a whole is full. Divide by what is held.
		held := tk.cache.len()
		if held < n*9/10 {
			b.Fatalf("%d tokens cached, want about %d", held, n)
		}
		b.ReportMetric(float64(heapAlloc()-before)/float64(held), "B/entry")
		runtime.KeepAlive(tk)
	}
}

func heapAlloc() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
