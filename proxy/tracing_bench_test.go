package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkProxyTracing is BenchmarkProxyAllowed with tracing off (no
// Tracer: the default), and on at 1% and 100% of new traces, exporting in
// batches over OTLP/HTTP to a loopback receiver that discards the spans
// (its CPU counts in cpu-ns/op too, as a collector's would not).
func BenchmarkProxyTracing(b *testing.B) {
	for _, bc := range []struct {
		name  string
		ratio float64 // < 0: tracing off
	}{{"off", -1}, {"on-1pct", 0.01}, {"on-100pct", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			up := benchUpstream(b)
			var tp *sdktrace.TracerProvider
			if bc.ratio >= 0 {
				rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					io.Copy(io.Discard, r.Body)
					w.Header().Set("Content-Type", "application/x-protobuf")
				}))
				b.Cleanup(rcv.Close)
				exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(rcv.URL+"/v1/traces"))
				if err != nil {
					b.Fatal(err)
				}
				tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
					sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(bc.ratio))))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			}
			e := newEnv(b, envConfig{options: func(o *Options) {
				o.Upstream = up
				o.Logger = slog.New(slog.DiscardHandler)
				if tp != nil {
					o.Tracer = tp.Tracer("tokengate")
				}
			}})
			hdr := bearer(e.issue("marco", "marco"))
			hdr.Set("X-Request-Id", "bench-request-id")
			runGets(b, benchClient(), e.srv.URL+"/api/items", hdr)
		})
	}
}

// tracedAuthOnly is authOnly with the tracing step in the chain, where New
// puts it (after the request id).
func tracedAuthOnly(tb testing.TB, tp *sdktrace.TracerProvider) (http.Handler, *http.Request) {
	e := newEnv(tb, envConfig{options: func(o *Options) {
		o.Logger = slog.New(slog.DiscardHandler)
		if tp != nil {
			o.Tracer = tp.Tracer("tokengate")
		}
	}})
	opts := e.opts
	opts.Registerer = nil
	h, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	hh := h.(*handler)
	next := chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, _ := hh.authenticateRequest(r)
		if !out.allowed() {
			tb.Fatalf("refused: %s", out.decision)
		}
		stateFrom(r.Context()).setClaims(out.claims)
		w.WriteHeader(http.StatusNoContent)
	}), hh.recoverPanics, hh.assignRequestID, hh.traceRequests, hh.observe, hh.stripIdentity)
	req := httptest.NewRequest("GET", "/api/items", nil)
	req.Header = bearer(e.issue("marco", "marco"))
	req.Header.Set("X-Request-Id", "bench-request-id")
	return next, req
}

func benchProvider(tb testing.TB, ratio float64) *sdktrace.TracerProvider {
	if ratio < 0 {
		return nil
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))))
	tb.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// BenchmarkTracingMiddleware: the allowed path in process (no network, no
// ReverseProxy), tracing off and on, spans batched to an exporter that
// drops them: what the server span itself costs.
func BenchmarkTracingMiddleware(b *testing.B) {
	for _, bc := range []struct {
		name  string
		ratio float64
	}{{"off", -1}, {"on-1pct", 0.01}, {"on-100pct", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			next, req := tracedAuthOnly(b, benchProvider(b, bc.ratio))
			w := &nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				next.ServeHTTP(w, req)
			}
		})
	}
}

// TestTracingOffCostsNoAllocation: with no Tracer the tracing step is not
// in the chain; the allowed path allocates as TestAuthMiddlewareAllocations
// pins it. With tracing on, sampled or not, it does allocate (the span).
func TestTracingOffCostsNoAllocation(t *testing.T) {
	off, req := tracedAuthOnly(t, nil)
	w := &nopWriter{h: http.Header{}}
	if n := testing.AllocsPerRun(200, func() { off.ServeHTTP(w, req) }); n > 2 {
		t.Errorf("tracing off: %v allocations per request, want <= 2 (as without the step)", n)
	}
	on, req := tracedAuthOnly(t, benchProvider(t, 1))
	if n := testing.AllocsPerRun(50, func() { on.ServeHTTP(w, req) }); n <= 2 {
		t.Errorf("tracing on: %v allocations per request; the measurement cannot tell on from off", n)
	}
}
