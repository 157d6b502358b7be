package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func spanAttr(s sdktrace.ReadOnlySpan, key string) (string, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String(), true
		}
	}
	return "", false
}

// TestSetSpanRule: what access rules will call sets tokengate.rule on the
// request's span, replacing the "" every server span starts with; without
// a recording span it does nothing.
func TestSetSpanRule(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, span := tp.Tracer("t").Start(context.Background(), "GET proxy", trace.WithAttributes(attrRule.String("")))
	SetSpanRule(ctx, "admins-only")
	span.End()
	if v, _ := spanAttr(rec.Ended()[0], "tokengate.rule"); v != "admins-only" {
		t.Errorf("tokengate.rule = %q, want admins-only", v)
	}
	SetSpanRule(context.Background(), "no span: no panic")
}

// TestVerifySpan: forward auth's verify gets a server span with its
// decision, and, there being no upstream, no client span.
func TestVerifySpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e := newEnv(t, envConfig{options: func(o *Options) {
		o.Upstream = nil
		o.Routes.Verify = verifyPath
		o.TrustedProxies = loopback
		o.Tracer = tp.Tracer("tokengate")
	}})
	hdr := bearer(e.issue("marco", "marco"))
	hdr.Set("X-Forwarded-Uri", "/api/items?token=query-secret")
	hdr.Set("X-Forwarded-Method", "GET")
	hdr.Set("X-Forwarded-Host", "app.example.com")
	hdr.Set("X-Forwarded-Proto", "https")
	if r := e.do("GET", verifyPath, hdr, ""); r.StatusCode != http.StatusOK {
		t.Fatalf("verify: %d %s", r.StatusCode, r.body)
	}
	if r := e.do("GET", verifyPath, http.Header{"X-Forwarded-Uri": {"/api/items"}, "X-Forwarded-Method": {"GET"}}, ""); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("verify without a token: %d", r.StatusCode)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want one server span per verify", len(spans))
	}
	for i, want := range []string{"allowed", "missing"} {
		s := spans[i]
		if s.Name() != "GET verify" || s.SpanKind() != trace.SpanKindServer {
			t.Errorf("span %d: %s kind %v", i, s.Name(), s.SpanKind())
		}
		if d, _ := spanAttr(s, "tokengate.decision"); d != want {
			t.Errorf("span %d tokengate.decision = %q, want %q", i, d, want)
		}
		for _, kv := range s.Attributes() {
			if v := kv.Value.String(); kv.Key != attribute.Key("tokengate.request_id") && (len(v) > 200 || strings.Contains(v, "query-secret")) {
				t.Errorf("span %d carries %s=%s", i, kv.Key, v)
			}
		}
	}
}
