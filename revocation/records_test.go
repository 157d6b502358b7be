package revocation

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Records on every backend: put, read from another replica's handle,
// replace, AddRecord's one winner among concurrent callers, expiry.
func TestRecords(t *testing.T) {
	ctx := context.Background()
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			s, replica, clock := b.open(t)
			rs, other := s.(Records), replica().(Records)
			if _, found, err := other.GetRecord(ctx, "u:alice"); err != nil || found {
				t.Fatalf("empty store: found %v, %v", found, err)
			}
			if err := rs.PutRecord(ctx, "u:alice", []byte("ops,finance"), clock.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if v, found, err := other.GetRecord(ctx, "u:alice"); err != nil || !found || string(v) != "ops,finance" {
				t.Fatalf("from the other replica: %q %v %v", v, found, err)
			}
			if err := other.PutRecord(ctx, "u:alice", []byte("ops"), clock.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if v, _, _ := rs.GetRecord(ctx, "u:alice"); string(v) != "ops" {
				t.Fatalf("after a replace: %q", v)
			}

			var winners atomic.Int32
			var wg sync.WaitGroup
			for i := range 8 {
				h := rs
				if i%2 == 1 {
					h = replica().(Records)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					first, err := h.AddRecord(ctx, "lock:alice", []byte("x"), clock.Now().Add(time.Hour))
					if err != nil {
						t.Error(err)
					}
					if first {
						winners.Add(1)
					}
				}()
			}
			wg.Wait()
			if n := winners.Load(); n != 1 {
				t.Fatalf("AddRecord: %d winners, want 1", n)
			}

			if err := rs.PutRecord(ctx, "short", []byte("v"), clock.Now().Add(1500*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if first, err := rs.AddRecord(ctx, "short", []byte("w"), clock.Now().Add(time.Hour)); err != nil || first {
				t.Fatalf("AddRecord over a live value: %v %v", first, err)
			}
			clock.Advance(1600 * time.Millisecond)
			if _, found, err := other.GetRecord(ctx, "short"); err != nil || found {
				t.Fatalf("expired record: found %v, %v", found, err)
			}
			if first, err := rs.AddRecord(ctx, "short", []byte("w"), clock.Now().Add(time.Hour)); err != nil || !first {
				t.Fatalf("AddRecord after expiry: %v %v", first, err)
			}
		})
	}
}

// bolt's sweep drops expired records too.
func TestBoltSweepsRecords(t *testing.T) {
	clock := newFakeClock()
	s, err := OpenBoltStore(t.TempDir()+"/r.db", BoltOptions{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	_ = s.PutRecord(ctx, "a", []byte("1"), clock.Now().Add(time.Minute))
	_ = s.PutRecord(ctx, "b", []byte("2"), clock.Now().Add(time.Hour))
	clock.Advance(2 * time.Minute)
	if n, err := s.sweep(); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if _, found, _ := s.GetRecord(ctx, "b"); !found {
		t.Fatal("the live record was swept")
	}
}
