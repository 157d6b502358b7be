package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"tokengate/internal/testkit"

	"go.yaml.in/yaml/v3"

	"tokengate/internal/testsvc"
)

// The labels the Prometheus Operator puts on every target of the
// ServiceMonitor; the local scrape config sets them statically so the
// dashboard's $namespace/$pod selectors match as they do in a cluster.
const (
	dashNamespace = "tokengate-test"
	dashService   = "echo-tokengate-metrics"
	dashPod       = "tokengate-0"
)

// TestDashboardQueriesReturnData runs a real Prometheus against a running
// tokengate and evaluates every dashboard query and alert rule as Grafana and
// the Prometheus Operator would: each query must parse, each selector must
// match a series tokengate exports, each dashboard panel must return data,
// and each alert rule must load and evaluate without error.
//
// Prometheus is not one of the required test services: without a
// prometheus binary on PATH this test skips, even when
// TOKENGATE_TEST_REQUIRE_SERVICES=1 (CI does not install it).
func TestDashboardQueriesReturnData(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("skipping: no prometheus binary on PATH (apt-get install prometheus to run it)")
	}
	// Redis, so the pub/sub series exist; this one follows the required
	// services rule.
	redisAddr := testsvc.RedisAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	targets, variables := dashboardTargets(t)
	rulesYAML, alerts := alertRules(t)

	up := newEchoUpstream(t)
	dir := newDir(t, up.URL)
	// A short upstream timeout so /app?sleep=1s yields a 504 and an
	// upstream error of kind timeout.
	in := start(t, dir, append(redisEnv(redisAddr), "TOKENGATE_UPSTREAM_TIMEOUT=300ms")...)
	traffic := startDashTraffic(in)
	t.Cleanup(func() {
		for _, p := range traffic.stop() {
			t.Error(p)
		}
	})
	select {
	case <-traffic.firstRound:
	case <-ctx.Done():
		t.Fatal("the first round of traffic did not finish in time")
	}

	prom := startPrometheus(t, ctx, promBin, strings.TrimPrefix(in.Admin, "http://"), rulesYAML)

	// Prometheus started after the first round of traffic, so every series
	// is in each scrape; four scrapes give each rate() several increasing
	// samples.
	waitFor(t, ctx, "four scrapes of tokengate", func() bool {
		v, err := prom.query(`count_over_time(up{job="tokengate"}[1m])`)
		if err != nil || len(v) == 0 {
			return false
		}
		n, _ := v[0].number()
		return n >= 4
	})

	labelNames := map[string]bool{}
	if err := prom.get("/api/v1/labels", url.Values{"match[]": {`{job="tokengate"}`}}, &labelNamesResult{labelNames}); err != nil {
		t.Fatal(err)
	}

	// The checks catch the mistakes they exist for.
	for _, bad := range []string{
		`sum(rate(tokengate_http_requests_total{job="tokengate", code="5xx"}[1m]))`,  // label value style
		`sum by (status) (rate(tokengate_http_requests_total{job="tokengate"}[1m]))`, // label tokengate lacks
		`sum by (op) (rate(tokengate_logins_total{job="tokengate"}[1m]))`,            // label of another metric
		`rate(tokengate_http_requests{job="tokengate"}[1m])`,                         // metric name
	} {
		if len(selectorProblems(prom, bad, labelNames)) == 0 {
			t.Errorf("selector check passes a wrong expression: %s", bad)
		}
	}
	if _, err := prom.query(`sum by (route (rate(tokengate_http_requests_total[1m]))`); err == nil {
		t.Error("a query that does not parse gave no error")
	}

	for _, v := range variables {
		t.Run("variable/"+v.name, func(t *testing.T) {
			expr := substituteGrafana(t, v.selector)
			res, err := prom.query(expr)
			if err != nil {
				t.Fatalf("%s: %v", expr, err)
			}
			if len(res) == 0 {
				t.Fatalf("%s returned no series", expr)
			}
			for _, s := range res {
				if s.Metric[v.label] == "" {
					t.Errorf("%s: series %v has no %q label for the variable", expr, s.Metric, v.label)
				}
			}
		})
	}

	for _, tg := range targets {
		t.Run("panel/"+tg.panel+"/"+tg.refID, func(t *testing.T) {
			expr := substituteGrafana(t, tg.expr)
			for _, p := range selectorProblems(prom, expr, labelNames) {
				t.Error(p)
			}
			res, err := prom.query(expr)
			if err != nil {
				t.Fatalf("%s: %v", expr, err)
			}
			finite := 0
			for _, s := range res {
				if v, ok := s.number(); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
					finite++
				}
				for _, l := range legendLabels.FindAllStringSubmatch(tg.legend, -1) {
					if s.Metric[l[1]] == "" {
						t.Errorf("legend %q: series %v has no %q label", tg.legend, s.Metric, l[1])
					}
				}
			}
			if finite == 0 {
				t.Fatalf("no data: %s returned %d series, none with a finite value", expr, len(res))
			}
			t.Logf("%d series: %s", len(res), expr)
		})
	}

	for _, a := range alerts {
		t.Run("alert/"+a.name, func(t *testing.T) {
			for _, p := range selectorProblems(prom, a.expr, labelNames) {
				t.Error(p)
			}
			res, err := prom.query(a.expr)
			if err != nil {
				t.Fatalf("%s: %v", a.expr, err)
			}
			// The traffic makes 504s on purpose and is healthy otherwise.
			// Latency alerts depend on the machine: not checked.
			switch want, checked := alertFiring[a.name]; {
			case !checked:
				t.Logf("evaluates, %d series", len(res))
			case want && len(res) == 0:
				t.Errorf("does not fire on this run's upstream timeouts: %s", a.expr)
			case !want && len(res) > 0:
				t.Errorf("fires on a healthy instance: %v", res)
			}
		})
	}

	// The rules as Prometheus itself loads and evaluates them.
	t.Run("rules", func(t *testing.T) {
		var rules []promRule
		waitFor(t, ctx, "every alert rule evaluated", func() bool {
			rules = rules[:0]
			var groups struct {
				Groups []struct {
					Rules []promRule `json:"rules"`
				} `json:"groups"`
			}
			if prom.get("/api/v1/rules", nil, &groups) != nil {
				return false
			}
			for _, g := range groups.Groups {
				rules = append(rules, g.Rules...)
			}
			if len(rules) != len(alerts) {
				return false
			}
			for _, r := range rules {
				if r.Health == "unknown" {
					return false
				}
			}
			return true
		})
		for _, r := range rules {
			if r.Health != "ok" || r.LastError != "" {
				t.Errorf("rule %s: health %s: %s", r.Name, r.Health, r.LastError)
			}
		}
	})
}

// alertFiring says whether each alert's condition holds during the test's
// traffic (the `for:` duration aside). Alerts not listed are only evaluated.
var alertFiring = map[string]bool{
	"TokengateAbsent":                false,
	"TokengateDown":                  false,
	"TokengateNotReady":              false,
	"TokengateDependencyDown":        false,
	"TokengateHigh5xxRateFastBurn":   true, // 1 request in ~12 is a 504
	"TokengateHigh5xxRate":           true,
	"TokengateRevocationStoreErrors": false,
	"TokengateRevocationPubSubDown":  false,
	"TokengateUpstreamErrors":        true, // 1 proxied request in ~7 times out
	"TokengateUsersReloadFailed":     false,
	"TokengateLoginErrors":           false,
}

// dashTarget is one query of a dashboard panel.
type dashTarget struct {
	panel, refID, expr, legend string
}

// dashVariable is a label_values(selector, label) template variable.
type dashVariable struct {
	name, selector, label string
}

var (
	labelValuesQuery = regexp.MustCompile(`^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)
	legendLabels     = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
)

func dashboardTargets(t *testing.T) ([]dashTarget, []dashVariable) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "dashboards", "tokengate.json"))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr   string `json:"expr"`
			RefID  string `json:"refId"`
			Legend string `json:"legendFormat"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
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
		t.Fatal(err)
	}
	var targets []dashTarget
	var walk func([]json.RawMessage)
	walk = func(panels []json.RawMessage) {
		for _, rp := range panels {
			var p panel
			if err := json.Unmarshal(rp, &p); err != nil {
				t.Fatal(err)
			}
			for _, tg := range p.Targets {
				if tg.Expr != "" {
					targets = append(targets, dashTarget{p.Title, tg.RefID, tg.Expr, tg.Legend})
				}
			}
			walk(p.Panels) // collapsed rows hold their panels
		}
	}
	walk(dash.Panels)
	var vars []dashVariable
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok { // newer Grafana: {"query": "..."}
			q, _ = m["query"].(string)
		}
		m := labelValuesQuery.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(selector, label)", v.Name, q)
		}
		vars = append(vars, dashVariable{v.Name, m[1], m[2]})
	}
	if len(targets) == 0 {
		t.Fatal("the dashboard has no panel queries")
	}
	return targets, vars
}

// grafanaVar matches $name, ${name} and ${name:format}.
var grafanaVar = regexp.MustCompile(`\$(?:\{([A-Za-z0-9_]+)(?::[A-Za-z]+)?\}|([A-Za-z0-9_]+))`)

// substituteGrafana replaces Grafana's variables the way a dashboard with
// one scraped pod selected sees them; an unknown variable fails the test.
func substituteGrafana(t *testing.T, expr string) string {
	t.Helper()
	values := map[string]string{
		// Grafana's floor for $__rate_interval is 4 scrape intervals; 30s
		// holds every scrape of this short run.
		"__rate_interval": "30s",
		"__interval":      "1s",
		"__range":         "30s",
		"namespace":       regexp.QuoteMeta(dashNamespace),
		"pod":             regexp.QuoteMeta(dashPod),
	}
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		m := grafanaVar.FindStringSubmatch(v)
		name := m[1] + m[2]
		val, ok := values[name]
		if !ok {
			t.Fatalf("%s: unknown Grafana variable $%s", expr, name)
		}
		return val
	})
}

type alertRule struct{ name, expr string }

// alertRules returns the PrometheusRule's spec as a Prometheus rules file
// (the operator hands spec.groups to Prometheus unchanged) and its alerts.
func alertRules(t *testing.T) ([]byte, []alertRule) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "base", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Spec struct {
			Groups []map[string]any `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var alerts []alertRule
	for _, g := range doc.Spec.Groups {
		rules, _ := g["rules"].([]any)
		for _, r := range rules {
			m, _ := r.(map[string]any)
			name, _ := m["alert"].(string)
			expr, _ := m["expr"].(string)
			if name == "" || expr == "" {
				t.Fatalf("rule without alert name or expr: %v", m)
			}
			alerts = append(alerts, alertRule{name, strings.TrimSpace(expr)})
		}
	}
	if len(alerts) == 0 {
		t.Fatal("the PrometheusRule has no alerts")
	}
	out, err := yaml.Marshal(map[string]any{"groups": doc.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	return out, alerts
}

var (
	vectorSelector = regexp.MustCompile(`([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}`)
	groupingLabels = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// selectorProblems checks that every selector of expr matches a series (so
// a wrong metric name, label or label value style shows up even where an
// empty result is legitimate, as in alerts) and that every grouping label
// is carried by one of them.
func selectorProblems(prom *promServer, expr string, labelNames map[string]bool) []string {
	var problems []string
	sels := vectorSelector.FindAllStringSubmatch(expr, -1)
	for _, s := range sels {
		res, err := prom.query("count(" + s[0] + ")")
		if err != nil {
			problems = append(problems, fmt.Sprintf("selector %s: %v", s[0], err))
		} else if len(res) == 0 {
			problems = append(problems, fmt.Sprintf("selector %s matches no series tokengate exports", s[0]))
		}
	}
	for _, g := range groupingLabels.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			l = strings.TrimSpace(l)
			if l == "" {
				continue
			}
			if !labelNames[l] {
				problems = append(problems, fmt.Sprintf("grouping label %q: no series of job=\"tokengate\" has it", l))
				continue
			}
			found := false
			for _, s := range sels {
				res, err := prom.query(fmt.Sprintf(`count(%s{%s, %s!=""})`, s[1], s[2], l))
				if err == nil && len(res) > 0 {
					found = true
					break
				}
			}
			if !found {
				problems = append(problems, fmt.Sprintf("grouping label %q: none of the selectors carries it", l))
			}
		}
	}
	return problems
}

type labelNamesResult struct{ set map[string]bool }

func (l *labelNamesResult) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	for _, n := range names {
		l.set[n] = true
	}
	return nil
}

type promRule struct {
	Name      string `json:"name"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
}

// promServer is a running Prometheus server.
type promServer struct {
	base string
	logs *testkit.LogBuffer
}

func startPrometheus(t *testing.T, ctx context.Context, bin, target string, rules []byte) *promServer {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: tokengate
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
        labels: {namespace: %q, service: %q, pod: %q}
`, target, dashNamespace, dashService, dashPod)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := &promServer{base: "http://" + addr, logs: &testkit.LogBuffer{}}
	cmd := exec.Command(bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	waitFor(t, ctx, "prometheus ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("prometheus exited:\n%s", p.logs)
		default:
		}
		resp, err := dashClient.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// number returns the sample's value, which the API sends as a string.
func (s sample) number() (float64, bool) {
	str, ok := s.Value[1].(string)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(str, 64)
	return v, err == nil
}

// query runs an instant query; a parse or evaluation error is an error.
func (p *promServer) query(expr string) ([]sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	switch data.ResultType {
	case "vector":
		var v []sample
		err := json.Unmarshal(data.Result, &v)
		return v, err
	case "scalar":
		var v [2]any
		err := json.Unmarshal(data.Result, &v)
		return []sample{{Value: v}}, err
	default:
		return nil, fmt.Errorf("result type %s, want an instant vector", data.ResultType)
	}
}

// get calls the HTTP API and decodes the data of a "success" answer.
func (p *promServer) get(path string, q url.Values, data any) error {
	u := p.base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	resp, err := dashClient.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&body); err != nil {
		return fmt.Errorf("%s: %d, undecodable answer: %v", path, resp.StatusCode, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, body.ErrorType, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}

var dashClient = &http.Client{Timeout: 5 * time.Second}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not true before the test's deadline", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dashTraffic keeps every kind of request going so each rate() and
// histogram_quantile() of the dashboard has increasing samples.
type dashTraffic struct {
	firstRound chan struct{}
	cancel     context.CancelFunc
	done       chan struct{}
	mu         sync.Mutex
	problems   []string
}

func startDashTraffic(in *instance) *dashTraffic {
	ctx, cancel := context.WithCancel(context.Background())
	d := &dashTraffic{firstRound: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		for round := 0; ctx.Err() == nil; round++ {
			d.round(ctx, in, round)
			if round == 0 {
				close(d.firstRound)
			}
		}
	}()
	return d
}

// stop ends the traffic and returns the unexpected answers it saw.
func (d *dashTraffic) stop() []string {
	d.cancel()
	<-d.done
	d.mu.Lock()
	defer d.mu.Unlock()
	sort.Strings(d.problems)
	return d.problems
}

func (d *dashTraffic) round(ctx context.Context, in *instance, round int) {
	expect := func(what string, want, got int, body string) bool {
		if got == want || ctx.Err() != nil {
			return got == want
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.problems) < 20 {
			d.problems = append(d.problems, fmt.Sprintf("round %d: %s: got %d, want %d: %.200s", round, what, got, want, body))
		}
		return false
	}
	login := func(user, password string, want int) string {
		code, body := dashRequest(ctx, "POST", in.Public+"/user/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
		if !expect("login "+user, want, code, body) {
			return ""
		}
		var m struct {
			Token string `json:"token"`
		}
		_ = json.Unmarshal([]byte(body), &m)
		return m.Token
	}
	check := func(what, method, url, token string, want int) {
		code, body := dashRequest(ctx, method, url, token, "")
		expect(what, want, code, body)
	}

	// The readiness probe, as the kubelet sends it: tokengate_ready follows it.
	check("readiness probe", "GET", in.Admin+"/readyz", "", 200)
	tok := login("alice", testUsers["alice"], 200)
	if tok == "" {
		return
	}
	for i := 0; i < 3; i++ { // reuse: token and revocation cache hits
		check("allowed call", "GET", in.Public+"/app", tok, 200)
	}
	check("missing token", "GET", in.Public+"/app", "", 401)
	check("malformed token", "GET", in.Public+"/app", "not-a-jwt", 401)
	check("public path", "GET", in.Public+"/public", "", 200)
	check("session", "GET", in.Public+"/session", tok, 200)
	check("upstream timeout", "GET", in.Public+"/app?sleep=1s", tok, 504)
	check("logout", "POST", in.Public+"/user/logout", tok, 204)
	check("revoked token", "GET", in.Public+"/app", tok, 401)
	// Few failed logins: the per-address throttle allows 50 a window.
	if round < 10 {
		login(fmt.Sprintf("nobody-%d", round), "wrong-password", 401)
	}
	// logout_all once: later bob tokens could fall in the same second.
	if round == 0 {
		if bob := login("bob", testUsers["bob"], 200); bob != "" {
			check("logout_all", "POST", in.Public+"/user/logout_all", bob, 204)
		}
	}
}

// dashRequest is call() for the traffic goroutine, which may not t.Fatal.
func dashRequest(ctx context.Context, method, url, token, body string) (int, string) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err.Error()
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := dashClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b)
}
