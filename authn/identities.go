package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// UserByIDStore is a user store that finds users by id (the token's sub).
type UserByIDStore interface {
	LookupUserByID(ctx context.Context, id string) (User, error)
}

// IdentitiesOptions tune Identities. The zero value is usable.
type IdentitiesOptions struct {
	// RefreshInterval bounds how old an answer may be while the store
	// answers: a change of a user's groups, or the user's removal, is seen
	// within it. Default 1m.
	RefreshInterval time.Duration
	// MaxStale bounds how long, during a store outage, the last answer the
	// store gave for an id is still used (counted from when the store gave
	// it); past it Identity fails with ErrUsersUnavailable. Default 5m;
	// never less than RefreshInterval.
	MaxStale time.Duration
	// CacheSize caps the ids held; default 100000. The ids least recently
	// looked up in the store (the idle users: an active user's entry is
	// refreshed every half interval) go first.
	CacheSize int
	// Timeout bounds one store lookup; default 5s.
	Timeout time.Duration
	// RetryInterval: while the store fails, an id is retried (in the
	// background) at most this often, and for this long after a failure an
	// id the cache does not hold is refused at once rather than made to
	// wait on the store. Default 1s.
	RetryInterval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default discard. Store failures are logged when they start
	// and when they end, not at every lookup.
	Logger *slog.Logger
	// Registerer, optional: tokengate_identity_cache_requests_total{result}
	// and tokengate_identity_refresh_errors_total.
	Registerer prometheus.Registerer
}

// Default Identities tuning.
const (
	DefaultRefreshInterval = time.Minute
	DefaultMaxStale        = 5 * time.Minute
	defaultIdentityCache   = 100000
	defaultIdentityTimeout = 5 * time.Second
	defaultIdentityRetry   = time.Second
	// maxBackgroundRefreshes bounds the refreshes running at once, so an
	// outage with many active users cannot pile up goroutines.
	maxBackgroundRefreshes = 16
)

// Identities says who a token's user is now: the user's current groups,
// or ErrUserNotFound once the user is removed. It keeps the user store off
// the request path:
//
//   - a store that answers from memory (the users file, whose reloads swap
//     the snapshot) is read directly;
//   - any other store (bolt, PostgreSQL, a directory) is read through a
//     bounded cache. A hit costs no I/O. An answer older than half the
//     RefreshInterval is refreshed in the background (one lookup per id at
//     a time) while the cached answer is served, so an active user never
//     waits; an answer older than RefreshInterval is not served while the
//     store works: the request waits for the one lookup of that id (what a
//     miss costs). Removed users are cached as such, under the same rules.
//   - during a store outage an answer is served until it is MaxStale old,
//     then Identity fails with ErrUsersUnavailable: never a guess.
//
// Answers carry no password hash. Their Groups slice is shared: read it,
// never modify it.
type Identities struct {
	store  UserByIDStore
	direct bool // the store answers from memory: no cache

	refresh, ahead, maxStale, timeout, retry time.Duration
	now                                      func() time.Time
	log                                      *slog.Logger

	cache *lru.Cache[string, *identity]

	mu      sync.Mutex
	flights map[string]*flight
	closed  bool
	bg      chan struct{} // background refresh slots
	wg      sync.WaitGroup
	base    context.Context
	cancel  context.CancelFunc

	// failedAt is when the last store lookup failed (UnixNano); 0 once a
	// lookup succeeds again.
	failedAt atomic.Int64

	hit, miss, stale, unavailable prometheus.Counter
	refreshErrors                 prometheus.Counter
}

// identity is one cached answer; never modified once cached.
type identity struct {
	user    User // zero when !found
	found   bool
	fetched time.Time // when the lookup that produced it started
	// nextTry: after a failed refresh, no background retry before this (UnixNano).
	nextTry atomic.Int64
}

func (e *identity) answer() (User, error) {
	if !e.found {
		return User{}, ErrUserNotFound
	}
	return e.user, nil
}

// flight is one store lookup in progress, shared by everyone asking for its id.
type flight struct {
	done chan struct{}
	e    *identity // set before done closes; nil when the lookup failed
	err  error
}

// memoryStore is a user store whose lookups read an in-memory snapshot.
type memoryStore interface {
	answersFromMemory()
}

// NewIdentities returns the Identities of store. Close it to stop its
// background lookups.
func NewIdentities(store UserByIDStore, opts IdentitiesOptions) (*Identities, error) {
	if store == nil {
		return nil, errors.New("authn: identities: no user store")
	}
	c := &Identities{
		store:    store,
		refresh:  opts.RefreshInterval,
		maxStale: opts.MaxStale,
		timeout:  opts.Timeout,
		retry:    opts.RetryInterval,
		now:      opts.Now,
		log:      opts.Logger,
		flights:  map[string]*flight{},
		bg:       make(chan struct{}, maxBackgroundRefreshes),
	}
	_, c.direct = store.(memoryStore)
	if c.refresh <= 0 {
		c.refresh = DefaultRefreshInterval
	}
	if c.maxStale <= 0 {
		c.maxStale = DefaultMaxStale
	}
	c.maxStale = max(c.maxStale, c.refresh)
	c.ahead = c.refresh / 2
	if c.timeout <= 0 {
		c.timeout = defaultIdentityTimeout
	}
	if c.retry <= 0 {
		c.retry = defaultIdentityRetry
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	size := opts.CacheSize
	if size <= 0 {
		size = defaultIdentityCache
	}
	var err error
	if c.cache, err = lru.New[string, *identity](size); err != nil {
		return nil, fmt.Errorf("authn: identities: %w", err)
	}
	c.hit, c.miss, c.stale, c.unavailable = noopCounter(), noopCounter(), noopCounter(), noopCounter()
	c.refreshErrors = noopCounter()
	if opts.Registerer != nil {
		vec, err := registerCounterVec(opts.Registerer, prometheus.CounterOpts{
			Name: "tokengate_identity_cache_requests_total",
			Help: "User identity (groups) lookups by result: hit (no I/O), miss (asked the store and waited), stale (served past users.refresh_interval during a store outage), unavailable (refused past users.max_stale).",
		}, "result")
		if err != nil {
			return nil, err
		}
		c.hit, c.miss = vec.WithLabelValues("hit"), vec.WithLabelValues("miss")
		c.stale, c.unavailable = vec.WithLabelValues("stale"), vec.WithLabelValues("unavailable")
		errs, err := registerCounterVec(opts.Registerer, prometheus.CounterOpts{
			Name: "tokengate_identity_refresh_errors_total",
			Help: "User store lookups by id that failed (outage, timeout, bad table), in the background or for a waiting request.",
		})
		if err != nil {
			return nil, err
		}
		c.refreshErrors = errs.WithLabelValues()
	}
	c.base, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

func noopCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"})
}

// Identity returns the user whose id is id as the store has it now (within
// the bounds above). Errors: ErrUserNotFound (removed, or never known),
// ErrUsersUnavailable (wrapping the cause) when the store cannot answer and
// no answer recent enough is held.
func (c *Identities) Identity(ctx context.Context, id string) (User, error) {
	if c.direct {
		c.hit.Inc()
		u, err := c.store.LookupUserByID(ctx, id)
		if err != nil {
			if errors.Is(err, ErrUserNotFound) {
				return User{}, ErrUserNotFound
			}
			c.unavailable.Inc()
			return User{}, fmt.Errorf("%w: %w", ErrUsersUnavailable, err)
		}
		u.PasswordHash = ""
		return u, nil
	}
	now := c.now()
	// Peek takes a read lock only; recency comes from the refreshes, which
	// re-add an active user's entry at least once per refresh interval.
	e, cached := c.cache.Peek(id)
	if cached {
		age := now.Sub(e.fetched)
		if age < c.refresh {
			if age >= c.ahead {
				c.refreshInBackground(id, e, now)
			}
			c.hit.Inc()
			return e.answer()
		}
		if c.failedAt.Load() != 0 {
			// The store is failing: serve what we hold (within max_stale)
			// rather than make requests wait on it; background lookups
			// find out when it is back.
			c.refreshInBackground(id, e, now)
			return c.staleAnswer(e, now, nil)
		}
	} else if c.failedRecently(now) {
		c.unavailable.Inc()
		return User{}, fmt.Errorf("%w: the user store failed less than %s ago", ErrUsersUnavailable, c.retry)
	}
	c.miss.Inc()
	f := c.lookup(id)
	select {
	case <-f.done:
	case <-ctx.Done():
		if cached {
			return c.staleAnswer(e, now, ctx.Err())
		}
		return User{}, fmt.Errorf("%w: %w", ErrUsersUnavailable, ctx.Err())
	}
	if f.e != nil {
		return f.e.answer()
	}
	if cached {
		return c.staleAnswer(e, now, f.err)
	}
	c.unavailable.Inc()
	return User{}, fmt.Errorf("%w: %w", ErrUsersUnavailable, f.err)
}

// staleAnswer serves e, older than the refresh interval, while it is within
// max_stale; past it the answer is ErrUsersUnavailable.
func (c *Identities) staleAnswer(e *identity, now time.Time, cause error) (User, error) {
	if now.Sub(e.fetched) < c.maxStale {
		c.stale.Inc()
		return e.answer()
	}
	c.unavailable.Inc()
	if cause == nil {
		cause = fmt.Errorf("the last answer is over %s old", c.maxStale)
	}
	return User{}, fmt.Errorf("%w: %w", ErrUsersUnavailable, cause)
}

// failedRecently reports whether the last store lookup failed within the
// retry interval: a miss then fails at once instead of waiting on the store.
func (c *Identities) failedRecently(now time.Time) bool {
	at := c.failedAt.Load()
	return at != 0 && now.UnixNano()-at < int64(c.retry)
}

// refreshInBackground starts a lookup of id unless one is running, e failed
// to refresh a moment ago, or every background slot is busy (a later
// request tries again).
func (c *Identities) refreshInBackground(id string, e *identity, now time.Time) {
	if now.UnixNano() < e.nextTry.Load() {
		return
	}
	select {
	case c.bg <- struct{}{}:
	default:
		return
	}
	if _, started := c.start(id, e); !started {
		<-c.bg
	}
}

// lookup starts a lookup of id, or joins the one in progress.
func (c *Identities) lookup(id string) *flight {
	f, _ := c.start(id, nil)
	return f
}

// start begins a lookup of id unless one is in progress (then it returns
// that one). A background lookup (prev != nil from refreshInBackground)
// holds a slot of c.bg, released when it ends.
func (c *Identities) start(id string, prev *identity) (*flight, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[id]; f != nil {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	if c.closed {
		f.err = errors.New("identities closed")
		close(f.done)
		return f, false
	}
	c.flights[id] = f
	c.wg.Add(1)
	go c.run(id, f, prev)
	return f, true
}

// run performs one store lookup, on a context of its own: a request that
// gives up does not cancel the lookup others wait for.
func (c *Identities) run(id string, f *flight, prev *identity) {
	defer c.wg.Done()
	if prev != nil {
		defer func() { <-c.bg }()
	}
	started := c.now()
	ctx, cancel := context.WithTimeout(c.base, c.timeout)
	u, err := c.store.LookupUserByID(ctx, id)
	cancel()
	switch {
	case err == nil:
		u.PasswordHash = ""
		f.e = &identity{user: u, found: true, fetched: started}
	case errors.Is(err, ErrUserNotFound):
		f.e = &identity{fetched: started}
	default:
		f.err = err
	}
	if f.e != nil {
		c.cache.Add(id, f.e)
		if c.failedAt.Swap(0) != 0 {
			c.log.Info("user store answers again; identities are refreshed from it")
		}
	} else {
		c.refreshErrors.Inc()
		now := c.now()
		if prev != nil {
			prev.nextTry.Store(now.Add(c.retry).UnixNano())
		} else if held, ok := c.cache.Peek(id); ok {
			held.nextTry.Store(now.Add(c.retry).UnixNano())
		}
		switch {
		case errors.Is(err, errBadRecord):
			// One user's record: the store itself answers, other users
			// are not affected.
			c.log.Error("user store lookup failed for one user; serving their last known identity until it is max_stale old, then refusing (503)",
				"user_id", id, "max_stale", c.maxStale, "error", err)
		case c.failedAt.Swap(now.UnixNano()) == 0:
			c.log.Error("user store lookup failed; serving the last known identities until they are max_stale old, then refusing (503)",
				"max_stale", c.maxStale, "error", err)
		}
	}
	c.mu.Lock()
	delete(c.flights, id)
	c.mu.Unlock()
	close(f.done)
}

// Close stops background lookups and waits for them to end. Later
// lookups that need the store fail with ErrUsersUnavailable.
func (c *Identities) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}
