package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"tokengate/authn"
	"tokengate/revocation"
)

func TestNewRefusesWhatItCannotHonour(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ratio float64
		env   map[string]string
		want  string
	}{
		{"http/json is not supported", 1, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, `OTEL_EXPORTER_OTLP_PROTOCOL "http/json"`},
		{"the traces variable wins", 1, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, `"thrift"`},
		{"ratio above one", 1.5, nil, "sampler ratio 1.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), Options{SamplerRatio: tc.ratio, Getenv: func(k string) string { return tc.env[k] }})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one naming %s", err, tc.want)
			}
		})
	}
	for _, protocol := range []string{"", "http/protobuf", "grpc"} {
		p, err := New(context.Background(), Options{SamplerRatio: 0.5, Getenv: func(k string) string {
			if k == "OTEL_EXPORTER_OTLP_PROTOCOL" {
				return protocol
			}
			return ""
		}})
		if err != nil {
			t.Fatalf("protocol %q: %v", protocol, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = p.Shutdown(ctx) // nothing queued: nothing to send
		cancel()
	}
}

func recorder() (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	return rec, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
}

// notifying is a store with the optional interfaces of RedisStore.
type notifying struct{ *revocation.MemoryStore }

func (notifying) Notifications(context.Context, func(revocation.Event), func()) {}
func (notifying) Subscribed() bool                                              { return true }

func TestStoreKeepsOptionalInterfaces(t *testing.T) {
	_, tp := recorder()
	mem := revocation.NewMemoryStore(time.Now)
	plain := Store(mem, tp.Tracer("t"), "memory")
	if _, ok := plain.(pinger); !ok {
		t.Error("the memory store's Ping is hidden by the wrapper")
	}
	if _, ok := plain.(revocation.Notifier); ok {
		t.Error("a store without notifications looks like a Notifier through the wrapper")
	}
	redisLike := Store(notifying{mem}, tp.Tracer("t"), "redis")
	if _, ok := redisLike.(revocation.Notifier); !ok {
		t.Error("a notifying store's Notifications are hidden by the wrapper")
	}
	if s, ok := redisLike.(interface{ Subscribed() bool }); !ok || !s.Subscribed() {
		t.Error("Subscribed is hidden by the wrapper")
	}
}

func TestStoreSpansOnlyUnderARequest(t *testing.T) {
	rec, tp := recorder()
	s := Store(revocation.NewMemoryStore(time.Now), tp.Tracer("t"), "memory")
	// Background work (pub/sub, startup) makes no trace of its own.
	if _, err := s.Status(context.Background(), "jti-1", "marco"); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans without a parent, want 0", n)
	}
	ctx, parent := tp.Tracer("t").Start(context.Background(), "request")
	if _, err := s.Status(ctx, "jti-1", "marco"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, "jti-secret-id", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	parent.End()
	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want status, revoke_token and the parent", len(spans))
	}
	for _, sp := range spans[:2] {
		if sp.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s is not a child of the request's span", sp.Name())
		}
		for _, kv := range sp.Attributes() {
			if v := kv.Value.String(); strings.Contains(v, "jti") || strings.Contains(v, "marco") {
				t.Errorf("%s carries %s=%s", sp.Name(), kv.Key, v)
			}
		}
	}
	if spans[0].Name() != "revocation.status" || spans[1].Name() != "revocation.revoke_token" {
		t.Errorf("span names %s, %s", spans[0].Name(), spans[1].Name())
	}
}

type fakeAuth struct{ err error }

func (f fakeAuth) Authenticate(_ context.Context, username, password, _ string) (authn.User, error) {
	if f.err != nil {
		return authn.User{}, fmt.Errorf("user %q password %q: %w", username, password, f.err)
	}
	return authn.User{ID: username}, nil
}

func TestAuthenticateSpanHoldsNoCredentials(t *testing.T) {
	rec, tp := recorder()
	a := Authenticate(fakeAuth{err: authn.ErrInvalidCredentials}, tp.Tracer("t"))
	ctx, parent := tp.Tracer("t").Start(context.Background(), "login")
	_, err := a.Authenticate(ctx, "marco", "hunter2-password", "127.0.0.1")
	if !errors.Is(err, authn.ErrInvalidCredentials) {
		t.Fatalf("the error is not passed through: %v", err)
	}
	parent.End()
	sp := rec.Ended()[0]
	if sp.Name() != "authn.authenticate" || sp.Status().Code != codes.Error || sp.Status().Description != "authentication failed" {
		t.Errorf("span %s status %+v", sp.Name(), sp.Status())
	}
	for _, kv := range sp.Attributes() {
		t.Errorf("attribute %s=%s on the login span: want none", kv.Key, kv.Value.String())
	}
	for _, ev := range sp.Events() {
		t.Errorf("event %s on the login span: want none", ev.Name)
	}
}
