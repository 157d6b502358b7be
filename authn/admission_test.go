package authn

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A token this process did not issue (another replica's, or one minted
// elsewhere with the shared key) is cached on its second verification: the
// first costs no cache insert.
func TestCacheAdmitsOnSecondSighting(t *testing.T) {
	clock := newTestClock()
	key := testKey(t, AlgHS256, 0)
	reg := prometheus.NewRegistry()
	tk := newTestTokens(t, key, nil, TokenOptions{Now: clock.Now, Registerer: reg})
	other := newTestTokens(t, key, nil, TokenOptions{Now: clock.Now})
	tok, _, err := other.Issue("u", "u")
	if err != nil {
		t.Fatal(err)
	}

	for i, want := range []struct {
		cached    int
		hit, miss float64
	}{{0, 0, 1}, {1, 0, 2}, {1, 1, 2}} {
		if _, err := tk.Verify(tok); err != nil {
			t.Fatalf("verify %d: %v", i+1, err)
		}
		hit, miss := cacheCounts(t, reg)
		if n := tk.cache.len(); n != want.cached || hit != want.hit || miss != want.miss {
			t.Errorf("after verify %d: %d cached, %v hits, %v misses; want %d, %v, %v",
				i+1, n, hit, miss, want.cached, want.hit, want.miss)
		}
	}

	// A token issued here is remembered when issued: cached on first use.
	own, _, _ := tk.Issue("v", "v")
	if _, err := tk.Verify(own); err != nil {
		t.Fatal(err)
	}
	if n := tk.cache.len(); n != 2 {
		t.Errorf("own token not cached on its first use: %d entries", n)
	}
}

// A flood of tokens that each come once (far more than the cache holds)
// does not evict a token that keeps coming back.
func TestCacheOneOffTokensDoNotEvict(t *testing.T) {
	clock := newTestClock()
	key := testKey(t, AlgHS256, 0)
	tk := newTestTokens(t, key, nil, TokenOptions{CacheSize: 64, Now: clock.Now})
	other := newTestTokens(t, key, nil, TokenOptions{Now: clock.Now, CacheSize: -1})
	kept, _, _ := tk.Issue("kept", "kept")
	if _, err := tk.Verify(kept); err != nil {
		t.Fatal(err)
	}
	for range 640 {
		tok, _, _ := other.Issue("once", "once")
		if _, err := tk.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := tk.cache.get(hashToken(kept), tk.keys.Load().gen); !ok {
		t.Error("640 one-off tokens evicted the reused token from a 64-entry cache")
	}
	if n := tk.cache.len(); n != 1 {
		t.Errorf("one-off tokens were cached: %d entries, want 1", n)
	}
}

func TestDoorkeeperSizes(t *testing.T) {
	for _, c := range []struct{ n, slots int }{{1, 1024}, {1024, 1024}, {1025, 2048}, {10000, 16384}} {
		if got := len(newDoorkeeper(c.n).slots); got != c.slots {
			t.Errorf("newDoorkeeper(%d): %d slots, want %d", c.n, got, c.slots)
		}
	}
	d := newDoorkeeper(1)
	var h tokenHash // all zero: the fingerprint must still not read as an empty slot
	if d.admit(h) {
		t.Error("an unseen all-zero hash was admitted")
	}
	if !d.admit(h) {
		t.Error("a hash seen once was not admitted the second time")
	}
}
