package authn

import (
	"crypto/sha256"
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// ThrottleOptions bound failed logins. Zero values get the defaults.
type ThrottleOptions struct {
	PerUser    int           // failed (or still being checked) logins per login name per Window; default 10; <0 disables
	PerAddress int           // failed (or still being checked) logins per client address per Window; default 50; <0 disables
	Window     time.Duration // default 15m
	MaxEntries int           // names and addresses remembered (each); default 100000
}

// Throttle defaults.
const (
	DefaultThrottlePerUser    = 10
	DefaultThrottlePerAddress = 50
	DefaultThrottleWindow     = 15 * time.Minute
	DefaultThrottleMaxEntries = 100000
)

// ThrottledError is returned (wrapping ErrThrottled) when a budget is spent.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string { return ErrThrottled.Error() }
func (e *ThrottledError) Unwrap() error { return ErrThrottled }

// throttleKey is a SHA-256 so memory per entry is fixed however long the
// names clients send are.
type throttleKey [sha256.Size]byte

// failures counts failures in a fixed window that opens at the first one.
type failures struct {
	count int
	start time.Time
}

// throttle counts failed logins per login name and per client address.
// Both tables are LRUs, so memory is bounded; an evicted entry forgets its
// failures, which only an attacker spraying MaxEntries names could force.
type throttle struct {
	perUser, perAddr int
	window           time.Duration

	mu    sync.Mutex
	users *lru.Cache[throttleKey, failures]
	addrs *lru.Cache[throttleKey, failures]
}

func newThrottle(o ThrottleOptions) *throttle {
	if o.PerUser == 0 {
		o.PerUser = DefaultThrottlePerUser
	}
	if o.PerAddress == 0 {
		o.PerAddress = DefaultThrottlePerAddress
	}
	if o.Window <= 0 {
		o.Window = DefaultThrottleWindow
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultThrottleMaxEntries
	}
	t := &throttle{perUser: o.PerUser, perAddr: o.PerAddress, window: o.Window}
	t.users, _ = lru.New[throttleKey, failures](o.MaxEntries) // size > 0: cannot fail
	t.addrs, _ = lru.New[throttleKey, failures](o.MaxEntries)
	return t
}

func userKey(name string) throttleKey { return sha256.Sum256([]byte("u\x00" + name)) }

// addrKey groups an IPv6 client by its /64, the block one host usually
// holds; an IPv4 client (also IPv4-mapped) by its address.
func addrKey(addr string) throttleKey {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		if ap, perr := netip.ParseAddrPort(addr); perr == nil {
			a, err = ap.Addr(), nil
		}
	}
	if err == nil {
		a = a.Unmap()
		if a.Is6() {
			p, _ := a.Prefix(64)
			addr = p.String()
		} else {
			addr = a.String()
		}
	}
	return sha256.Sum256([]byte("a\x00" + addr))
}

// attempt is one login attempt counted against both budgets before its
// password check, so concurrent attempts cannot all pass a check that none of
// their failures has reached yet. An entry's start tells its window apart
// from a later one with the same key, so a late give-back cannot lower it.
type attempt struct {
	user, addr           throttleKey
	userStart, addrStart time.Time // zero: not counted in that table
}

// reserve counts an attempt for name and addr when both budgets allow one,
// or returns how long the caller must wait (and counts nothing). Attempts in
// flight count like failures: with a budget of 10, at most 10 password
// checks run per window however many requests arrive at once.
func (t *throttle) reserve(name, addr string, now time.Time) (attempt, time.Duration) {
	var at attempt
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.perUser >= 0 {
		at.user = userKey(name)
	}
	if addr != "" && t.perAddr >= 0 {
		at.addr = addrKey(addr)
	}
	wait := t.blocked(t.users, t.perUser, at.user, now)
	if addr != "" {
		wait = max(wait, t.blocked(t.addrs, t.perAddr, at.addr, now))
	}
	if wait > 0 {
		return attempt{}, wait
	}
	if t.perUser >= 0 {
		at.userStart = t.add(t.users, at.user, now)
	}
	if addr != "" && t.perAddr >= 0 {
		at.addrStart = t.add(t.addrs, at.addr, now)
	}
	return at, 0
}

func (t *throttle) blocked(c *lru.Cache[throttleKey, failures], budget int, k throttleKey, now time.Time) time.Duration {
	if budget < 0 {
		return 0
	}
	f, ok := c.Peek(k)
	if !ok {
		return 0
	}
	end := f.start.Add(t.window)
	if !now.Before(end) {
		c.Remove(k)
		return 0
	}
	if f.count < budget {
		return 0
	}
	return end.Sub(now)
}

// add counts one attempt and returns the start of its window.
func (t *throttle) add(c *lru.Cache[throttleKey, failures], k throttleKey, now time.Time) time.Time {
	f, ok := c.Get(k)
	if !ok || !now.Before(f.start.Add(t.window)) {
		f = failures{start: now}
	}
	f.count++
	c.Add(k, f)
	return f.start
}

// release gives an attempt back: it checked no password (the store failed).
func (t *throttle) release(at attempt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.giveBack(t.users, at.user, at.userStart)
	t.giveBack(t.addrs, at.addr, at.addrStart)
}

// succeed gives the attempt back and forgets the name's failures: the
// account holder is back. The address keeps its failures (only this
// attempt is given back), or one valid account would reset a spray.
func (t *throttle) succeed(at attempt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !at.userStart.IsZero() {
		t.users.Remove(at.user)
	}
	t.giveBack(t.addrs, at.addr, at.addrStart)
}

func (t *throttle) giveBack(c *lru.Cache[throttleKey, failures], k throttleKey, start time.Time) {
	if start.IsZero() {
		return
	}
	f, ok := c.Peek(k)
	if !ok || !f.start.Equal(start) || f.count == 0 {
		return // that window is gone (expired or evicted)
	}
	f.count--
	c.Add(k, f)
}
