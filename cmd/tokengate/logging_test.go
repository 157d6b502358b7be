package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRateLimitHandler(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1_700_000_000, 0)
	log := slog.New(newRateLimitHandler(slog.NewJSONHandler(&buf, nil), 10*time.Second, func() time.Time { return now }))
	down := errors.New("redis: connection refused")
	lines := func() []map[string]any {
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		buf.Reset()
		return out
	}

	for range 5 {
		log.Error("revocation store unavailable", "request_id", "r", "error", down)
	}
	log.With("component", "x").Error("revocation store unavailable", "error", down) // derived loggers share the limit
	log.Error("revocation store unavailable", "error", errors.New("i/o timeout"))   // a different error
	log.Warn("revocation store unavailable", "error", down)                         // a different level
	log.Info("request", "status", 503)                                              // not a failure
	log.Error("no error attribute")
	log.Error("no error attribute")
	got := lines()
	if len(got) != 6 {
		t.Fatalf("%d lines, want 6 (first error, other error, warn, info, 2 without error attr): %v", len(got), got)
	}
	if _, ok := got[0]["suppressed"]; ok {
		t.Errorf("first occurrence carries suppressed: %v", got[0])
	}

	now = now.Add(9 * time.Second)
	log.Error("revocation store unavailable", "error", down)
	if got := lines(); len(got) != 0 {
		t.Fatalf("within the window: %v", got)
	}
	now = now.Add(time.Second)
	log.Error("revocation store unavailable", "error", down)
	got = lines()
	if len(got) != 1 || got[0]["suppressed"] != float64(6) {
		t.Fatalf("after the window: %v, want one line with suppressed 6", got)
	}
	now = now.Add(10 * time.Second)
	log.Error("revocation store unavailable", "error", down)
	if got := lines(); len(got) != 1 || got[0]["suppressed"] != nil {
		t.Fatalf("nothing suppressed since: %v", got)
	}
}

func TestRedisLoggerWritesStructuredLines(t *testing.T) {
	var buf bytes.Buffer
	redisLogger{slog.New(slog.NewJSONHandler(&buf, nil))}.Printf(context.Background(), "redis: %s: failed to dial: %v\n", "pool.go:770", "connection refused")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("not JSON: %q", buf.String())
	}
	if m["msg"] != "redis client" || m["level"] != "WARN" || m["error"] != "redis: pool.go:770: failed to dial: connection refused" {
		t.Fatalf("got %v", m)
	}
}
