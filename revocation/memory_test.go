package revocation

import (
	"context"
	"testing"
	"time"
)

func TestMemoryStoreSweepsExpiredEntriesLazily(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s := NewMemoryStore(clock.Now)
	now := clock.Now()
	for i, err := range []error{
		s.RevokeToken(ctx, "short", now.Add(time.Second)),
		s.RevokeUser(ctx, "short", now, now.Add(time.Second)),
		s.RevokeToken(ctx, "long", now.Add(time.Hour)),
	} {
		if err != nil {
			t.Fatal(i, err)
		}
	}
	clock.Advance(memorySweepEvery)
	if n := s.len(); n != 3 {
		t.Fatalf("%d entries before the next write, want 3 (sweeping is lazy)", n)
	}
	if err := s.RevokeToken(ctx, "new", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := s.len(); n != 2 {
		t.Fatalf("%d entries after a write past the sweep interval, want 2 (long, new)", n)
	}
}
