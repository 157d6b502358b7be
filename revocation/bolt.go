package revocation

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Defaults for BoltOptions.
const (
	DefaultBoltLockTimeout   = time.Second
	DefaultBoltSweepInterval = time.Minute
)

var (
	bucketTokens = []byte("tokens") // jti -> exp (8 bytes, big-endian unix ns)
	bucketUsers  = []byte("users")  // user id -> cutoff, until (16 bytes, big-endian unix ns)
	bucketMeta   = []byte("meta")   // store-wide values, never swept

	metaLongestLifetime = []byte("longest_lifetime") // NoteLifetime's maximum (8 bytes, big-endian ns)
)

// BoltOptions configure a BoltStore. Zero values get the documented defaults.
type BoltOptions struct {
	Now           func() time.Time // default time.Now
	Logger        *slog.Logger     // default slog.Default()
	LockTimeout   time.Duration    // how long to wait for another process's file lock; default 1s
	SweepInterval time.Duration    // how often expired entries are deleted; default 1m
}

// BoltStore is a Store in a bbolt file: every revocation is fsynced before
// the method returns, so it survives restarts and kill -9. One process at a
// time holds the file.
type BoltStore struct {
	db   *bolt.DB
	path string
	now  func() time.Time
	log  *slog.Logger

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*BoltStore)(nil)

// OpenBoltStore opens (creating it 0600, and its directory 0700, if needed)
// the store at path and starts its sweeper. If another process holds the
// file, it fails after LockTimeout.
func OpenBoltStore(path string, opts BoltOptions) (*BoltStore, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultBoltLockTimeout
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = DefaultBoltSweepInterval
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("revocation store %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("revocation store %s is in use by another process (waited %s for its lock)", path, opts.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("revocation store %s: %w", path, err)
	}
	db.NoSync = false // durability is the point: each commit is fsynced
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketTokens, bucketUsers, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("revocation store %s: %w", path, err)
	}
	s := &BoltStore{
		db: db, path: path, now: opts.Now, log: opts.Logger,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go s.sweepLoop(opts.SweepInterval)
	return s, nil
}

// RevokeToken records jti as revoked until exp; an already expired token is a no-op.
func (s *BoltStore) RevokeToken(_ context.Context, jti string, exp time.Time) error {
	if jti == "" {
		return errEmptyJTI
	}
	e := exp.UnixNano()
	if e <= s.now().UnixNano() {
		return nil
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		key := []byte(jti)
		if old := b.Get(key); len(old) == 8 && int64(binary.BigEndian.Uint64(old)) >= e {
			return nil
		}
		return b.Put(key, binary.BigEndian.AppendUint64(nil, uint64(e)))
	})
}

// RevokeTokenOnce records jti as revoked until exp and reports whether it
// was not revoked before: the check and the write are one (serialised,
// fsynced) transaction.
func (s *BoltStore) RevokeTokenOnce(_ context.Context, jti string, exp time.Time) (bool, error) {
	if jti == "" {
		return false, errEmptyJTI
	}
	e := exp.UnixNano()
	first := false
	err := s.update(func(tx *bolt.Tx) error {
		now := s.now().UnixNano()
		first = false
		if e <= now {
			return nil
		}
		b := tx.Bucket(bucketTokens)
		key := []byte(jti)
		if old := b.Get(key); len(old) == 8 {
			o := int64(binary.BigEndian.Uint64(old))
			if o > now {
				if o >= e {
					return nil
				}
				return b.Put(key, binary.BigEndian.AppendUint64(nil, uint64(e)))
			}
		}
		first = true
		return b.Put(key, binary.BigEndian.AppendUint64(nil, uint64(e)))
	})
	if err != nil {
		return false, err
	}
	return first, nil
}

// NoteLifetime raises the stored longest lifetime to d if d is longer, in
// one transaction, and returns the result.
func (s *BoltStore) NoteLifetime(_ context.Context, d time.Duration) (time.Duration, error) {
	d = max(d, 0)
	var longest time.Duration
	read := func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaLongestLifetime); len(v) == 8 {
			longest = time.Duration(binary.BigEndian.Uint64(v))
		}
		return nil
	}
	// Usually already noted: a read transaction, no fsync.
	if err := s.db.View(read); err != nil {
		return 0, s.unavailable(err)
	}
	if longest >= d {
		return longest, nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		longest = d
		if v := b.Get(metaLongestLifetime); len(v) == 8 {
			if old := time.Duration(binary.BigEndian.Uint64(v)); old >= d {
				longest = old
				return nil
			}
		}
		return b.Put(metaLongestLifetime, binary.BigEndian.AppendUint64(nil, uint64(d)))
	})
	if err != nil {
		return 0, err
	}
	return longest, nil
}

// RevokeUser moves the user's cutoff forward to cutoff (never back), kept
// until `until`, in one transaction.
func (s *BoltStore) RevokeUser(_ context.Context, userID string, cutoff, until time.Time) error {
	if userID == "" {
		return errEmptyUser
	}
	now := s.now().UnixNano()
	next := userCutoff{cutoff: cutoff.UnixNano(), until: until.UnixNano()}
	if next.until <= now {
		return nil
	}
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		key := []byte(userID)
		if old, ok := decodeCutoff(b.Get(key)); ok && old.until > now {
			next = mergeCutoff(old, next)
		}
		return b.Put(key, encodeCutoff(next))
	})
}

// Status answers both questions in one read transaction; expired entries
// count as absent.
func (s *BoltStore) Status(_ context.Context, jti, userID string) (Status, error) {
	now := s.now().UnixNano()
	var st Status
	err := s.db.View(func(tx *bolt.Tx) error {
		if jti != "" {
			if v := tx.Bucket(bucketTokens).Get([]byte(jti)); len(v) == 8 {
				st.TokenRevoked = int64(binary.BigEndian.Uint64(v)) > now
			}
		}
		if userID != "" {
			if u, ok := decodeCutoff(tx.Bucket(bucketUsers).Get([]byte(userID))); ok && u.until > now {
				st.UserCutoff = time.Unix(0, u.cutoff)
			}
		}
		return nil
	})
	if err != nil {
		return Status{}, s.unavailable(err)
	}
	return st, nil
}

// Ping checks that the database is open and readable.
func (s *BoltStore) Ping(context.Context) error {
	if err := s.db.View(func(*bolt.Tx) error { return nil }); err != nil {
		return s.unavailable(err)
	}
	return nil
}

// Close stops the sweeper, waits for it, and closes the file.
func (s *BoltStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

func (s *BoltStore) update(fn func(*bolt.Tx) error) error {
	if err := s.db.Update(fn); err != nil {
		return s.unavailable(err)
	}
	return nil
}

func (s *BoltStore) unavailable(err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, s.path, err)
}

func (s *BoltStore) sweepLoop(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if n, err := s.sweep(); err != nil {
				s.log.Warn("revocation store sweep failed", "path", s.path, "err", err)
			} else if n > 0 {
				s.log.Debug("revocation store swept", "path", s.path, "deleted", n)
			}
		}
	}
}

// sweep deletes expired entries and reports how many.
func (s *BoltStore) sweep() (int, error) {
	now := s.now().UnixNano()
	deleted := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		expired := func(name []byte, isExpired func(v []byte) bool) error {
			b := tx.Bucket(name)
			var keys [][]byte
			// Collect first: deleting while iterating a cursor can skip keys.
			err := b.ForEach(func(k, v []byte) error {
				if isExpired(v) {
					keys = append(keys, append([]byte(nil), k...))
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range keys {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			deleted += len(keys)
			return nil
		}
		if err := expired(bucketTokens, func(v []byte) bool {
			return len(v) != 8 || int64(binary.BigEndian.Uint64(v)) <= now
		}); err != nil {
			return err
		}
		if err := expired(bucketUsers, func(v []byte) bool {
			u, ok := decodeCutoff(v)
			return !ok || u.until <= now
		}); err != nil {
			return err
		}
		if tx.Bucket(bucketRecords) == nil {
			return nil
		}
		return expired(bucketRecords, func(v []byte) bool { return recordExpired(v, now) })
	})
	return deleted, err
}

// count reports the entries held, expired or not (for tests).
func (s *BoltStore) count() (n int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketTokens).Stats().KeyN + tx.Bucket(bucketUsers).Stats().KeyN
		return nil
	})
	return n, err
}

func encodeCutoff(u userCutoff) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(u.cutoff))
	return binary.BigEndian.AppendUint64(b, uint64(u.until))
}

func decodeCutoff(v []byte) (userCutoff, bool) {
	if len(v) != 16 {
		return userCutoff{}, false
	}
	return userCutoff{
		cutoff: int64(binary.BigEndian.Uint64(v[:8])),
		until:  int64(binary.BigEndian.Uint64(v[8:])),
	}, true
}
