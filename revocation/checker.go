package revocation

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for CheckerOptions.
const (
	DefaultCacheSize     = 100000
	DefaultMaxStaleness  = 5 * time.Second
	DefaultUserCutoffTTL = 24 * time.Hour
)

// EventKind says what an Event changed.
type EventKind uint8

const (
	EventToken EventKind = iota + 1 // a jti was revoked; Time is the token's exp
	EventUser                       // a user's cutoff moved; Time is the new cutoff
)

// Event is a revocation announced by another replica (or this one).
type Event struct {
	Kind EventKind
	ID   string // jti or user id
	Time time.Time
}

// Notifier is a store that announces revocations (RedisStore). Notifications
// runs until ctx is done: it calls onEvent for every announced revocation and
// onReset each time the subscription is (re)established, since events may
// have been lost while it was down. An event only makes the Checker ask the
// store again about that token or user; it is never taken as a verdict the
// store has not confirmed (a message on a shared channel, or a forged one,
// cannot refuse a valid token).
type Notifier interface {
	Notifications(ctx context.Context, onEvent func(Event), onReset func())
}

// subscriber is a Notifier that can say whether its subscription is up.
type subscriber interface {
	Subscribed() bool
}

// pinger is a store with a cheap reachability check.
type pinger interface {
	Ping(ctx context.Context) error
}

// CheckerOptions configure a Checker. Zero values get the documented defaults.
type CheckerOptions struct {
	CacheSize     int           // LRU entries (jti and user entries together); default 100000
	MaxStaleness  time.Duration // longest a cached "not revoked" answer or user cutoff is trusted; default 5s
	UserCutoffTTL time.Duration // this process's longest token lifetime; cutoffs are kept this long, or the longest the store noted (NoteLifetime); default 24h
	Now           func() time.Time
	Logger        *slog.Logger
	Registerer    prometheus.Registerer // optional
}

type entryKind uint8

const (
	kindToken entryKind = iota + 1
	kindUser
)

// cacheKey names one jti or one user in the LRU without holding the id: a
// 127-bit keyed hash of the id, and the kind in the low bit of the first
// word, so a jti and a user id never share an entry. Holding 16 fixed bytes
// instead of the id's string keeps an entry small (the LRU holds up to
// CacheSize of them, 100,000 by default), and a lookup does not allocate.
//
// Why a hash is safe here. The ids are public (the jti is in the token, the
// user id is sent upstream), so the hash hides nothing; it only has to make
// two ids sharing an entry practically impossible, and impossible to
// arrange. Sharing could matter: one id's cached "not revoked" (or "no
// cutoff") answer would be taken for the other's, and a revoked token could
// pass until the answer goes stale. The other way round (one id's
// revocation refusing the other id's tokens) fails closed. So the hash is
// keyed with random seeds made when the Checker is made (hash/maphash, two
// independent 64-bit functions per kind): the seeds never leave the process,
// and neither does a hash value (never logged, exported, or used for
// anything a client can time or see: the LRU's order is by use, not by
// key). Without the seeds, nobody can compute a key, test a guess, or learn
// from a collision; the only way to a shared entry is luck, about 2^-127
// per pair of ids (for a full default cache and 2^40 attempts, about
// 2^-70). maphash is not a cryptographic MAC, but a MAC's strength only
// matters against someone who sees its outputs, and nobody does; maphash
// costs nanoseconds on every proxied request where an HMAC would cost
// hundreds.
type cacheKey [2]uint64

// keyer makes cache keys with the Checker's seeds.
type keyer struct {
	token, user [2]maphash.Seed
}

func newKeyer() keyer {
	return keyer{
		token: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		user:  [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
	}
}

func (k *keyer) key(kind entryKind, id string) cacheKey {
	seeds := &k.token
	if kind == kindUser {
		seeds = &k.user
	}
	return cacheKey{
		maphash.String(seeds[0], id)&^1 | uint64(kind-kindToken),
		maphash.String(seeds[1], id),
	}
}

// kind is what the key names: a jti or a user.
func (k cacheKey) kind() entryKind { return kindToken + entryKind(k[0]&1) }

// cacheEntry is what the Checker knows about one jti or one user. Its zero
// value means "nothing known" for either kind.
type cacheEntry struct {
	// mark is the verdict: for a jti, nonzero when revoked (final, never
	// re-asked); for a user, the cutoff (unix ns) with its sign bit flipped,
	// so that 0, the zero value, means no cutoff (see cutoffMark).
	mark    uint64
	checked int64 // unix ns when this was last true; trusted for MaxStaleness
	// invalidated: unix ns of the last event about this id; a store answer
	// fetched before it may predate the revocation and is not trusted.
	invalidated int64
}

const revokedMark = 1

// revoked reports whether a jti entry says the token is revoked.
func (e cacheEntry) revoked() bool { return e.mark != 0 }

// cutoff is a user entry's cutoff, if it has one.
func (e cacheEntry) cutoff() (int64, bool) {
	return int64(e.mark ^ 1<<63), e.mark != 0
}

// cutoffMark encodes a user's cutoff. math.MinInt64 would encode as "no
// cutoff", so it is kept as math.MinInt64+1, which kills exactly the same
// tokens: an issuedAt is either math.MinInt64 (no iat) or a whole number of
// microseconds, and none of those lies between the two.
func cutoffMark(cutoff int64) uint64 {
	return uint64(max(cutoff, math.MinInt64+1)) ^ 1<<63
}

// Checker answers revocation questions through an LRU cache.
type Checker struct {
	store     Store
	cache     *lru.Cache[cacheKey, cacheEntry]
	keys      keyer
	maxStale  int64
	cutoffTTL time.Duration
	now       func() time.Time
	log       *slog.Logger
	m         *metrics
	sub       subscriber // nil unless the store sends notifications

	// mu serialises cache writes that merge with what is cached (answers
	// only get "more revoked"); reads take only the LRU's own lock.
	mu sync.Mutex
	// generation changes on every subscription reset, so an answer fetched
	// across a reset is returned but not cached.
	generation atomic.Uint64
	resets     atomic.Uint64

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// NewChecker wraps store. If the store is a Notifier, the Checker consumes its
// notifications in one goroutine until Close.
func NewChecker(store Store, opts CheckerOptions) (*Checker, error) {
	if store == nil {
		return nil, errors.New("revocation: nil store")
	}
	if opts.CacheSize < 0 || opts.MaxStaleness < 0 || opts.UserCutoffTTL < 0 {
		return nil, errors.New("revocation: cache size, max staleness and user cutoff TTL must not be negative")
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.MaxStaleness == 0 {
		opts.MaxStaleness = DefaultMaxStaleness
	}
	if opts.UserCutoffTTL == 0 {
		opts.UserCutoffTTL = DefaultUserCutoffTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cache, err := lru.New[cacheKey, cacheEntry](opts.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	c := &Checker{
		store:     store,
		cache:     cache,
		keys:      newKeyer(),
		maxStale:  int64(opts.MaxStaleness),
		cutoffTTL: opts.UserCutoffTTL,
		now:       opts.Now,
		log:       opts.Logger,
	}
	notifier, _ := store.(Notifier)
	var subscribed func() bool
	if notifier != nil {
		if s, ok := store.(subscriber); ok {
			c.sub = s
			subscribed = s.Subscribed
		}
	}
	c.m, err = newMetrics(opts.Registerer, subscribed)
	if err != nil {
		return nil, fmt.Errorf("revocation: metrics: %w", err)
	}
	if notifier != nil {
		ctx, cancel := context.WithCancel(context.Background())
		c.stop, c.done = cancel, make(chan struct{})
		go func() {
			defer close(c.done)
			notifier.Notifications(ctx, c.apply, c.reset)
		}()
	}
	return c, nil
}

// Revoked reports whether the token (jti, of userID, from a sign-in at
// signedIn) is dead: its jti is revoked, or signedIn is at or before the
// user's cutoff (both in whole microseconds, see RevokeUser). signedIn is
// the token's auth_time (its iat when it has none): a renewed or refreshed
// token keeps its sign-in's time, so a cutoff after that sign-in ends it
// however late it was issued. Errors wrap ErrUnavailable; cached "revoked"
// answers never error.
func (c *Checker) Revoked(ctx context.Context, jti, userID string, signedIn time.Time) (bool, error) {
	now := c.now().UnixNano()
	issued := issuedAt(signedIn)
	tok, tokOK := c.cache.Get(c.keys.key(kindToken, jti))
	if tokOK && tok.revoked() {
		c.m.hit.Inc()
		return true, nil
	}
	usr, usrOK := c.cache.Get(c.keys.key(kindUser, userID))
	// Cutoffs only move forward, so a cutoff that kills the token stays true.
	if cutoff, ok := usr.cutoff(); usrOK && ok && issued <= cutoff {
		c.m.hit.Inc()
		return true, nil
	}
	if tokOK && usrOK && c.fresh(now, tok) && c.fresh(now, usr) {
		c.m.hit.Inc()
		return false, nil
	}

	c.m.miss.Inc()
	gen := c.generation.Load()
	st, err := c.status(ctx, jti, userID)
	if err != nil {
		return false, err
	}
	c.remember(gen, now, jti, userID, st)
	if st.TokenRevoked {
		return true, nil
	}
	return !st.UserCutoff.IsZero() && issued <= st.UserCutoff.UnixNano(), nil
}

// RevokeToken durably revokes jti until exp.
func (c *Checker) RevokeToken(ctx context.Context, jti string, exp time.Time) error {
	start := time.Now()
	err := c.store.RevokeToken(ctx, jti, exp)
	if err = c.observe(opRevokeToken, start, err); err != nil {
		return err
	}
	c.m.revokedTokens.Inc()
	c.mergeToken(jti, c.now().UnixNano(), true)
	return nil
}

// RevokeTokenOnce durably revokes jti until exp and reports whether this
// call is the one that revoked it: of concurrent calls for one jti, on every
// replica sharing the store, exactly one gets true. A token cached as
// revoked reports false without asking the store.
func (c *Checker) RevokeTokenOnce(ctx context.Context, jti string, exp time.Time) (bool, error) {
	if e, ok := c.cache.Get(c.keys.key(kindToken, jti)); ok && e.revoked() {
		return false, nil
	}
	start := time.Now()
	first, err := c.store.RevokeTokenOnce(ctx, jti, exp)
	if err = c.observe(opRevokeToken, start, err); err != nil {
		return false, err
	}
	if first {
		c.m.revokedTokens.Inc()
	}
	c.mergeToken(jti, c.now().UnixNano(), true)
	return first, nil
}

// NoteLifetime records UserCutoffTTL, the longest lifetime of the tokens
// this process issues, in the store, before any is issued: a cutoff set
// later, by a process configured with a shorter lifetime, is still kept as
// long as these tokens live. RevokeUser notes it too, so a store that was
// unreachable at startup learns it on the first logout-all.
func (c *Checker) NoteLifetime(ctx context.Context) error {
	_, err := c.noteLifetime(ctx)
	return err
}

func (c *Checker) noteLifetime(ctx context.Context) (time.Duration, error) {
	longest, err := c.store.NoteLifetime(ctx, c.cutoffTTL)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return 0, err
	}
	return max(longest, c.cutoffTTL), nil
}

// RevokeUser durably kills every token of userID from a sign-in at or before
// cutoff (Revoked compares the cutoff with auth_time, else iat).
//
// The cutoff is truncated to whole microseconds, the precision of a token's
// iat, and a token is dead when iat <= cutoff. A token issued in the
// cutoff's own microsecond cannot be told apart from one issued just before
// it, so it is dead too (fail closed); RevokeUser therefore returns only
// once this clock has left that microsecond, so any token issued after it
// returns, on this clock, has a later iat and passes.
//
// The cutoff is kept for the longest token lifetime the store has ever
// noted (NoteLifetime), at least UserCutoffTTL: a cutoff outlives every
// token it kills, even tokens issued before tokens.ttl was lowered.
func (c *Checker) RevokeUser(ctx context.Context, userID string, cutoff time.Time) error {
	cutoff = cutoff.Truncate(time.Microsecond)
	start := time.Now()
	keep, err := c.noteLifetime(ctx)
	if err == nil {
		err = c.store.RevokeUser(ctx, userID, cutoff, cutoff.Add(keep))
	}
	if err = c.observe(opRevokeUser, start, err); err != nil {
		return err
	}
	c.m.revokedUsers.Inc()
	c.mergeUser(userID, c.now().UnixNano(), true, cutoff.UnixNano())
	// Leave the cutoff's microsecond (at most 1µs; the store call usually
	// took longer). A cutoff ahead of this clock (a presented token's iat,
	// see proxy logout_all) is not waited for.
	if wait := cutoff.Add(time.Microsecond).Sub(c.now()); wait > 0 && wait <= time.Microsecond {
		time.Sleep(wait)
	}
	return nil
}

// Ready reports whether the store (and its subscription, if any) is usable.
func (c *Checker) Ready(ctx context.Context) error {
	start := time.Now()
	var err error
	if p, ok := c.store.(pinger); ok {
		err = p.Ping(ctx)
	} else {
		_, err = c.store.Status(ctx, "readiness-probe", "readiness-probe")
	}
	if err = c.observe(opPing, start, err); err != nil {
		return err
	}
	if c.sub != nil && !c.sub.Subscribed() {
		return fmt.Errorf("%w: revocation notifications not subscribed", ErrUnavailable)
	}
	return nil
}

// Close stops background work and waits for it; it does not close the store.
func (c *Checker) Close() error {
	c.closeOnce.Do(func() {
		if c.stop != nil {
			c.stop()
			<-c.done
		}
	})
	return nil
}

// fresh reports whether e is recent enough to trust at now. A clock that
// went backwards makes it stale, never fresh for longer.
func (c *Checker) fresh(now int64, e cacheEntry) bool {
	age := now - e.checked
	return age >= 0 && age < c.maxStale
}

func (c *Checker) status(ctx context.Context, jti, userID string) (Status, error) {
	start := time.Now()
	st, err := c.store.Status(ctx, jti, userID)
	return st, c.observe(opStatus, start, err)
}

// observe records a store call and makes sure its error wraps ErrUnavailable.
func (c *Checker) observe(op storeOp, start time.Time, err error) error {
	c.m.storeDuration[op].Observe(time.Since(start).Seconds())
	if err == nil {
		return nil
	}
	c.m.storeErrors[op].Inc()
	if !errors.Is(err, ErrUnavailable) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// remember caches a store answer obtained at time checked.
func (c *Checker) remember(gen uint64, checked int64, jti, userID string, st Status) {
	if c.generation.Load() != gen {
		return // the subscription was reset meanwhile: the answer may predate lost events
	}
	c.mergeToken(jti, checked, st.TokenRevoked)
	c.mergeUser(userID, checked, !st.UserCutoff.IsZero(), unixNano(st.UserCutoff))
}

// mergeToken records what is known about jti; a revoked entry stays revoked.
func (c *Checker) mergeToken(jti string, checked int64, revoked bool) {
	key := c.keys.key(kindToken, jti)
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.cache.Peek(key)
	if ok && old.revoked() {
		return
	}
	if ok && !revoked && old.invalidated >= checked {
		return // fetched before an event about it: stays stale, re-asked next time
	}
	e := cacheEntry{checked: checked, invalidated: old.invalidated}
	if revoked {
		e.mark = revokedMark
	}
	c.cache.Add(key, e)
}

// mergeUser records what is known about a user's cutoff; it never moves back.
func (c *Checker) mergeUser(userID string, checked int64, hasCutoff bool, cutoff int64) {
	key := c.keys.key(kindUser, userID)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := cacheEntry{checked: checked}
	if hasCutoff {
		e.mark = cutoffMark(cutoff)
	}
	if old, ok := c.cache.Peek(key); ok {
		if oldCutoff, had := old.cutoff(); had && (!hasCutoff || oldCutoff > cutoff) {
			e.mark = old.mark
		}
		e.invalidated = old.invalidated
		if old.invalidated >= checked {
			e.checked = old.checked // fetched before an event about it: stays stale
		} else {
			e.checked = max(e.checked, old.checked)
		}
	}
	c.cache.Add(key, e)
}

// apply takes an announced revocation as a reason to ask the store again:
// the id's cached answer becomes stale (a known revocation or cutoff stays),
// and a store answer already on its way is not cached. The event's own claim
// is never cached: only the store's answer counts.
func (c *Checker) apply(ev Event) {
	var key cacheKey
	switch ev.Kind {
	case EventToken:
		key = c.keys.key(kindToken, ev.ID)
	case EventUser:
		key = c.keys.key(kindUser, ev.ID)
	default:
		return
	}
	now := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, _ := c.cache.Peek(key)
	if ev.Kind == EventToken && e.revoked() {
		return
	}
	e.checked, e.invalidated = math.MinInt64, now
	c.cache.Add(key, e)
}

// reset runs when the subscription is (re)established: events may have been
// lost, so every "not revoked" answer is dropped and every cutoff is marked
// stale (re-asked on next use, but never forgotten: if the store came back
// empty, what this replica knew still holds). Revoked jtis stay.
func (c *Checker) reset() {
	if c.resets.Add(1) > 1 {
		c.m.pubsubReconnect.Inc()
		c.log.Info("revocation notifications re-subscribed; cached answers dropped")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation.Add(1)
	for _, key := range c.cache.Keys() {
		e, ok := c.cache.Peek(key)
		switch {
		case !ok || key.kind() == kindToken && e.revoked():
		case key.kind() == kindUser && e.mark != 0: // has a cutoff
			e.checked = math.MinInt64
			c.cache.Add(key, e)
		default:
			c.cache.Remove(key)
		}
	}
}

// unixNano is t in unix nanoseconds; the zero time (no iat) sorts first, so
// any cutoff kills it.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

// issuedAt is iat at the precision cutoffs are kept in: whole microseconds,
// as authn issues it (a finer iat, from elsewhere, is rounded down so that
// it compares with a cutoff exactly as its microsecond does).
func issuedAt(iat time.Time) int64 {
	if iat.IsZero() {
		return math.MinInt64
	}
	return iat.Truncate(time.Microsecond).UnixNano()
}
