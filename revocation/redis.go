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
	DefaultRedisTimeout     = 500 * time.Millisecond
	DefaultRedisHealthCheck = 10 * time.Second
	DefaultRedisClusterLoad = 5 * time.Second
)

// ErrNotConfirmed wraps ErrUnavailable: the revocation was sent but fewer
// than RedisOptions.MinReplicas replicas acknowledged it in time. It may or
// may not have been stored; it is not confirmed, so the caller answers 503.
var ErrNotConfirmed = fmt.Errorf("%w: revocation not confirmed by enough replicas", ErrUnavailable)

const (
	redisResubscribeMinWait = 100 * time.Millisecond
	redisResubscribeMaxWait = 2 * time.Second
	redisCutoffDigits       = 20 // fixed width so Lua compares cutoffs as strings exactly
	redisEventToken         = "t"
	redisEventUser          = "u"
	redisChannelSuffix      = "revocations"
)

// DefaultRedisPrefix is the prefix of keys and channel when RedisOptions.Prefix
// is empty: "tokengate:db<N>:" for database N. Redis pub/sub ignores the
// database number, so the number must be in the channel's name: two
// deployments on one server in different databases never hear each other.
// Cluster and Sentinel addresses (RedisOptions.Addrs) use database 0.
func DefaultRedisPrefix(db int) string { return "tokengate:db" + strconv.Itoa(db) + ":" }

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

	// Prefix starts every key and the pub/sub channel (<Prefix>revocations).
	// Deployments that share a Redis server must not share a prefix unless
	// they mean to share revocations. Default DefaultRedisPrefix(db).
	Prefix string

	// DialTimeout, ReadTimeout (also used for writes) are small so a dead
	// Redis fails fast; default 500ms each. A command is retried once, a
	// dial is not.
	DialTimeout time.Duration
	ReadTimeout time.Duration
	// HealthCheckInterval: an idle subscription is pinged this often and
	// declared lost when the PING goes unanswered as long again; default 10s.
	HealthCheckInterval time.Duration
	// ClusterReloadInterval: in Cluster mode, the slot map is re-read at
	// least this often (and at once after any failed command or lost
	// subscription); default 5s.
	ClusterReloadInterval time.Duration

	// MinReplicas > 0: a revocation succeeds only after WAIT, sent on the
	// connection that wrote it, reports that many replicas have it within
	// WaitTimeout; otherwise it fails with ErrNotConfirmed. Default 0.
	MinReplicas int
	// WaitTimeout bounds that WAIT; default and upper bound: 60% of
	// ReadTimeout, so WAIT answers before the read deadline.
	WaitTimeout time.Duration

	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
}

// RedisStore is a Store shared by replicas through Redis. Keys:
//
//	<prefix>jti:<jti>   exp (unix ns), PX = time left until exp
//	<prefix>user:<id>   cutoff (unix ns, 20 digits), PX = time left until `until`
//	<prefix>longest_lifetime  longest token lifetime noted (ms); no TTL, unlike every other key
//
// Every key but longest_lifetime has a TTL. Each successful revocation is
// published on <prefix>revocations ("t:<exp ns>:<jti>" or "u:<cutoff
// ns>:<user id>") so that other replicas re-check it (see Notifications): a
// message is a hint, the keys are the truth. Durability is Redis's own
// (appendonly/appendfsync, replication, and MinReplicas).
type RedisStore struct {
	client      redis.UniversalClient
	cluster     *redis.ClusterClient // nil unless Cluster mode
	minReplicas int
	waitTimeout time.Duration
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
// may race), keeps the key until the later of the two expiries, and returns
// 1 when the cutoff moved (only then is it announced). The announcement is
// sent by the caller, not the script: in a Cluster the channel's slot is
// not the key's.
//
// KEYS[1] user key; ARGV[1] cutoff (fixed width, so string order is number
// order: Lua numbers are doubles and would round nanoseconds); ARGV[2] TTL
// in ms.
var revokeUserScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and #cur == #ARGV[1] and cur >= ARGV[1] then
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
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
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultRedisTimeout
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultRedisTimeout
	}
	if opts.HealthCheckInterval <= 0 {
		opts.HealthCheckInterval = DefaultRedisHealthCheck
	}
	if opts.ClusterReloadInterval <= 0 {
		opts.ClusterReloadInterval = DefaultRedisClusterLoad
	}
	if opts.MinReplicas < 0 {
		return nil, errors.New("revocation: redis MinReplicas must not be negative")
	}
	if maxWait := opts.ReadTimeout * 6 / 10; opts.WaitTimeout <= 0 || opts.WaitTimeout > maxWait {
		opts.WaitTimeout = maxWait
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}

	var client redis.UniversalClient
	var cluster *redis.ClusterClient
	db := 0
	// One set of options for every shape; the cluster case takes its
	// ClusterOptions from them (Cluster copies the shared fields).
	universal := &redis.UniversalOptions{
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
	}
	switch {
	case len(opts.Addrs) > 1 && opts.MasterName == "":
		// Built here rather than by NewUniversalClient, which cannot set
		// the slot map's reload interval (60s by default: a promoted
		// replica would go unused that long).
		co := universal.Cluster()
		co.ClusterStateReloadInterval = opts.ClusterReloadInterval
		cluster = redis.NewClusterClient(co)
		client = cluster
	case len(opts.Addrs) > 0:
		client = redis.NewUniversalClient(universal)
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
		db = o.DB
		client = redis.NewClient(o)
	default:
		return nil, errors.New("revocation: redis needs a URL or addresses")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultRedisPrefix(db)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &RedisStore{
		client:      client,
		cluster:     cluster,
		minReplicas: opts.MinReplicas,
		waitTimeout: opts.WaitTimeout,
		prefix:      opts.Prefix,
		channel:     opts.Prefix + redisChannelSuffix,
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
	key := s.tokenKey(jti)
	err := s.write(ctx, key, func(p redis.Pipeliner) error {
		p.Set(ctx, key, e, roundUpMillis(ttl))
		return nil
	})
	if err != nil {
		return err
	}
	return s.publish(ctx, redisEventToken+":"+e+":"+jti)
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
	key := s.tokenKey(jti)
	var set *redis.BoolCmd
	err := s.write(ctx, key, func(p redis.Pipeliner) error {
		set = p.SetNX(ctx, key, e, roundUpMillis(ttl))
		return nil
	})
	if err != nil {
		return false, err
	}
	if !set.Val() {
		return false, nil
	}
	if err := s.publish(ctx, redisEventToken+":"+e+":"+jti); err != nil {
		return false, err
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
	key := s.userKey(userID)
	args := []any{value, roundUpMillis(ttl).Milliseconds()}
	var moved *redis.Cmd
	err := s.write(ctx, key, func(p redis.Pipeliner) error {
		moved = revokeUserScript.EvalSha(ctx, p, []string{key}, args...)
		return nil
	})
	if err != nil && redis.HasErrorPrefix(moved.Err(), "NOSCRIPT") {
		err = s.write(ctx, key, func(p redis.Pipeliner) error {
			moved = revokeUserScript.Eval(ctx, p, []string{key}, args...)
			return nil
		})
	}
	if err != nil {
		return err
	}
	if n, _ := moved.Int(); n == 0 {
		return nil
	}
	return s.publish(ctx, redisEventUser+":"+value+":"+userID)
}

// write runs the commands fill queues (all about key) in one pipeline.
// With MinReplicas, the pipeline ends with WAIT and runs on one connection
// to the primary holding key (a WAIT on any other connection, or another
// node, would answer at once: a false confirmation); fewer acknowledgements
// than MinReplicas within WaitTimeout is ErrNotConfirmed.
func (s *RedisStore) write(ctx context.Context, key string, fill func(redis.Pipeliner) error) error {
	if s.minReplicas == 0 {
		_, err := s.client.Pipelined(ctx, fill)
		return s.unavailable(err)
	}
	var conn redis.Cmdable = s.client
	if s.cluster != nil {
		node, err := s.cluster.MasterForKey(ctx, key)
		if err != nil {
			return s.unavailable(err)
		}
		conn = node
	}
	var acked *redis.Cmd
	_, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		if err := fill(p); err != nil {
			return err
		}
		// WAIT through Do: Pipeliner has no Wait; the pipeline's read
		// deadline (ReadTimeout) outlasts WaitTimeout.
		acked = p.Do(ctx, "WAIT", s.minReplicas, s.waitTimeout.Milliseconds())
		return nil
	})
	if err != nil {
		return s.unavailable(err)
	}
	if n, err := acked.Int64(); err != nil || n < int64(s.minReplicas) {
		return fmt.Errorf("%w: %d of %d replicas acknowledged within %s", ErrNotConfirmed, n, s.minReplicas, s.waitTimeout)
	}
	return nil
}

// publish announces a revocation: SPUBLISH (sharded pub/sub, served by the
// channel's own shard) in a Cluster, PUBLISH otherwise. A failed announcement
// fails the revocation (not confirmed), although the write may have landed.
func (s *RedisStore) publish(ctx context.Context, msg string) error {
	if s.cluster != nil {
		return s.unavailable(s.cluster.SPublish(ctx, s.channel, msg).Err())
	}
	return s.unavailable(s.client.Publish(ctx, s.channel, msg).Err())
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

// Prefix is the prefix of this store's keys and channel.
func (s *RedisStore) Prefix() string { return s.prefix }

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
		if s.cluster != nil {
			s.cluster.ReloadState(ctx) // the channel's shard may have a new primary
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
	var ps *redis.PubSub
	if s.cluster != nil {
		ps = s.cluster.SSubscribe(ctx, s.channel)
	} else {
		ps = s.client.Subscribe(ctx, s.channel)
	}
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
			if m.Kind == "unsubscribe" || m.Kind == "sunsubscribe" {
				// The server dropped us: the channel's slot moved to
				// another node (Cluster), or the connection was reset.
				return established, errors.New("subscription dropped by the server")
			}
			if (m.Kind == "subscribe" || m.Kind == "ssubscribe") && !established {
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

// unavailable wraps a failure in ErrUnavailable. In a Cluster any failure
// (a dead node, MOVED, CLUSTERDOWN, a timeout) also asks for a fresh slot
// map at once, so a promoted replica is used within moments rather than at
// the next periodic reload (the client library alone keeps sending to a
// dead primary until then).
func (s *RedisStore) unavailable(err error) error {
	if err == nil {
		return nil
	}
	if s.cluster != nil && !errors.Is(err, redis.Nil) {
		s.cluster.ReloadState(context.Background())
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
