package deploy

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

type layoutPanel struct {
	Title       string `json:"title"`
	FieldConfig struct {
		Overrides []struct {
			Matcher struct {
				ID      string `json:"id"`
				Options string `json:"options"`
			} `json:"matcher"`
			Properties []struct {
				ID    string `json:"id"`
				Value any    `json:"value"`
			} `json:"properties"`
		} `json:"overrides"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []layoutPanel `json:"panels"`
}

func layoutPanels(t *testing.T) []layoutPanel {
	t.Helper()
	raw, err := os.ReadFile("dashboards/tokengate.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []layoutPanel `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	var all []layoutPanel
	var walk func([]layoutPanel)
	walk = func(ps []layoutPanel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	return all
}

// axisOf is the axisPlacement an override gives to refID ("" if none).
func axisOf(p layoutPanel, refID string) string {
	for _, o := range p.FieldConfig.Overrides {
		if o.Matcher.ID == "byFrameRefID" && o.Matcher.Options == refID {
			for _, prop := range o.Properties {
				if prop.ID == "custom.axisPlacement" {
					s, _ := prop.Value.(string)
					return s
				}
			}
		}
	}
	return ""
}

// Series of different units never share an axis, and the users-reload
// panel shows failures apart from successes.
func TestDashboardLayout(t *testing.T) {
	usersByResult, cpuSplit := false, false
	for _, p := range layoutPanels(t) {
		var cpu, goroutines string
		for _, tg := range p.Targets {
			if strings.Contains(tg.Expr, "tokengate_users_reloads_total") && strings.Contains(tg.Expr, "result)") {
				usersByResult = true
			}
			if strings.Contains(tg.Expr, "process_cpu_seconds_total") {
				cpu = tg.RefID
			}
			if strings.Contains(tg.Expr, "go_goroutines") {
				goroutines = tg.RefID
			}
		}
		if cpu != "" && goroutines != "" {
			a, b := axisOf(p, cpu), axisOf(p, goroutines)
			if a == "" || b == "" || a == b {
				t.Errorf("panel %q: CPU (axis %q) and goroutines (axis %q) must be on separate axes", p.Title, a, b)
			}
			cpuSplit = true
		}
	}
	if !usersByResult {
		t.Error("no panel shows tokengate_users_reloads_total by result")
	}
	if !cpuSplit {
		t.Error("no panel with both CPU and goroutines found (the check above did not run)")
	}
}
