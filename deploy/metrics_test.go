package deploy

import (
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

// knownMetrics are the names tokengate exports (the README's metrics
// table), with their type. go_*, process_* and up are
// allowed besides.
var knownMetrics = map[string]string{
	"tokengate_http_requests_total":                "counter",
	"tokengate_http_request_duration_seconds":      "histogram",
	"tokengate_auth_decisions_total":               "counter",
	"tokengate_logins_total":                       "counter",
	"tokengate_revocations_total":                  "counter",
	"tokengate_revocation_cache_requests_total":    "counter",
	"tokengate_revocation_store_duration_seconds":  "histogram",
	"tokengate_revocation_store_errors_total":      "counter",
	"tokengate_token_cache_requests_total":         "counter",
	"tokengate_upstream_errors_total":              "counter",
	"tokengate_build_info":                         "gauge",
	"tokengate_config_last_reload_success":         "gauge",
	"tokengate_ready":                              "gauge",
	"tokengate_dependency_up":                      "gauge",
	"tokengate_revocation_pubsub_reconnects_total": "counter",
	"tokengate_revocation_pubsub_up":               "gauge",
	"tokengate_users_reloads_total":                "counter",
	"tokengate_users_last_reload_success":          "gauge",
	"tokengate_access_rule_matches_total":          "counter",
}

// metricAllowed reports whether name is a series tokengate's /metrics has.
func metricAllowed(name string) bool {
	if name == "up" || strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
		return true
	}
	if knownMetrics[name] != "" && knownMetrics[name] != "histogram" {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && knownMetrics[base] == "histogram" {
			return true
		}
	}
	return false
}

// labelValues matches Grafana's label_values(SELECTOR, label) variable query.
var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$`)

// dashboardExprs returns every PromQL expression of the dashboard: panel
// targets (rows' nested panels included) and templating queries.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("dashboards/tokengate.json")
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		UID        string            `json:"uid"`
		Title      string            `json:"title"`
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboards/tokengate.json: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	exprs := map[string]string{}
	ids := map[int]bool{}
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, r := range ps {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatal(err)
			}
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for i, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q target %d has no expr", p.Title, i)
				}
				exprs["panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("templating %s: query %v is not label_values(SELECTOR, label)", v.Name, v.Query)
			continue
		}
		exprs["variable "+v.Name] = m[1]
	}
	return exprs
}

// ruleExprs returns every expression of the PrometheusRule, decoded
// strictly from its file.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("kubernetes/base/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pr monitoringv1.PrometheusRule
	if err := yaml.UnmarshalStrict(raw, &pr); err != nil {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	exprs := map[string]string{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %q needs an alert name, a severity label and a summary", r.Alert)
			}
			exprs["alert "+r.Alert] = r.Expr.String()
		}
	}
	return exprs
}

func TestMetricsUsedListMatchesDashboardAndAlerts(t *testing.T) {
	exprs := dashboardExprs(t)
	for k, v := range ruleExprs(t) {
		exprs[k] = v
	}
	used := map[string]bool{}
	for where, e := range exprs {
		names, err := MetricNames(e)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", where, e)
		}
		for _, n := range names {
			if !metricAllowed(n) {
				t.Errorf("%s uses %s, which tokengate does not export", where, n)
			}
			used[n] = true
		}
	}
	var got []string
	for n := range used {
		got = append(got, n)
	}
	sort.Strings(got)

	raw, err := os.ReadFile("metrics-used.txt")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if !slices.IsSorted(lines) || len(slices.Compact(slices.Clone(lines))) != len(lines) {
		t.Error("metrics-used.txt must be sorted, one name a line, no duplicates")
	}
	if !reflect.DeepEqual(lines, got) {
		t.Errorf("metrics-used.txt drifted from the dashboard and alerts; it should read:\n%s", strings.Join(got, "\n"))
	}
}

func TestMetricAllowed(t *testing.T) {
	for name, want := range map[string]bool{
		"tokengate_http_requests_total":                     true,
		"tokengate_http_request_duration_seconds_bucket":    true,
		"tokengate_http_request_duration_seconds":           false, // a histogram has no bare series
		"tokengate_http_requests_total_bucket":              false,
		"tokengate_requests_total":                          false,
		"go_goroutines":                                     true,
		"process_resident_memory_bytes":                     true,
		"up":                                                true,
		"tokengate_revocation_store_duration_seconds_count": true,
	} {
		if got := metricAllowed(name); got != want {
			t.Errorf("metricAllowed(%s) = %v, want %v", name, got, want)
		}
	}
}

func TestMetricNames(t *testing.T) {
	cases := []struct {
		expr    string
		want    []string
		wantErr bool
	}{
		{`up`, []string{"up"}, false},
		{`up{job="tokengate"} == 0`, []string{"up"}, false},
		{`sum by (route, code) (rate(tokengate_http_requests_total{job="x", code=~"5.."}[5m]))`, []string{"tokengate_http_requests_total"}, false},
		{`sum(rate(a_total[$__rate_interval])) by (le) / ignoring(code) group_left(x) sum without (pod) (b_total offset 5m)`, []string{"a_total", "b_total"}, false},
		{`histogram_quantile(0.99, sum by (le, op) (rate(x_seconds_bucket{op!="get"}[5m]))) > 0.1`, []string{"x_seconds_bucket"}, false},
		{`a and on(pod) b or c unless bool d`, []string{"a", "b", "c", "d"}, false},
		{`count(up{pod=~"$pod"} == 1) * 1e3 + .5 - 0x1f`, []string{"up"}, false},
		{"rate(a[5m:1m]) # trailing comment naming not_a_metric", []string{"a"}, false},
		{`label_replace(a, "dst", "$1", "src", "(.*)")`, []string{"a"}, false},
		{`recording:rule:sum`, []string{"recording:rule:sum"}, false},
		{`sum(rate(a[5m])`, nil, true},
		{`a{job="x"`, nil, true},
		{`{__name__="a"}`, nil, true},
		{`"open`, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			got, err := MetricNames(tc.expr)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
