package revocation

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"math"
	"testing"
	"time"
)

// oneByteApart is id and ids that differ from it in one byte (every
// position), one byte shorter or longer: what a key that dropped part of
// the id would confuse with it.
func oneByteApart(id string) []string {
	out := []string{id[:len(id)-1], id + "A", id + "\x00"}
	for i := range len(id) {
		b := []byte(id)
		b[i] ^= 0x01
		out = append(out, string(b))
	}
	return out
}

// tokengateJTI is a jti as authn issues it.
const tokengateJTI = "q3Z8mJ0bVxWc1n2Yk5dTgA"

// A jti's cached revocation must not refuse its neighbours, and a
// neighbour's cached "not revoked" must not let it through.
func TestCheckerKeyKeepsEveryByteOfAJTI(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	iat := clock.Now()

	t.Run("revoked does not spread", func(t *testing.T) {
		store := NewMemoryStore(clock.Now)
		c := newChecker(t, store, CheckerOptions{Now: clock.Now, MaxStaleness: time.Hour})
		if err := c.RevokeToken(ctx, tokengateJTI, clock.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		for _, other := range oneByteApart(tokengateJTI) {
			for i := range 2 { // the store's answer, then the cached one
				if mustRevoked(t, c, other, "u", iat) {
					t.Fatalf("%q (call %d) refused: %q is revoked", other, i+1, tokengateJTI)
				}
			}
		}
		if !mustRevoked(t, c, tokengateJTI, "u", iat) {
			t.Fatal("the revoked jti passes")
		}
	})

	t.Run("not revoked does not spread", func(t *testing.T) {
		store := NewMemoryStore(clock.Now)
		c := newChecker(t, store, CheckerOptions{Now: clock.Now, MaxStaleness: time.Hour})
		for _, other := range oneByteApart(tokengateJTI) {
			if mustRevoked(t, c, other, "u", iat) {
				t.Fatalf("%q revoked in an empty store", other)
			}
		}
		// Behind the Checker's back: only the store knows.
		if err := store.RevokeToken(ctx, tokengateJTI, clock.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if !mustRevoked(t, c, tokengateJTI, "u", iat) {
			t.Fatal("a neighbour's cached \"not revoked\" answered for a revoked jti")
		}
	})
}

// The same for user ids and their cutoffs.
func TestCheckerKeyKeepsEveryByteOfAUserID(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	iat := clock.Now().Add(-time.Minute).Truncate(time.Microsecond)
	const user = "marco.rossi@example.com"

	store := NewMemoryStore(clock.Now)
	c := newChecker(t, store, CheckerOptions{Now: clock.Now, MaxStaleness: time.Hour})
	for i, other := range oneByteApart(user) {
		if mustRevoked(t, c, "j"+string(rune('a'+i)), other, iat) {
			t.Fatalf("user %q revoked in an empty store", other)
		}
	}
	if err := store.RevokeUser(ctx, user, clock.Now(), clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !mustRevoked(t, c, "fresh-jti", user, iat) {
		t.Fatal("a neighbour's cached \"no cutoff\" answered for a user with a cutoff")
	}
	for i, other := range oneByteApart(user) {
		if mustRevoked(t, c, "k"+string(rune('a'+i)), other, iat) {
			t.Fatalf("user %q refused: %q has a cutoff", other, user)
		}
	}
}

// A jti and a user id with the same text are different entries.
func TestCheckerKeySeparatesJTIsFromUserIDs(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	c := newChecker(t, NewMemoryStore(clock.Now), CheckerOptions{Now: clock.Now, MaxStaleness: time.Hour})
	iat := clock.Now().Add(-time.Minute)
	if err := c.RevokeToken(ctx, "same", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeUser(ctx, "both", clock.Now()); err != nil {
		t.Fatal(err)
	}
	if mustRevoked(t, c, "other", "same", iat) {
		t.Error("a user whose id is a revoked jti is refused")
	}
	if mustRevoked(t, c, "both", "someone", iat) {
		t.Error("a jti that is a revoked user's id is refused")
	}
	if !mustRevoked(t, c, "same", "someone", iat) || !mustRevoked(t, c, "x", "both", iat) {
		t.Error("the revocations themselves are lost")
	}
}

func TestCacheKeys(t *testing.T) {
	k := newKeyer()
	seen := make(map[cacheKey]string)
	add := func(kind entryKind, id string) {
		t.Helper()
		key := k.key(kind, id)
		if key.kind() != kind {
			t.Fatalf("key of %q says kind %d, want %d", id, key.kind(), kind)
		}
		if key != k.key(kind, id) {
			t.Fatalf("key of %q is not stable", id)
		}
		name := string(rune('0'+kind)) + ":" + id
		if prev, dup := seen[key]; dup && prev != name {
			t.Fatalf("%q and %q share a key", prev, name)
		}
		seen[key] = name
	}
	raw := make([]byte, 16)
	for range 50_000 {
		_, _ = rand.Read(raw)
		id := base64.RawURLEncoding.EncodeToString(raw)
		add(kindToken, id)
		add(kindUser, id)
	}
	for _, id := range oneByteApart(tokengateJTI) {
		add(kindToken, id)
		add(kindUser, id)
	}
	add(kindToken, "")
	add(kindUser, "")

	// Seeds are random per Checker: nobody can compute a key in advance.
	if other := newKeyer(); other.key(kindToken, tokengateJTI) == k.key(kindToken, tokengateJTI) {
		t.Error("two keyers made the same key: the seeds are not random")
	}
}

func TestCutoffMark(t *testing.T) {
	for _, cutoff := range []int64{0, 1, -1, 1_700_000_000_000_000_000, math.MaxInt64, math.MinInt64 + 1} {
		got, ok := cacheEntry{mark: cutoffMark(cutoff)}.cutoff()
		if !ok || got != cutoff {
			t.Errorf("cutoff %d read back as %d, %v", cutoff, got, ok)
		}
	}
	// The one value that cannot be kept kills the same tokens as the one kept.
	if got, ok := (cacheEntry{mark: cutoffMark(math.MinInt64)}).cutoff(); !ok || got != math.MinInt64+1 {
		t.Errorf("cutoff MinInt64 read back as %d, %v", got, ok)
	}
	if _, ok := (cacheEntry{}).cutoff(); ok {
		t.Error("the zero entry has a cutoff")
	}
	// A cutoff at the Unix epoch is a cutoff, not "none".
	clock := newFakeClock()
	c := newChecker(t, NewMemoryStore(clock.Now), CheckerOptions{Now: clock.Now, MaxStaleness: time.Hour})
	c.mergeUser("epoch", clock.Now().UnixNano(), true, 0)
	if !mustRevoked(t, c, "j", "epoch", time.Unix(0, 0).Add(-time.Microsecond)) {
		t.Error("a cutoff at unix 0 is taken for no cutoff")
	}
}
