package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tokengate/internal/accesslog"
	"tokengate/internal/config"

	"github.com/redis/go-redis/v9"
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

// logs is the process's logging: every line (access lines and the rest)
// goes through one accesslog.Writer, so no request ever waits on stderr;
// close writes out what is queued (SIGTERM loses no line).
type logs struct {
	*slog.Logger
	access *accesslog.Logger // the access lines' fast formatter
	out    *accesslog.Writer
}

// newLogs builds the process logger from log_format and log_level, writing
// to w through a batching writer.
func newLogs(cfg config.Config, w io.Writer) *logs {
	l := &logs{}
	l.out = accesslog.NewWriter(w, accesslog.WriterOptions{
		OnDrop: func(n, total uint64) {
			l.Warn("log lines dropped: the log reader (stderr) is not keeping up",
				"dropped", n, "dropped_total", total)
		},
	})
	l.Logger = newLogger(cfg, l.out)
	l.access = accesslog.NewLogger(l.out, cfg.LogFormat)
	return l
}

// close flushes the queued lines and stops the writer goroutine.
func (l *logs) close() {
	if err := l.out.Close(); err != nil {
		l.Error("log output", "error", err)
	}
}

// droppedMetric counts the lines newLogs dropped.
func (l *logs) droppedMetric() prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tokengate_log_lines_dropped_total",
		Help: "Log lines dropped because the log reader (stderr) did not keep up and the buffer was full.",
	}, func() float64 { return float64(l.out.Dropped()) })
}

// newLogger builds a logger from log_format and log_level.
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated; "" is info
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(newRateLimitHandler(h, errorLogWindow, time.Now))
}

// listenFailed reports an address that cannot be bound (most often a port
// already in use) on stderr in plain words, naming what sets it: the
// command's flag (demo) or the config key and its TOKENGATE_ variable.
func listenFailed(e env, logger *slog.Logger, key, addr string, err error) {
	how := fmt.Sprintf("set %s in the config (or TOKENGATE_%s)", key, strings.ToUpper(key))
	if flag, ok := e.listenFlags[key]; ok {
		how = "use " + flag
	}
	logger.Error("listen", "key", key, "addr", addr, "error", err)
	fmt.Fprintf(e.stderr, "tokengate: cannot listen on %s (%s): %v; %s to choose another address\n", addr, key, unwrapSyscall(err), how)
}

// unwrapSyscall shortens "listen tcp 127.0.0.1:8081: bind: address already
// in use" to its cause, the part a person acts on.
func unwrapSyscall(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

// serve runs tokengate until ctx is done (SIGTERM/SIGINT), then shuts down:
// readiness fails first, shutdown_delay lets endpoints update, in-flight
// requests drain within shutdown_grace. It returns the exit code.
func serve(ctx context.Context, cfg config.Config, e env) int {
	lg := newLogs(cfg, e.stderr)
	defer lg.close() // last: after "stopped" and whatever closing logs
	logger := lg.Logger
	redis.SetLogger(redisLogger{logger}) // process-wide: go-redis has one logger
	a, err := newApp(ctx, cfg, logger, lg.access)
	if err != nil {
		logger.Error("startup failed", "error", err)
		return exitError
	}
	defer a.close()
	a.registry.MustRegister(lg.droppedMetric())

	publicLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		listenFailed(e, logger, "listen", cfg.Listen, err)
		return exitError
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		publicLn.Close()
		listenFailed(e, logger, "admin_listen", cfg.AdminListen, err)
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
	a.started.Store(true)
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
