package revocation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults for RedisOptions.
const (
	DefaultRedisKeyPrefix   = "tokengate:"
	DefaultRedisChannel     = "tokengate:revocations"
	DefaultRedisTimeout     = 500 * time.Millisecond
	DefaultRedisHealthCheck = 10 * time.Second
)

const (
	redisResubscribeMinWait = 100 * time.Millisecond
	redisResubscribeMaxWait = 2 * time.Second
	redisCutoffDigits       = 20 // fixed width so Lua compares cutoffs as strings exactly
	redisEventToken         = "t"
	redisEventUser          = "u"
)

// RedisOptions configure a RedisStore. Zero values get the documented defaults.
type RedisOptions struct {
	// URL is redis://[user:pass@]host:port/db or rediss:// for TLS, parsed by
	// redis.ParseURL. Ignored when Addrs is set.
	URL string
	// Addrs lists Sentinel addresses (with MasterName) or Cluster seed nodes
	// (several addresses, no MasterName); one address without MasterName is a
	// single node.
	Addrs      []string
	MasterName string
	// Password (read by the caller from a file or the environment) overrides
	// the URL's.
	Password string
	// TLS enables TLS for Addrs (the URL's scheme decides for URL).
	TLS *tls.Config

	KeyPrefix string // default "tokengate:"
	Channel   string // pub/sub channel for revocation events; default "tokengate:revocations"

	// DialTimeout, ReadTimeout (also used for writes) are small so a dead
	// Redis fails fast; default 500ms each. A command is retried once, a
	// dial is not.
	DialTimeout time.Duration
	ReadTimeout time.Duration
	// HealthCheckInterval: an idle subscription is pinged this often and
	// declared lost when the PING goes unanswered as long again; default 10s.
	HealthCheckInterval time.Duration

	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
}

// RedisStore is a Store shared by replicas through Redis. Keys:
//
//	<prefix>jti:<jti>   exp (unix ns), PX = time left until exp
//	<prefix>user:<id>   cutoff (unix ns, 20 digits), PX = time left until `until`
//	<prefix>longest_lifetime  longest token lifetime noted (ms); no TTL, unlike every other key
//
// Every key has a TTL. Each successful revocation is published on Channel
// ("t:<exp ns>:<jti>" or "u:<cutoff ns>:<user id>") so that other replicas
// update their caches (see Notifications). Durability is Redis's own
// (appendonly/appendfsync, replication).
type RedisStore struct {
	client      redis.UniversalClient
	prefix      string
	channel     string
	healthCheck time.Duration
	now         func() time.Time
	log         *slog.Logger

	subscribed atomic.Bool
	closeCtx   context.Context
	close      context.CancelFunc
}

var (
	_ Store    = (*RedisStore)(nil)
	_ Notifier = (*RedisStore)(nil)
)

// revokeUserScript moves the cutoff forward only, atomically (two replicas
// may race), keeps the key until the later of the two expiries, and
// announces only a cutoff that moved.
//
// KEYS[1] user key; ARGV[1] cutoff (fixed width, so string order is number
// order: Lua numbers are doubles and would round nanoseconds); ARGV[2] TTL
// in ms; ARGV[3] channel; ARGV[4] message.
var revokeUserScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and #cur == #ARGV[1] and cur >= ARGV[1] then
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`)

// noteLifetimeScript raises the longest-lifetime key (whole milliseconds,
// no expiry) to ARGV[1] if that is longer, and returns the maximum.
var noteLifetimeScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local d = tonumber(ARGV[1])
if cur then
  local n = tonumber(cur)
  if not n then
    return redis.error_reply('malformed longest lifetime')
  end
  if n >= d then
    return n
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return d
`)

// NewRedisStore builds the client; it does not contact Redis (see Ping), so
// a replica can start while Redis is down and become ready later.
func NewRedisStore(opts RedisOptions) (*RedisStore, error) {
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultRedisKeyPrefix
	}
	if opts.Channel == "" {
		opts.Channel = DefaultRedisChannel
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultRedisTimeout
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultRedisTimeout
	}
	if opts.HealthCheckInterval <= 0 {
		opts.HealthCheckInterval = DefaultRedisHealthCheck
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}

	var client redis.UniversalClient
	switch {
	case len(opts.Addrs) > 0:
		client = redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs:                 opts.Addrs,
			MasterName:            opts.MasterName,
			Password:              opts.Password,
			TLSConfig:             opts.TLS,
			DialTimeout:           opts.DialTimeout,
			ReadTimeout:           opts.ReadTimeout,
			WriteTimeout:          opts.ReadTimeout,
			MaxRetries:            1,
			DialerRetries:         1,
			ContextTimeoutEnabled: true,
		})
	case opts.URL != "":
		o, err := redis.ParseURL(opts.URL)
		if err != nil {
			// url.Error repeats the URL, which may hold a password.
			if ue := (*url.Error)(nil); errors.As(err, &ue) {
				err = ue.Err
			}
			return nil, fmt.Errorf("revocation: invalid redis URL: %w", err)
		}
		if opts.Password != "" {
			o.Password = opts.Password
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = opts.DialTimeout, opts.ReadTimeout, opts.ReadTimeout
		o.MaxRetries, o.DialerRetries = 1, 1
		o.ContextTimeoutEnabled = true
		client = redis.NewClient(o)
	default:
		return nil, errors.New("revocation: redis needs a URL or addresses")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &RedisStore{
		client:      client,
		prefix:      opts.KeyPrefix,
		channel:     opts.Channel,
		healthCheck: opts.HealthCheckInterval,
		now:         opts.Now,
		log:         opts.Logger,
		closeCtx:    ctx,
		close:       cancel,
	}, nil
}

// RevokeToken sets <prefix>jti:<jti> with a TTL up to exp and announces it;
// an already expired token is a no-op.
func (s *RedisStore) RevokeToken(ctx context.Context, jti string, exp time.Time) error {
	if jti == "" {
		return errEmptyJTI
	}
	ttl := exp.Sub(s.now())
	if ttl <= 0 {
		return nil
	}
	e := strconv.FormatInt(exp.UnixNano(), 10)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.tokenKey(jti), e, roundUpMillis(ttl))
		p.Publish(ctx, s.channel, redisEventToken+":"+e+":"+jti)
		return nil
	})
	return s.unavailable(err)
}

// RevokeTokenOnce sets <prefix>jti:<jti> only if it is absent (SET NX PX:
// of concurrent callers on every replica, Redis lets exactly one set it)
// and announces it when it did.
func (s *RedisStore) RevokeTokenOnce(ctx context.Context, jti string, exp time.Time) (bool, error) {
	if jti == "" {
		return false, errEmptyJTI
	}
	ttl := exp.Sub(s.now())
	if ttl <= 0 {
		return false, nil
	}
	e := strconv.FormatInt(exp.UnixNano(), 10)
	set, err := s.client.SetNX(ctx, s.tokenKey(jti), e, roundUpMillis(ttl)).Result()
	if err != nil || !set {
		return false, s.unavailable(err)
	}
	if err := s.client.Publish(ctx, s.channel, redisEventToken+":"+e+":"+jti).Err(); err != nil {
		return false, s.unavailable(err)
	}
	return true, nil
}

// NoteLifetime raises <prefix>longest_lifetime (milliseconds, rounded up;
// no TTL) to d if d is longer and returns the maximum.
func (s *RedisStore) NoteLifetime(ctx context.Context, d time.Duration) (time.Duration, error) {
	ms := roundUpMillis(max(d, 0)).Milliseconds()
	n, err := noteLifetimeScript.Run(ctx, s.client, []string{s.prefix + "longest_lifetime"}, ms).Int64()
	if err != nil {
		return 0, s.unavailable(err)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// RevokeUser moves <prefix>user:<id> forward to cutoff (never back) with a
// TTL up to `until`, and announces a cutoff that moved.
func (s *RedisStore) RevokeUser(ctx context.Context, userID string, cutoff, until time.Time) error {
	if userID == "" {
		return errEmptyUser
	}
	c := cutoff.UnixNano()
	if c < 0 {
		return errors.New("revocation: cutoff before 1970")
	}
	ttl := until.Sub(s.now())
	if ttl <= 0 {
		return nil
	}
	value := fmt.Sprintf("%0*d", redisCutoffDigits, c)
	msg := redisEventUser + ":" + value + ":" + userID
	err := revokeUserScript.Run(ctx, s.client, []string{s.userKey(userID)},
		value, roundUpMillis(ttl).Milliseconds(), s.channel, msg).Err()
	return s.unavailable(err)
}

// Status asks both questions in one round trip: a pipeline of two GETs
// (pipelined rather than MGET because in Cluster mode the keys live in
// different slots; go-redis then sends one batch per node).
func (s *RedisStore) Status(ctx context.Context, jti, userID string) (Status, error) {
	var tok, usr *redis.StringCmd
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		tok = p.Get(ctx, s.tokenKey(jti))
		usr = p.Get(ctx, s.userKey(userID))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Status{}, s.unavailable(err)
	}
	for _, cmd := range []*redis.StringCmd{tok, usr} {
		if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return Status{}, s.unavailable(err)
		}
	}
	var st Status
	st.TokenRevoked = jti != "" && tok.Err() == nil
	if v, err := usr.Result(); err == nil && userID != "" {
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil {
			// Someone else's value under our key: fail closed rather than guess.
			return Status{}, fmt.Errorf("%w: malformed cutoff under %s", ErrUnavailable, s.userKey(userID))
		}
		st.UserCutoff = time.Unix(0, n)
	}
	return st, nil
}

// Ping checks that Redis answers.
func (s *RedisStore) Ping(ctx context.Context) error {
	return s.unavailable(s.client.Ping(ctx).Err())
}

// Subscribed reports whether a Notifications subscription is established.
func (s *RedisStore) Subscribed() bool { return s.subscribed.Load() }

// Close stops Notifications and closes the client.
func (s *RedisStore) Close() error {
	s.close()
	return s.client.Close()
}

// Notifications subscribes to Channel until ctx is done or the store is
// closed, resubscribing (with backoff) whenever the subscription is lost.
// onReset runs each time a subscription is established, before any of its
// events; callbacks run on the calling goroutine. Run one at a time per store.
func (s *RedisStore) Notifications(ctx context.Context, onEvent func(Event), onReset func()) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closeCtx, cancel)()

	wait := redisResubscribeMinWait
	down := false
	for {
		established, err := s.subscribeOnce(ctx, onEvent, onReset)
		s.subscribed.Store(false)
		if ctx.Err() != nil {
			return
		}
		if established {
			wait = redisResubscribeMinWait
			down = false
		}
		if !down {
			s.log.Warn("revocation notifications lost; resubscribing", "channel", s.channel, "err", err)
			down = true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, redisResubscribeMaxWait)
	}
}

// subscribeOnce runs one subscription until it fails; established says
// whether it ever got Redis's confirmation.
func (s *RedisStore) subscribeOnce(ctx context.Context, onEvent func(Event), onReset func()) (established bool, err error) {
	ps := s.client.Subscribe(ctx, s.channel)
	defer ps.Close()
	// Receive does not watch ctx; closing the PubSub unblocks it.
	defer context.AfterFunc(ctx, func() { _ = ps.Close() })()

	awaitingPong := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.healthCheck)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !awaitingPong {
				// Idle: make sure the connection is alive (a half-open TCP
				// connection would otherwise look like a quiet channel).
				if err := ps.Ping(ctx); err != nil {
					return established, err
				}
				awaitingPong = true
				continue
			}
			return established, err
		}
		awaitingPong = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && !established {
				established = true
				s.log.Info("revocation notifications subscribed", "channel", s.channel)
				onReset()
				// Only now: "subscribed" promises the reset has been applied.
				s.subscribed.Store(true)
			}
		case *redis.Message:
			if ev, ok := parseEvent(m.Payload); ok {
				onEvent(ev)
			} else {
				s.log.Warn("revocation notification ignored: malformed", "channel", s.channel)
			}
		}
	}
}

func (s *RedisStore) tokenKey(jti string) string   { return s.prefix + "jti:" + jti }
func (s *RedisStore) userKey(userID string) string { return s.prefix + "user:" + userID }

func (s *RedisStore) unavailable(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
}

// parseEvent reads "t:<exp ns>:<jti>" or "u:<cutoff ns>:<user id>".
func parseEvent(payload string) (Event, bool) {
	kind, rest, ok := strings.Cut(payload, ":")
	if !ok {
		return Event{}, false
	}
	num, id, ok := strings.Cut(rest, ":")
	if !ok || id == "" {
		return Event{}, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return Event{}, false
	}
	switch kind {
	case redisEventToken:
		return Event{Kind: EventToken, ID: id, Time: time.Unix(0, n)}, true
	case redisEventUser:
		return Event{Kind: EventUser, ID: id, Time: time.Unix(0, n)}, true
	}
	return Event{}, false
}

// roundUpMillis rounds up to whole milliseconds (Redis PX), at least 1ms, so
// a key never expires before the time it stands for.
func roundUpMillis(d time.Duration) time.Duration {
	return max(time.Millisecond, (d + time.Millisecond - 1).Truncate(time.Millisecond))
}
