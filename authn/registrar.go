package authn

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// UserCreator is a user store that can add users (POST /users).
type UserCreator interface {
	// CreateUser stores u and returns it as stored (an empty ID becomes the
	// Username). It returns ErrUserExists when the username or the id is
	// taken, decided atomically by the store, or ErrReadOnly.
	CreateUser(ctx context.Context, u User) (User, error)
}

// Registrar registers new users: policy, hash, store.
type Registrar struct {
	// DefaultGroups are the groups every registered user gets
	// (users.default_groups); nil: none. Set before the first Register;
	// names must pass CheckGroupName.
	DefaultGroups []string

	store  UserCreator
	policy UserPolicy
	hash   HashOptions
}

// NewRegistrar returns a Registrar that checks policy, hashes with hash and
// creates users in store. The policy's Algorithm is taken from hash.
func NewRegistrar(store UserCreator, policy UserPolicy, hash HashOptions) *Registrar {
	policy.Algorithm = hash.Algorithm
	return &Registrar{store: store, policy: policy, hash: hash}
}

// Register creates the user username with password and DefaultGroups; its
// id is the username.
// Errors wrap ErrInvalidUsername or ErrWeakPassword (as *PolicyError),
// ErrUserExists, ErrReadOnly, or a store failure. The returned User carries
// no PasswordHash, so it cannot be echoed by mistake.
func (r *Registrar) Register(ctx context.Context, username, password string) (User, error) {
	if err := r.policy.Check(username, password); err != nil {
		return User{}, err
	}
	hash, err := HashPassword(password, r.hash)
	if err != nil {
		if errors.Is(err, ErrWeakPassword) {
			return User{}, err
		}
		return User{}, fmt.Errorf("authn: register: hash password: %w", err)
	}
	u, err := r.store.CreateUser(ctx, User{ID: username, Username: username, PasswordHash: hash, Groups: slices.Clone(r.DefaultGroups)})
	if err != nil {
		if errors.Is(err, ErrUserExists) || errors.Is(err, ErrReadOnly) {
			return User{}, err
		}
		return User{}, fmt.Errorf("authn: register: %w", err)
	}
	u.PasswordHash = ""
	return u, nil
}
