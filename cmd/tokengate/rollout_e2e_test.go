package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// podApp is the app container of a simulated pod: a real HTTP server that,
// on termination, runs its preStop sleep and then shuts down gracefully as
// an app does on SIGTERM (its listener closes at once, in-flight requests
// finish).
type podApp struct {
	srv      *http.Server
	URL      string
	inFlight atomic.Int64
	stopped  chan struct{}
}

func newPodApp(t *testing.T) *podApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &podApp{URL: "http://" + ln.Addr().String(), stopped: make(chan struct{})}
	a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.inFlight.Add(1)
		defer a.inFlight.Add(-1)
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d)
		}
		io.WriteString(w, "ok")
	})}
	go a.srv.Serve(ln)
	t.Cleanup(func() { a.srv.Close() })
	return a
}

// terminate is what the kubelet does to the app container: preStop, then
// SIGTERM (graceful shutdown).
func (a *podApp) terminate(preStop time.Duration) {
	go func() {
		time.Sleep(preStop)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = a.srv.Shutdown(ctx)
		close(a.stopped)
	}()
}

// TestPodTerminationWithoutErrors simulates a rollout replacing a pod: the
// kubelet sends SIGTERM to tokengate and terminates the app container at
// the same moment. Requests in flight at that moment, and new requests that
// keep arriving while endpoints update (within shutdown_delay), must all
// succeed. With the kit's rule (the app's preStop sleep >= shutdown_delay +
// shutdown_grace) they do; without it the app is gone while tokengate still
// accepts, and clients get 502: the second case shows the test sees that.
func TestPodTerminationWithoutErrors(t *testing.T) {
	const (
		delay   = 3 * time.Second
		grace   = 6 * time.Second
		slowReq = 4 * time.Second // in flight across the end of the delay
	)
	for _, tc := range []struct {
		name    string
		preStop time.Duration
		want5xx bool
	}{
		{"app preStop sleep of shutdown_delay+shutdown_grace", delay + grace, false},
		{"app stops with tokengate (no preStop)", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := newPodApp(t)
			in := start(t, newDir(t, app.URL),
				"TOKENGATE_SERVER_SHUTDOWN_DELAY="+delay.String(),
				"TOKENGATE_SERVER_SHUTDOWN_GRACE="+grace.String(),
				"TOKENGATE_UPSTREAM_TIMEOUT=10s")
			tok := login(t, in.Public, "alice", testUsers["alice"])
			c := &http.Client{Transport: &http.Transport{}, Timeout: 20 * time.Second}
			defer c.CloseIdleConnections()
			get := func(path string) (int, error) {
				req, _ := http.NewRequest("GET", in.Public+path, nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := c.Do(req)
				if err != nil {
					return 0, err
				}
				defer resp.Body.Close()
				_, _ = io.Copy(io.Discard, resp.Body)
				return resp.StatusCode, nil
			}

			var mu sync.Mutex
			var results []string // "inflight 200", "new 502", "new error: ..."
			record := func(kind string, code int, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					results = append(results, fmt.Sprintf("%s error: %v", kind, err))
				} else {
					results = append(results, fmt.Sprintf("%s %d", kind, code))
				}
			}
			var wg sync.WaitGroup
			const slow = 3
			for range slow {
				wg.Go(func() {
					code, err := get(fmt.Sprintf("/slow?sleep=%s", slowReq))
					record("in-flight", code, err)
				})
			}
			eventually(t, 5*time.Second, "slow requests reach the app", func() bool { return app.inFlight.Load() == slow })

			// The pod is deleted: SIGTERM to tokengate, preStop then SIGTERM
			// to the app, both now.
			sigterm := time.Now()
			in.signal(syscall.SIGTERM)
			app.terminate(tc.preStop)

			// New requests keep arriving while the endpoint removal
			// propagates: for the first half of shutdown_delay.
			for range 2 {
				wg.Go(func() {
					for time.Since(sigterm) < delay/2 {
						code, err := get("/new")
						record("new", code, err)
						time.Sleep(20 * time.Millisecond)
					}
				})
			}
			wg.Wait()
			if code := in.wait(20 * time.Second); code != 0 {
				t.Fatalf("tokengate exit code %d:\n%s", code, in.logs)
			}

			var failed []string
			newOK := 0
			for _, r := range results {
				switch r {
				case "in-flight 200":
				case "new 200":
					newOK++
				default:
					failed = append(failed, r)
				}
			}
			counts := map[string]int{}
			for _, r := range results {
				counts[r]++
			}
			t.Logf("results: %v", counts)
			if tc.want5xx {
				if !slices.Contains(failed, "new 502") {
					t.Fatalf("without the preStop rule, expected 502s for new requests; got %v", counts)
				}
				return
			}
			if len(failed) > 0 {
				t.Fatalf("requests failed across the pod termination: %v", failed)
			}
			if newOK == 0 {
				t.Fatal("no new request was sent during shutdown_delay")
			}
			select {
			case <-app.stopped:
				t.Fatal("the app stopped before tokengate exited")
			default:
			}
		})
	}
}
