package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// errLines flattens an errors.Join tree into its messages, in order.
func errLines(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, errLines(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// plain drops what Load records about where values came from, so a
// loaded Config compares with Default.
func plain(c Config) Config {
	c.dir, c.origin = "", nil
	return c
}

func assertLines(t *testing.T, err error, want []string) {
	t.Helper()
	got := errLines(err)
	if !slices.Equal(got, want) {
		t.Errorf("errors:\n  got:  %q\n  want: %q", got, want)
	}
}

func TestConfigDefaultsAreValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
	// Each call returns fresh lists: a caller's change cannot leak.
	a := Default()
	a.PublicPaths[0] = "/changed"
	if b := Default(); b.PublicPaths[0] != "/healthz" {
		t.Fatalf("Default shares its lists: %v", b.PublicPaths)
	}
}

// The example spells out every key with its default; it cannot drift.
func TestConfigExampleIsTheDefaults(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "config.example.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := plain(cfg), Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("config.example.yaml differs from Default:\n got: %+v\nwant: %+v", got, want)
	}
	for _, k := range configKeys() {
		if !strings.HasPrefix(cfg.origin[k.path], "line ") {
			t.Errorf("config.example.yaml lacks key %s", k.path)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
}

func TestConfigLoadErrors(t *testing.T) {
	const durations = "use Go durations: 500ms, 90s, 15m, 1h"
	tests := []struct {
		file string
		want []string
	}{
		{"unknown_key.yaml", []string{`tokens.algoritm: unknown key (line 12); did you mean "algorithm"?`}},
		{"unknown_keys.yaml", []string{
			`listne: unknown key (line 1); did you mean "listen"?`,
			`server.idle: unknown key (line 3)`,
			`tokens.algoritm: unknown key (line 6); did you mean "algorithm"?`,
			`routes.logn: unknown key (line 9); did you mean "login"?`,
			`users.Backend: unknown key (line 12); did you mean "backend"?`,
			`revocaton: unknown key (line 13); did you mean "revocation"?`,
		}},
		{"wrong_types.yaml", []string{
			`listen: expected a string, got a mapping (line 1)`,
			`public_paths: expected a list like [a, b], got "/healthz" (line 2)`,
			`trusted_proxies[1]: expected a string, got a mapping (line 3)`,
			`server: expected a mapping of keys, got a list (line 4)`,
			`tokens.cache_size: invalid integer "1.5" (line 6)`,
			`users.migrate: invalid boolean "yes" (line 8); use true or false`,
			`users.min_password_length: invalid integer "twelve" (line 9)`,
			`revocation.cache_size: invalid integer "64k" (line 11)`,
			`revocation.redis_addrs[0]: expected a string, got a list (line 12)`,
		}},
		{"bad_durations.yaml", []string{
			`upstream_timeout: invalid duration "60" (line 1); a unit is required, e.g. "60s"`,
			`server.idle_timeout: invalid duration "abc" (line 4); ` + durations,
			`tokens.ttl: invalid duration "soon" (line 6); ` + durations,
			`login_throttle.window: invalid duration "1 hour" (line 8); ` + durations,
		}},
		{"odd_keys.yaml", []string{
			`"lis\tten": unknown key (line 1); did you mean "listen"?`,
			`tokens.ttl: invalid duration "` + strings.Repeat("a", 40) + `..." (line 3); ` + durations,
			`tokens."": unknown key (line 4)`,
		}},
		{"duplicate_key.yaml", []string{`tokens.ttl: duplicate key (line 4); first at line 2`}},
		{"multi_doc.yaml", []string{`config: more than one YAML document (another starts at line 2); tokengate reads one`}},
		{"merge_cycle.yaml", []string{`tokens: merge keys (<<) nest more than 16 deep (line 1)`}},
		{"syntax_error.yaml", []string{`config: yaml: line 3: found character that cannot start any token`}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata", tt.file), nil)
			assertLines(t, err, tt.want)
			if err != nil && !reflect.DeepEqual(cfg, Config{}) {
				t.Errorf("a failed load returned a config: %+v", cfg)
			}
		})
	}
}

func TestConfigLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"), nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "absent.yaml") {
		t.Fatalf("got %v, want a not-exist error naming the file", err)
	}
}

func TestConfigLoadValues(t *testing.T) {
	tests := []struct {
		file string
		want func(c *Config)
	}{
		{"empty.yaml", func(c *Config) {}},
		{"comments_only.yaml", func(c *Config) {}},
		{"trailing_separator.yaml", func(c *Config) { c.Listen = "127.0.0.1:8082" }},
		{"anchors.yaml", func(c *Config) {
			c.Listen = "0.0.0.0:8081"
			c.Upstream = "http://app:8080"
			c.PublicPaths = []string{"/healthz", "/public"}
			c.Tokens.Issuer, c.Tokens.Audience = "my-app", "my-app"
			c.Tokens.TTL, c.Tokens.RefreshWindow = 15*time.Minute, 15*time.Minute
			c.Revocation.Backend, c.Revocation.RedisURL = "redis", "redis://redis:6379/1"
			c.Revocation.MaxStaleness = 2 * time.Second
			c.Server.ReadHeaderTimeout = 3 * time.Second // the earlier merged mapping wins
			c.Server.WriteTimeout = 7 * time.Second
			c.Server.IdleTimeout = 45 * time.Second // the mapping's own key wins over merges
		}},
		{"values.yaml", func(c *Config) {
			c.Tokens.Audience = ""
			c.Tokens.VerificationKeyFiles = nil
			c.Routes.Users, c.Routes.JWKS = "", "" // disabled
			c.PublicPaths = nil
			c.Users.Backend, c.Users.Registration, c.Users.Migrate = "bolt", "off", true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata", tt.file), nil)
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(plain(cfg), want) {
				t.Errorf("got  %+v\nwant %+v", plain(cfg), want)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("validate: %v", err)
			}
		})
	}
}

// Merge keys cannot make the decoder walk without bound.
func TestConfigLoadMergeBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("server: &a0 {idle_timeout: 1s}\n")
	for i := 1; i <= 6; i++ {
		b.WriteString("tokens: &a" + string(rune('0'+i)) + " {<<: [")
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]}\n")
	}
	// tokens appears more than once; rename all but the last so only the
	// expansion is in question.
	doc := strings.Replace(b.String(), "tokens:", "routes:", 5)
	path := filepath.Join(t.TempDir(), "bomb.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path, nil)
	if err == nil || !strings.Contains(err.Error(), "more than 10000 keys and mappings") {
		t.Fatalf("got %v, want the expansion bound", err)
	}
}

// Every validation rule, each on an otherwise default config.
func TestConfigValidateRules(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // nil: valid
	}{
		// addresses
		{"listen without port", func(c *Config) { c.Listen = "localhost" },
			[]string{`listen: invalid address "localhost": want host:port, e.g. 127.0.0.1:8081`}},
		{"listen bad port", func(c *Config) { c.Listen = "127.0.0.1:99999" },
			[]string{`listen: invalid port "99999" in "127.0.0.1:99999": want a number 0-65535`}},
		{"listen named port", func(c *Config) { c.Listen = "127.0.0.1:http" },
			[]string{`listen: invalid port "http" in "127.0.0.1:http": want a number 0-65535`}},
		{"listen bad host", func(c *Config) { c.Listen = "bad host:80" },
			[]string{`listen: invalid host "bad host" in "bad host:80"`}},
		{"listen all interfaces", func(c *Config) { c.Listen = ":8081" }, nil},
		{"listen ipv6 and hostname", func(c *Config) { c.Listen, c.AdminListen = "[::1]:8081", "localhost:9091" }, nil},
		{"admin_listen same as listen", func(c *Config) { c.AdminListen = c.Listen },
			[]string{`admin_listen: must differ from listen (127.0.0.1:8081)`}},
		{"admin_listen collides with a wildcard", func(c *Config) { c.Listen = "0.0.0.0:9091" },
			[]string{`admin_listen: must differ from listen (0.0.0.0:9091)`}},
		{"same port on other hosts", func(c *Config) { c.Listen = "10.0.0.1:9091" }, nil},
		{"both on free ports", func(c *Config) { c.Listen, c.AdminListen = "127.0.0.1:0", "127.0.0.1:0" }, nil},
		{"admin_listen empty", func(c *Config) { c.AdminListen = "" },
			[]string{`admin_listen: invalid address "": want host:port, e.g. 127.0.0.1:8081`}},
		// tracing
		{"tracing sampler_ratio above 1", func(c *Config) { c.Tracing.SamplerRatio = 1.5 },
			[]string{`tracing.sampler_ratio: must be between 0 and 1 (a fraction of new traces), got 1.5`}},
		{"tracing sampler_ratio negative", func(c *Config) { c.Tracing.SamplerRatio = -0.1 },
			[]string{`tracing.sampler_ratio: must be between 0 and 1 (a fraction of new traces), got -0.1`}},
		{"tracing at 1%", func(c *Config) { c.Tracing.Enabled, c.Tracing.SamplerRatio = true, 0.01 }, nil},
		// upstream
		{"upstream empty is auth-server mode", func(c *Config) { c.Upstream, c.TrustedProxies = "", []string{"10.0.0.0/8"} }, nil},
		{"auth-server mode without trusted_proxies", func(c *Config) { c.Upstream = "" },
			[]string{`trusted_proxies: auth-server mode (upstream: "") needs the ingress's addresses here: verify honours the original request's headers only from trusted_proxies; list the ingress's addresses, or set routes.verify: "" for a token service without forward auth`}},
		{"a token service: no upstream, no verify", func(c *Config) { c.Upstream, c.Routes.Verify = "", "" }, nil},
		{"upstream scheme", func(c *Config) { c.Upstream = "ftp://app" },
			[]string{`upstream: scheme must be http or https (got "ftp://app")`}},
		{"upstream without host", func(c *Config) { c.Upstream = "http:///x" },
			[]string{`upstream: must name a host, e.g. http://127.0.0.1:8080 (got "http:///x")`}},
		{"upstream no scheme", func(c *Config) { c.Upstream = "app:8080" },
			[]string{`upstream: scheme must be http or https (got "app:8080")`}},
		{"upstream credentials not echoed", func(c *Config) { c.Upstream = "https://u:secret@app" },
			[]string{`upstream: must not carry credentials`}},
		{"upstream query", func(c *Config) { c.Upstream = "http://app/?a=1" },
			[]string{`upstream: must have no query or fragment (got "http://app/?a=1")`}},
		{"upstream fragment", func(c *Config) { c.Upstream = "http://app/#x" },
			[]string{`upstream: must have no query or fragment (got "http://app/#x")`}},
		{"upstream port 0", func(c *Config) { c.Upstream = "http://app:0" }, []string{`upstream: invalid port "0"`}},
		{"upstream https with path", func(c *Config) { c.Upstream = "https://app.internal:8443/base" }, nil},
		{"upstream_timeout zero", func(c *Config) { c.UpstreamTimeout = 0 },
			[]string{`upstream_timeout: must be a positive duration (got 0s)`}},
		// identity header
		{"identity_header empty", func(c *Config) { c.IdentityHeader = "" }, []string{`identity_header: must not be empty`}},
		{"identity_header space", func(c *Config) { c.IdentityHeader = "X User" },
			[]string{"identity_header: \"X User\" is not a valid header name; use letters, digits and !#$%&'*+-.^_`|~"}},
		{"identity_header reserved", func(c *Config) { c.IdentityHeader = "authorization" },
			[]string{`identity_header: authorization is reserved; choose a header of your own such as X-Auth-UserId`}},
		{"identity_header reserved underscore spelling", func(c *Config) { c.IdentityHeader = "X_Forwarded_For" },
			[]string{`identity_header: X_Forwarded_For is reserved; choose a header of your own such as X-Auth-UserId`}},
		{"identity_header custom", func(c *Config) { c.IdentityHeader = "X-Remote-User" }, nil},
		// public paths, trusted proxies
		{"public path relative", func(c *Config) { c.PublicPaths = []string{"healthz"} },
			[]string{`public_paths[0]: "healthz" must start with /`}},
		{"public path dot-segment", func(c *Config) { c.PublicPaths = []string{"/ok", "/a/./b"} },
			[]string{`public_paths[1]: "/a/./b" must be a clean path (no . or .. segments, no //, no trailing /); did you mean "/a/b"?`}},
		{"public path trailing slash", func(c *Config) { c.PublicPaths = []string{"/static/", "/assets/img/"} }, nil},
		{"public path trailing slash twice", func(c *Config) { c.PublicPaths = []string{"/static//"} },
			[]string{`public_paths[0]: "/static//" must be a clean path (no . or .. segments, no //, no trailing /); did you mean "/static"?`}},
		{"public path with and without slash", func(c *Config) { c.PublicPaths = []string{"/static", "/static/"} },
			[]string{`public_paths[1]: /static is listed twice`}},
		{"route under a public path with a slash", func(c *Config) { c.PublicPaths = []string{"/user/"} },
			[]string{`routes.login: /user/login is under public path /user`, `routes.logout: /user/logout is under public path /user`, `routes.logout_all: /user/logout_all is under public path /user`}},
		{"public path query", func(c *Config) { c.PublicPaths = []string{"/a?b"} },
			[]string{`public_paths[0]: "/a?b" must be a path without query or fragment`}},
		{"public path encoded", func(c *Config) { c.PublicPaths = []string{"/a%2e"} },
			[]string{`public_paths[0]: "/a%2e" must be written decoded (no %-escapes)`}},
		{"public path space", func(c *Config) { c.PublicPaths = []string{"/a b"} },
			[]string{`public_paths[0]: "/a b" must not contain spaces or control characters`}},
		{"public path twice", func(c *Config) { c.PublicPaths = []string{"/a", "/a"} },
			[]string{`public_paths[1]: /a is listed twice`}},
		{"public paths none", func(c *Config) { c.PublicPaths = nil }, nil},
		{"trusted proxies", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "fd00::/8", "192.0.2.7", "::1"} }, nil},
		{"trusted proxy bad", func(c *Config) {
			c.TrustedProxies = []string{"10.0.0.0/8", "10.0.0.0/40", "proxy.local", "fe80::1%eth0"}
		},
			[]string{
				`trusted_proxies[1]: "10.0.0.0/40" is neither a CIDR (10.0.0.0/8) nor an IP address`,
				`trusted_proxies[2]: "proxy.local" is neither a CIDR (10.0.0.0/8) nor an IP address`,
				`trusted_proxies[3]: "fe80::1%eth0" is neither a CIDR (10.0.0.0/8) nor an IP address`,
			}},
		// logging
		{"log_format", func(c *Config) { c.LogFormat = "logfmt" }, []string{`log_format: must be one of json, text (got "logfmt")`}},
		{"log_level", func(c *Config) { c.LogLevel = "trace" }, []string{`log_level: must be one of debug, info, warn, error (got "trace")`}},
		{"log text debug", func(c *Config) { c.LogFormat, c.LogLevel = "text", "debug" }, nil},
		// server
		{"server timeouts", func(c *Config) {
			c.Server.ReadHeaderTimeout, c.Server.ReadTimeout, c.Server.WriteTimeout = 0, -time.Second, -time.Second
			c.Server.IdleTimeout, c.Server.ShutdownDelay, c.Server.ShutdownGrace = 0, -time.Second, 0
		}, []string{
			`server.read_header_timeout: must be a positive duration (got 0s)`,
			`server.read_timeout: must not be negative (got -1s)`,
			`server.write_timeout: must not be negative (got -1s)`,
			`server.idle_timeout: must be a positive duration (got 0s)`,
			`server.shutdown_delay: must not be negative (got -1s)`,
			`server.shutdown_grace: must be a positive duration (got 0s)`,
		}},
		{"server zero read/write timeouts and delay", func(c *Config) { c.Server.ReadTimeout, c.Server.WriteTimeout, c.Server.ShutdownDelay = 0, 0, 0 }, nil},
		{"max_header_bytes low", func(c *Config) { c.Server.MaxHeaderBytes = 4095 },
			[]string{`server.max_header_bytes: must be between 4096 and 1048576 (got 4095)`}},
		{"max_header_bytes high", func(c *Config) { c.Server.MaxHeaderBytes = 1<<20 + 1 },
			[]string{`server.max_header_bytes: must be between 4096 and 1048576 (got 1048577)`}},
		{"max_header_bytes bounds", func(c *Config) { c.Server.MaxHeaderBytes = 4096 }, nil},
		{"max_body_bytes zero", func(c *Config) { c.Server.MaxBodyBytes = 0 },
			[]string{`server.max_body_bytes: must be between 1024 and 1048576 (got 0)`}},
		// tokens
		{"tokens", func(c *Config) {
			c.Tokens.Issuer, c.Tokens.TTL, c.Tokens.RefreshWindow, c.Tokens.Leeway = "", 0, -1, -1
			c.Tokens.Algorithm, c.Tokens.SigningKeyFile, c.Tokens.CacheSize = "none", "", 0
			c.Tokens.VerificationKeyFiles = []string{"old.pem", " "}
		}, []string{
			`tokens.issuer: must not be empty`,
			`tokens.ttl: must be a positive duration (got 0s)`,
			`tokens.refresh_window: must not be negative (got -1ns)`,
			`tokens.leeway: must not be negative (got -1ns)`,
			`tokens.algorithm: must be one of EdDSA, ES256, RS256, HS256 (got "none")`,
			`tokens.signing_key_file: must not be empty`,
			`tokens.verification_key_files[1]: must not be empty`,
			`tokens.cache_size: must be positive (got 0)`,
		}},
		{"lifetimes past their bounds", func(c *Config) {
			c.Tokens.TTL, c.Tokens.RefreshWindow, c.Tokens.Leeway = 300000*time.Hour, 9000*time.Hour, 6*time.Minute
		}, []string{
			`tokens.ttl: must be at most 8784h0m0s (got 300000h0m0s)`,
			`tokens.refresh_window: must be at most 8784h0m0s (got 9000h0m0s)`,
			`tokens.leeway: must be at most 5m0s (got 6m0s)`,
		}},
		{"lifetimes at their bounds", func(c *Config) {
			c.Tokens.TTL, c.Tokens.RefreshWindow, c.Tokens.Leeway = 8784*time.Hour, 8784*time.Hour, 5*time.Minute
		}, nil},
		{"leeway as long as ttl", func(c *Config) { c.Tokens.TTL, c.Tokens.Leeway = time.Minute, time.Minute },
			[]string{`tokens.leeway: must be shorter than tokens.ttl (1m0s)`}},
		{"algorithm is case-sensitive", func(c *Config) { c.Tokens.Algorithm = "eddsa" },
			[]string{`tokens.algorithm: must be one of EdDSA, ES256, RS256, HS256 (got "eddsa")`}},
		{"every algorithm", func(c *Config) { c.Tokens.Algorithm = "HS256"; c.Tokens.Audience = "app" }, nil},
		// users
		{"users backend", func(c *Config) { c.Users.Backend = "nis" },
			[]string{`users.backend: must be one of file, bolt, postgres, ldap (got "nis")`}},
		{"users file", func(c *Config) { c.Users.File, c.Users.ReloadInterval = "", 0 }, []string{
			`users.file: must not be empty`,
			`users.reload_interval: must be a positive duration (got 0s)`,
		}},
		{"users bolt", func(c *Config) { c.Users.Backend, c.Users.Path, c.Users.File = "bolt", "", "" },
			[]string{`users.path: must not be empty`}},
		{"users postgres without url", func(c *Config) { c.Users.Backend = "postgres" },
			[]string{`users.postgres_url: must not be empty`}},
		{"users postgres url scheme", func(c *Config) { c.Users.Backend, c.Users.PostgresURL = "postgres", "mysql://db/app" },
			[]string{`users.postgres_url: must be a postgres:// URL or a key=value connection string`}},
		{"users postgres key=value", func(c *Config) {
			c.Users.Backend, c.Users.PostgresURL, c.Users.Table = "postgres", "host=db user=app", "auth.users"
		}, nil},
		{"users postgres table", func(c *Config) {
			c.Users.Backend, c.Users.PostgresURL, c.Users.Table = "postgres", "postgres://db/app", "users; DROP TABLE x"
		}, []string{`users.table: "users; DROP TABLE x" must be a table name: letters, digits and _, optionally schema.table`}},
		{"users query needs postgres", func(c *Config) { c.Users.Query = "SELECT id, hash FROM u WHERE name = $1" },
			[]string{`users.query: is only used with users.backend postgres (backend is "file")`}},
		{"users query with migrate", func(c *Config) {
			c.Users.Backend, c.Users.PostgresURL, c.Users.Query, c.Users.Migrate = "postgres", "postgres://db/app", "SELECT 1", true
		}, []string{`users.migrate: has no effect with users.query (the legacy table is yours); set it to false`}},
		{"registration with file", func(c *Config) { c.Users.Registration = "open" },
			[]string{`users.registration: "open" needs a users backend that can store users: bolt, or postgres without users.query (backend is "file")`}},
		{"registration with legacy query", func(c *Config) {
			c.Users.Backend, c.Users.PostgresURL, c.Users.Query, c.Users.Registration = "postgres", "postgres://db/app", "SELECT 1", "authenticated"
		}, []string{`users.registration: "authenticated" needs a users backend that can store users: bolt, or postgres without users.query (backend is "postgres")`}},
		{"registration with bolt", func(c *Config) { c.Users.Backend, c.Users.Registration = "bolt", "open" }, nil},
		{"registration with postgres", func(c *Config) {
			c.Users.Backend, c.Users.PostgresURL, c.Users.Registration = "postgres", "postgres://db/app", "authenticated"
		}, nil},
		{"registration value", func(c *Config) { c.Users.Registration = "closed" },
			[]string{`users.registration: must be one of off, open, authenticated (got "closed")`}},
		// identities: groups, refresh, staleness
		{"refresh and staleness bounds", func(c *Config) {
			c.Users.Backend, c.Users.Path = "bolt", "u.db"
			c.Users.RefreshInterval, c.Users.MaxStale = 500*time.Millisecond, 48*time.Hour
		}, []string{
			`users.refresh_interval: must be at least 1s (got 500ms)`,
			`users.max_stale: must be at most 24h0m0s (got 48h0m0s)`,
		}},
		{"refresh interval too long", func(c *Config) { c.Users.RefreshInterval = 2 * time.Hour },
			[]string{
				`users.refresh_interval: must be at most 1h0m0s (got 2h0m0s)`,
				`users.max_stale: must be at least users.refresh_interval (2h0m0s; got 5m0s)`,
			}},
		{"refresh and staleness zero", func(c *Config) { c.Users.RefreshInterval, c.Users.MaxStale = 0, 0 }, []string{
			`users.refresh_interval: must be a positive duration (got 0s)`,
			`users.max_stale: must be a positive duration (got 0s)`,
		}},
		{"staleness shorter than refresh", func(c *Config) { c.Users.RefreshInterval, c.Users.MaxStale = 2*time.Minute, time.Minute },
			[]string{`users.max_stale: must be at least users.refresh_interval (2m0s; got 1m0s)`}},
		{"users file polled less often than the refresh interval (serve warns)", func(c *Config) {
			c.Users.ReloadInterval, c.Users.RefreshInterval = time.Hour, time.Minute
		}, nil},
		{"default groups", func(c *Config) {
			c.Users.Backend, c.Users.Path, c.Users.Registration = "bolt", "u.db", "open"
			c.Users.DefaultGroups = []string{"members", "", "a,b", "x\ty", " ops", "members"}
		}, []string{
			`users.default_groups[1]: "" is empty`,
			`users.default_groups[2]: "a,b" contains a comma (the groups header's separator)`,
			`users.default_groups[3]: "x\ty" contains a control character`,
			`users.default_groups[4]: " ops" starts or ends with a space`,
			`users.default_groups[5]: "members" is listed twice (also users.default_groups[0])`,
		}},
		{"default groups with a read-only store", func(c *Config) { c.Users.DefaultGroups = []string{"members"} },
			[]string{`users.default_groups: has no effect: this users backend is read-only, nobody is created through tokengate (give groups in the users file or your table); remove it`}},
		{"id query without query", func(c *Config) {
			c.Users.Backend, c.Users.PostgresURL, c.Users.IDQuery = "postgres", "postgres://db/app", "SELECT 1"
		}, []string{`users.id_query: is only used with users.query (legacy mode of users.backend postgres)`}},
		{"id query with query", func(c *Config) {
			c.Users.Backend, c.Users.PostgresURL, c.Users.Query, c.Users.IDQuery = "postgres", "postgres://db/app", "SELECT 1", "SELECT 2"
		}, nil},
		{"password policy", func(c *Config) { c.Users.MinPasswordLength, c.Users.PasswordHash, c.Users.BcryptCost = 6, "md5", 3 }, []string{
			`users.password_hash: must be one of bcrypt, argon2id (got "md5")`,
			`users.min_password_length: must be at least 8 (got 6)`,
			`users.bcrypt_cost: must be between 4 and 31 (got 3)`,
		}},
		{"min length past bcrypt's limit", func(c *Config) { c.Users.MinPasswordLength, c.Users.BcryptCost = 73, 32 }, []string{
			`users.min_password_length: must be at most 72 with bcrypt, which refuses longer passwords (got 73)`,
			`users.bcrypt_cost: must be between 4 and 31 (got 32)`,
		}},
		{"long minimum with argon2id", func(c *Config) { c.Users.MinPasswordLength, c.Users.PasswordHash = 100, "argon2id" }, nil},
		// login throttle
		{"throttle negative", func(c *Config) { c.LoginThrottle.PerUser, c.LoginThrottle.PerAddress = -1, -2 }, []string{
			`login_throttle.per_user: must not be negative (got -1); 0 disables`,
			`login_throttle.per_address: must not be negative (got -2); 0 disables`,
		}},
		{"throttle window", func(c *Config) { c.LoginThrottle.Window = 0 },
			[]string{`login_throttle.window: must be a positive duration (got 0s)`}},
		{"throttle off needs no window", func(c *Config) { c.LoginThrottle = ThrottleConfig{} }, nil},
		// revocation
		{"revocation backend", func(c *Config) { c.Revocation.Backend = "etcd" },
			[]string{`revocation.backend: must be one of memory, bolt, redis (got "etcd")`}},
		{"revocation bolt path", func(c *Config) { c.Revocation.Path = "" }, []string{`revocation.path: must not be empty`}},
		{"revocation memory", func(c *Config) { c.Revocation.Backend, c.Revocation.Path = "memory", "" }, nil},
		{"revocation redis url", func(c *Config) { c.Revocation.Backend = "redis" }, nil},
		{"revocation redis without address", func(c *Config) { c.Revocation.Backend, c.Revocation.RedisURL = "redis", "" },
			[]string{`revocation.redis_url: must be set (or revocation.redis_addrs) with backend redis`}},
		{"revocation redis bad url", func(c *Config) { c.Revocation.Backend, c.Revocation.RedisURL = "redis", "http://:pw@redis" },
			[]string{`revocation.redis_url: must be a redis://, rediss:// or unix:// URL`}},
		{"revocation redis addrs", func(c *Config) {
			c.Revocation.Backend, c.Revocation.RedisURL = "redis", ""
			c.Revocation.RedisAddrs, c.Revocation.RedisMasterName = []string{"s1:26379", "10.0.0.2:26379"}, "mymaster"
		}, nil},
		{"revocation redis bad addrs", func(c *Config) {
			c.Revocation.Backend, c.Revocation.RedisAddrs = "redis", []string{"s1:26379", "s2", "s3:0"}
		}, []string{
			`revocation.redis_addrs[1]: invalid address "s2": want host:port`,
			`revocation.redis_addrs[2]: invalid address "s3:0": want host:port`,
		}},
		{"revocation master without sentinels", func(c *Config) { c.Revocation.Backend, c.Revocation.RedisMasterName = "redis", "mymaster" },
			[]string{`revocation.redis_master_name: needs revocation.redis_addrs (the sentinels)`}},
		{"revocation cache and staleness", func(c *Config) { c.Revocation.CacheSize, c.Revocation.MaxStaleness = 0, 0 }, []string{
			`revocation.cache_size: must be positive (got 0)`,
			`revocation.max_staleness: must be a positive duration (got 0s)`,
		}},
		{"revocation staleness bound", func(c *Config) { c.Revocation.MaxStaleness = time.Minute + 1 },
			[]string{`revocation.max_staleness: must be at most 1m0s (got 1m0.000000001s); it bounds how long a revoked token may still pass`}},
		{"revocation staleness at the bound", func(c *Config) { c.Revocation.MaxStaleness = time.Minute }, nil},
		{"revocation on_store_error", func(c *Config) { c.Revocation.OnStoreError = "ignore" },
			[]string{`revocation.on_store_error: must be one of deny, allow (got "ignore")`}},
		// routes
		{"routes disabled", func(c *Config) { c.Routes = RoutesConfig{} }, nil},
		{"route relative", func(c *Config) { c.Routes.Login = "login" }, []string{`routes.login: "login" must start with /`}},
		{"route root", func(c *Config) { c.Routes.Users = "/" },
			[]string{`routes.users: must not be / (it would take every request); use "" to disable a route`}},
		{"route unclean", func(c *Config) { c.Routes.JWKS = "/keys/" },
			[]string{`routes.jwks: "/keys/" must be a clean path (no . or .. segments, no //, no trailing /); did you mean "/keys"?`}},
		{"routes collide", func(c *Config) { c.Routes.Logout, c.Routes.LogoutAll = "/logout", "/logout" },
			[]string{`routes.logout_all: /logout is also routes.logout; routes must differ`}},
		{"route under a public path", func(c *Config) { c.PublicPaths = []string{"/user"} },
			[]string{
				`routes.login: /user/login is under public path /user`,
				`routes.logout: /user/logout is under public path /user`,
				`routes.logout_all: /user/logout_all is under public path /user`,
			}},
		{"route equal to a public path", func(c *Config) { c.PublicPaths = []string{"/healthz", "/session"} },
			[]string{`routes.session: /session is under public path /session`}},
		{"public root covers every route", func(c *Config) { c.PublicPaths = []string{"/"}; c.Routes = RoutesConfig{JWKS: "/jwks"} },
			[]string{`routes.jwks: /jwks is under public path /`}},
		{"route beside a public path", func(c *Config) { c.PublicPaths = []string{"/user/log"} }, nil},
		// browser sign-in
		{"browser sign-in off", func(c *Config) { c.Routes.SignIn, c.Routes.SignOut = "", "" }, nil},
		{"sign_out without sign_in", func(c *Config) { c.Routes.SignIn = "" },
			[]string{`routes.sign_out: needs routes.sign_in (browser sign-in is off); set both or neither`}},
		{"sign_in under a public path", func(c *Config) { c.PublicPaths = []string{"/tokengate"} }, []string{
			`routes.sign_in: /tokengate/sign_in is under public path /tokengate`,
			`routes.sign_out: /tokengate/sign_out is under public path /tokengate`,
			`routes.verify: /tokengate/verify is under public path /tokengate`,
		}},
		{"verify disabled", func(c *Config) { c.Routes.Verify = "" }, nil},
		{"verify collides", func(c *Config) { c.Routes.Verify = "/tokengate/sign_in" }, []string{
			`routes.verify: /tokengate/sign_in is also routes.sign_in; routes must differ`,
		}},
		{"allowed_redirect_hosts", func(c *Config) {
			c.Browser.AllowedRedirectHosts = []string{"app.example.com", ".example.org", "127.0.0.1", "https://x.com", "x.com:443", "", ".", "a_b.com", "a..b"}
		}, []string{
			`browser.allowed_redirect_hosts[3]: "https://x.com" must be a host name (app.example.com) or a suffix (.example.com), without scheme or port`,
			`browser.allowed_redirect_hosts[4]: "x.com:443" must be a host name (app.example.com) or a suffix (.example.com), without scheme or port`,
			`browser.allowed_redirect_hosts[5]: "" must be a host name (app.example.com) or a suffix (.example.com), without scheme or port`,
			`browser.allowed_redirect_hosts[6]: "." must be a host name (app.example.com) or a suffix (.example.com), without scheme or port`,
			`browser.allowed_redirect_hosts[7]: "a_b.com" must be a host name (app.example.com) or a suffix (.example.com), without scheme or port`,
			`browser.allowed_redirect_hosts[8]: "a..b" must be a host name (app.example.com) or a suffix (.example.com), without scheme or port`,
		}},
		{"sign_in unclean", func(c *Config) { c.Routes.SignIn = "/login/" },
			[]string{`routes.sign_in: "/login/" must be a clean path (no . or .. segments, no //, no trailing /); did you mean "/login"?`}},
		{"sign_in collides", func(c *Config) { c.Routes.SignIn = "/user/login" },
			[]string{`routes.sign_in: /user/login is also routes.login; routes must differ`}},
		{"browser options", func(c *Config) {
			c.Browser = BrowserConfig{CookieName: "sso", CookieDomain: "example.com", Title: "Acme", QueryTokenPaths: []string{"/ws", "/events/"}}
		}, nil},
		{"browser bad options", func(c *Config) {
			c.Browser = BrowserConfig{CookieName: "my cookie", CookieDomain: "https://example.com", QueryTokenPaths: []string{"ws", "/a/../b"}}
		}, []string{
			"browser.cookie_name: \"my cookie\" must be a cookie name (letters, digits, !#$%&'*+-.^_`|~)",
			`browser.cookie_domain: "https://example.com" is not a cookie domain (a host name such as example.com, no scheme or port)`,
			`browser.title: must not be empty`,
			`browser.query_token_paths[0]: "ws" must start with /`,
			`browser.query_token_paths[1]: "/a/../b" must be a clean path (no . or .. segments, no //, no trailing /); did you mean "/b"?`,
		}},
		{"browser cookie prefix", func(c *Config) { c.Browser.CookieName = "__Host-tg" },
			[]string{`browser.cookie_name: "__Host-tg" must not carry a __Host- or __Secure- prefix (tokengate sets the attributes itself)`}},
		{"browser empty cookie name", func(c *Config) { c.Browser.CookieName = "" },
			[]string{`browser.cookie_name: must not be empty`}},
	}
	known := map[string]bool{}
	for _, k := range configKeys() {
		known[k.path] = true
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			assertLines(t, err, tt.want)
			// Every problem names a real key.
			for _, e := range unwrapAll(err) {
				var fe *fieldError
				if !errors.As(e, &fe) {
					t.Errorf("%v is not a fieldError", e)
					continue
				}
				if key, _, _ := strings.Cut(fe.Key, "["); !known[key] {
					t.Errorf("%q names no config key", fe.Key)
				}
			}
		})
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// Validation reports every problem of a file at once, with its line.
func TestConfigValidateReportsEveryProblem(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "invalid.yaml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	assertLines(t, cfg.Validate(), []string{
		`admin_listen: must differ from listen (127.0.0.1:9091) (line 2)`,
		`upstream: scheme must be http or https (got "ftp://app:8080") (line 3)`,
		`upstream_timeout: must be a positive duration (got 0s) (line 4)`,
		"identity_header: \"X Auth\" is not a valid header name (line 5); use letters, digits and !#$%&'*+-.^_`|~",
		`public_paths[1]: "healthz" must start with / (line 6)`,
		`public_paths[2]: "/a/../b" must be a clean path (no . or .. segments, no //, no trailing /) (line 6); did you mean "/b"?`,
		`public_paths[3]: "/x?y" must be a path without query or fragment (line 6)`,
		`public_paths[4]: /healthz is listed twice (line 6)`,
		`trusted_proxies[0]: "10.0.0.0/33" is neither a CIDR (10.0.0.0/8) nor an IP address (line 7)`,
		`log_format: must be one of json, text (got "xml") (line 8)`,
		`tokens.leeway: must be shorter than tokens.ttl (1m0s) (line 11)`,
		`tokens.algorithm: must be one of EdDSA, ES256, RS256, HS256 (got "HS512") (line 12)`,
		`users.query: is only used with users.backend postgres (backend is "file") (line 16)`,
		`users.registration: "open" needs a users backend that can store users: bolt, or postgres without users.query (backend is "file") (line 15)`,
		`revocation.redis_url: must be set (or revocation.redis_addrs) with backend redis (line 19)`,
		`revocation.max_staleness: must be at most 1m0s (got 2m0s) (line 20); it bounds how long a revoked token may still pass`,
		`revocation.on_store_error: must be one of deny, allow (got "ignore") (line 21)`,
		`routes.login: /healthz/login is under public path /healthz (line 23)`,
		// reported at the key the file set, not at the default it collides with
		`routes.logout: /session is also routes.session; routes must differ (line 24)`,
	})
}

func TestConfigEnvOverrides(t *testing.T) {
	tests := []struct {
		name    string
		file    string // in testdata; "" = none
		environ []string
		want    func(c *Config)
	}{
		{"scalars of every type", "", []string{
			"TOKENGATE_TOKENS_TTL=2h",
			"TOKENGATE_REVOCATION_REDIS_URL=redis://:pw@redis:6379/2",
			"TOKENGATE_SERVER_MAX_HEADER_BYTES=8192",
			"TOKENGATE_SERVER_MAX_BODY_BYTES=2048",
			"TOKENGATE_USERS_MIGRATE=true",
			"TOKENGATE_LOGIN_THROTTLE_PER_USER=3",
			"TOKENGATE_LISTEN=0.0.0.0:8081",
		}, func(c *Config) {
			c.Tokens.TTL = 2 * time.Hour
			c.Revocation.RedisURL = "redis://:pw@redis:6379/2"
			c.Server.MaxHeaderBytes, c.Server.MaxBodyBytes = 8192, 2048
			c.Users.Migrate = true
			c.LoginThrottle.PerUser = 3
			c.Listen = "0.0.0.0:8081"
		}},
		{"tracing", "", []string{"TOKENGATE_TRACING_ENABLED=true", "TOKENGATE_TRACING_SAMPLER_RATIO=0.01"}, func(c *Config) {
			c.Tracing.Enabled, c.Tracing.SamplerRatio = true, 0.01
		}},
		{"lists are comma-separated", "", []string{
			"TOKENGATE_PUBLIC_PATHS=/healthz, /public,,",
			"TOKENGATE_REVOCATION_REDIS_ADDRS=s1:26379,s2:26379",
		}, func(c *Config) {
			c.PublicPaths = []string{"/healthz", "/public"}
			c.Revocation.RedisAddrs = []string{"s1:26379", "s2:26379"}
		}},
		{"identity keys", "", []string{
			"TOKENGATE_USERS_DEFAULT_GROUPS=members, readers",
			"TOKENGATE_USERS_REFRESH_INTERVAL=30s",
			"TOKENGATE_USERS_MAX_STALE=10m",
			"TOKENGATE_USERS_ID_QUERY=SELECT id, pw FROM accounts WHERE id = $1",
		}, func(c *Config) {
			c.Users.DefaultGroups = []string{"members", "readers"}
			c.Users.RefreshInterval, c.Users.MaxStale = 30*time.Second, 10*time.Minute
			c.Users.IDQuery = "SELECT id, pw FROM accounts WHERE id = $1"
		}},
		{"empty values clear", "", []string{"TOKENGATE_PUBLIC_PATHS=", "TOKENGATE_ROUTES_USERS="}, func(c *Config) {
			c.PublicPaths = nil
			c.Routes.Users = ""
		}},
		{"the last duplicate wins", "", []string{"TOKENGATE_LOG_LEVEL=debug", "TOKENGATE_LOG_LEVEL=warn"}, func(c *Config) {
			c.LogLevel = "warn"
		}},
		{"env wins over the file", "anchors.yaml", []string{"TOKENGATE_TOKENS_TTL=2h", "TOKENGATE_PUBLIC_PATHS=/x"}, func(c *Config) {
			c.Listen, c.Upstream = "0.0.0.0:8081", "http://app:8080"
			c.PublicPaths = []string{"/x"}
			c.Tokens.Issuer, c.Tokens.Audience = "my-app", "my-app"
			c.Tokens.TTL, c.Tokens.RefreshWindow = 2*time.Hour, 15*time.Minute
			c.Revocation.Backend, c.Revocation.RedisURL = "redis", "redis://redis:6379/1"
			c.Revocation.MaxStaleness = 2 * time.Second
			c.Server.ReadHeaderTimeout, c.Server.WriteTimeout, c.Server.IdleTimeout = 3*time.Second, 7*time.Second, 45*time.Second
		}},
		{"other variables are ignored", "", []string{
			"HOME=/root", "tokengate_tokens_ttl=5h", "TOKENGATE_CONFIG=/etc/tokengate.yaml",
			"TOKENGATE_TEST_REQUIRE_SERVICES=1", "TOKENGATE_TEST_REDIS_ADDR=127.0.0.1:6379",
			// Kubernetes service links for Services named tokengate and tokengate-admin
			"TOKENGATE_SERVICE_HOST=10.0.0.1", "TOKENGATE_SERVICE_PORT=8081", "TOKENGATE_SERVICE_PORT_HTTP=8081",
			"TOKENGATE_PORT=tcp://10.0.0.1:8081", "TOKENGATE_PORT_8081_TCP=tcp://10.0.0.1:8081",
			"TOKENGATE_PORT_8081_TCP_PROTO=tcp", "TOKENGATE_PORT_8081_TCP_PORT=8081", "TOKENGATE_PORT_8081_TCP_ADDR=10.0.0.1",
			"TOKENGATE_ADMIN_SERVICE_HOST=10.0.0.2", "TOKENGATE_ADMIN_PORT_9091_TCP_ADDR=10.0.0.2",
		}, func(c *Config) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = filepath.Join("testdata", tt.file)
			}
			cfg, err := Load(path, tt.environ)
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(plain(cfg), want) {
				t.Errorf("got  %+v\nwant %+v", plain(cfg), want)
			}
		})
	}
}

func TestConfigEnvErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		environ []string
		want    []string
	}{
		{"bad values name the variable", "", []string{
			"TOKENGATE_TOKENS_TTL=soon",
			"TOKENGATE_UPSTREAM_TIMEOUT=30",
			"TOKENGATE_SERVER_MAX_HEADER_BYTES=big",
			"TOKENGATE_USERS_MIGRATE=maybe",
			"TOKENGATE_TOKENS_CACHE_SIZE=",
		}, []string{
			`TOKENGATE_TOKENS_TTL: invalid duration "soon"; use Go durations: 500ms, 90s, 15m, 1h`,
			`TOKENGATE_UPSTREAM_TIMEOUT: invalid duration "30"; a unit is required, e.g. "30s"`,
			`TOKENGATE_SERVER_MAX_HEADER_BYTES: invalid integer "big"`,
			`TOKENGATE_USERS_MIGRATE: invalid boolean "maybe"; use true or false`,
			`TOKENGATE_TOKENS_CACHE_SIZE: invalid integer ""`,
		}},
		{"unknown variables", "", []string{
			"TOKENGATE_TOKENS_TLL=1h",
			"TOKENGATE_SERVER=x",
			"TOKENGATE_ISSUER=me",
			"TOKENGATE_SOMETHING_ELSE=1",
		}, []string{
			`TOKENGATE_TOKENS_TLL: names no configuration key; did you mean TOKENGATE_TOKENS_TTL?`,
			`TOKENGATE_SERVER: names no configuration key`,
			`TOKENGATE_ISSUER: names no configuration key`,
			`TOKENGATE_SOMETHING_ELSE: names no configuration key`,
		}},
		{"file and environment problems together", "unknown_key.yaml", []string{"TOKENGATE_TOKENS_TTL=soon"}, []string{
			`tokens.algoritm: unknown key (line 12); did you mean "algorithm"?`,
			`TOKENGATE_TOKENS_TTL: invalid duration "soon"; use Go durations: 500ms, 90s, 15m, 1h`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = filepath.Join("testdata", tt.file)
			}
			_, err := Load(path, tt.environ)
			assertLines(t, err, tt.want)
		})
	}
}

// A bad value from the environment is blamed on its variable.
func TestConfigValidateNamesTheVariable(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "anchors.yaml"), []string{
		"TOKENGATE_TOKENS_ALGORITHM=none", "TOKENGATE_TRUSTED_PROXIES=10.0.0.0/8,nope",
	})
	if err != nil {
		t.Fatal(err)
	}
	assertLines(t, cfg.Validate(), []string{
		`trusted_proxies[1]: "nope" is neither a CIDR (10.0.0.0/8) nor an IP address (from TOKENGATE_TRUSTED_PROXIES)`,
		`tokens.algorithm: must be one of EdDSA, ES256, RS256, HS256 (got "none") (from TOKENGATE_TOKENS_ALGORITHM)`,
	})
}

// The variable names derive from the yaml tags: one per key, none
// ambiguous, none mistaken for a Kubernetes service link.
func TestConfigEnvNames(t *testing.T) {
	seen := map[string]string{}
	for _, k := range configKeys() {
		name := envName(k.path)
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share %s", k.path, other, name)
		}
		seen[name] = k.path
		if envAllowed(name) {
			t.Errorf("%s (%s) would be ignored as a non-config variable", name, k.path)
		}
	}
	for _, name := range []string{"TOKENGATE_TOKENS_TTL", "TOKENGATE_REVOCATION_REDIS_URL", "TOKENGATE_SERVER_MAX_HEADER_BYTES", "TOKENGATE_LOGIN_THROTTLE_PER_USER"} {
		if seen[name] == "" {
			t.Errorf("%s is not a config variable", name)
		}
	}
}

func TestConfigResolve(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("testdata", "paths"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(filepath.Join("testdata", "paths", "config.yaml"), []string{"TOKENGATE_USERS_PATH=db/users.db"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{cfg.AdminTokenFile, filepath.Join(dir, "secrets", "admin.token")},
		{cfg.Tokens.SigningKeyFile, filepath.Join(dir, "keys", "signing.key")},
		{cfg.Tokens.VerificationKeyFiles[0], filepath.Join(dir, "keys", "old.pem")},
		{cfg.Tokens.VerificationKeyFiles[1], "/etc/tokengate/older.pem"}, // absolute stays
		{cfg.Users.File, filepath.Join(filepath.Dir(dir), "users.yaml")},
		{cfg.Users.Path, filepath.Join(dir, "db", "users.db")}, // from the environment, still next to the file
		{cfg.Revocation.Path, filepath.Join(dir, "data", "revocations.db")},
		{"", ""}, // unset stays unset
	}
	for _, tt := range tests {
		if got := cfg.Resolve(tt.in); got != tt.want {
			t.Errorf("Resolve(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Without a file, relative paths stay relative to the working directory.
	noFile, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := noFile.Resolve("data/signing.key"); got != "data/signing.key" {
		t.Errorf("without a file: Resolve = %q", got)
	}
}

// FuzzLoadConfig feeds arbitrary bytes to the decoder and validator: they
// may reject anything but must never panic or hang.
func FuzzLoadConfig(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	seeds = append(seeds, filepath.Join("..", "..", "config.example.yaml"))
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("server: &s {<<: [*s, *s]}\n"))
	f.Add([]byte("tokens: {ttl: !!binary aGVsbG8=}\n"))
	f.Add([]byte("? [a]\n: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Default()
		cfg.origin = map[string]string{}
		if errs := decodeYAML(data, &cfg); len(errs) > 0 {
			for _, e := range errs {
				if e.Error() == "" {
					t.Fatal("empty error message")
				}
			}
			return
		}
		_ = cfg.Validate()
	})
}

// Identity keys' errors point at their lines.
func TestConfigIdentityKeysLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	body := "users:\n  backend: bolt\n  refresh_interval: 10m\n  max_stale: 1m\n  default_groups:\n    - ok\n    - \"a,b\"\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	assertLines(t, cfg.Validate(), []string{
		`users.max_stale: must be at least users.refresh_interval (10m0s; got 1m0s) (line 4)`,
		`users.default_groups[1]: "a,b" contains a comma (the groups header's separator) (line 7)`,
	})
}
