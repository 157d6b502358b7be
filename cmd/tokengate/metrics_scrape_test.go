package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// binaryVersion is what `tokengate version` reports: version, commit, Go version.
func binaryVersion(t *testing.T) (version, commit, goVersion string) {
	t.Helper()
	out, err := exec.Command(binPath, "version").Output()
	if err != nil {
		t.Fatalf("tokengate version: %v", err)
	}
	m := regexp.MustCompile(`^tokengate (\S+) \(commit (\S+), (go\S+) \S+\)\n$`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("tokengate version printed %q", out)
	}
	return m[1], m[2], m[3]
}

// scraped is a Gatherer over a running instance's /metrics.
func scraped(url string) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		res, err := http.Get(url)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %s", url, res.Status)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(res.Body)
		if err != nil {
			return nil, err
		}
		out := make([]*dto.MetricFamily, 0, len(fams))
		for _, mf := range fams {
			out = append(out, mf)
		}
		return out, nil
	})
}

func TestMetricsScrape(t *testing.T) {
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL))
	metrics := in.Admin + "/metrics"
	version, commit, goVersion := binaryVersion(t)
	// The test binary is built without -ldflags.
	if version != "dev" || commit != "unknown" {
		t.Errorf("tokengate version reports %s, commit %s; want dev and unknown without ldflags", version, commit)
	}

	if r := call(t, "GET", in.Admin+"/readyz", "", ""); r.Code != http.StatusOK {
		t.Fatalf("/readyz: %d %s", r.Code, r.Body)
	}
	expected := fmt.Sprintf(`
# HELP tokengate_build_info Build information; the value is always 1.
# TYPE tokengate_build_info gauge
tokengate_build_info{commit=%q,goversion=%q,version=%q} 1
# HELP tokengate_config_last_reload_success 1 when the last SIGHUP reload of users and keys succeeded, else 0 (watched users file reloads: tokengate_users_reloads_total).
# TYPE tokengate_config_last_reload_success gauge
tokengate_config_last_reload_success 1
# HELP tokengate_dependency_up 1 when the shared dependency answered a check at scrape time, else 0. Not part of readiness.
# TYPE tokengate_dependency_up gauge
tokengate_dependency_up{dependency="revocation_store"} 1
# HELP tokengate_ready 1 when this instance is ready for traffic (what /readyz answers: local state only), else 0.
# TYPE tokengate_ready gauge
tokengate_ready 1
# HELP go_info Information about the Go environment.
# TYPE go_info gauge
go_info{version=%q} 1
`, commit, goVersion, version, goVersion)
	if err := testutil.ScrapeAndCompare(metrics, strings.NewReader(expected),
		"tokengate_build_info", "tokengate_config_last_reload_success", "tokengate_dependency_up", "tokengate_ready", "go_info"); err != nil {
		t.Error(err)
	}

	// The Go runtime and process collectors are registered.
	for _, name := range []string{
		"go_goroutines", "go_threads", "go_memstats_heap_alloc_bytes", "go_gc_duration_seconds",
		"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds",
	} {
		if n, err := testutil.GatherAndCount(scraped(metrics), name); err != nil || n != 1 {
			t.Errorf("%s: %d series (%v), want 1", name, n, err)
		}
	}
}
