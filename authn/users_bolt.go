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
	boltUsersBucket  = []byte("users")        // username -> JSON boltUser
	boltIDsBucket    = []byte("user_ids")     // id -> username, keeps ids unique
	boltFoldedBucket = []byte("users_folded") // foldName(username) -> username; empty: several (older files)
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
	ID           string   `json:"id"`
	Username     string   `json:"username"`
	PasswordHash string   `json:"password_hash"`
	Groups       []string `json:"groups,omitempty"`
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
		return indexFolded(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("authn: init users db %s: %w", path, err)
	}
	return &BoltUsers{db: db}, nil
}

// indexFolded builds the case-folded name index of a file made before it
// existed. Names that already collide there stay reachable by their exact
// spelling only.
func indexFolded(tx *bolt.Tx) error {
	if tx.Bucket(boltFoldedBucket) != nil {
		return nil
	}
	folded, err := tx.CreateBucket(boltFoldedBucket)
	if err != nil {
		return err
	}
	return tx.Bucket(boltUsersBucket).ForEach(func(name, _ []byte) error {
		key := []byte(foldName(string(name)))
		if folded.Get(key) != nil {
			return folded.Put(key, []byte{})
		}
		return folded.Put(key, name)
	})
}

// LookupUser implements UserStore; the name's case does not matter.
func (b *BoltUsers) LookupUser(ctx context.Context, username string) (User, error) {
	var u User
	err := b.db.View(func(tx *bolt.Tx) error {
		users := tx.Bucket(boltUsersBucket)
		v := users.Get([]byte(username))
		if v == nil {
			if name := tx.Bucket(boltFoldedBucket).Get([]byte(foldName(username))); len(name) > 0 {
				v = users.Get(name)
			}
		}
		if v == nil {
			return ErrUserNotFound
		}
		var bu boltUser
		if err := json.Unmarshal(v, &bu); err != nil {
			return fmt.Errorf("authn: users db: %w: %w", errBadRecord, err)
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

// CreateUser implements UserCreator. A name equal to an existing one
// ignoring case is taken (ErrUserExists). The uniqueness checks and the writes
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
		users, ids, folded := tx.Bucket(boltUsersBucket), tx.Bucket(boltIDsBucket), tx.Bucket(boltFoldedBucket)
		key := []byte(foldName(u.Username))
		if users.Get([]byte(u.Username)) != nil || folded.Get(key) != nil || ids.Get([]byte(u.ID)) != nil {
			return ErrUserExists
		}
		if err := users.Put([]byte(u.Username), v); err != nil {
			return err
		}
		if err := folded.Put(key, []byte(u.Username)); err != nil {
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
// login could never use, or groups no rule could name.
func normalizeNewUser(u User) (User, error) {
	if u.ID == "" {
		u.ID = u.Username
	}
	if u.Username == "" || u.PasswordHash == "" {
		return User{}, errors.New("authn: create user: username and password hash are required")
	}
	if len(u.Groups) > MaxGroups {
		return User{}, fmt.Errorf("authn: create user: %d groups, at most %d", len(u.Groups), MaxGroups)
	}
	for _, g := range u.Groups {
		if err := CheckGroupName(g); err != nil {
			return User{}, fmt.Errorf("authn: create user: group %q %w", g, err)
		}
	}
	return u, nil
}
