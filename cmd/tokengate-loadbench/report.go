package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// budget is the performance budget of a scenario, relative to bare.
type budget struct {
	minThroughput float64 // throughput ratio must be at least this
	maxP99        float64 // p99 ratio must be at most this; 0: not budgeted
}

func (b budget) String() string {
	s := fmt.Sprintf("tput >= %.2f", b.minThroughput)
	if b.maxP99 > 0 {
		s += fmt.Sprintf(", p99 <= %.2f", b.maxP99)
	}
	return s
}

// The performance budget (README.md, "Performance"), which holds for the
// default configuration, access log included.
var budgets = map[string]budget{
	scenarioReused: {minThroughput: 0.95, maxP99: 1.10},
	scenarioUnique: {minThroughput: 0.85},
	scenarioRedis:  {minThroughput: 0.93},
}

// Scenarios. Every tokengate one has the access log on (the default)
// except tokengate-reused-quiet.
const (
	scenarioBare    = "bare"
	scenarioReused  = "tokengate-reused"       // HS256, memory, one token reused
	scenarioQuiet   = "tokengate-reused-quiet" // the same with log_level: warn
	scenarioUnique  = "tokengate-unique"       // a new HS256 token per request
	scenarioPublic  = "tokengate-public"       // a public path, no token
	scenarioCookie  = "tokengate-cookie"       // the reused token in the session cookie
	scenarioDefault = "tokengate-default"      // every default: EdDSA, bolt; one token reused
	scenarioEdDSA   = "tokengate-unique-eddsa" // the defaults, a new EdDSA token per request
	scenarioRedis   = "tokengate-redis"        // Redis backend, one token reused: full cache hit
	scenarioVerify  = "tokengate-verify"       // forward auth: the reused token asked of /tokengate/verify (nothing proxied)
)

var scenarioNames = []string{scenarioBare, scenarioReused, scenarioQuiet, scenarioUnique, scenarioPublic, scenarioCookie, scenarioDefault, scenarioEdDSA, scenarioRedis, scenarioVerify}

// comparison is a budget between two tokengate scenarios rather than
// against bare: the access log's cost.
type comparison struct {
	what     string
	a, b     string  // throughput of a / throughput of b
	min      float64 // budget
	ratio    float64
	verdict  string
	haveBoth bool
}

// comparisons judges the access log's cost: logging on versus off within 3%.
func comparisons(sums []summary) []comparison {
	c := comparison{what: "access log on vs off (throughput)", a: scenarioReused, b: scenarioQuiet, min: 0.97}
	var a, b *summary
	for i := range sums {
		switch sums[i].scenario {
		case c.a:
			a = &sums[i]
		case c.b:
			b = &sums[i]
		}
	}
	if a == nil || b == nil {
		return nil
	}
	c.haveBoth = true
	c.ratio = ratio(a.rps, b.rps)
	switch {
	case a.errors > 0 || b.errors > 0 || math.IsNaN(c.ratio):
		c.verdict = verdictInvalid
	case c.ratio < c.min:
		c.verdict = verdictFail
	default:
		c.verdict = verdictPass
	}
	return []comparison{c}
}

// Verdicts.
const (
	verdictBaseline = "baseline"
	verdictPass     = "PASS"
	verdictFail     = "FAIL"
	verdictInvalid  = "INVALID (errors)"
	verdictNoBudget = "-"
)

// summary aggregates the turns of one scenario: medians over turns, and
// ratios of those medians against the baseline's.
type summary struct {
	scenario  string
	turns     int
	rps       float64       // median over turns
	p50, p99  time.Duration // medians over turns of each turn's quantile
	cpuPerReq time.Duration // median over turns of the server's CPU per request; 0: unknown
	upCPU     time.Duration // the same for the upstream
	genCPU    time.Duration // the same for the load generator
	errors    uint64
	firstErr  string
	tputRatio float64 // rps / baseline rps
	p50Ratio  float64 // p50 / baseline p50
	p99Ratio  float64 // p99 / baseline p99
	// cpuRatio is the baseline's CPU per request (server + upstream +
	// generator) over this scenario's: the throughput ratio to expect when
	// the machine's CPUs are the limit, which the neighbours on a shared
	// machine blur far less than req/s. NaN when unknown.
	cpuRatio float64
	// roundMin and roundMax bound the per-round throughput ratios: each
	// round's rps over the baseline's in the same round (run minutes
	// apart at most), which shows how much the neighbours moved the
	// medians. NaN when unknown.
	roundMin, roundMax float64
	budget             *budget
	verdict            string
}

// summarize groups results by scenario (in order) and judges each against
// its budget, relative to the scenario named baseline.
func summarize(results []turnResult, order []string, baseline string, budgets map[string]budget) []summary {
	var out []summary
	for _, name := range order {
		s := summary{scenario: name}
		var rps, p50, p99, cpu, up, gen []float64
		for _, r := range results {
			if r.scenario != name {
				continue
			}
			s.turns++
			rps = append(rps, r.rps())
			p50 = append(p50, float64(r.hist.quantile(0.50)))
			p99 = append(p99, float64(r.hist.quantile(0.99)))
			if c := r.cpuPerRequest(); c > 0 {
				cpu = append(cpu, float64(c))
			}
			if c := r.perRequest(r.upstreamCPU); c > 0 {
				up = append(up, float64(c))
			}
			if c := r.perRequest(r.genCPU); c > 0 {
				gen = append(gen, float64(c))
			}
			s.errors += r.errors
			if s.firstErr == "" {
				s.firstErr = r.firstErr
			}
		}
		s.rps = median(rps)
		s.p50 = time.Duration(median(p50))
		s.p99 = time.Duration(median(p99))
		if len(cpu) > 0 {
			s.cpuPerReq = time.Duration(median(cpu))
		}
		if len(up) > 0 {
			s.upCPU = time.Duration(median(up))
		}
		if len(gen) > 0 {
			s.genCPU = time.Duration(median(gen))
		}
		out = append(out, s)
	}
	var base *summary
	for i := range out {
		if out[i].scenario == baseline {
			base = &out[i]
		}
	}
	for i := range out {
		s := &out[i]
		if base != nil {
			s.tputRatio = ratio(s.rps, base.rps)
			s.p50Ratio = ratio(float64(s.p50), float64(base.p50))
			s.cpuRatio = math.NaN()
			if s.cpuPerReq > 0 && s.upCPU > 0 && s.genCPU > 0 && base.cpuPerReq > 0 && base.upCPU > 0 && base.genCPU > 0 {
				s.cpuRatio = ratio(float64(base.cpuPerReq+base.upCPU+base.genCPU), float64(s.cpuPerReq+s.upCPU+s.genCPU))
			}
			s.p99Ratio = ratio(float64(s.p99), float64(base.p99))
			s.roundMin, s.roundMax = roundRatios(results, s.scenario, base.scenario)
		}
		if b, ok := budgets[s.scenario]; ok {
			s.budget = &b
		}
		s.verdict = judge(*s, base)
		if s.verdict == verdictBaseline && s != base {
			s.verdict = verdictNoBudget
		}
	}
	return out
}

// roundRatios returns the least and greatest of the per-round throughput
// ratios of scenario to baseline (NaN, NaN when no round has both).
func roundRatios(results []turnResult, scenario, baseline string) (lo, hi float64) {
	base := map[int]float64{}
	for _, r := range results {
		if r.scenario == baseline {
			base[r.round] = r.rps()
		}
	}
	lo, hi = math.NaN(), math.NaN()
	for _, r := range results {
		b, ok := base[r.round]
		if r.scenario != scenario || !ok {
			continue
		}
		q := ratio(r.rps(), b)
		if math.IsNaN(q) {
			continue
		}
		if math.IsNaN(lo) || q < lo {
			lo = q
		}
		if math.IsNaN(hi) || q > hi {
			hi = q
		}
	}
	return lo, hi
}

// judge applies the budget. Errors anywhere in the compared pair make the
// comparison meaningless, so they win over PASS or FAIL.
func judge(s summary, base *summary) string {
	if s.errors > 0 || (base != nil && base.errors > 0) || s.turns == 0 {
		return verdictInvalid
	}
	if s.budget == nil {
		return verdictBaseline
	}
	if base == nil || math.IsNaN(s.tputRatio) {
		return verdictInvalid
	}
	if s.tputRatio < s.budget.minThroughput {
		return verdictFail
	}
	if s.budget.maxP99 > 0 && s.p99Ratio > s.budget.maxP99 {
		return verdictFail
	}
	return verdictPass
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// median of xs (mean of the middle two for an even count); NaN when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// runMeta describes a run for the report header.
type runMeta struct {
	command     string
	date        time.Time
	goVersion   string
	tokengate   string // tokengate version line
	cpus        int
	cpuModel    string
	loadavg     string // /proc/loadavg at the end of the run
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	turns       int
	uniqueN     int
	cacheNote   string
	cacheStats  map[string]string // scenario -> token cache hits/misses during its turns
	notes       []string          // skipped scenarios and why
}

// writeMarkdown prints the report: the summary table, then every turn.
func writeMarkdown(w io.Writer, m runMeta, sums []summary, results []turnResult) {
	fmt.Fprintf(w, "### Load run %s\n\n", m.date.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- command: `%s`\n", m.command)
	fmt.Fprintf(w, "- machine: %d CPUs (%s), %s; servers and load generator share it", m.cpus, m.cpuModel, m.goVersion)
	if m.loadavg != "" {
		fmt.Fprintf(w, "; load average at the end %s", m.loadavg)
	}
	fmt.Fprintln(w)
	if m.tokengate != "" {
		fmt.Fprintf(w, "- tokengate: %s\n", m.tokengate)
	}
	fmt.Fprintf(w, "- load: %d closed-loop keep-alive clients, %d round(s) of %v per scenario (after %v warmup each), interleaved\n",
		m.concurrency, m.turns, m.duration, m.warmup)
	if m.uniqueN > 0 {
		fmt.Fprintf(w, "- unique tokens: pool of %d tokens per algorithm cycled; %s\n", m.uniqueN, m.cacheNote)
	}
	fmt.Fprintln(w, "- every tokengate logs at info (access log on, to a pipe the run drains) except tokengate-reused-quiet (log_level: warn)")
	for _, n := range m.notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | req/s (median) | p50 | p99 | errors | tput ratio | per-round tput ratios | p50 ratio | p99 ratio | budget | verdict | CPU/req: server | upstream | generator | CPU-bound tput ratio |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|")
	for _, s := range sums {
		b := "-"
		if s.budget != nil {
			b = s.budget.String()
		}
		rounds := "-"
		if !math.IsNaN(s.roundMin) && s.scenario != sums[0].scenario {
			rounds = fmt.Sprintf("%.3f–%.3f", s.roundMin, s.roundMax)
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %d | %.3f | %s | %.3f | %.3f | %s | %s | %s | %s | %s | %s |\n",
			s.scenario, s.rps, fmtDur(s.p50), fmtDur(s.p99), s.errors, s.tputRatio, rounds, s.p50Ratio, s.p99Ratio, b, s.verdict,
			fmtCPU(s.cpuPerReq), fmtCPU(s.upCPU), fmtCPU(s.genCPU), fmtRatio(s.cpuRatio))
	}
	fmt.Fprintln(w, "\nPer-round tput ratios: the least and greatest of each round's req/s over bare's in the same round; the spread is what the machine's other load did to the median. The verdict uses the ratio of the medians.")
	fmt.Fprintln(w, "\nCPU-bound tput ratio: bare's CPU per request (server + upstream + generator) over the scenario's, the throughput ratio to expect when the CPUs are the limit; less blurred by other load on the machine than req/s. Not judged.")
	for _, c := range comparisons(sums) {
		fmt.Fprintf(w, "\n%s: %s / %s = %.3f (budget >= %.2f): %s\n", c.what, c.a, c.b, c.ratio, c.min, c.verdict)
	}
	for _, s := range sums {
		if s.errors > 0 {
			fmt.Fprintf(w, "\n%s: %d errors, first: %s\n", s.scenario, s.errors, s.firstErr)
		}
	}
	if len(m.cacheStats) > 0 {
		fmt.Fprintln(w, "\nVerified-token cache during the measured turns (tokengate_token_cache_requests_total):")
		fmt.Fprintln(w)
		for _, s := range sums {
			if st, ok := m.cacheStats[s.scenario]; ok {
				fmt.Fprintf(w, "- %s: %s\n", s.scenario, st)
			}
		}
	}
	fmt.Fprintln(w, "\nPer turn:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| round | scenario | requests | errors | req/s | p50 | p99 | max | CPU/req: server | upstream | generator |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Fprintf(w, "| %d | %s | %d | %d | %.0f | %s | %s | %s | %s | %s | %s |\n",
			r.round, r.scenario, r.ok, r.errors, r.rps(),
			fmtDur(r.hist.quantile(0.5)), fmtDur(r.hist.quantile(0.99)), fmtDur(time.Duration(r.hist.max)),
			fmtCPU(r.cpuPerRequest()), fmtCPU(r.perRequest(r.upstreamCPU)), fmtCPU(r.perRequest(r.genCPU)))
	}
}

// fmtRatio prints a ratio, "n/a" when unknown.
func fmtRatio(r float64) string {
	if math.IsNaN(r) || r == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", r)
}

// fmtCPU prints a CPU time per request in microseconds, "n/a" when unknown.
func fmtCPU(d time.Duration) string {
	if d <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

// fmtDur prints a latency in microseconds or milliseconds, 3 significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return strings.TrimSuffix(fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)), ".0")
	}
}
