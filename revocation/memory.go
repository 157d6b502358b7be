package revocation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// memorySweepEvery is how often a write also drops every expired entry.
const memorySweepEvery = time.Minute

var (
	errEmptyJTI  = errors.New("revocation: empty jti")
	errEmptyUser = errors.New("revocation: empty user id")
	errClosed    = fmt.Errorf("%w: store closed", ErrUnavailable)
)

// MemoryStore is a Store in process memory (tests, single process, no durability).
type MemoryStore struct {
	now func() time.Time

	mu        sync.Mutex
	tokens    map[string]int64 // jti -> exp (unix ns)
	users     map[string]userCutoff
	records   map[string]memoryRecord // Records; nil until the first
	longest   time.Duration           // NoteLifetime's maximum
	lastSweep int64
	closed    bool
}

// userCutoff is a user's "revoke all" cutoff and when it may be forgotten.
type userCutoff struct {
	cutoff, until int64 // unix ns
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore; now defaults to time.Now.
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{
		now:       now,
		tokens:    make(map[string]int64),
		users:     make(map[string]userCutoff),
		lastSweep: now().UnixNano(),
	}
}

// RevokeToken records jti as revoked until exp; an already expired token is a no-op.
func (s *MemoryStore) RevokeToken(_ context.Context, jti string, exp time.Time) error {
	if jti == "" {
		return errEmptyJTI
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	now := s.now().UnixNano()
	s.sweepLocked(now)
	if e := exp.UnixNano(); e > now && e > s.tokens[jti] {
		s.tokens[jti] = e
	}
	return nil
}

// RevokeTokenOnce records jti as revoked until exp and reports whether it
// was not revoked before, under the store's lock.
func (s *MemoryStore) RevokeTokenOnce(_ context.Context, jti string, exp time.Time) (bool, error) {
	if jti == "" {
		return false, errEmptyJTI
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errClosed
	}
	now := s.now().UnixNano()
	s.sweepLocked(now)
	e := exp.UnixNano()
	if e <= now {
		return false, nil
	}
	if old, ok := s.tokens[jti]; ok && old > now {
		s.tokens[jti] = max(old, e)
		return false, nil
	}
	s.tokens[jti] = e
	return true, nil
}

// NoteLifetime keeps the longest lifetime noted (for this process only).
func (s *MemoryStore) NoteLifetime(_ context.Context, d time.Duration) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed
	}
	s.longest = max(s.longest, d)
	return s.longest, nil
}

// RevokeUser moves the user's cutoff forward to cutoff (never back), kept until `until`.
func (s *MemoryStore) RevokeUser(_ context.Context, userID string, cutoff, until time.Time) error {
	if userID == "" {
		return errEmptyUser
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	now := s.now().UnixNano()
	s.sweepLocked(now)
	u := until.UnixNano()
	if u <= now {
		return nil
	}
	next := userCutoff{cutoff: cutoff.UnixNano(), until: u}
	if old, ok := s.users[userID]; ok && old.until > now {
		next = mergeCutoff(old, next)
	}
	s.users[userID] = next
	return nil
}

// Status answers both questions; expired entries count as absent.
func (s *MemoryStore) Status(_ context.Context, jti, userID string) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Status{}, errClosed
	}
	now := s.now().UnixNano()
	var st Status
	if exp, ok := s.tokens[jti]; ok {
		if exp > now {
			st.TokenRevoked = true
		} else {
			delete(s.tokens, jti)
		}
	}
	if u, ok := s.users[userID]; ok {
		if u.until > now {
			st.UserCutoff = time.Unix(0, u.cutoff)
		} else {
			delete(s.users, userID)
		}
	}
	return st, nil
}

// Ping fails only after Close.
func (s *MemoryStore) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	return nil
}

// Close drops everything; later calls fail with ErrUnavailable.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.tokens, s.users = nil, nil
	return nil
}

// len reports the entries held, expired or not (for tests).
func (s *MemoryStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens) + len(s.users)
}

func (s *MemoryStore) sweepLocked(now int64) {
	if now-s.lastSweep < int64(memorySweepEvery) {
		return
	}
	s.lastSweep = now
	for jti, exp := range s.tokens {
		if exp <= now {
			delete(s.tokens, jti)
		}
	}
	for id, u := range s.users {
		if u.until <= now {
			delete(s.users, id)
		}
	}
}

// mergeCutoff keeps the later cutoff and the later expiry of two live entries.
func mergeCutoff(a, b userCutoff) userCutoff {
	return userCutoff{cutoff: max(a.cutoff, b.cutoff), until: max(a.until, b.until)}
}
