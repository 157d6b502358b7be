// Package revocation knows which tokens are dead: a Store records revoked
// token ids (jti, until the token's exp) and per-user cutoffs (logout-all:
// every token of the user from a sign-in at or before the cutoff is dead,
// renewals and refreshes of it included), and the
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
	// RevokeTokenOnce is RevokeToken that also says whether this call is the
	// one that revoked jti: of any number of concurrent calls for one jti,
	// from any replica, exactly one gets first == true (atomically in the
	// backend: under a lock, in one bolt transaction, SET NX in Redis). A
	// token already past exp reports false: there is nothing left to claim.
	RevokeTokenOnce(ctx context.Context, jti string, exp time.Time) (first bool, err error)
	// RevokeUser sets the user's cutoff to cutoff unless a later cutoff is
	// already stored (cutoffs only move forward), kept until `until`.
	RevokeUser(ctx context.Context, userID string, cutoff, until time.Time) error
	// NoteLifetime records d as a token lifetime in use and returns the
	// longest lifetime ever noted in this store (d included). The maximum
	// only grows and is kept durably, without expiry: a cutoff must outlive
	// tokens issued under an earlier, longer lifetime.
	NoteLifetime(ctx context.Context, d time.Duration) (longest time.Duration, err error)
	// Status answers both questions at once (one round trip for Redis).
	Status(ctx context.Context, jti, userID string) (Status, error)
	// Close releases the store's resources.
	Close() error
}
