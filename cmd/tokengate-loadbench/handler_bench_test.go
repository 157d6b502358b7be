package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"tokengate/authn"
	"tokengate/internal/accesslog"
	"tokengate/proxy"
	"tokengate/revocation"
)

// BenchmarkHandler is the in-process counterpart of the load run, for
// profiling (-cpuprofile, -memprofile) and allocation counts: the bare
// ReverseProxy and tokengate's handler (wired as cmd/tokengate does, HS256,
// memory revocation, metrics on a registry, warn-level logs) serve the same
// request to the same real loopback upstream, called directly without a
// listener. The upstream's cost is in every ns/op. Like the load run, bare
// receives the same Authorization header, so only the handler differs. The
// "-info" cases run tokengate with the default log_level (info: one access
// log line per request) through slog's JSON handler (io.Discard); the
// "-info-accesslog" ones as cmd/tokengate does, through accesslog's
// formatter and batching writer (io.Discard).
//
//	go test -run '^$' -bench Handler -benchmem ./cmd/tokengate-loadbench
func BenchmarkHandler(b *testing.B) {
	up := httptest.NewServer(upstreamHandler())
	defer up.Close()
	u, _ := url.Parse(up.URL)
	keyPath := filepath.Join(b.TempDir(), "signing.key")
	if err := os.WriteFile(keyPath, []byte("benchmark-secret-0123456789abcdef0123456789"), 0o600); err != nil {
		b.Fatal(err)
	}
	key, err := authn.LoadSigningKey(keyPath, "HS256")
	if err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	tokens, err := authn.NewTokens(key, nil, authn.TokenOptions{CacheSize: tokenCacheSize, Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	checker, err := revocation.NewChecker(revocation.NewMemoryStore(nil), revocation.CheckerOptions{Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	defer checker.Close()
	newTG := func(level slog.Level, reg prometheus.Registerer, access *accesslog.Logger) http.Handler {
		tg, err := proxy.New(proxy.Options{
			Upstream:   u,
			Tokens:     tokens,
			Auth:       authn.NewAuthenticator(nil, authn.AuthenticatorOptions{}),
			Revocation: checker,
			Logger:     slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: level})),
			AccessLog:  access,
			Registerer: reg,
		})
		if err != nil {
			b.Fatal(err)
		}
		return tg
	}
	tg := newTG(slog.LevelWarn, reg, nil)
	tgInfo := newTG(slog.LevelInfo, prometheus.NewRegistry(), nil)
	// As cmd/tokengate wires it: access lines formatted by accesslog, handed
	// to the batching writer (here in front of io.Discard).
	logw := accesslog.NewWriter(io.Discard, accesslog.WriterOptions{})
	defer logw.Close()
	tgAccess := newTG(slog.LevelInfo, prometheus.NewRegistry(), accesslog.NewLogger(logw, "json"))
	pool := make([]string, 20000)
	for i := range pool {
		t, _, err := tokens.Issue("loadbench", "loadbench")
		if err != nil {
			b.Fatal(err)
		}
		pool[i] = "Bearer " + t
	}

	run := func(b *testing.B, h http.Handler, auth func(i int) string) {
		b.ReportAllocs()
		req := httptest.NewRequest(http.MethodGet, "http://tokengate/bench", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		for i := 0; b.Loop(); i++ {
			// A fresh header map, as net/http makes for every request: the
			// handler adds headers (X-Request-Id) that must not come back
			// as if the client had sent them.
			req.Header = http.Header{"Authorization": {auth(i)}}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	reused := func(int) string { return pool[0] }
	unique := func(i int) string { return pool[i%len(pool)] }
	b.Run(scenarioBare, func(b *testing.B) { run(b, bareProxy(u), reused) })
	b.Run(scenarioReused, func(b *testing.B) { run(b, tg, reused) })
	b.Run(scenarioUnique, func(b *testing.B) { run(b, tg, unique) })
	b.Run(scenarioReused+"-info", func(b *testing.B) { run(b, tgInfo, reused) })
	b.Run(scenarioUnique+"-info", func(b *testing.B) { run(b, tgInfo, unique) })
	b.Run(scenarioReused+"-info-accesslog", func(b *testing.B) { run(b, tgAccess, reused) })
	b.Run(scenarioUnique+"-info-accesslog", func(b *testing.B) { run(b, tgAccess, unique) })
}
