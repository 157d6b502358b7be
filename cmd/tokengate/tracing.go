package main

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"tokengate/internal/tracing"
	"tokengate/proxy"
	"tokengate/revocation"
)

// startTracing starts the tracer provider when tracing.enabled; nil when
// off. Shutdown (a closer) flushes the queued spans for up to 5s.
func (a *app) startTracing(ctx context.Context) (trace.Tracer, error) {
	if !a.cfg.Tracing.Enabled {
		return nil, nil
	}
	tp, err := tracing.New(ctx, tracing.Options{SamplerRatio: a.cfg.Tracing.SamplerRatio, ServiceVersion: version})
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	a.closers = append(a.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return tp.Shutdown(ctx)
	})
	return tp.Tracer(), nil
}

// traceStore puts revocation store calls (cache misses) in child spans.
func traceStore(s revocation.Store, t trace.Tracer, backend string) revocation.Store {
	if t == nil {
		return s
	}
	return tracing.Store(s, t, backend)
}

// traceAuth puts each login's user lookup and password check in a child span.
func traceAuth(a proxy.Authenticator, t trace.Tracer) proxy.Authenticator {
	if t == nil {
		return a
	}
	return tracing.Authenticate(a, t)
}
