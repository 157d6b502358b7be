// Command tokengate-loadbench measures tokengate against the budget of
// ARCHITECTURE.md: authenticated proxying compared with a bare
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
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.short {
		o.turns, o.duration, o.warmup = 1, time.Second, 200*time.Millisecond
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
	return time.Minute + time.Duration(3*o.turns)*(o.duration+o.warmup)*3/2
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
	for _, s := range sums {
		switch {
		case s.verdict == verdictInvalid:
			code = 1
		case s.verdict == verdictFail && o.check && code == 0:
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

	_, upAddr, err := p.startServer(ctx, "upstream", self, []string{"upstream"}, 10*time.Second)
	if err != nil {
		return nil, "", err
	}
	upstream := "http://" + upAddr
	bareChild, bareAddr, err := p.startServer(ctx, "bare", self, []string{"bare", "-upstream", upstream}, 10*time.Second)
	if err != nil {
		return nil, "", err
	}
	tg, err := startTokengate(ctx, &p, o.tokengate, dir, upstream)
	if err != nil {
		return nil, "", err
	}
	tokens, err := mintTokens(o.uniqueN, tg.secret, tg.kid, tg.claims, time.Now())
	if err != nil {
		return nil, "", err
	}

	// The request path is not a route of tokengate, so it is proxied.
	const path = "/bench"
	reused := "Bearer " + tg.token
	bearer := make([]string, len(tokens))
	for i, t := range tokens {
		bearer[i] = "Bearer " + t
	}
	// bare receives the same requests as tokengate-reused, Authorization
	// header included (it forwards it unread), so the two differ only by
	// what tokengate does, not by the bytes on the wire.
	scenarios := []scenario{
		{name: scenarioBare, url: "http://" + bareAddr + path, serverPID: bareChild.cmd.Process.Pid, auth: func(int, int) string { return reused }},
		{name: scenarioReused, url: tg.public + path, serverPID: tg.pid, auth: func(int, int) string { return reused }},
		{name: scenarioUnique, url: tg.public + path, serverPID: tg.pid, auth: cycle(bearer, o.concurrency)},
	}

	client := newLoadClient(o.concurrency)
	defer client.CloseIdleConnections()
	if err := preflight(ctx, client, scenarios); err != nil {
		return nil, "", err
	}

	var results []turnResult
	cacheHit := map[string]float64{}
	cacheMiss := map[string]float64{}
	cacheSeen := false
	for round := 1; round <= o.turns; round++ {
		for _, sc := range scenarios {
			if o.warmup > 0 {
				runTurn(ctx, client, sc, o.concurrency, o.warmup)
			}
			h0, m0, ok0 := tokenCacheCounts(ctx, tg.admin)
			r := runTurn(ctx, client, sc, o.concurrency, o.duration)
			h1, m1, ok1 := tokenCacheCounts(ctx, tg.admin)
			if err := ctx.Err(); err != nil {
				return nil, "", fmt.Errorf("run interrupted: %w", err)
			}
			if ok0 && ok1 && sc.name != scenarioBare {
				cacheSeen = true
				cacheHit[sc.name] += h1 - h0
				cacheMiss[sc.name] += m1 - m0
			}
			r.round = round
			results = append(results, r)
			fmt.Fprintf(logw, "round %d %-17s %8.0f req/s  p50 %-8s p99 %-8s errors %d\n",
				round, sc.name, r.rps(), fmtDur(r.hist.quantile(0.5)), fmtDur(r.hist.quantile(0.99)), r.errors)
		}
	}

	order := []string{scenarioBare, scenarioReused, scenarioUnique}
	sums := summarize(results, order, scenarioBare, budgets)
	meta := runMeta{
		command:     command,
		date:        time.Now(),
		goVersion:   runtime.Version(),
		tokengate:   tg.version,
		cpus:        runtime.NumCPU(),
		cpuModel:    cpuModel(),
		concurrency: o.concurrency,
		duration:    o.duration,
		warmup:      o.warmup,
		turns:       o.turns,
		uniqueN:     o.uniqueN,
		cacheNote:   tg.cacheNote,
	}
	if cacheSeen {
		meta.cacheStats = map[string]string{}
		for _, name := range []string{scenarioReused, scenarioUnique} {
			meta.cacheStats[name] = fmt.Sprintf("%.0f hits, %.0f misses", cacheHit[name], cacheMiss[name])
		}
	}
	var b bytes.Buffer
	writeMarkdown(&b, meta, sums, results)
	return sums, b.String(), nil
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
			req.Header.Set("Authorization", sc.auth(0, 0))
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
