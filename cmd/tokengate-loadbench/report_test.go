package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

// turn builds a result of ok requests in one second whose latencies are
// all p99 (so p50 = p99 = the given value).
func turn(name string, ok uint64, p99 time.Duration, errs uint64) turnResult {
	h := new(histogram)
	for i := uint64(0); i < 10; i++ {
		h.record(p99)
	}
	return turnResult{scenario: name, ok: ok, errors: errs, elapsed: time.Second, hist: h}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 1000, 11}, 11},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing should be NaN")
	}
}

func TestSummarizeRatiosAndVerdicts(t *testing.T) {
	ms := time.Millisecond
	// The baseline's medians: 1000 req/s (of 900, 1000, 1100), p99 10ms.
	bare := []turnResult{
		turn(scenarioBare, 900, 12*ms, 0),
		turn(scenarioBare, 1000, 10*ms, 0),
		turn(scenarioBare, 1100, 9*ms, 0),
	}
	tests := []struct {
		name       string
		turns      []turnResult
		baseErrors uint64
		wantTput   float64
		wantP99    float64
		want       string
	}{
		{"reused within budget", []turnResult{turn(scenarioReused, 960, 10500*time.Microsecond, 0), turn(scenarioReused, 990, 10*ms, 0), turn(scenarioReused, 950, 11*ms, 0)}, 0, 0.96, 1.05, verdictPass},
		{"reused exactly at the limits", []turnResult{turn(scenarioReused, 950, 11*ms, 0)}, 0, 0.95, 1.10, verdictPass},
		{"reused too slow", []turnResult{turn(scenarioReused, 940, 10*ms, 0)}, 0, 0.94, 1.0, verdictFail},
		{"reused p99 too high", []turnResult{turn(scenarioReused, 1000, 12*ms, 0)}, 0, 1.0, 1.2, verdictFail},
		{"unique within budget, p99 not budgeted", []turnResult{turn(scenarioUnique, 860, 30*ms, 0)}, 0, 0.86, 3.0, verdictPass},
		{"unique too slow", []turnResult{turn(scenarioUnique, 800, 10*ms, 0)}, 0, 0.80, 1.0, verdictFail},
		{"errors invalidate a fast scenario", []turnResult{turn(scenarioReused, 1000, 10*ms, 1)}, 0, 1.0, 1.0, verdictInvalid},
		{"baseline errors invalidate the comparison", []turnResult{turn(scenarioUnique, 1000, 10*ms, 0)}, 3, 1.0, 1.0, verdictInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results := append([]turnResult(nil), bare...)
			results[0].errors = tt.baseErrors
			results = append(results, tt.turns...)
			sums := summarize(results, []string{scenarioBare, tt.turns[0].scenario}, scenarioBare, budgets)
			if len(sums) != 2 {
				t.Fatalf("%d summaries, want 2", len(sums))
			}
			s := sums[1]
			if math.Abs(s.tputRatio-tt.wantTput) > 1e-3 || math.Abs(s.p99Ratio-tt.wantP99) > 0.01 {
				t.Errorf("ratios tput %.4f p99 %.4f, want %.4f %.4f", s.tputRatio, s.p99Ratio, tt.wantTput, tt.wantP99)
			}
			if s.verdict != tt.want {
				t.Errorf("verdict %q, want %q", s.verdict, tt.want)
			}
			wantBase := verdictBaseline
			if tt.baseErrors > 0 {
				wantBase = verdictInvalid
			}
			if sums[0].verdict != wantBase || sums[0].tputRatio != 1 || sums[0].rps != 1000 {
				t.Errorf("baseline: verdict %q ratio %v rps %v", sums[0].verdict, sums[0].tputRatio, sums[0].rps)
			}
		})
	}
}

func TestRoundRatios(t *testing.T) {
	at := func(r turnResult, round int) turnResult { r.round = round; return r }
	results := []turnResult{
		at(turn(scenarioBare, 1000, time.Millisecond, 0), 1), at(turn(scenarioReused, 900, time.Millisecond, 0), 1),
		at(turn(scenarioBare, 800, time.Millisecond, 0), 2), at(turn(scenarioReused, 800, time.Millisecond, 0), 2),
		at(turn(scenarioBare, 1000, time.Millisecond, 0), 3), at(turn(scenarioReused, 950, time.Millisecond, 0), 3),
		at(turn(scenarioReused, 10, time.Millisecond, 0), 4), // no bare turn in round 4: not paired
	}
	lo, hi := roundRatios(results, scenarioReused, scenarioBare)
	if lo != 0.9 || hi != 1.0 {
		t.Errorf("roundRatios = %v..%v, want 0.9..1 (each round against its own bare turn)", lo, hi)
	}
	if lo, hi := roundRatios(results, scenarioUnique, scenarioBare); !math.IsNaN(lo) || !math.IsNaN(hi) {
		t.Errorf("no turns: %v..%v, want NaN", lo, hi)
	}
}

func TestWriteMarkdown(t *testing.T) {
	results := []turnResult{turn(scenarioBare, 1000, time.Millisecond, 0), turn(scenarioUnique, 700, 2*time.Millisecond, 4)}
	results[1].firstErr = "status 401"
	sums := summarize(results, []string{scenarioBare, scenarioUnique}, scenarioBare, budgets)
	var b bytes.Buffer
	writeMarkdown(&b, runMeta{command: "tokengate-loadbench -short", cpus: 2, cpuModel: "Test CPU", turns: 1, uniqueN: 5000}, sums, results)
	out := b.String()
	for _, want := range []string{
		"`tokengate-loadbench -short`",
		"2 CPUs (Test CPU)",
		"| bare | 1000 | 1.00ms | 1.00ms | 0 | 1.000 | - | 1.000 | 1.000 | - | baseline |",
		"| tokengate-unique | 700 | 2.00ms | 2.00ms | 4 | 0.700 | 0.700–0.700 |",
		"| tput >= 0.85 | INVALID (errors) |",
		"tokengate-unique: 4 errors, first: status 401",
		"pool of 5000 tokens per algorithm",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(options) bool
	}{
		{"defaults", nil, false, func(o options) bool {
			return o.tokengate == "bin/tokengate" && o.duration == 5*time.Second && o.turns == 3 &&
				o.concurrency == 32 && o.warmup == time.Second && o.uniqueN == 20000
		}},
		{"short", []string{"-short"}, false, func(o options) bool {
			return o.turns == 1 && o.duration == time.Second && o.warmup == 200*time.Millisecond
		}},
		{"pool not above the cache", []string{"-unique-tokens", "1000"}, true, nil},
		{"zero turns", []string{"-turns", "0"}, true, nil},
		{"zero duration", []string{"-duration", "0s"}, true, nil},
		{"stray argument", []string{"extra"}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args, new(bytes.Buffer))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.check != nil && !tt.check(o) {
				t.Errorf("options %+v", o)
			}
		})
	}
}
