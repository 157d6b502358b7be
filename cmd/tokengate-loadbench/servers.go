package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"tokengate/proxy"
)

// upstreamBody is what the upstream answers: small and fixed, so the
// upstream costs the same for every scenario and the proxies dominate.
var upstreamBody = []byte(`{"ok":true}` + "\n")

// upstreamHandler is the protected app of the load run.
func upstreamHandler() http.Handler {
	length := strconv.Itoa(len(upstreamBody))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(upstreamBody)
	})
}

// bareProxy is the baseline: httputil.ReverseProxy with Rewrite (SetURL
// and SetXForwarded, what a Director-based ReverseProxy does by default and
// what any proxy in front of an app does) and the same Transport and
// BufferPool tuning as tokengate, nothing else.
func bareProxy(upstream *url.URL) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		Transport:  proxy.NewTransport(60 * time.Second),
		BufferPool: proxy.NewBufferPool(),
	}
}

// childServer is the http.Server of the upstream and bare children: the
// server limits of tokengate's defaults (cmd/tokengate's config.go), so only
// the handler differs. ReadTimeout too: it changes what net/http does per
// request (a read deadline re-armed instead of cleared).
func childServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// serveChild runs a child server on a free loopback port, prints
// "listening <addr>" on stdout for the parent, and serves until killed.
func serveChild(name string, h http.Handler) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	srv := childServer(h)
	fmt.Printf("listening %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

func cmdUpstream(args []string) int {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	return serveChild("upstream", upstreamHandler())
}

func cmdBare(args []string) int {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	upstream := fs.String("upstream", "", "upstream URL")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	u, err := url.Parse(*upstream)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		fmt.Fprintf(os.Stderr, "bare: -upstream must be an http:// URL, got %q\n", *upstream)
		return 2
	}
	return serveChild("bare", bareProxy(u))
}
