package proxy

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span attribute keys. Nothing secret ever goes into one: no token, no
// cookie, no password, no query string (it may carry a token), no header
// values the client sent.
const (
	attrDecision  = attribute.Key("tokengate.decision") // the auth decision (or the login result)
	attrRule      = attribute.Key("tokengate.rule")     // the matched access rule; "" when none
	attrRoute     = attribute.Key("tokengate.route")    // login, proxy, public, verify, ...
	attrRequestID = attribute.Key("tokengate.request_id")
)

// traceContext reads and writes the W3C traceparent and tracestate headers.
var traceContext propagation.TraceContext

// traceRequests starts the request's server span. A traceparent is
// continued only from a trusted proxy (Options.TrustedProxies): from anyone
// else it would let a client pick our trace ids and sampling, so the span
// starts a new trace. With no tracer the chain skips this step entirely.
func (h *handler) traceRequests(next http.Handler) http.Handler {
	if h.tracer == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if peer := peerAddr(r.RemoteAddr); peer.IsValid() && h.isTrusted(peer) {
			ctx = traceContext.Extract(ctx, propagation.HeaderCarrier(r.Header))
		} else {
			// A parent that is not ours to follow.
			ctx = trace.ContextWithRemoteSpanContext(ctx, trace.SpanContext{})
		}
		st := stateFrom(ctx)
		ctx, span := h.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer))
		r = r.WithContext(ctx)
		if !span.IsRecording() {
			// Not sampled: the span only carries the trace context on to
			// the upstream; attributes would be thrown away.
			defer span.End()
			next.ServeHTTP(w, r)
			return
		}
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("url.path", r.URL.Path),
			attribute.String("client.address", h.clientAddr(r)),
			attrRequestID.String(st.id),
			attrRule.String(""),
		)
		defer func() {
			if v := recover(); v != nil {
				span.SetStatus(codes.Error, "panic")
				span.End()
				panic(v)
			}
			route := st.route
			if route == "" {
				route = routeProxy
			}
			status := st.status
			if status == 0 {
				status = http.StatusOK
			}
			span.SetName(r.Method + " " + route)
			span.SetAttributes(attrRoute.String(route), attrDecision.String(st.auth),
				attribute.Int("http.response.status_code", status))
			if status >= 500 {
				span.SetStatus(codes.Error, strconv.Itoa(status))
			}
			span.End()
		}()
		next.ServeHTTP(w, r)
	})
}

// SetSpanRule records the access rule that decided the request on its
// server span (tokengate.rule). A no-op when tracing is off.
func SetSpanRule(ctx context.Context, rule string) {
	trace.SpanFromContext(ctx).SetAttributes(attrRule.String(rule))
}

// tracingTransport wraps the upstream Transport: a client span per round
// trip (to the response headers), and the traceparent of that span on the
// request, so the app's spans join the trace. The client's own traceparent
// and tracestate are replaced: what the app gets names tokengate's span.
type tracingTransport struct {
	next   http.RoundTripper
	tracer trace.Tracer
}

func (t *tracingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := t.tracer.Start(req.Context(), "upstream", trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(
			attribute.String("http.request.method", req.Method),
			attribute.String("server.address", req.URL.Host),
		)
	}
	// The outgoing request is the ReverseProxy's own clone: its header map
	// is ours to change.
	delete(req.Header, "Traceparent")
	delete(req.Header, "Tracestate")
	traceContext.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if !recording {
		return resp, err
	}
	if err != nil {
		span.SetStatus(codes.Error, "upstream unreachable")
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, strconv.Itoa(resp.StatusCode))
	}
	return resp, nil
}

// traceUpstream puts the upstream round trip in a child span.
func (h *handler) traceUpstream() {
	if h.tracer != nil && h.rp != nil {
		next := h.rp.Transport
		if next == nil {
			next = http.DefaultTransport
		}
		h.rp.Transport = &tracingTransport{next: next, tracer: h.tracer}
	}
}
