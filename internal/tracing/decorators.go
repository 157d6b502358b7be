package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"tokengate/authn"
	"tokengate/revocation"
)

// child starts a span under the request's span, or none when ctx carries
// no span (background work: pub/sub, startup), so those never make traces
// of their own.
func child(ctx context.Context, t trace.Tracer, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span, bool) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil, false
	}
	ctx, span := t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx, span, true
}

func end(span trace.Span, err error, what string) {
	if err != nil {
		// A fixed description: an error's text may name a user or a key.
		span.SetStatus(codes.Error, what+" failed")
	}
	span.End()
}

// Store puts each call of s that a request makes in a child span. The
// revocation Checker calls the store only on a cache miss, so a hit makes
// no span.
// The optional interfaces the Checker looks for (Ping, pub/sub) stay
// visible through the wrapper exactly when s has them.
func Store(s revocation.Store, t trace.Tracer, backend string) revocation.Store {
	ts := &tracedStore{Store: s, t: t, backend: attribute.String("tokengate.revocation.backend", backend)}
	p, pings := s.(pinger)
	n, notifies := s.(notifyingStore)
	switch {
	case notifies && pings:
		return &tracedNotifyingStore{tracedStore: ts, notifyingStore: n, pinger: p}
	case pings:
		return &tracedPingingStore{tracedStore: ts, pinger: p}
	}
	return ts
}

type pinger interface {
	Ping(ctx context.Context) error
}

// notifyingStore is a store with cross-replica notifications (RedisStore).
type notifyingStore interface {
	revocation.Notifier
	Subscribed() bool
}

type tracedPingingStore struct {
	*tracedStore
	pinger
}

type tracedNotifyingStore struct {
	*tracedStore
	notifyingStore
	pinger
}

type tracedStore struct {
	revocation.Store
	t       trace.Tracer
	backend attribute.KeyValue
}

var (
	_ revocation.Store    = (*tracedStore)(nil)
	_ revocation.Store    = (*tracedNotifyingStore)(nil)
	_ revocation.Notifier = (*tracedNotifyingStore)(nil)
	_ pinger              = (*tracedPingingStore)(nil)
)

func (s *tracedStore) Status(ctx context.Context, jti, userID string) (revocation.Status, error) {
	ctx, span, ok := child(ctx, s.t, "revocation.status", s.backend)
	if !ok {
		return s.Store.Status(ctx, jti, userID)
	}
	st, err := s.Store.Status(ctx, jti, userID)
	end(span, err, "revocation store")
	return st, err
}

func (s *tracedStore) RevokeToken(ctx context.Context, jti string, exp time.Time) error {
	ctx, span, ok := child(ctx, s.t, "revocation.revoke_token", s.backend)
	if !ok {
		return s.Store.RevokeToken(ctx, jti, exp)
	}
	err := s.Store.RevokeToken(ctx, jti, exp)
	end(span, err, "revocation store")
	return err
}

func (s *tracedStore) RevokeTokenOnce(ctx context.Context, jti string, exp time.Time) (bool, error) {
	ctx, span, ok := child(ctx, s.t, "revocation.revoke_token_once", s.backend)
	if !ok {
		return s.Store.RevokeTokenOnce(ctx, jti, exp)
	}
	first, err := s.Store.RevokeTokenOnce(ctx, jti, exp)
	end(span, err, "revocation store")
	return first, err
}

func (s *tracedStore) RevokeUser(ctx context.Context, userID string, cutoff, until time.Time) error {
	ctx, span, ok := child(ctx, s.t, "revocation.revoke_user", s.backend)
	if !ok {
		return s.Store.RevokeUser(ctx, userID, cutoff, until)
	}
	err := s.Store.RevokeUser(ctx, userID, cutoff, until)
	end(span, err, "revocation store")
	return err
}

// Authenticator is what a login asks: the user store lookup and the
// password check (proxy.Authenticator).
type Authenticator interface {
	Authenticate(ctx context.Context, username, password, clientAddr string) (authn.User, error)
}

// Authenticate puts each login's user lookup and password check in a child
// span. Neither the login name nor the password is recorded.
func Authenticate(a Authenticator, t trace.Tracer) Authenticator {
	return &tracedAuth{a: a, t: t}
}

type tracedAuth struct {
	a Authenticator
	t trace.Tracer
}

func (a *tracedAuth) Authenticate(ctx context.Context, username, password, clientAddr string) (authn.User, error) {
	ctx, span, ok := child(ctx, a.t, "authn.authenticate")
	if !ok {
		return a.a.Authenticate(ctx, username, password, clientAddr)
	}
	u, err := a.a.Authenticate(ctx, username, password, clientAddr)
	end(span, err, "authentication")
	return u, err
}
