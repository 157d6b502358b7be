package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"tokengate/internal/config"
)

// SIGTERM loses no access line: the log is written in batches off the
// request path, and shutdown writes out what is queued. N requests, then
// SIGTERM at once (no shutdown delay), then count the lines on stderr.
func TestAccessLogFlushedOnSIGTERM(t *testing.T) {
	up := newEchoUpstream(t)
	in := start(t, newDir(t, up.URL))
	tok := login(t, in.Public, "alice", testUsers["alice"])

	const n = 600
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 6 {
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s/app/%d", in.Public, i), nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				res, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					errs <- fmt.Errorf("request %d: %d", i, res.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	in.signal(syscall.SIGTERM)
	if code := in.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(in.logs.String(), "\n") {
		var m struct {
			Msg, Path string
		}
		if json.Unmarshal([]byte(l), &m) == nil && m.Msg == "request" && strings.HasPrefix(m.Path, "/app/") {
			if seen[m.Path] {
				t.Fatalf("line for %s twice", m.Path)
			}
			seen[m.Path] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("%d access lines on stderr after SIGTERM, want %d", len(seen), n)
	}
	if !strings.Contains(in.logs.String(), `"msg":"stopped"`) {
		t.Fatal(`no "stopped" line: the shutdown lines were lost`)
	}
}

// Lines the stalled log reader could not take are counted in
// tokengate_log_lines_dropped_total.
func TestLogLinesDroppedMetric(t *testing.T) {
	pr, pw, err := os.Pipe() // nobody reads: a stalled container runtime
	if err != nil {
		t.Fatal(err)
	}
	lg := newLogs(config.Config{LogFormat: "json", LogLevel: "info"}, pw)
	for i := range 20_000 { // ~2 MiB: more than the pipe and the 1 MiB buffer
		lg.Info("filler", "i", i, "pad", strings.Repeat("x", 40))
	}
	got := testutil.ToFloat64(lg.droppedMetric())
	if got == 0 {
		t.Fatal("tokengate_log_lines_dropped_total is 0 after the reader stalled")
	}
	// The reader comes back: the queued lines and a warning saying how many
	// were dropped come out.
	out := make(chan string)
	go func() { b, _ := io.ReadAll(pr); out <- string(b) }()
	lg.close()
	pw.Close()
	logs := <-out
	pr.Close()
	// Every drop is reported: the warnings' counts add up to the total.
	var sum, total uint64
	for _, l := range strings.Split(logs, "\n") {
		var m struct {
			Msg          string
			Dropped      uint64
			DroppedTotal uint64 `json:"dropped_total"`
		}
		if json.Unmarshal([]byte(l), &m) == nil && strings.HasPrefix(m.Msg, "log lines dropped") {
			sum += m.Dropped
			total = m.DroppedTotal
		}
	}
	if total < uint64(got) || sum != total {
		t.Errorf("warnings report %d dropped lines (total %d), want the %v counted", sum, total, got)
	}
}
