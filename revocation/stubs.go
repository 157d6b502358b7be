package revocation

// STUBS: the exported API the other packages compile against. The
// revocation helper replaces these bodies with real files (memory.go,
// checker.go, ...) keeping the signatures, and deletes this file.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var errTODO = errors.New("revocation: not implemented")

// MemoryStore is a Store in process memory (tests, single process, no durability).
type MemoryStore struct{}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(now func() time.Time) *MemoryStore { return &MemoryStore{} }

// CheckerOptions configure a Checker. Zero values get the documented defaults.
type CheckerOptions struct {
	CacheSize     int           // LRU entries; default 100000
	MaxStaleness  time.Duration // longest a cached "not revoked" answer is trusted; default 5s
	UserCutoffTTL time.Duration // how long a user cutoff is kept (longest token lifetime)
	Now           func() time.Time
	Logger        *slog.Logger
	Registerer    prometheus.Registerer // optional
}

// Checker answers revocation questions through an LRU cache.
type Checker struct{}

// NewChecker wraps store.
func NewChecker(store Store, opts CheckerOptions) (*Checker, error) { return nil, errTODO }

// Revoked reports whether the token (jti, issued at iat to userID) is dead:
// its jti is revoked, or iat is at or before the user's cutoff. Errors wrap
// ErrUnavailable; cached "revoked" answers never error.
func (c *Checker) Revoked(ctx context.Context, jti, userID string, iat time.Time) (bool, error) {
	return false, errTODO
}

// RevokeToken durably revokes jti until exp.
func (c *Checker) RevokeToken(ctx context.Context, jti string, exp time.Time) error { return errTODO }

// RevokeUser durably kills every token of userID issued at or before cutoff.
func (c *Checker) RevokeUser(ctx context.Context, userID string, cutoff time.Time) error {
	return errTODO
}

// Ready reports whether the store (and its subscription, if any) is usable.
func (c *Checker) Ready(ctx context.Context) error { return errTODO }

// Close stops background work; it does not close the store.
func (c *Checker) Close() error { return nil }
