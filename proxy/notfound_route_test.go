package proxy

import (
	"net/http"
	"testing"
)

// In auth-server mode nothing is proxied: a path that is none of
// tokengate's routes counts as route="not_found", never "proxy" (an
// operator reading the metrics would look for an upstream that is not
// there). Verify still counts as "verify".
func TestAuthServerModeRouteLabel(t *testing.T) {
	e := newVerifyEnv(t, loopback, func(o *Options) { o.Upstream = nil })
	for _, target := range []string{"/app", "/healthz", "/tokengate/other", "/a/../b"} {
		e.send("GET", target, nil, "")
	}
	e.send("GET", verifyPath, nil, "")
	count := func(route, code string) float64 {
		return metricValue(t, e.reg, "tokengate_http_requests_total", map[string]string{"route": route, "code": code})
	}
	if got := count("not_found", "404"); got != 3 {
		t.Errorf(`route="not_found" code 404: %v, want 3`, got)
	}
	if got := count("not_found", "400"); got != 1 {
		t.Errorf(`route="not_found" code 400 (a hostile path): %v, want 1`, got)
	}
	if got := count("proxy", "404") + count("proxy", "400"); got != 0 {
		t.Errorf(`route="proxy" counted %v requests in auth-server mode`, got)
	}
	if got := count("verify", "401"); got != 1 {
		t.Errorf(`route="verify" code 401: %v, want 1`, got)
	}
	// With an upstream, the same paths are proxied (and labelled so).
	p := newVerifyEnv(t, loopback)
	if res := p.send("GET", "/app", nil, ""); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sidecar GET /app: %d", res.StatusCode)
	}
	if got := metricValue(t, p.reg, "tokengate_http_requests_total", map[string]string{"route": "proxy", "code": "401"}); got != 1 {
		t.Errorf(`sidecar: route="proxy" code 401: %v, want 1`, got)
	}
}
