// Command tokengate-loadbench measures tokengate against the budget of
// README.md ("Performance"): authenticated proxying compared with a bare
// httputil.ReverseProxy tuned the same way, same upstream, same load, in
// interleaved turns within one run. `make bench` runs it.
//
//	tokengate-loadbench [-tokengate bin/tokengate] [-duration 5s] [-turns 3]
//	    [-concurrency 32] [-warmup 1s] [-unique-tokens 20000] [-out FILE] [-short]
//
// The upstream and the bare proxy are child processes of this program
// (subcommands `upstream` and `bare -upstream URL`), tokengate is the real
// binary; none shares the load generator's Go scheduler. Everything listens
// on 127.0.0.1 and every child is killed by PID when the run ends.
//
// Exit status: 0 when the run completed without request errors (whatever
// the verdict, unless -check), 1 on a failed run or request errors, 2 on
// bad flags, 3 with -check when a scenario is over budget.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "upstream":
			os.Exit(cmdUpstream(os.Args[2:]))
		case "bare":
			os.Exit(cmdBare(os.Args[2:]))
		case "cgexec": // used by mem -cgroup-limit
			os.Exit(cmdCgexec(os.Args[2:]))
		case "mem":
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			code := cmdMem(ctx, os.Args[2:], os.Stdout, os.Stderr)
			stop()
			os.Exit(code)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmdRun(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options of a load run.
type options struct {
	tokengate   string
	duration    time.Duration
	turns       int
	concurrency int
	warmup      time.Duration
	uniqueN     int
	out         string
	short       bool
	check       bool
	redisURL    string          // "" skips the Redis scenario
	svg         string          // chart output file; "" writes none
	accessRules int             // access rules in every instance's config (0: none, the default config)
	only        map[string]bool // run only these scenarios (and bare); nil: all
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("tokengate-loadbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.tokengate, "tokengate", "bin/tokengate", "tokengate binary")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per turn")
	fs.IntVar(&o.turns, "turns", 3, "rounds; each round runs every scenario once")
	fs.IntVar(&o.concurrency, "concurrency", 32, "closed-loop clients")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each turn")
	fs.IntVar(&o.uniqueN, "unique-tokens", 20000, "pre-minted tokens cycled by tokengate-unique")
	fs.StringVar(&o.out, "out", "", "also write the markdown summary to this file")
	fs.BoolVar(&o.short, "short", false, "smoke run: 1 round of 1s, 200ms warmup")
	fs.BoolVar(&o.check, "check", false, "exit 3 when a scenario is over budget")
	fs.StringVar(&o.redisURL, "redis", "redis://127.0.0.1:6379/0", "Redis for the tokengate-redis scenario (read only: the run revokes nothing); \"\" skips it")
	fs.StringVar(&o.svg, "svg", "", "also write an SVG chart of the ratios and CPU per request to this file")
	fs.IntVar(&o.accessRules, "access-rules", 0, "configure this many access rules in every tokengate (the last one lets the load's user, group bench, reach the load's path); 0: none")
	only := fs.String("only", "", "comma-separated scenarios to run (bare always runs)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.short {
		o.turns, o.duration, o.warmup = 1, time.Second, 200*time.Millisecond
	}
	if *only != "" {
		o.only = map[string]bool{}
		for _, name := range strings.Split(*only, ",") {
			o.only[strings.TrimSpace(name)] = true
		}
	}
	switch {
	case o.duration <= 0 || o.warmup < 0:
		return o, errors.New("-duration must be > 0 and -warmup >= 0")
	case o.turns < 1 || o.concurrency < 1:
		return o, errors.New("-turns and -concurrency must be >= 1")
	case o.uniqueN <= tokenCacheSize:
		return o, fmt.Errorf("-unique-tokens must exceed the token cache size (%d)", tokenCacheSize)
	}
	return o, nil
}

// maxRunTime bounds the whole run: setup, every turn, slack.
func (o options) maxRunTime() time.Duration {
	return 2*time.Minute + time.Duration(len(scenarioNames)*o.turns)*(o.duration+o.warmup)*3/2
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "tokengate-loadbench: %v\n", err)
		}
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, o.maxRunTime())
	defer cancel()
	sums, report, err := runBench(ctx, o, "tokengate-loadbench "+strings.Join(args, " "), stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tokengate-loadbench: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			fmt.Fprintf(stderr, "tokengate-loadbench: %v\n", err)
			return 1
		}
	}
	code := 0
	verdicts := []string{}
	for _, s := range sums {
		verdicts = append(verdicts, s.verdict)
	}
	for _, c := range comparisons(sums) {
		verdicts = append(verdicts, c.verdict)
	}
	for _, v := range verdicts {
		switch {
		case v == verdictInvalid:
			code = 1
		case v == verdictFail && o.check && code == 0:
			code = 3
		}
	}
	return code
}

// runBench starts the servers, runs the interleaved turns and returns the
// summaries and the markdown report. Every child is killed before it returns.
func runBench(ctx context.Context, o options, command string, logw io.Writer) ([]summary, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	if _, err := os.Stat(o.tokengate); err != nil {
		return nil, "", fmt.Errorf("tokengate binary: %w (run `make build` first)", err)
	}
	dir, err := os.MkdirTemp("", "tokengate-loadbench-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(dir)
	var p procs
	defer p.killAll()

	upChild, upAddr, err := p.startServer(ctx, "upstream", self, []string{"upstream"}, 10*time.Second)
	if err != nil {
		return nil, "", err
	}
	upPID := upChild.cmd.Process.Pid
	upstream := "http://" + upAddr
	bareChild, bareAddr, err := p.startServer(ctx, "bare", self, []string{"bare", "-upstream", upstream}, 10*time.Second)
	if err != nil {
		return nil, "", err
	}

	// The tokengate instances: the access log is on (the default) in all
	// but the quiet one; each logs to a pipe this process drains, as a
	// container runtime drains stderr.
	// tokengate-unique has an instance of its own: its 20000 distinct
	// tokens fill the revocation cache and churn the heap, which would
	// otherwise weigh on the reused-token turns that share the instance
	// (reused, reused-quiet and their log on/off comparison measure one
	// token's path, nothing else).
	instances := []instanceConfig{
		{name: "tokengate", algorithm: "HS256", backend: "memory"},
		{name: "tokengate-unique", algorithm: "HS256", backend: "memory"},
		{name: "tokengate-quiet", algorithm: "HS256", backend: "memory", quiet: true},
		{name: "tokengate-default", algorithm: "EdDSA", backend: "bolt"},
	}
	if o.redisURL != "" {
		instances = append(instances, instanceConfig{name: "tokengate-redis", algorithm: "HS256", backend: "redis", redisURL: o.redisURL})
	}
	tgs := map[string]*tokengateSetup{}
	var notes []string
	for _, ic := range instances {
		idir := filepath.Join(dir, ic.name)
		if err := os.Mkdir(idir, 0o700); err != nil {
			return nil, "", err
		}
		ic.accessRules = o.accessRules
		tg, err := startTokengate(ctx, &p, o.tokengate, idir, upstream, ic)
		if err != nil {
			if ic.backend == "redis" {
				notes = append(notes, fmt.Sprintf("tokengate-redis skipped: %v", err))
				continue
			}
			return nil, "", err
		}
		tgs[ic.name] = tg
	}
	tg, tgUnique := tgs["tokengate"], tgs["tokengate-unique"]
	hsTokens, err := tgUnique.mint(o.uniqueN, time.Now())
	if err != nil {
		return nil, "", err
	}
	edTokens, err := tgs["tokengate-default"].mint(o.uniqueN, time.Now())
	if err != nil {
		return nil, "", err
	}

	// The request path is not a route of tokengate, so it is proxied.
	const path = "/bench"
	bearer := func(tok string) func(int, int) string {
		v := "Bearer " + tok
		return func(int, int) string { return v }
	}
	reused := bearer(tg.token)
	// bare receives the same requests as tokengate-reused, Authorization
	// header included (it forwards it unread), so the two differ only by
	// what tokengate does, not by the bytes on the wire.
	on := func(name string, tg *tokengateSetup, url string, auth func(int, int) string) scenario {
		return scenario{name: name, url: url, serverPID: tg.pid, upstreamPID: upPID, admin: tg.admin, auth: auth}
	}
	// The browser sign-in's session cookie instead of the Bearer header: by
	// default Secure and host-only, so named "__Host-tokengate" (the only
	// name then read); the cookie is removed before forwarding.
	cookie := func(sc scenario) scenario { sc.header = "Cookie"; return sc }
	scenarios := []scenario{
		{name: scenarioBare, url: "http://" + bareAddr + path, serverPID: bareChild.cmd.Process.Pid, upstreamPID: upPID, auth: reused},
		on(scenarioReused, tg, tg.public+path, reused),
		on(scenarioQuiet, tgs["tokengate-quiet"], tgs["tokengate-quiet"].public+path, bearer(tgs["tokengate-quiet"].token)),
		on(scenarioUnique, tgUnique, tgUnique.public+path, cycle(prefixed(hsTokens), o.concurrency)),
		on(scenarioPublic, tg, tg.public+publicPrefix+path, nil),
		cookie(on(scenarioCookie, tg, tg.public+path, func(int, int) string { return "__Host-tokengate=" + tg.token })),
		on(scenarioDefault, tgs["tokengate-default"], tgs["tokengate-default"].public+path, bearer(tgs["tokengate-default"].token)),
		on(scenarioEdDSA, tgs["tokengate-default"], tgs["tokengate-default"].public+path, cycle(prefixed(edTokens), o.concurrency)),
		// Forward auth's verify (routes.verify, on by default) answers
		// itself: its ratio to bare (which proxies) is not like for like;
		// its CPU per request is the figure to read.
		on(scenarioVerify, tg, tg.public+"/tokengate/verify", reused),
	}
	if r := tgs["tokengate-redis"]; r != nil {
		scenarios = append(scenarios, on(scenarioRedis, r, r.public+path, bearer(r.token)))
	}
	if len(o.only) > 0 {
		var kept []scenario
		for _, sc := range scenarios {
			if sc.name == scenarioBare || o.only[sc.name] {
				kept = append(kept, sc)
			}
		}
		scenarios = kept
	}

	client := newLoadClient(o.concurrency)
	defer client.CloseIdleConnections()
	if err := preflight(ctx, client, scenarios); err != nil {
		return nil, "", err
	}

	var results []turnResult
	cacheHit := map[string]float64{}
	cacheMiss := map[string]float64{}
	cacheSeen := map[string]bool{}
	for round := 1; round <= o.turns; round++ {
		for _, sc := range scenarios {
			if o.warmup > 0 {
				runTurn(ctx, client, sc, o.concurrency, o.warmup)
			}
			var h0, m0 float64
			var ok0 bool
			if sc.admin != "" {
				h0, m0, ok0 = tokenCacheCounts(ctx, sc.admin)
			}
			r := runTurn(ctx, client, sc, o.concurrency, o.duration)
			if err := ctx.Err(); err != nil {
				return nil, "", fmt.Errorf("run interrupted: %w", err)
			}
			if sc.admin != "" {
				if h1, m1, ok1 := tokenCacheCounts(ctx, sc.admin); ok0 && ok1 {
					cacheSeen[sc.name] = true
					cacheHit[sc.name] += h1 - h0
					cacheMiss[sc.name] += m1 - m0
				}
			}
			r.round = round
			results = append(results, r)
			fmt.Fprintf(logw, "round %d %-24s %8.0f req/s  p50 %-8s p99 %-8s errors %d  CPU/req %s\n",
				round, sc.name, r.rps(), fmtDur(r.hist.quantile(0.5)), fmtDur(r.hist.quantile(0.99)), r.errors, fmtCPU(r.cpuPerRequest()))
		}
	}

	var order []string
	for _, sc := range scenarios {
		order = append(order, sc.name)
	}
	sums := summarize(results, order, scenarioBare, budgets)
	meta := runMeta{
		command:     command,
		date:        time.Now(),
		goVersion:   runtime.Version(),
		tokengate:   tg.version,
		cpus:        runtime.NumCPU(),
		cpuModel:    cpuModel(),
		loadavg:     loadAvg(),
		concurrency: o.concurrency,
		duration:    o.duration,
		warmup:      o.warmup,
		turns:       o.turns,
		uniqueN:     o.uniqueN,
		cacheNote:   tg.cacheNote,
		notes:       notes,
	}
	meta.cacheStats = map[string]string{}
	for _, name := range order {
		if cacheSeen[name] {
			meta.cacheStats[name] = fmt.Sprintf("%.0f hits, %.0f misses", cacheHit[name], cacheMiss[name])
		}
	}
	var b bytes.Buffer
	writeMarkdown(&b, meta, sums, results)
	if o.svg != "" {
		if err := os.WriteFile(o.svg, []byte(chartSVG(meta, sums)), 0o644); err != nil {
			return nil, "", err
		}
	}
	return sums, b.String(), nil
}

// prefixed turns tokens into Authorization values.
func prefixed(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = "Bearer " + t
	}
	return out
}

// loadAvg is /proc/loadavg's first three fields, or "".
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// cycle hands out the pool so that no value repeats before about the whole
// pool (far more tokens than the cache holds) has gone by: worker w owns the
// w-th of concurrency equal slices and walks it round and round. Its
// position lives on across turns (warmups included); only it touches it.
func cycle(pool []string, concurrency int) func(worker, i int) string {
	seg := max(len(pool)/concurrency, 1)
	next := make([]int, concurrency)
	return func(w, _ int) string {
		k := next[w]
		next[w] = (k + 1) % seg
		return pool[(w*seg+k)%len(pool)]
	}
}

// preflight sends one request per scenario and wants a 2xx: a wrong token
// or kid fails here with the answer, not as a turn full of errors.
func preflight(ctx context.Context, client *http.Client, scenarios []scenario) error {
	for _, sc := range scenarios {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, sc.url, nil)
		if err != nil {
			return err
		}
		if sc.auth != nil {
			req.Header.Set(sc.authHeader(), sc.auth(0, 0))
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("preflight %s: %w", sc.name, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("preflight %s: %s: %s", sc.name, resp.Status, bytes.TrimSpace(body))
		}
	}
	return nil
}

// cpuModel is the first "model name" of /proc/cpuinfo, or "unknown CPU".
func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
