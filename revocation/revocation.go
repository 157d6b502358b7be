// Package revocation knows which tokens are dead: a Store records revoked
// token ids (jti, until the token's exp) and per-user cutoffs (logout-all:
// every token of the user issued at or before the cutoff is dead), and the
// Checker answers "is this token revoked?" through an LRU cache in front of
// the store. It knows nothing of JWTs or HTTP.
package revocation

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable wraps every store failure (network, disk, closed store):
// callers answer 503 and claim nothing.
var ErrUnavailable = errors.New("revocation: store unavailable")

// Status is what a store knows about one token and its user.
type Status struct {
	TokenRevoked bool      // the jti is revoked
	UserCutoff   time.Time // zero when the user has no cutoff
}

// Store keeps revocations. Every method returns only after the revocation is
// durable for that backend; failures wrap ErrUnavailable.
type Store interface {
	// RevokeToken records jti as revoked until exp (after which it may be forgotten).
	RevokeToken(ctx context.Context, jti string, exp time.Time) error
	// RevokeUser sets the user's cutoff to cutoff unless a later cutoff is
	// already stored (cutoffs only move forward), kept until `until`.
	RevokeUser(ctx context.Context, userID string, cutoff, until time.Time) error
	// Status answers both questions at once (one round trip for Redis).
	Status(ctx context.Context, jti, userID string) (Status, error)
	// Close releases the store's resources.
	Close() error
}
