package authn

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// tokenHash keys the verified-token cache: the SHA-256 of the token, so the
// cache never holds a token and a key costs no allocation.
type tokenHash [sha256.Size]byte

// hashToken hashes token without copying it: sha256 only reads its input,
// and a copy of a ~500-byte token on every request is the allocation the
// hot path avoids.
func hashToken(token string) tokenHash {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// cachedClaims is one verified token's claims in as little memory as the
// cache's 10,000 entries can have them: the strings in one allocation, sub
// stored once when it is also the name (the usual case: a user id defaults
// to the login name), and the times as seconds and nanoseconds instead of
// time.Time's 24 bytes (all UTC, as parse makes them). 88 bytes instead of
// 168, and one string instead of four.
type cachedClaims struct {
	gen  uint64 // the keySet generation that verified the token
	text string // sub, then the name unless it is sub, then jti, then sid
	// sub is text[:subEnd], the name text[nameStart:nameEnd], jti
	// text[nameEnd:jtiEnd], sid text[jtiEnd:].
	subEnd, nameStart, nameEnd, jtiEnd uint32
	nsec                               [4]uint32 // exp, iat, nbf, auth_time: nanoseconds within the second
	sec                                [4]int64  // exp, iat, nbf, auth_time: unix seconds
	// hasAuthTime is false for tokens without auth_time (a zero time does
	// not survive the seconds/nanoseconds round trip as zero).
	hasAuthTime bool
}

// packClaims packs c, or reports false when the packed form would not give
// back exactly c (a time not in UTC or with a monotonic reading; parse
// never makes one): the cache never changes what Verify returns.
func packClaims(gen uint64, c Claims) (cachedClaims, bool) {
	if uint64(len(c.Subject))+uint64(len(c.Username))+uint64(len(c.ID))+uint64(len(c.SessionID)) > math.MaxUint32 {
		return cachedClaims{}, false
	}
	p := cachedClaims{gen: gen, subEnd: uint32(len(c.Subject)), hasAuthTime: !c.AuthTime.IsZero()}
	if c.Username == c.Subject {
		p.text = c.Subject + c.ID + c.SessionID
		p.nameEnd = p.subEnd
	} else {
		p.text = c.Subject + c.Username + c.ID + c.SessionID
		p.nameStart, p.nameEnd = p.subEnd, p.subEnd+uint32(len(c.Username))
	}
	p.jtiEnd = p.nameEnd + uint32(len(c.ID))
	for i, t := range [4]time.Time{c.ExpiresAt, c.IssuedAt, c.NotBefore, c.AuthTime} {
		p.sec[i], p.nsec[i] = t.Unix(), uint32(t.Nanosecond())
	}
	return p, p.claims() == c
}

// claims unpacks; the strings share text, so a hit does not allocate.
func (p *cachedClaims) claims() Claims {
	c := Claims{
		Subject:   p.text[:p.subEnd],
		Username:  p.text[p.nameStart:p.nameEnd],
		ID:        p.text[p.nameEnd:p.jtiEnd],
		SessionID: p.text[p.jtiEnd:],
		ExpiresAt: time.Unix(p.sec[0], int64(p.nsec[0])).UTC(),
		IssuedAt:  time.Unix(p.sec[1], int64(p.nsec[1])).UTC(),
		NotBefore: time.Unix(p.sec[2], int64(p.nsec[2])).UTC(),
	}
	if p.hasAuthTime {
		c.AuthTime = time.Unix(p.sec[3], int64(p.nsec[3])).UTC()
	}
	return c
}

// cacheShards spreads lock contention: an LRU takes a lock even on Get.
const (
	cacheShards        = 16
	minEntriesPerShard = 64
	cacheMetricName    = "tokengate_token_cache_requests_total"
	cacheMetricHelp    = "Verified-token cache lookups by result (hit or miss)."
)

// tokenCache remembers verified tokens' claims so a repeated token skips
// parsing and the signature check. Callers still check exp on a hit.
type tokenCache struct {
	shards    []*lru.Cache[tokenHash, cachedClaims]
	hit, miss prometheus.Counter // nil without a Registerer
}

func newTokenCache(size int, reg prometheus.Registerer) (*tokenCache, error) {
	n := 1
	if size >= cacheShards*minEntriesPerShard {
		n = cacheShards
	}
	c := &tokenCache{}
	for i := 0; i < n; i++ {
		per := size / n
		if i < size%n {
			per++
		}
		l, err := lru.New[tokenHash, cachedClaims](per)
		if err != nil {
			return nil, fmt.Errorf("authn: token cache: %w", err)
		}
		c.shards = append(c.shards, l)
	}
	if reg != nil {
		vec, err := registerCounterVec(reg, prometheus.CounterOpts{Name: cacheMetricName, Help: cacheMetricHelp}, "result")
		if err != nil {
			return nil, err
		}
		// Resolved once: WithLabelValues on every request would hash labels.
		c.hit, c.miss = vec.WithLabelValues("hit"), vec.WithLabelValues("miss")
	}
	return c, nil
}

func (c *tokenCache) shard(h tokenHash) *lru.Cache[tokenHash, cachedClaims] {
	return c.shards[int(h[0])%len(c.shards)]
}

// get returns the claims cached for h under key generation gen.
func (c *tokenCache) get(h tokenHash, gen uint64) (Claims, bool) {
	v, ok := c.shard(h).Get(h)
	if ok && v.gen != gen {
		ok = false
	}
	if ok {
		if c.hit != nil {
			c.hit.Inc()
		}
		return v.claims(), true
	}
	if c.miss != nil {
		c.miss.Inc()
	}
	return Claims{}, false
}

func (c *tokenCache) add(h tokenHash, gen uint64, claims Claims) {
	if p, ok := packClaims(gen, claims); ok {
		c.shard(h).Add(h, p)
	}
}

func (c *tokenCache) remove(h tokenHash) { c.shard(h).Remove(h) }

func (c *tokenCache) purge() {
	for _, s := range c.shards {
		s.Purge()
	}
}

func (c *tokenCache) len() int {
	n := 0
	for _, s := range c.shards {
		n += s.Len()
	}
	return n
}

// registerCounterVec registers a counter vector on reg, or reuses the one
// already registered under that name (a second instance on one registry).
func registerCounterVec(reg prometheus.Registerer, opts prometheus.CounterOpts, labels ...string) (*prometheus.CounterVec, error) {
	vec := prometheus.NewCounterVec(opts, labels)
	err := reg.Register(vec)
	if err == nil {
		return vec, nil
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			return existing, nil
		}
	}
	return nil, fmt.Errorf("authn: register %s: %w", opts.Name, err)
}
