package main

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes each
// ExportTraceServiceRequest with the official protobuf types and keeps the
// spans with their service name.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	service string
	span    *tracepb.Span
}

func (s receivedSpan) attr(key string) (string, bool) {
	for _, kv := range s.span.Attributes {
		if kv.Key == key {
			return anyValue(kv.Value), true
		}
	}
	return "", false
}

func anyValue(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	}
	return v.String()
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	rcv := &otlpReceiver{}
	rcv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusBadRequest)
			return
		}
		var body io.Reader = http.MaxBytesReader(w, r.Body, 16<<20)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rcv.record(&req)
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(rcv.Close)
	return rcv
}

func (rcv *otlpReceiver) record(req *collectortrace.ExportTraceServiceRequest) {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = kv.Value.GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				rcv.spans = append(rcv.spans, receivedSpan{service: service, span: sp})
			}
		}
	}
}

// grpcTraceService is the OTLP/gRPC TraceService in front of the same store.
type grpcTraceService struct {
	collectortrace.UnimplementedTraceServiceServer
	rcv *otlpReceiver
}

func (g grpcTraceService) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	g.rcv.record(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// serveGRPC starts an OTLP/gRPC receiver beside the HTTP one and returns
// its endpoint (http:// : plaintext, as OTEL_EXPORTER_OTLP_ENDPOINT says).
func (rcv *otlpReceiver) serveGRPC(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, grpcTraceService{rcv: rcv})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return "http://" + ln.Addr().String()
}

func (rcv *otlpReceiver) snapshot() []receivedSpan {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	return append([]receivedSpan(nil), rcv.spans...)
}

// find returns the spans of service named name.
func find(spans []receivedSpan, service, name string) []receivedSpan {
	var out []receivedSpan
	for _, s := range spans {
		if s.service == service && s.span.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// tracedApp is the protected app, instrumented with the OpenTelemetry SDK:
// it continues the traceparent tokengate sends and exports its own span to
// the same receiver, as an app in the same trace would.
func tracedApp(t *testing.T, endpoint string) (*httptest.Server, *sync.Map) {
	t.Helper()
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(endpoint+"/v1/traces"), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "app"))))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	seen := &sync.Map{} // path -> traceparent received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.URL.Path, r.Header.Get("Traceparent"))
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		_, span := tp.Tracer("app").Start(ctx, "app "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
		span.End()
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

// TestTracingEndToEnd runs the real binary with tracing on, exporting over
// OTLP/HTTP to a receiver in the test, in front of an instrumented app.
func TestTracingEndToEnd(t *testing.T) {
	rcv := newOTLPReceiver(t)
	app, seen := tracedApp(t, rcv.URL)
	const clientTrace = "0af7651916cd43dd8448eb211c80319c"
	const clientSpan = "b7ad6b7169203331"
	clientParent := "00-" + clientTrace + "-" + clientSpan + "-01"

	for _, tc := range []struct {
		name    string
		trusted bool
	}{{"client traceparent ignored from an untrusted peer", false}, {"traceparent continued from a trusted proxy", true}} {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{
				"TOKENGATE_TRACING_ENABLED=true",
				"TOKENGATE_TRACING_SAMPLER_RATIO=1",
				"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.URL,
				"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
				"OTEL_SERVICE_NAME=tokengate-e2e",
				"OTEL_BSP_SCHEDULE_DELAY=50",
			}
			if tc.trusted {
				env = append(env, "TOKENGATE_TRUSTED_PROXIES=127.0.0.1/32")
			}
			in := start(t, newDir(t, app.URL), env...)
			before := len(rcv.snapshot())

			password := testUsers["alice"]
			tok := login(t, in.Public, "alice", password)
			path := "/app/" + strings.ReplaceAll(tc.name, " ", "-")
			r := call(t, "GET", in.Public+path+"?note=query-secret-value", tok, "",
				"Traceparent", clientParent, "Tracestate", "vendor=client-state", "Cookie", "tokengate=cookie-secret-value")
			if r.Code != http.StatusOK {
				t.Fatalf("proxied request: %d %s", r.Code, r.Body)
			}
			if r := call(t, "GET", in.Public+"/app/anonymous", "", ""); r.Code != http.StatusUnauthorized {
				t.Fatalf("anonymous: %d", r.Code)
			}

			var spans []receivedSpan
			eventually(t, 10*time.Second, "spans exported", func() bool {
				spans = rcv.snapshot()[before:]
				return len(find(spans, "tokengate-e2e", "GET proxy")) == 2 && len(find(spans, "app", "app "+path)) == 1 &&
					len(find(spans, "tokengate-e2e", "POST login")) == 1
			})

			// The login: server span with its result, and the user store +
			// password check as its child.
			loginSpan := find(spans, "tokengate-e2e", "POST login")[0]
			if d, _ := loginSpan.attr("tokengate.decision"); d != "success" {
				t.Errorf("login span tokengate.decision = %q, want success", d)
			}
			auth := find(spans, "tokengate-e2e", "authn.authenticate")
			if len(auth) != 1 || !childOf(auth[0], loginSpan) {
				t.Errorf("authn.authenticate spans %d, want 1 under the login span", len(auth))
			}

			var proxied, anonymous receivedSpan
			for _, s := range find(spans, "tokengate-e2e", "GET proxy") {
				if p, _ := s.attr("url.path"); p == path {
					proxied = s
				} else {
					anonymous = s
				}
			}
			if proxied.span == nil || anonymous.span == nil {
				t.Fatalf("proxy spans: %v", find(spans, "tokengate-e2e", "GET proxy"))
			}
			if proxied.span.Kind != tracepb.Span_SPAN_KIND_SERVER {
				t.Errorf("proxied span kind %v, want server", proxied.span.Kind)
			}
			for key, want := range map[string]string{
				"tokengate.decision": "allowed", "tokengate.route": "proxy", "tokengate.rule": "default", // no access rule matched
				"http.request.method": "GET", "http.response.status_code": "200",
			} {
				if got, ok := proxied.attr(key); !ok || got != want {
					t.Errorf("proxied span %s = %q (set %v), want %q", key, got, ok, want)
				}
			}
			if d, _ := anonymous.attr("tokengate.decision"); d != "missing" {
				t.Errorf("anonymous span tokengate.decision = %q, want missing", d)
			}
			if c, _ := anonymous.attr("http.response.status_code"); c != "401" {
				t.Errorf("anonymous span status %q, want 401", c)
			}

			// Parentage: client (trusted only) -> tokengate server span ->
			// revocation store (a cache miss) and upstream -> the app's span.
			traceID := hex.EncodeToString(proxied.span.TraceId)
			if tc.trusted {
				if traceID != clientTrace || hex.EncodeToString(proxied.span.ParentSpanId) != clientSpan {
					t.Errorf("trusted proxy: span in trace %s under %x, want trace %s under %s",
						traceID, proxied.span.ParentSpanId, clientTrace, clientSpan)
				}
				if proxied.span.TraceState != "vendor=client-state" {
					t.Errorf("trusted proxy: tracestate %q not continued", proxied.span.TraceState)
				}
			} else if traceID == clientTrace || len(proxied.span.ParentSpanId) != 0 {
				t.Errorf("untrusted client chose the trace: span in trace %s under %x", traceID, proxied.span.ParentSpanId)
			}
			up := find(spans, "tokengate-e2e", "upstream")
			var upstream receivedSpan
			for _, s := range up {
				if childOf(s, proxied) {
					upstream = s
				}
			}
			if upstream.span == nil || upstream.span.Kind != tracepb.Span_SPAN_KIND_CLIENT {
				t.Fatalf("no upstream client span under the proxied request's span")
			}
			for _, s := range up {
				if childOf(s, anonymous) {
					t.Error("a refused request has an upstream span")
				}
			}
			appSpan := find(spans, "app", "app "+path)[0]
			if !childOf(appSpan, upstream) {
				t.Errorf("the app's span (trace %x parent %x) is not a child of tokengate's upstream span (%x %x)",
					appSpan.span.TraceId, appSpan.span.ParentSpanId, upstream.span.TraceId, upstream.span.SpanId)
			}
			tp, _ := seen.Load(path)
			if want := "00-" + traceID + "-" + hex.EncodeToString(upstream.span.SpanId) + "-01"; tp != want {
				t.Errorf("the app got traceparent %q, want %q", tp, want)
			}
			revs := 0
			for _, s := range find(spans, "tokengate-e2e", "revocation.status") {
				if childOf(s, proxied) {
					revs++
					if b, _ := s.attr("tokengate.revocation.backend"); b != "bolt" {
						t.Errorf("revocation span backend %q", b)
					}
				}
			}
			if revs != 1 {
				t.Errorf("%d revocation.status spans under the first request with this token (a cache miss), want 1", revs)
			}

			// Nothing secret in any attribute of any span, or in its name.
			for _, s := range spans {
				texts := []string{s.span.Name, s.span.TraceState}
				for _, kv := range s.span.Attributes {
					texts = append(texts, kv.Key+"="+anyValue(kv.Value))
				}
				for _, txt := range texts {
					for _, secret := range []string{tok, password, "Bearer", "cookie-secret-value", "query-secret-value", "note="} {
						if strings.Contains(txt, secret) {
							t.Errorf("span %q carries %q in %q", s.span.Name, secret, txt)
						}
					}
				}
			}
		})
	}
}

func childOf(child, parent receivedSpan) bool {
	return string(child.span.TraceId) == string(parent.span.TraceId) && string(child.span.ParentSpanId) == string(parent.span.SpanId)
}

// TestTracingOffPassesTraceparent: with tracing off (the default) nothing
// is exported and the client's traceparent reaches the app as sent.
func TestTracingOffPassesTraceparent(t *testing.T) {
	rcv := newOTLPReceiver(t)
	app, seen := tracedApp(t, rcv.URL)
	in := start(t, newDir(t, app.URL), "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.URL, "OTEL_BSP_SCHEDULE_DELAY=50")
	tok := login(t, in.Public, "alice", testUsers["alice"])
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if r := call(t, "GET", in.Public+"/app/off", tok, "", "Traceparent", parent); r.Code != http.StatusOK {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	if tp, _ := seen.Load("/app/off"); tp != parent {
		t.Errorf("the app got traceparent %q, want the client's %q", tp, parent)
	}
	time.Sleep(300 * time.Millisecond) // several export intervals
	for _, s := range rcv.snapshot() {
		if s.service != "app" {
			t.Errorf("tracing off, yet tokengate exported span %q", s.span.Name)
		}
	}
}

// TestTracingOverGRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports the same
// spans over OTLP/gRPC.
func TestTracingOverGRPC(t *testing.T) {
	rcv := newOTLPReceiver(t)
	endpoint := rcv.serveGRPC(t)
	app, _ := tracedApp(t, rcv.URL)
	in := start(t, newDir(t, app.URL),
		"TOKENGATE_TRACING_ENABLED=true",
		"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT="+endpoint,
		"OTEL_BSP_SCHEDULE_DELAY=50")
	tok := login(t, in.Public, "alice", testUsers["alice"])
	if r := call(t, "GET", in.Public+"/app/grpc", tok, ""); r.Code != http.StatusOK {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
	eventually(t, 10*time.Second, "spans over gRPC", func() bool {
		for _, s := range find(rcv.snapshot(), "tokengate", "GET proxy") {
			if d, _ := s.attr("tokengate.decision"); d == "allowed" {
				return true
			}
		}
		return false
	})
}
