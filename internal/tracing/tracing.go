// Package tracing sets up OpenTelemetry tracing for tokengate: the tracer
// provider and its OTLP exporter (configured by the standard OTEL_*
// environment, as every OpenTelemetry SDK reads it), and decorators that
// put the slow calls behind the hot path in child spans: the revocation
// store (reached only on a cache miss) and the login's user store and
// password check. No span attribute ever holds a token, a password, a
// cookie or a user name.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options configure the provider.
type Options struct {
	// SamplerRatio is the fraction of new traces sampled (0..1). A parent
	// span context (from a trusted proxy) decides for its own trace.
	SamplerRatio float64
	// ServiceVersion is the resource's service.version.
	ServiceVersion string
	// Getenv reads the OTEL_* variables that choose the exporter's
	// protocol; default os.Getenv. (The exporters read the endpoint,
	// headers and timeouts from the process environment themselves.)
	Getenv func(string) string
}

// Provider is a running tracer provider; Shutdown flushes what is queued.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// New builds the provider: OTLP over http/protobuf (the default) or grpc,
// as OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL say;
// service.name tokengate unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise; spans exported in batches.
func New(ctx context.Context, o Options) (*Provider, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if !(o.SamplerRatio >= 0 && o.SamplerRatio <= 1) {
		return nil, fmt.Errorf("tracing: sampler ratio %v is not in [0, 1]", o.SamplerRatio)
	}
	protocol := o.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = o.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	var err error
	switch strings.TrimSpace(protocol) {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "tokengate"), attribute.String("service.version", o.ServiceVersion)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.SamplerRatio))),
	)
	return &Provider{tp: tp}, nil
}

// Tracer is tokengate's tracer.
func (p *Provider) Tracer() trace.Tracer { return p.tp.Tracer("tokengate") }

// Shutdown exports what is queued and stops the exporter.
func (p *Provider) Shutdown(ctx context.Context) error { return p.tp.Shutdown(ctx) }
