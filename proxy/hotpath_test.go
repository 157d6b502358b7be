package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"tokengate/authn"
)

// TestStateContext checks the context that carries the request state: the
// state is found through contexts derived from it (ReverseProxy's and the
// Transport's), other values and cancellation still come from the parent.
func TestStateContext(t *testing.T) {
	type otherKey struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "parent's"))
	r := httptest.NewRequest("GET", "/", nil).WithContext(parent)
	st, r := withState(httptest.NewRecorder(), r)
	st.id = "the-id"
	st.setClaims(authn.Claims{Subject: "marco"})

	derived, stop := context.WithTimeout(r.Context(), time.Minute)
	defer stop()
	tests := []struct {
		name string
		ctx  context.Context
	}{
		{"the request's", r.Context()},
		{"derived", derived},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stateFrom(tt.ctx); got != st {
				t.Fatalf("stateFrom = %p, want %p", got, st)
			}
			if got := RequestIDFromContext(tt.ctx); got != "the-id" {
				t.Errorf("RequestIDFromContext = %q", got)
			}
			if c, ok := ClaimsFromContext(tt.ctx); !ok || c.Subject != "marco" {
				t.Errorf("ClaimsFromContext = %+v, %v", c, ok)
			}
			if got := tt.ctx.Value(otherKey{}); got != "parent's" {
				t.Errorf("parent's value = %v", got)
			}
		})
	}
	cancel()
	select {
	case <-derived.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling the parent did not reach a derived context")
	}
	if r.Context().Err() != context.Canceled {
		t.Errorf("Err = %v, want context.Canceled", r.Context().Err())
	}
	if stateFrom(context.Background()) != nil {
		t.Error("a context without state has one")
	}
}

// TestRequestIDsUnique makes ids from many goroutines at once: all distinct,
// all well formed, all with this process's prefix.
func TestRequestIDsUnique(t *testing.T) {
	const workers, each = 8, 500
	ids := make(chan string, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				ids <- new(requestState).newRequestID()
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	var prefix string
	for id := range ids {
		if len(id) != requestIDLen || !validRequestID(id) {
			t.Fatalf("malformed id %q", id)
		}
		if prefix == "" {
			prefix = id[:16]
		}
		if id[:16] != prefix {
			t.Fatalf("id %q does not share the process prefix %q", id, prefix)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
	}
}

// TestAllowedPathAllocations pins what the middleware chain allocates for
// an allowed request whose id tokengate makes: the request state (which
// also holds the context, the id and the header values) and the request
// copy WithContext makes. Nothing else.
func TestAllowedPathAllocations(t *testing.T) {
	next, req := authOnly(t)
	auth := req.Header["Authorization"]
	// One header map reused, as the id header is replaced in place.
	req.Header = http.Header{"Authorization": auth}
	w := &nopWriter{h: http.Header{}}
	n := testing.AllocsPerRun(200, func() {
		delete(req.Header, "X-Request-Id")
		next.ServeHTTP(w, req)
	})
	if n > 2 {
		t.Errorf("the allowed path allocates %v times per request, want <= 2", n)
	}
}
