package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

// runbookBase is where runbook_url points, up to the runbook's file name.
const runbookBase = "https://github.com/example/tokengate/blob/main/deploy/runbooks/"

// promtool finds promtool (Debian's prometheus package). Without it the
// test skips, unless TOKENGATE_TEST_REQUIRE_SERVICES=1 (CI), then fails.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("TOKENGATE_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatal("promtool is required (TOKENGATE_TEST_REQUIRE_SERVICES=1): apt-get install prometheus")
		}
		t.Skip("skipping: no promtool on PATH (apt-get install prometheus)")
	}
	return p
}

// baseRules is the PrometheusRule of the base, as kustomize builds it.
func baseRules(t *testing.T) *monitoringv1.PrometheusRule {
	t.Helper()
	b := load(t, "kubernetes/base")
	if len(b.rules) != 1 {
		t.Fatalf("%d PrometheusRules in the base, want 1", len(b.rules))
	}
	return b.rules[0]
}

// writeRulesFile writes spec.groups as a Prometheus rules file (what the
// operator hands to Prometheus), without annotations when strip is set.
func writeRulesFile(t *testing.T, pr *monitoringv1.PrometheusRule, path string, strip bool) {
	t.Helper()
	spec := pr.Spec.DeepCopy()
	if strip {
		for i := range spec.Groups {
			for j := range spec.Groups[i].Rules {
				spec.Groups[i].Rules[j].Annotations = nil
			}
		}
	}
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, y, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAlertRulesWithPromtool: `promtool check rules` accepts the rules
// (templates included), and `promtool test rules` runs
// testdata/alerts_test.yaml, which must hold, for every alert, a case where
// it fires and one where it does not. Annotations are stripped for the unit
// tests (TestAlertAnnotations checks them), so the cases name labels only.
func TestAlertRulesWithPromtool(t *testing.T) {
	bin := promtool(t)
	pr := baseRules(t)
	dir := t.TempDir()

	full := filepath.Join(dir, "full-rules.yaml")
	writeRulesFile(t, pr, full, false)
	if out, err := exec.Command(bin, "check", "rules", full).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}

	writeRulesFile(t, pr, filepath.Join(dir, "rules.yaml"), true)
	tests, err := os.ReadFile("testdata/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "test", "rules", "alerts_test.yaml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}

	// Coverage: each alert both ways.
	var file struct {
		Tests []struct {
			Name          string `json:"name"`
			AlertRuleTest []struct {
				Alertname string            `json:"alertname"`
				ExpAlerts []json.RawMessage `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &file); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range file.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, name := range alertNames(pr) {
		if !fires[name] {
			t.Errorf("alert %s: no promtool case where it fires", name)
		}
		if !quiet[name] {
			t.Errorf("alert %s: no promtool case where it stays quiet", name)
		}
	}
}

func alertNames(pr *monitoringv1.PrometheusRule) []string {
	var names []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				names = append(names, r.Alert)
			}
		}
	}
	return names
}

// aggregation matches the grouping clause of sum/min/max/avg/count.
var aggregation = regexp.MustCompile(`\b(sum|min|max|avg|count)\s+(by|without)\s*\(([^)]*)\)`)

// TestAlertAnnotations: every alert has a severity, a summary, a
// description and a runbook_url pointing at its own file in runbooks/;
// every runbook belongs to an alert; aggregations keep namespace and
// service apart (two apps in one namespace are never merged).
func TestAlertAnnotations(t *testing.T) {
	pr := baseRules(t)
	names := alertNames(pr)
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			if want := runbookBase + r.Alert + ".md"; r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if _, err := os.Stat(filepath.Join("runbooks", r.Alert+".md")); err != nil {
				t.Errorf("%s: no runbook: %v", r.Alert, err)
			}
			for _, m := range aggregation.FindAllStringSubmatch(r.Expr.String(), -1) {
				labels := strings.Split(strings.ReplaceAll(m[3], " ", ""), ",")
				if m[2] != "by" || !slices.Contains(labels, "namespace") || !slices.Contains(labels, "service") {
					t.Errorf("%s: %q must aggregate by namespace and service (at least)", r.Alert, m[0])
				}
			}
		}
	}
	runbooks, err := filepath.Glob("runbooks/*.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range runbooks {
		name := strings.TrimSuffix(filepath.Base(f), ".md")
		if name != "README" && !slices.Contains(names, name) {
			t.Errorf("%s: no alert of that name", f)
		}
	}
}
