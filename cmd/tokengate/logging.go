package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// errorLogWindow is how often one distinct error is logged at most.
const errorLogWindow = 10 * time.Second

// maxLimitedKeys bounds the distinct errors remembered; past it, old
// entries are dropped (and their next occurrence is logged at once).
const maxLimitedKeys = 1024

// rateLimitHandler passes each distinct failure (a WARN or ERROR record
// with an "error" attribute: same level, message and error text) at most
// once per window. The next one after the window carries "suppressed", the
// count left out meanwhile. While Redis is down every request fails the
// same way: one line per 10 s says so; the metrics count every request.
type rateLimitHandler struct {
	next   slog.Handler
	window time.Duration
	now    func() time.Time
	state  *limitState // shared by the handlers WithAttrs/WithGroup derive
}

type limitState struct {
	mu   sync.Mutex
	seen map[string]*limitEntry
}

type limitEntry struct {
	last       time.Time
	suppressed int
}

func newRateLimitHandler(next slog.Handler, window time.Duration, now func() time.Time) *rateLimitHandler {
	return &rateLimitHandler{next: next, window: window, now: now, state: &limitState{seen: map[string]*limitEntry{}}}
}

func (h *rateLimitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *rateLimitHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	var errText string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			errText = a.Value.Resolve().String()
			return false
		}
		return true
	})
	if errText == "" {
		return h.next.Handle(ctx, r)
	}
	key := r.Level.String() + "\x00" + r.Message + "\x00" + errText
	now := h.now()
	s := h.state
	s.mu.Lock()
	e := s.seen[key]
	if e != nil && now.Sub(e.last) < h.window {
		e.suppressed++
		s.mu.Unlock()
		return nil
	}
	if e == nil {
		if len(s.seen) >= maxLimitedKeys {
			for k, old := range s.seen {
				if now.Sub(old.last) >= h.window {
					delete(s.seen, k)
				}
			}
			if len(s.seen) >= maxLimitedKeys {
				clear(s.seen)
			}
		}
		e = &limitEntry{}
		s.seen[key] = e
	}
	suppressed := e.suppressed
	e.suppressed, e.last = 0, now
	s.mu.Unlock()
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, r)
}

func (h *rateLimitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	return &c
}

func (h *rateLimitHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}

// redisLogger routes go-redis's internal logger (dial failures, pool and
// pub/sub notices, printed as plain text on stderr by default) into the
// process's structured log, so the log stays one format. Its lines are
// failures: WARN with the text as "error", rate-limited like the others.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	l.log.LogAttrs(ctx, slog.LevelWarn, "redis client", slog.String("error", msg))
}
