package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// scenario is what one kind of turn sends.
type scenario struct {
	name string
	url  string
	// auth returns the Authorization value for a worker's i-th request;
	// nil sends no Authorization header.
	auth func(worker, i int) string
	// header carries auth's value instead of Authorization ("Cookie" for
	// the session cookie); "" is Authorization.
	header string
	// serverPID is the process serving the scenario (0: unknown); its CPU
	// time over the turn is reported per request, and so is the
	// upstream's (upstreamPID) and the load generator's (this process).
	serverPID   int
	upstreamPID int
	admin       string // tokengate's admin URL, for its cache counters; "" for bare
}

func (sc scenario) authHeader() string {
	if sc.header != "" {
		return sc.header
	}
	return "Authorization"
}

// turnResult is one measured turn of one scenario.
type turnResult struct {
	scenario string
	round    int
	ok       uint64 // 2xx answers
	errors   uint64 // non-2xx answers and transport errors
	firstErr string
	elapsed  time.Duration
	hist     *histogram // latency of every answered request, errors included
	// serverCPU is the CPU time the serving process used during the turn,
	// upstreamCPU the upstream's, genCPU the load generator's (this
	// process: workers, HTTP client, the drained children's stderr); 0 when
	// unknown.
	serverCPU, upstreamCPU, genCPU time.Duration
}

// rps is the rate of successful requests over the turn.
func (r turnResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// cpuPerRequest is the serving process's CPU time per answered request.
func (r turnResult) cpuPerRequest() time.Duration { return r.perRequest(r.serverCPU) }

// perRequest divides a CPU time by the answered requests; 0 when unknown.
func (r turnResult) perRequest(cpu time.Duration) time.Duration {
	n := r.ok + r.errors
	if cpu <= 0 || n == 0 {
		return 0
	}
	return cpu / time.Duration(n)
}

// newLoadClient returns the generator's client: keep-alive, enough idle
// connections per host for every worker, no compression, HTTP/1.1.
func newLoadClient(concurrency int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 2 * concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// worker is one closed-loop client: it sends the next request as soon as
// the previous answer is read, until the deadline.
type worker struct {
	id       int
	hist     *histogram
	ok       uint64
	errors   uint64
	firstErr string
}

func (w *worker) run(ctx context.Context, client *http.Client, sc scenario, deadline time.Time) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sc.url, nil)
	if err != nil {
		w.fail(err.Error())
		return
	}
	// The request is reused: it is safe once the previous body is closed,
	// and it keeps the generator's own cost equal across scenarios.
	for i := 0; ctx.Err() == nil; i++ {
		start := time.Now()
		if !start.Before(deadline) {
			return
		}
		if sc.auth != nil {
			req.Header[sc.authHeader()] = []string{sc.auth(w.id, i)}
		}
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return // interrupted: not the server's fault
			}
			w.fail(err.Error())
			continue
		}
		_, copyErr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		w.hist.record(time.Since(start))
		switch {
		case copyErr != nil:
			w.fail("reading body: " + copyErr.Error())
		case resp.StatusCode < 200 || resp.StatusCode > 299:
			w.fail(fmt.Sprintf("status %d", resp.StatusCode))
		default:
			w.ok++
		}
	}
}

func (w *worker) fail(msg string) {
	w.errors++
	if w.firstErr == "" {
		w.firstErr = msg
	}
}

// runTurn drives sc with concurrency closed-loop workers for d. Histograms
// are allocated before the clock starts; workers share nothing while running.
func runTurn(ctx context.Context, client *http.Client, sc scenario, concurrency int, d time.Duration) turnResult {
	workers := make([]*worker, concurrency)
	for i := range workers {
		workers[i] = &worker{id: i, hist: new(histogram)}
	}
	var wg sync.WaitGroup
	self := os.Getpid()
	cpu0, cpuOK := processCPU(sc.serverPID)
	up0, upOK := processCPU(sc.upstreamPID)
	gen0, genOK := processCPU(self)
	start := time.Now()
	deadline := start.Add(d)
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, client, sc, deadline)
		}()
	}
	wg.Wait()
	res := turnResult{scenario: sc.name, elapsed: time.Since(start), hist: new(histogram)}
	if cpu1, ok := processCPU(sc.serverPID); ok && cpuOK && sc.serverPID > 0 {
		res.serverCPU = cpu1 - cpu0
	}
	if up1, ok := processCPU(sc.upstreamPID); ok && upOK && sc.upstreamPID > 0 {
		res.upstreamCPU = up1 - up0
	}
	if gen1, ok := processCPU(self); ok && genOK {
		res.genCPU = gen1 - gen0
	}
	for _, w := range workers {
		res.ok += w.ok
		res.errors += w.errors
		if res.firstErr == "" {
			res.firstErr = w.firstErr
		}
		res.hist.merge(w.hist)
	}
	return res
}
