package main

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"tokengate/internal/config"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"tokengate/authn"
	"tokengate/internal/accesslog"
	"tokengate/proxy"
	"tokengate/revocation"
)

// app is one running tokengate built from a config.Config: the components, the
// handlers and what shutdown must close. Only this file wires packages.
type app struct {
	cfg      config.Config
	log      *slog.Logger
	registry *prometheus.Registry

	tokens   *authn.Tokens
	users    authn.UserStore
	fileUser *authn.FileUsers // nil unless users.backend is file
	store    revocation.Store
	checker  *revocation.Checker
	public   http.Handler
	admin    http.Handler

	adminToken []byte // operator endpoint secret; nil disables it

	// identities says who a token's user is now (groups, removal); nil
	// when the store cannot look users up by id (legacy query without id_query).
	identities *authn.Identities

	started      atomic.Bool // set once both listeners serve
	shuttingDown atomic.Bool
	reloadGauge  prometheus.Gauge

	closers []func() error
}

// pinger is a store that can say whether it is reachable.
type pinger interface {
	Ping(ctx context.Context) error
}

// newApp constructs every component. On error, whatever was opened is closed.
func newApp(ctx context.Context, cfg config.Config, log *slog.Logger, access *accesslog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	reg := a.registry
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tokengate_build_info", Help: "Build information; the value is always 1.",
	}, []string{"version", "commit", "goversion"})
	buildInfo.WithLabelValues(version, commit, runtime.Version()).Set(1)
	// Computed at scrape time, so it is right without a kubelet probing
	// /readyz (docker, a VM) and drops to 0 at once on SIGTERM.
	readyGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tokengate_ready", Help: "1 when this instance is ready for traffic (what /readyz answers: local state only), else 0.",
	}, func() float64 {
		if a.ready() != nil {
			return 0
		}
		return 1
	})
	a.reloadGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tokengate_config_last_reload_success", Help: "1 when the last SIGHUP reload of users and keys succeeded, else 0 (watched users file reloads: tokengate_users_reloads_total).",
	})
	a.reloadGauge.Set(1)
	reg.MustRegister(buildInfo, readyGauge, a.reloadGauge)

	// Traces (tracing.enabled): nil tracer when off, and nothing is wrapped.
	tracer, err := a.startTracing(ctx)
	if err != nil {
		return nil, err
	}

	// Keys and tokens.
	signing, verification, err := loadKeys(cfg, true)
	if err != nil {
		return nil, err
	}
	a.tokens, err = authn.NewTokens(signing, verification, authn.TokenOptions{
		Issuer:        cfg.Tokens.Issuer,
		Audience:      cfg.Tokens.Audience,
		TTL:           cfg.Tokens.TTL,
		RefreshWindow: cfg.Tokens.RefreshWindow,
		Leeway:        cfg.Tokens.Leeway,
		CacheSize:     cfg.Tokens.CacheSize,
		Registerer:    reg,
	})
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}

	// Users.
	registrarStore, err := a.openUsers(ctx, reg)
	if err != nil {
		return nil, err
	}
	auth := authn.NewAuthenticator(a.users, authn.AuthenticatorOptions{
		Throttle: authn.ThrottleOptions{
			PerUser:    disabledIfZero(cfg.LoginThrottle.PerUser),
			PerAddress: disabledIfZero(cfg.LoginThrottle.PerAddress),
			Window:     cfg.LoginThrottle.Window,
		},
		// Unknown names are checked against a dummy hash of the kind new
		// passwords get, so they cost what a wrong password costs.
		Hash:   authn.HashOptions{Algorithm: cfg.Users.PasswordHash, BcryptCost: cfg.Users.BcryptCost},
		Logger: log,
	})
	var registrar proxy.Registrar
	if cfg.Users.Registration != "off" && registrarStore != nil {
		r := authn.NewRegistrar(registrarStore, authn.UserPolicy{MinPasswordLength: cfg.Users.MinPasswordLength},
			authn.HashOptions{Algorithm: cfg.Users.PasswordHash, BcryptCost: cfg.Users.BcryptCost})
		r.DefaultGroups = cfg.Users.DefaultGroups
		registrar = r
	}
	if err := a.openIdentities(reg); err != nil {
		return nil, err
	}
	var identities proxy.Identities // a nil *authn.Identities must stay a nil interface
	if a.identities != nil {
		identities = a.identities
	}

	// Revocation.
	a.store, err = openRevocationStore(cfg, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.store.Close)
	a.checker, err = revocation.NewChecker(traceStore(a.store, tracer, cfg.Revocation.Backend), revocation.CheckerOptions{
		CacheSize:     cfg.Revocation.CacheSize,
		MaxStaleness:  cfg.Revocation.MaxStaleness,
		UserCutoffTTL: a.tokens.MaxLifetime(),
		Logger:        log,
		Registerer:    reg,
	})
	if err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	// The checker closes before the store (closers run in reverse).
	a.closers = append(a.closers, a.checker.Close)
	if err := a.noteTokenLifetime(ctx); err != nil {
		return nil, fmt.Errorf("revocation: %w", err)
	}
	// Shared dependencies are reported here and in /readyz?verbose, never
	// in readiness: see ready.
	for _, d := range a.dependencies() {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "tokengate_dependency_up",
			Help:        "1 when the shared dependency answered a check at scrape time, else 0. Not part of readiness.",
			ConstLabels: prometheus.Labels{"dependency": d.name},
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if d.check(ctx) != nil {
				return 0
			}
			return 1
		}))
	}

	// HTTP.
	var upstream *url.URL // nil: auth-server mode
	if cfg.Upstream != "" {
		upstream, _ = url.Parse(cfg.Upstream) // validated
	}
	browser := proxy.BrowserOptions{
		CookieName:           cfg.Browser.CookieName,
		InsecureCookie:       !cfg.Browser.CookieSecure,
		CookieDomain:         cfg.Browser.CookieDomain,
		Title:                cfg.Browser.Title,
		QueryTokenPaths:      cfg.Browser.QueryTokenPaths,
		AllowedRedirectHosts: cfg.Browser.AllowedRedirectHosts,
	}
	if cfg.Routes.SignIn != "" {
		if browser.CSRFKey, err = browserCSRFKey(cfg); err != nil {
			return nil, err
		}
	}
	oidcOpts, err := oidcOptions(cfg, a.store)
	if err != nil {
		return nil, err
	}
	rules, err := compileAccess(cfg)
	if err != nil {
		return nil, err
	}
	a.public, err = proxy.New(proxy.Options{
		Upstream:          upstream,
		UpstreamTimeout:   cfg.UpstreamTimeout,
		IdentityHeader:    cfg.IdentityHeader,
		Access:            rules, // public_paths included
		GroupsHeader:      cfg.Access.GroupsHeader,
		TrustedProxies:    parsePrefixes(cfg.TrustedProxies),
		Routes:            proxy.Routes(cfg.Routes),
		Browser:           browser,
		OIDC:              oidcOpts,
		MaxBodyBytes:      cfg.Server.MaxBodyBytes,
		Tokens:            a.tokens,
		JWKS:              a.tokens.JWKS,
		Auth:              traceAuth(auth, tracer),
		Registration:      cfg.Users.Registration,
		Registrar:         registrar,
		Revocation:        a.checker,
		Identities:        identities,
		AllowOnStoreError: cfg.Revocation.OnStoreError == "allow",
		Logger:            log,
		AccessLog:         access,
		Registerer:        reg,
		Tracer:            tracer,

		ForwardAuthorization: cfg.ForwardAuthorization,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if cfg.AdminTokenFile != "" {
		a.adminToken, err = readSecretFile(cfg.Resolve(cfg.AdminTokenFile), 32)
		if err != nil {
			return nil, fmt.Errorf("admin_token_file: %w", err)
		}
	}
	a.admin = a.adminHandler()
	return a, nil
}

// disabledIfZero maps the config's "0 disables" to authn's "<0 disables".
func disabledIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// openUsers opens the configured user store; it returns the store users can
// be created in, or nil when the backend is read-only.
func (a *app) openUsers(ctx context.Context, reg prometheus.Registerer) (authn.UserCreator, error) {
	cfg := a.cfg
	switch cfg.Users.Backend {
	case "file":
		fu, err := authn.LoadFileUsers(cfg.Resolve(cfg.Users.File), authn.FileUsersOptions{Logger: a.log, Registerer: reg})
		if err != nil {
			return nil, fmt.Errorf("users.file: %w", err)
		}
		a.users, a.fileUser = fu, fu
		return nil, nil
	case "bolt":
		bu, err := authn.OpenBoltUsers(cfg.Resolve(cfg.Users.Path), authn.BoltUsersOptions{})
		if err != nil {
			return nil, fmt.Errorf("users.path: %w", err)
		}
		a.closers = append(a.closers, bu.Close)
		a.users = bu
		return bu, nil
	case "postgres":
		password, err := optionalSecret(cfg.Resolve(cfg.Users.PostgresPasswordFile), cfg.Users.PostgresPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("users.postgres_password_file: %w", err)
		}
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		pu, err := authn.OpenPostgresUsers(octx, authn.PostgresUsersOptions{
			URL: cfg.Users.PostgresURL, Password: password, Table: cfg.Users.Table,
			Migrate: cfg.Users.Migrate, Query: cfg.Users.Query, IDQuery: cfg.Users.IDQuery,
			Logger: a.log,
		})
		if err != nil {
			return nil, postgresUsersError(err)
		}
		a.closers = append(a.closers, func() error { pu.Close(); return nil })
		a.users = pu
		if len(cfg.Users.DefaultGroups) > 0 && !pu.HasGroups() {
			return nil, errNoGroupsColumn
		}
		if cfg.Users.Query != "" {
			return nil, nil
		}
		return pu, nil
	case "ldap":
		for _, w := range cfg.LDAPWarnings() {
			a.log.Warn(w)
		}
		lu, err := openLDAPUsers(cfg, reg, a.log)
		if err != nil {
			return nil, err
		}
		a.closers = append(a.closers, func() error { lu.Close(); return nil })
		a.users = lu
		return nil, nil // read-only: registration is refused by validation
	}
	return nil, fmt.Errorf("users.backend: unknown backend %q", cfg.Users.Backend)
}

// openIdentities builds the Identities of the user store: the users file's
// snapshot, or a cache in front of bolt or PostgreSQL. A legacy query
// without users.id_query cannot look users up by id: no Identities, and
// the log says what that costs.
func (a *app) openIdentities(reg prometheus.Registerer) error {
	if p, ok := a.users.(interface{ CanLookupByID() bool }); ok && !p.CanLookupByID() {
		a.log.Warn("users.query without users.id_query: a user's groups cannot be looked up and a removed user keeps working until their tokens expire or are revoked; set users.id_query")
		return nil
	}
	store, ok := a.users.(authn.UserByIDStore)
	if !ok {
		return fmt.Errorf("users.backend: the %s store cannot look users up by id", a.cfg.Users.Backend)
	}
	id, err := authn.NewIdentities(store, authn.IdentitiesOptions{
		RefreshInterval: a.cfg.Users.RefreshInterval,
		MaxStale:        a.cfg.Users.MaxStale,
		Logger:          a.log,
		Registerer:      reg,
	})
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	// A changed users file is loaded once it has held still for a poll:
	// within three polls.
	if u := a.cfg.Users; u.Backend == "file" && 3*u.ReloadInterval > u.RefreshInterval {
		a.log.Warn("users file changes (groups, removed users) are seen within 3 × users.reload_interval, longer than users.refresh_interval; send SIGHUP after an edit, or lower users.reload_interval",
			"reload_interval", u.ReloadInterval, "refresh_interval", u.RefreshInterval)
	}
	// Closed before the store (closers run in reverse).
	a.closers = append(a.closers, id.Close)
	a.identities = id
	return nil
}

// errNoGroupsColumn refuses users.default_groups for a table that cannot
// hold them: serve and check-config give the same answer.
var errNoGroupsColumn = errors.New("users.default_groups: the users table has no groups column: set users.migrate: true, or add it (ALTER TABLE ... ADD COLUMN groups text[] NOT NULL DEFAULT '{}')")

// postgresUsersError names the key to fix: users.table when the table is
// missing or unusable, else users.postgres_url (cannot connect, bad URL).
func postgresUsersError(err error) error {
	if errors.Is(err, authn.ErrUsersTable) {
		return fmt.Errorf("users.table: %w", err)
	}
	return fmt.Errorf("users.postgres_url: %w", err)
}

func openRevocationStore(cfg config.Config, log *slog.Logger) (revocation.Store, error) {
	rc := cfg.Revocation
	switch rc.Backend {
	case "memory":
		return revocation.NewMemoryStore(time.Now), nil
	case "bolt":
		s, err := revocation.OpenBoltStore(cfg.Resolve(rc.Path), revocation.BoltOptions{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("revocation.path: %w", err)
		}
		return s, nil
	case "redis":
		password, err := optionalSecret(cfg.Resolve(rc.RedisPasswordFile), rc.RedisPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("revocation.redis_password_file: %w", err)
		}
		s, err := revocation.NewRedisStore(revocation.RedisOptions{
			URL: rc.RedisURL, Addrs: rc.RedisAddrs, MasterName: rc.RedisMasterName,
			Password: password, Prefix: rc.RedisPrefix, MinReplicas: rc.RedisMinReplicas, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("revocation.redis_url: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("revocation.backend: unknown backend %q", rc.Backend)
}

// noteTokenLifetime records this process's longest token lifetime in the
// revocation store before any token is issued, so that logout-all cutoffs
// outlive these tokens even after a restart with a shorter tokens.ttl. A
// local store that fails is fatal; Redis may be down at startup (the
// replica starts and waits for it), so the note is retried in the
// background until it lands (every logout-all notes it too).
func (a *app) noteTokenLifetime(ctx context.Context) error {
	try := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return a.checker.NoteLifetime(ctx)
	}
	err := try(ctx)
	if err == nil || a.cfg.Revocation.Backend != "redis" {
		return err
	}
	a.log.Warn("revocation store unreachable: the token lifetime will be noted when it answers", "error", err)
	bg, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-bg.Done():
				return
			case <-t.C:
				if try(bg) == nil {
					a.log.Info("token lifetime noted in the revocation store")
					return
				}
			}
		}
	}()
	a.closers = append(a.closers, func() error { stop(); <-done; return nil })
	return nil
}

// loadKeys loads the signing key (creating it on first start when create is
// set) and the older verification keys.
func loadKeys(cfg config.Config, create bool) (*authn.Key, []*authn.Key, error) {
	// Verification keys first: a bad one must not leave a new signing key behind.
	var verification []*authn.Key
	for i, f := range cfg.Tokens.VerificationKeyFiles {
		k, err := authn.LoadVerificationKey(cfg.Resolve(f))
		if err == nil {
			err = authn.CheckVerificationKeys(cfg.Tokens.Algorithm, []*authn.Key{k})
		}
		if err != nil {
			return nil, nil, fmt.Errorf("tokens.verification_key_files[%d]: %w", i, err)
		}
		verification = append(verification, k)
	}
	load := authn.LoadSigningKey
	if create {
		load = authn.LoadOrCreateSigningKey
	}
	signing, err := load(cfg.Resolve(cfg.Tokens.SigningKeyFile), cfg.Tokens.Algorithm)
	if err != nil {
		return nil, nil, fmt.Errorf("tokens.signing_key_file: %w", err)
	}
	return signing, verification, nil
}

// browserCSRFKey derives the key of the sign-in forms' CSRF tokens from
// the signing key file, so that every replica sharing that file accepts the
// forms the others serve. HKDF with its own label: the signing key itself
// never does a second job, and the CSRF key reveals nothing about it.
func browserCSRFKey(cfg config.Config) ([]byte, error) {
	secret, err := os.ReadFile(cfg.Resolve(cfg.Tokens.SigningKeyFile))
	if err != nil {
		return nil, fmt.Errorf("tokens.signing_key_file: %w", err)
	}
	key, err := hkdf.Key(sha256.New, secret, nil, "tokengate browser sign-in csrf v1", 32)
	if err != nil {
		return nil, fmt.Errorf("deriving the CSRF key: %w", err)
	}
	return key, nil
}

func parsePrefixes(list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		} else if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	return out
}

// readSecretFile reads a secret, trimming surrounding whitespace.
func readSecretFile(path string, minLen int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := []byte(strings.TrimSpace(string(b)))
	if len(s) < minLen {
		return nil, fmt.Errorf("%s: secret must be at least %d bytes", path, minLen)
	}
	return s, nil
}

// optionalSecret reads a password file when one is configured.
func optionalSecret(resolved, configured string) (string, error) {
	if configured == "" {
		return "", nil
	}
	b, err := readSecretFile(resolved, 1)
	return string(b), err
}

// reload re-reads the users file and the keys; a failure keeps the old ones.
// next is the configuration read again (nil when there is no file): its key
// file settings take effect, so a rotation needs no restart; other changes
// are reported as needing one.
func (a *app) reload(next *config.Config) error {
	var errs []error
	keysCfg := a.cfg
	if next != nil {
		keysCfg.Tokens.SigningKeyFile = next.Tokens.SigningKeyFile
		keysCfg.Tokens.VerificationKeyFiles = next.Tokens.VerificationKeyFiles
		if changed := restartOnlyChanges(a.cfg, *next); len(changed) > 0 {
			a.log.Warn("configuration changes that need a restart were not applied", "keys", changed)
		}
	}
	// Users, keys and access rules reload independently; the log says what
	// each did, so a failure never claims to have kept what was in fact
	// replaced.
	users, keys, rules := "unchanged", "reloaded", "unchanged"
	if next != nil {
		// The rules (public_paths, access.*) are compiled again and
		// replace the old ones for the next request.
		compiled, err := compileAccess(*next)
		if err == nil {
			err = proxy.SetAccess(a.public, compiled)
		}
		if err != nil {
			errs = append(errs, err)
			rules = "kept the previous rules"
		} else {
			rules = "reloaded"
			for _, c := range []*config.Config{&a.cfg, &keysCfg} {
				c.PublicPaths = next.PublicPaths
				c.Access = withGroupsHeader(next.Access, c.Access.GroupsHeader)
			}
		}
	}
	if a.fileUser != nil {
		users = "reloaded"
		if err := a.fileUser.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("users.file: %w", err))
			users = "kept the previous users"
		}
	}
	signing, verification, err := loadKeys(keysCfg, false)
	if err == nil {
		err = a.tokens.SetKeys(signing, verification)
	}
	if err != nil {
		errs = append(errs, err)
		keys = "kept the previous keys"
	} else {
		a.cfg = keysCfg
	}
	err = errors.Join(errs...)
	if err != nil {
		a.reloadGauge.Set(0)
		a.log.Error("reload failed", "users", users, "keys", keys, "access_rules", rules, "error", err)
	} else {
		a.reloadGauge.Set(1)
		a.log.Info("reloaded users and keys", "access_rules", rules)
	}
	return err
}

// restartOnlyChanges names the top-level sections that differ between two
// configurations, apart from the key files a reload applies.
func restartOnlyChanges(old, next config.Config) []string {
	next.Tokens.SigningKeyFile = old.Tokens.SigningKeyFile
	next.Tokens.VerificationKeyFiles = old.Tokens.VerificationKeyFiles
	// The access rules reload too; only the groups header needs a restart.
	next.PublicPaths = old.PublicPaths
	next.Access = withGroupsHeader(old.Access, next.Access.GroupsHeader)
	var changed []string
	ov, nv := reflect.ValueOf(old), reflect.ValueOf(next)
	for i := 0; i < ov.NumField(); i++ {
		if !ov.Type().Field(i).IsExported() {
			continue // bookkeeping such as where a value came from
		}
		if !reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			name := ov.Type().Field(i).Tag.Get("yaml")
			if name == "" || name == "-" {
				name = ov.Type().Field(i).Name
			}
			changed = append(changed, name)
		}
	}
	return changed
}

// ready reports whether this instance should receive traffic. It looks at
// local state only (started, keys loaded, not shutting down), never at a
// shared dependency: a Redis or PostgreSQL outage would otherwise take every
// replica out of the Service at once, and clients would get the ingress's
// bare 503 instead of tokengate's fail-closed answer (and on_store_error:
// allow could never apply). Dependencies are in dependencies().
func (a *app) ready() error {
	switch {
	case a.shuttingDown.Load():
		return errors.New("shutting down")
	case !a.started.Load():
		return errors.New("not started")
	case a.tokens == nil:
		return errors.New("keys not loaded")
	}
	return nil
}

// dependency is a shared service tokengate talks to, with its check.
type dependency struct {
	name  string
	check func(context.Context) error
}

// dependencies lists what /readyz?verbose and tokengate_dependency_up
// report: the revocation store (with its notification channel, when it has
// one) and a user store that can be pinged.
func (a *app) dependencies() []dependency {
	deps := []dependency{{"revocation_store", a.checker.Ready}}
	if p, ok := a.users.(pinger); ok {
		deps = append(deps, dependency{"user_store", p.Ping})
	}
	return deps
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			a.log.Warn("close", "error", err)
		}
	}
	a.closers = nil
}

// withGroupsHeader is a with the groups header h: the one access key a
// reload does not apply.
func withGroupsHeader(a config.AccessConfig, h string) config.AccessConfig {
	a.GroupsHeader = h
	return a
}
