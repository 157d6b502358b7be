package authn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	boltUsersBucket = []byte("users")    // username -> JSON boltUser
	boltIDsBucket   = []byte("user_ids") // id -> username, keeps ids unique
)

// BoltUsersOptions configure a bolt user store.
type BoltUsersOptions struct {
	// LockTimeout is how long OpenBoltUsers waits for a file another process
	// holds before failing; default 1s.
	LockTimeout time.Duration
}

// BoltUsers is a writable UserStore in one bbolt file. bbolt allows one
// process per file, so it suits a single replica; use postgres to share.
type BoltUsers struct {
	db *bolt.DB
}

var (
	_ UserStore   = (*BoltUsers)(nil)
	_ UserCreator = (*BoltUsers)(nil)
)

type boltUser struct {
	ID           string `json:"id"`
	Username     string `json:"username"`
	PasswordHash string `json:"password_hash"`
}

// OpenBoltUsers opens (creating when absent, mode 0600 in a 0700 directory)
// the user database at path. A file held by another process is an error
// after opts.LockTimeout, never a hang.
func OpenBoltUsers(path string, opts BoltUsersOptions) (*BoltUsers, error) {
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("authn: users db: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("authn: users db %s is in use by another process (lock not acquired within %s)", path, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("authn: open users db %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{boltUsersBucket, boltIDsBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("authn: init users db %s: %w", path, err)
	}
	return &BoltUsers{db: db}, nil
}

// LookupUser implements UserStore.
func (b *BoltUsers) LookupUser(ctx context.Context, username string) (User, error) {
	var u User
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(boltUsersBucket).Get([]byte(username))
		if v == nil {
			return ErrUserNotFound
		}
		var bu boltUser
		if err := json.Unmarshal(v, &bu); err != nil {
			return fmt.Errorf("authn: users db: corrupt record: %w", err)
		}
		u = User(bu)
		return nil
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// LookupUserByID finds the user whose id (the token's sub) is id.
func (b *BoltUsers) LookupUserByID(ctx context.Context, id string) (User, error) {
	var name []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		name = bytes.Clone(tx.Bucket(boltIDsBucket).Get([]byte(id)))
		return nil
	})
	if err != nil {
		return User{}, fmt.Errorf("authn: users db: lookup by id: %w", err)
	}
	if name == nil {
		return User{}, ErrUserNotFound
	}
	return b.LookupUser(ctx, string(name))
}

// CreateUser implements UserCreator. Both uniqueness checks and the writes
// happen in one bbolt transaction (bbolt serialises writers), and the
// commit fsyncs before CreateUser returns.
func (b *BoltUsers) CreateUser(ctx context.Context, u User) (User, error) {
	u, err := normalizeNewUser(u)
	if err != nil {
		return User{}, err
	}
	if err := ctx.Err(); err != nil {
		return User{}, err
	}
	v, err := json.Marshal(boltUser(u))
	if err != nil {
		return User{}, err
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		users, ids := tx.Bucket(boltUsersBucket), tx.Bucket(boltIDsBucket)
		if users.Get([]byte(u.Username)) != nil || ids.Get([]byte(u.ID)) != nil {
			return ErrUserExists
		}
		if err := users.Put([]byte(u.Username), v); err != nil {
			return err
		}
		return ids.Put([]byte(u.ID), []byte(u.Username))
	})
	if err != nil {
		if errors.Is(err, ErrUserExists) {
			return User{}, err
		}
		return User{}, fmt.Errorf("authn: users db: create user: %w", err)
	}
	return u, nil
}

// Ping reports whether the database is open and readable (for /readyz).
func (b *BoltUsers) Ping(ctx context.Context) error {
	return b.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(boltUsersBucket) == nil {
			return errors.New("authn: users db: users bucket missing")
		}
		return nil
	})
}

// Close releases the file (and its lock).
func (b *BoltUsers) Close() error { return b.db.Close() }

// normalizeNewUser defaults the id to the username and refuses records a
// login could never use.
func normalizeNewUser(u User) (User, error) {
	if u.ID == "" {
		u.ID = u.Username
	}
	if u.Username == "" || u.PasswordHash == "" {
		return User{}, errors.New("authn: create user: username and password hash are required")
	}
	return u, nil
}
