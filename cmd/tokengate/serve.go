package main

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"tokengate/internal/config"
)

func cmdServe(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("serve", e)
	configPath := fs.String("config", "", "config file (YAML); embedded defaults when empty")
	if code, ok := parseFlags(fs, args, e); !ok {
		return code
	}
	cfg, ok := loadConfig(*configPath, e)
	if !ok {
		return exitConfig
	}
	// Everything that can fail is checked before anything is created: a
	// missing users file must not leave a new signing key behind.
	if errs := checkFiles(cfg); len(errs) > 0 {
		reportProblems(e, *configPath, errs)
		return exitConfig
	}
	e.reloadConfig = func() (*config.Config, error) {
		if *configPath == "" {
			return nil, nil
		}
		next, err := config.Load(*configPath, e.environ)
		if err == nil {
			err = next.Validate()
		}
		return &next, err
	}
	return serve(ctx, cfg, e)
}

// newLogger builds the process logger from log_format and log_level.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated; "" is info
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// serve runs tokengate until ctx is done (SIGTERM/SIGINT), then shuts down:
// readiness fails first, shutdown_delay lets endpoints update, in-flight
// requests drain within shutdown_grace. It returns the exit code.
func serve(ctx context.Context, cfg config.Config, e env) int {
	logger := newLogger(cfg, e.stderr)
	a, err := newApp(ctx, cfg, logger)
	if err != nil {
		logger.Error("startup failed", "error", err)
		return exitError
	}
	defer a.close()

	publicLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		logger.Error("listen", "addr", cfg.Listen, "error", err)
		return exitError
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		publicLn.Close()
		logger.Error("listen", "addr", cfg.AdminListen, "error", err)
		return exitError
	}
	errLog := log.New(&slogWriter{logger}, "", 0)
	public := &http.Server{
		Handler:           a.public,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	admin := &http.Server{
		Handler:           a.admin,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          errLog,
	}

	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopBG(); wg.Wait() }()
	if a.fileUser != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.fileUser.Watch(bg, cfg.Users.ReloadInterval) }()
	}
	if e.hup != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-bg.Done():
					return
				case <-e.hup:
					a.reloadFrom(e.reloadConfig)
				}
			}
		}()
	}

	serveErr := make(chan error, 2)
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{public, publicLn}, {admin, adminLn}} {
		go func() { serveErr <- s.srv.Serve(s.ln) }()
	}
	logger.Info("listening", "public", publicLn.Addr().String(), "admin", adminLn.Addr().String(),
		"upstream", cfg.Upstream, "version", version)
	if e.started != nil {
		e.started(addrs{Public: publicLn.Addr().String(), Admin: adminLn.Addr().String()})
	}

	code := exitOK
	select {
	case <-ctx.Done():
		logger.Info("shutting down: readiness now fails", "delay", cfg.Server.ShutdownDelay.String(), "grace", cfg.Server.ShutdownGrace.String())
	case err := <-serveErr:
		logger.Error("server stopped", "error", err)
		code = exitError
	}
	a.shuttingDown.Store(true)
	if code == exitOK && cfg.Server.ShutdownDelay > 0 {
		time.Sleep(cfg.Server.ShutdownDelay)
	}
	drain, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownGrace)
	defer cancel()
	var swg sync.WaitGroup
	for _, srv := range []*http.Server{public, admin} {
		swg.Add(1)
		go func() {
			defer swg.Done()
			if err := srv.Shutdown(drain); err != nil {
				logger.Warn("drain incomplete; closing remaining connections", "error", err)
				srv.Close()
			}
		}()
	}
	swg.Wait()
	logger.Info("stopped")
	return code
}

// slogWriter sends net/http's internal error log (TLS, hijack, header
// errors) to the structured logger.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	w.log.Warn("http server", "error", strings.TrimSpace(string(p)))
	return len(p), nil
}

// reloadFrom reads the configuration again, when there is a file, and
// reloads; an invalid file fails the reload and keeps everything as it was.
func (a *app) reloadFrom(read func() (*config.Config, error)) {
	var next *config.Config
	if read != nil {
		c, err := read()
		if err != nil {
			a.reloadGauge.Set(0)
			a.log.Error("reload failed: invalid configuration; keeping the previous users and keys", "error", err)
			return
		}
		next = c
	}
	_ = a.reload(next)
}
