// Package metricstest holds the helpers the packages' metrics tests share
// on top of client_golang's testutil: exact comparison of chosen families,
// and histograms reduced to their sample counts (durations vary from run
// to run; how many observations each series got does not).
package metricstest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// Want fails the test unless g exposes exactly expected (exposition format)
// for the families named.
func Want(t testing.TB, g prometheus.Gatherer, expected string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(g, strings.NewReader(expected), names...); err != nil {
		t.Errorf("%v:\n%v", names, err)
	}
}

// CountsOnly wraps g so that histograms keep only their sample counts.
func CountsOnly(g prometheus.Gatherer) prometheus.Gatherer { return countsOnly{g} }

type countsOnly struct{ g prometheus.Gatherer }

func (c countsOnly) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := c.g.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				h.Bucket = nil
				h.SampleSum = new(0.0)
			}
		}
	}
	return mfs, err
}

// HistogramCounts is the exposition CountsOnly gives for histogram name
// (with its HELP/TYPE header help) whose one label takes values, n[v]
// observations each (0 when absent).
func HistogramCounts(help, name, label string, values []string, n map[string]int) string {
	var b strings.Builder
	b.WriteString(help)
	for _, v := range values {
		fmt.Fprintf(&b, "%s_bucket{%s=%q,le=\"+Inf\"} %d\n", name, label, v, n[v])
		fmt.Fprintf(&b, "%s_sum{%s=%q} 0\n", name, label, v)
		fmt.Fprintf(&b, "%s_count{%s=%q} %d\n", name, label, v, n[v])
	}
	return b.String()
}
