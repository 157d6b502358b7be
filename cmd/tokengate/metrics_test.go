package main

import (
	"bufio"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"tokengate/internal/config"

	"tokengate/internal/testsvc"
)

// contractMetrics are the names the README's metrics table promises.
var contractMetrics = []string{
	"tokengate_http_requests_total",
	"tokengate_http_request_duration_seconds",
	"tokengate_auth_decisions_total",
	"tokengate_logins_total",
	"tokengate_revocations_total",
	"tokengate_revocation_cache_requests_total",
	"tokengate_revocation_store_duration_seconds",
	"tokengate_revocation_store_errors_total",
	"tokengate_token_cache_requests_total",
	"tokengate_upstream_errors_total",
	"tokengate_build_info",
	"tokengate_config_last_reload_success",
	"tokengate_ready",
	"tokengate_dependency_up",
	"tokengate_users_last_reload_success",
	"tokengate_access_rule_matches_total",
	"tokengate_identity_cache_requests_total",
	"tokengate_identity_refresh_errors_total",
	"go_goroutines",
	"process_resident_memory_bytes",
}

// exportedMetrics scrapes /metrics and returns the metric family names.
func exportedMetrics(t *testing.T, admin string) map[string]bool {
	t.Helper()
	r := call(t, "GET", admin+"/metrics", "", "")
	if r.Code != 200 {
		t.Fatalf("/metrics: %d", r.Code)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(r.Body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
		}
	}
	return names
}

func TestMetricsCatalogue(t *testing.T) {
	up := newEchoUpstream(t)
	// Redis, so that the pub/sub metrics exist too.
	in := start(t, newDir(t, up.URL), redisEnv(testsvc.RedisAddr(t))...)
	// Exercise each family once so that labelled series exist.
	tok := login(t, in.Public, "alice", testUsers["alice"])
	call(t, "GET", in.Public+"/app", tok, "")
	call(t, "GET", in.Public+"/app", "", "")
	call(t, "POST", in.Public+"/user/login", "", `{"username":"alice","password":"wrong-wrong"}`)
	call(t, "POST", in.Public+"/user/logout", tok, "")
	call(t, "POST", in.Public+"/user/logout_all", login(t, in.Public, "bob", testUsers["bob"]), "")
	call(t, "GET", in.Admin+"/readyz", "", "")

	names := exportedMetrics(t, in.Admin)
	for _, name := range contractMetrics {
		if !names[name] {
			t.Errorf("metric %s is not exported", name)
		}
	}

	// Every metric the dashboard and alerts use is exported.
	f, err := os.Open(filepath.Join("..", "..", "deploy", "metrics-used.txt"))
	if err != nil {
		t.Fatalf("deploy/metrics-used.txt: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" || strings.HasPrefix(name, "#") || name == "up" {
			continue // up is Prometheus's own
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base := strings.TrimSuffix(name, suffix); base != name && names[base] {
				name = base
			}
		}
		if !names[name] {
			t.Errorf("deploy dashboards/alerts use %s, which tokengate does not export", name)
		}
	}
}

// The config shipped in the Kubernetes base is one tokengate accepts.
func TestDeployConfigIsValid(t *testing.T) {
	path := filepath.Join("..", "..", "deploy", "kubernetes", "base", "config.yaml")
	cfg, err := config.Load(path, nil)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// The request latency histogram reaches the Kubernetes kit's and the
// default upstream_timeout: a request that runs until the timeout lands in
// a finite bucket, so p99 panels and the latency alert see it.
func TestLatencyBucketsReachUpstreamTimeout(t *testing.T) {
	kit, err := config.Load(filepath.Join("..", "..", "deploy", "kubernetes", "base", "config.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	def, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL))
	largest := 0.0
	for _, line := range strings.Split(call(t, "GET", in.Admin+"/metrics", "", "").Body, "\n") {
		if !strings.HasPrefix(line, `tokengate_http_request_duration_seconds_bucket{route="proxy",le="`) {
			continue
		}
		le := strings.TrimPrefix(line, `tokengate_http_request_duration_seconds_bucket{route="proxy",le="`)
		le = le[:strings.Index(le, `"`)]
		if v, err := strconv.ParseFloat(le, 64); err == nil && !math.IsInf(v, 1) && v > largest {
			largest = v
		}
	}
	for name, timeout := range map[string]time.Duration{"deploy kit": kit.UpstreamTimeout, "default": def.UpstreamTimeout} {
		if largest < timeout.Seconds() {
			t.Errorf("largest finite latency bucket %gs is below the %s upstream_timeout %s", largest, name, timeout)
		}
	}
}
