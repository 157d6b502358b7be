package revocation

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// Records keep small values that every replica sharing the store reads and
// writes: the OpenID Connect users' current identities (groups, the sealed
// refresh token). The revocation store is already the state replicas share
// (bolt for one replica, Redis for many), so these live beside the
// revocations rather than in another service. A record lives until its
// expiry; failures wrap ErrUnavailable.
type Records interface {
	// PutRecord stores value under key until until (replacing any value).
	PutRecord(ctx context.Context, key string, value []byte, until time.Time) error
	// AddRecord stores value only if key holds no live value: of
	// concurrent callers on every replica, exactly one gets true.
	AddRecord(ctx context.Context, key string, value []byte, until time.Time) (bool, error)
	// GetRecord returns key's value, or found false when there is none
	// (or it expired).
	GetRecord(ctx context.Context, key string) (value []byte, found bool, err error)
}

var (
	_ Records = (*MemoryStore)(nil)
	_ Records = (*BoltStore)(nil)
	_ Records = (*RedisStore)(nil)
)

var errEmptyKey = errors.New("revocation: empty record key")

type memoryRecord struct {
	value []byte
	until int64 // unix ns
}

// PutRecord stores a copy of value until until.
func (s *MemoryStore) PutRecord(_ context.Context, key string, value []byte, until time.Time) error {
	_, err := s.putRecord(key, value, until, false)
	return err
}

// AddRecord stores value unless key holds a live value, under the lock.
func (s *MemoryStore) AddRecord(_ context.Context, key string, value []byte, until time.Time) (bool, error) {
	return s.putRecord(key, value, until, true)
}

func (s *MemoryStore) putRecord(key string, value []byte, until time.Time, onlyNew bool) (bool, error) {
	if key == "" {
		return false, errEmptyKey
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errClosed
	}
	now := s.now().UnixNano()
	if s.records == nil {
		s.records = map[string]memoryRecord{}
	}
	if old, ok := s.records[key]; onlyNew && ok && old.until > now {
		return false, nil
	}
	if until.UnixNano() <= now {
		delete(s.records, key)
		return false, nil
	}
	s.records[key] = memoryRecord{value: append([]byte(nil), value...), until: until.UnixNano()}
	return true, nil
}

// GetRecord returns a copy of key's live value.
func (s *MemoryStore) GetRecord(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, errClosed
	}
	r, ok := s.records[key]
	if !ok || r.until <= s.now().UnixNano() {
		return nil, false, nil
	}
	return append([]byte(nil), r.value...), true, nil
}

// bucketRecords holds key -> until (8 bytes, big-endian unix ns) + value.
var bucketRecords = []byte("records")

// PutRecord stores value until until, fsynced.
func (s *BoltStore) PutRecord(_ context.Context, key string, value []byte, until time.Time) error {
	_, err := s.putRecord(key, value, until, false)
	return err
}

// AddRecord stores value unless key holds a live value, in one transaction.
func (s *BoltStore) AddRecord(_ context.Context, key string, value []byte, until time.Time) (bool, error) {
	return s.putRecord(key, value, until, true)
}

func (s *BoltStore) putRecord(key string, value []byte, until time.Time, onlyNew bool) (bool, error) {
	if key == "" {
		return false, errEmptyKey
	}
	stored := false
	err := s.update(func(tx *bolt.Tx) error {
		stored = false
		b, err := tx.CreateBucketIfNotExists(bucketRecords)
		if err != nil {
			return err
		}
		now := s.now().UnixNano()
		if old := b.Get([]byte(key)); onlyNew && len(old) >= 8 && int64(binary.BigEndian.Uint64(old)) > now {
			return nil
		}
		if until.UnixNano() <= now {
			return b.Delete([]byte(key))
		}
		stored = true
		return b.Put([]byte(key), append(binary.BigEndian.AppendUint64(nil, uint64(until.UnixNano())), value...))
	})
	return stored, err
}

// GetRecord returns key's live value.
func (s *BoltStore) GetRecord(_ context.Context, key string) ([]byte, bool, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(key))
		if len(v) < 8 || int64(binary.BigEndian.Uint64(v)) <= s.now().UnixNano() {
			return nil
		}
		out = append([]byte{}, v[8:]...)
		return nil
	})
	if err != nil {
		return nil, false, s.unavailable(err)
	}
	return out, out != nil, nil
}

// recordExpired reports whether a records bucket value is past its expiry.
func recordExpired(v []byte, now int64) bool {
	return len(v) < 8 || int64(binary.BigEndian.Uint64(v)) <= now
}

// recordKey is <prefix>rec:<key>.
func (s *RedisStore) recordKey(key string) string { return s.prefix + "rec:" + key }

// PutRecord sets <prefix>rec:<key> with a TTL up to until.
func (s *RedisStore) PutRecord(ctx context.Context, key string, value []byte, until time.Time) error {
	if key == "" {
		return errEmptyKey
	}
	ttl := until.Sub(s.now())
	k := s.recordKey(key)
	return s.write(ctx, k, func(p redis.Pipeliner) error {
		if ttl <= 0 {
			p.Del(ctx, k)
		} else {
			p.Set(ctx, k, value, roundUpMillis(ttl))
		}
		return nil
	})
}

// AddRecord sets <prefix>rec:<key> only if it is absent (SET NX PX).
func (s *RedisStore) AddRecord(ctx context.Context, key string, value []byte, until time.Time) (bool, error) {
	if key == "" {
		return false, errEmptyKey
	}
	ttl := until.Sub(s.now())
	if ttl <= 0 {
		return false, nil
	}
	k := s.recordKey(key)
	var set *redis.BoolCmd
	err := s.write(ctx, k, func(p redis.Pipeliner) error {
		set = p.SetNX(ctx, k, value, roundUpMillis(ttl))
		return nil
	})
	if err != nil {
		return false, err
	}
	return set.Val(), nil
}

// GetRecord reads <prefix>rec:<key>.
func (s *RedisStore) GetRecord(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := s.client.Get(ctx, s.recordKey(key)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, s.unavailable(err)
	}
	return v, true, nil
}
