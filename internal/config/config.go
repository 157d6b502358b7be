// Package config is tokengate's configuration: the Config type and its
// defaults (config.go), strict YAML decoding (yaml.go), TOKENGATE_*
// environment overrides (env.go) and validation (validate.go). Only
// cmd/tokengate sees a whole Config; it hands each component its own
// options.
package config

import (
	"errors"
	"os"
	"path/filepath"
	"time"
)

// Config is the whole configuration; only cmd/tokengate sees it. The yaml
// tags are the single source of truth for the key names: the YAML decoder,
// the TOKENGATE_* environment overrides and the tests all derive the key
// list from them. Defaults are in Default.
//
// Secrets never live in the YAML (so it can sit in a ConfigMap): the
// PostgreSQL password comes from users.postgres_password_file or from the
// whole URL in TOKENGATE_USERS_POSTGRES_URL, the Redis password from
// revocation.redis_password_file or TOKENGATE_REVOCATION_REDIS_URL, the
// admin token from admin_token_file.
type Config struct {
	Listen          string           `yaml:"listen"`           // public address; 127.0.0.1:8081
	AdminListen     string           `yaml:"admin_listen"`     // /metrics /healthz /readyz; 127.0.0.1:9091
	AdminTokenFile  string           `yaml:"admin_token_file"` // "" = operator endpoints off; else a file holding a secret >= 32 bytes
	Upstream        string           `yaml:"upstream"`         // the protected app; http://127.0.0.1:8080; "" = auth-server mode (forward auth)
	UpstreamTimeout time.Duration    `yaml:"upstream_timeout"` // wait for the upstream's response headers; 60s
	IdentityHeader  string           `yaml:"identity_header"`  // the header the app trusts; X-Auth-UserId
	PublicPaths     []string         `yaml:"public_paths"`     // path-segment prefixes proxied without a token; ["/healthz"]
	TrustedProxies  []string         `yaml:"trusted_proxies"`  // CIDRs or IPs whose X-Forwarded-* are kept; none
	LogFormat       string           `yaml:"log_format"`       // json | text; json
	LogLevel        string           `yaml:"log_level"`        // debug | info | warn | error; info
	Tracing         TracingConfig    `yaml:"tracing"`
	Server          ServerConfig     `yaml:"server"`
	Tokens          TokensConfig     `yaml:"tokens"`
	Users           UsersConfig      `yaml:"users"`
	LoginThrottle   ThrottleConfig   `yaml:"login_throttle"`
	Revocation      RevocationConfig `yaml:"revocation"`
	Routes          RoutesConfig     `yaml:"routes"`
	Browser         BrowserConfig    `yaml:"browser"`
	OIDC            OIDCConfig       `yaml:"oidc"`
	Access          AccessConfig     `yaml:"access"`

	// ForwardAuthorization passes the client's Authorization: Bearer header
	// to the app; false (the default) removes it, so the app never holds a
	// token it could replay against other apps behind tokengate.
	ForwardAuthorization bool `yaml:"forward_authorization"`

	// dir is the config file's directory (absolute when it can be), the base
	// of relative paths; "" means the working directory.
	dir string
	// origin tells where a key's value came from ("line 12" or
	// "TOKENGATE_TOKENS_TTL"), so validation errors can point at it.
	origin map[string]string
}

// TracingConfig turns on OpenTelemetry traces. Where they go comes from
// the standard environment (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL grpc |
// http/protobuf, OTEL_SERVICE_NAME), as every OpenTelemetry SDK reads it.
type TracingConfig struct {
	Enabled      bool    `yaml:"enabled"`       // false: no spans, no cost
	SamplerRatio float64 `yaml:"sampler_ratio"` // of new traces (a sampled parent from a trusted proxy is followed); 1.0
}

// ServerConfig tunes the public and admin http.Servers.
type ServerConfig struct {
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"` // 10s
	ReadTimeout       time.Duration `yaml:"read_timeout"`        // whole request, body included; 60s; 0 = none
	WriteTimeout      time.Duration `yaml:"write_timeout"`       // 0 = none (streaming responses)
	IdleTimeout       time.Duration `yaml:"idle_timeout"`        // keep-alive idle; 120s
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`    // 431 past it; 65536
	MaxBodyBytes      int64         `yaml:"max_body_bytes"`      // identity endpoint bodies, 413 past it; 65536
	ShutdownDelay     time.Duration `yaml:"shutdown_delay"`      // after SIGTERM readiness fails, then this wait, then drain; 5s
	ShutdownGrace     time.Duration `yaml:"shutdown_grace"`      // drain time; 25s
}

// TokensConfig describes the tokens tokengate issues and accepts.
type TokensConfig struct {
	Issuer               string        `yaml:"issuer"`                 // tokengate
	Audience             string        `yaml:"audience"`               // "" = not set nor checked
	TTL                  time.Duration `yaml:"ttl"`                    // 1h
	RefreshWindow        time.Duration `yaml:"refresh_window"`         // PUT /session after exp; 0s
	Leeway               time.Duration `yaml:"leeway"`                 // clock skew on exp/nbf/iat; 5s
	Algorithm            string        `yaml:"algorithm"`              // EdDSA | ES256 | RS256 | HS256
	SigningKeyFile       string        `yaml:"signing_key_file"`       // data/signing.key
	VerificationKeyFiles []string      `yaml:"verification_key_files"` // older keys still accepted
	CacheSize            int           `yaml:"cache_size"`             // verified-token cache entries; 10000
}

// UsersConfig chooses and tunes the user store.
type UsersConfig struct {
	Backend              string        `yaml:"backend"`                // file | bolt | postgres | ldap
	File                 string        `yaml:"file"`                   // backend file; users.yaml
	Path                 string        `yaml:"path"`                   // backend bolt; data/users.db
	PostgresURL          string        `yaml:"postgres_url"`           // backend postgres
	PostgresPasswordFile string        `yaml:"postgres_password_file"` // "" = password from the URL
	Table                string        `yaml:"table"`                  // tokengate_users
	Migrate              bool          `yaml:"migrate"`                // create the table at start; false
	Query                string        `yaml:"query"`                  // legacy: SQL returning id, password_hash[, groups] for a login name
	IDQuery              string        `yaml:"id_query"`               // legacy: the same columns for a user id ($1); "" = no lookups by id
	Registration         string        `yaml:"registration"`           // off | open | authenticated
	MinPasswordLength    int           `yaml:"min_password_length"`    // 10
	PasswordHash         string        `yaml:"password_hash"`          // bcrypt | argon2id
	BcryptCost           int           `yaml:"bcrypt_cost"`            // 10 (4..31)
	ReloadInterval       time.Duration `yaml:"reload_interval"`        // users file change check; 1s
	RefreshInterval      time.Duration `yaml:"refresh_interval"`       // group changes and removals apply within it; 1m
	MaxStale             time.Duration `yaml:"max_stale"`              // store outage: last known identities served this long, then 503; 5m
	DefaultGroups        []string      `yaml:"default_groups"`         // groups of users created through POST /users or adduser; none
	LDAP                 LDAPConfig    `yaml:"ldap"`                   // backend ldap (ldap.go)
}

// ThrottleConfig limits login attempts; a budget of 0 disables it.
type ThrottleConfig struct {
	PerUser    int           `yaml:"per_user"`    // failed attempts per login name per window; 10
	PerAddress int           `yaml:"per_address"` // failed attempts per client address per window; 50
	Window     time.Duration `yaml:"window"`      // 15m
}

// RevocationConfig chooses and tunes the revocation store and its cache.
type RevocationConfig struct {
	Backend           string        `yaml:"backend"`             // memory | bolt | redis
	Path              string        `yaml:"path"`                // backend bolt; data/revocations.db
	RedisURL          string        `yaml:"redis_url"`           // backend redis; redis://127.0.0.1:6379/0
	RedisAddrs        []string      `yaml:"redis_addrs"`         // host:port list (cluster, or sentinels with redis_master_name); wins over redis_url
	RedisMasterName   string        `yaml:"redis_master_name"`   // sentinel master name
	RedisPasswordFile string        `yaml:"redis_password_file"` // "" = password from the URL
	RedisPrefix       string        `yaml:"redis_prefix"`        // keys and channel; "" = tokengate:db<N>: (N: redis_url's database; 0 with redis_addrs)
	RedisMinReplicas  int           `yaml:"redis_min_replicas"`  // >0: a revocation is confirmed (204) only after WAIT sees this many replicas; 0
	CacheSize         int           `yaml:"cache_size"`          // LRU entries; 100000
	MaxStaleness      time.Duration `yaml:"max_staleness"`       // longest a cached "not revoked" is trusted; 5s
	OnStoreError      string        `yaml:"on_store_error"`      // deny (503) | allow
}

// RoutesConfig places the identity endpoints; "" disables a route. Its
// fields mirror proxy.Routes so that one converts to the other.
type RoutesConfig struct {
	Login     string `yaml:"login"`      // /user/login
	Logout    string `yaml:"logout"`     // /user/logout
	LogoutAll string `yaml:"logout_all"` // /user/logout_all
	Session   string `yaml:"session"`    // /session
	Users     string `yaml:"users"`      // /users
	JWKS      string `yaml:"jwks"`       // /.well-known/jwks.json
	SignIn    string `yaml:"sign_in"`    // /tokengate/sign_in; "" disables browser sign-in
	SignOut   string `yaml:"sign_out"`   // /tokengate/sign_out
	Verify    string `yaml:"verify"`     // /tokengate/verify; forward auth's endpoint; "" disables
	// The OpenID Connect routes, served only when oidc.issuer is set.
	OIDCSignIn        string `yaml:"oidc_sign_in"`       // /tokengate/oidc/sign_in: starts a sign-in at the provider
	OIDCCallback      string `yaml:"oidc_callback"`      // /tokengate/oidc/callback: oidc.redirect_url's path
	BackchannelLogout string `yaml:"backchannel_logout"` // /tokengate/oidc/backchannel_logout: the provider's logout tokens
}

// BrowserConfig tunes browser sign-in (routes.sign_in): the session cookie
// that carries the token, the pages, and tokens in the query string.
type BrowserConfig struct {
	CookieName      string   `yaml:"cookie_name"`       // the session cookie; tokengate (sent as __Host-tokengate when Secure and host-only)
	CookieSecure    bool     `yaml:"cookie_secure"`     // true; false only for plain-HTTP development
	CookieDomain    string   `yaml:"cookie_domain"`     // "" = host-only cookie
	Title           string   `yaml:"title"`             // shown on the pages; Sign in
	QueryTokenPaths []string `yaml:"query_token_paths"` // path prefixes where ?access_token= is accepted (WebSocket); none
	// AllowedRedirectHosts are the hosts (or .example.com suffixes) an
	// absolute rd may name after sign-in (forward auth); none.
	AllowedRedirectHosts []string `yaml:"allowed_redirect_hosts"`
}

// OIDCConfig is sign-in through an external OpenID Connect provider
// (authorization code flow with PKCE), and its back-channel logout. An empty
// issuer turns it off. The client secret comes from client_secret_file or
// TOKENGATE_OIDC_CLIENT_SECRET, never from the YAML.
type OIDCConfig struct {
	Issuer           string   `yaml:"issuer"`             // "" = no external sign-in; discovery at <issuer>/.well-known/openid-configuration
	ClientID         string   `yaml:"client_id"`          // as registered at the provider
	ClientSecretFile string   `yaml:"client_secret_file"` // file holding the client secret
	ClientSecret     string   `yaml:"client_secret"`      // environment only (TOKENGATE_OIDC_CLIENT_SECRET); refused in the YAML
	RedirectURL      string   `yaml:"redirect_url"`       // absolute; its path is routes.oidc_callback
	Scopes           []string `yaml:"scopes"`             // [openid, profile, email]
	IDClaim          string   `yaml:"id_claim"`           // sub | email (needs email_verified) | preferred_username; sub
	UsernameClaim    string   `yaml:"username_claim"`     // the name shown and logged; preferred_username (falls back to the id)
	GroupsClaim      string   `yaml:"groups_claim"`       // groups
	Name             string   `yaml:"name"`               // the sign-in button's label; Single sign-on
	// AllowedEmailDomains and AllowedGroups refuse everyone else (empty: no
	// such check). A domain needs a verified email.
	AllowedEmailDomains []string `yaml:"allowed_email_domains"`
	AllowedGroups       []string `yaml:"allowed_groups"`
	PasswordForm        bool     `yaml:"password_form"`   // true: the password form stays beside the button; false: the button alone
	ProviderLogout      bool     `yaml:"provider_logout"` // true: signing out also ends the provider session (RP-initiated logout)
	// PostLogoutRedirectURL is where the provider sends the browser after
	// its logout; "" = the sign-in page on redirect_url's origin. Register it
	// at the provider.
	PostLogoutRedirectURL string        `yaml:"post_logout_redirect_url"`
	Timeout               time.Duration `yaml:"timeout"` // each call to the provider (discovery, keys, token); 10s
}

// AccessConfig says what a caller may reach: rules, first match wins
// (package access documents the matching).
type AccessConfig struct {
	Default              string `yaml:"default"`                // authenticated | deny: when no rule matches; authenticated
	CaseInsensitivePaths bool   `yaml:"case_insensitive_paths"` // true for apps that treat /ADMIN as /admin; false
	GroupsHeader         string `yaml:"groups_header"`          // the user's groups to the app; X-Auth-Groups; "" = not sent
	// Rules are matched in order after public_paths; they come from the
	// file only (no environment override).
	Rules []AccessRule `yaml:"rules"`
}

// AccessRule is one rule; its fields mirror access.Rule.
type AccessRule struct {
	Name     string   `yaml:"name"`     // check-access, the rule metrics label, the access line
	Hosts    []string `yaml:"hosts"`    // exact, or .example.com for the domain and subdomains
	Paths    []string `yaml:"paths"`    // whole-segment prefixes; "=/exact" for one path
	Methods  []string `yaml:"methods"`  // default every method; GET covers HEAD
	Networks []string `yaml:"networks"` // client address (after trusted_proxies) in a CIDR
	Groups   []string `yaml:"groups"`   // allow-list: any of these groups
	Users    []string `yaml:"users"`    // allow-list: any of these user ids
	Policy   string   `yaml:"policy"`   // public | authenticated | deny (instead of groups/users)
}

// Default returns the embedded defaults (config.example.yaml spells
// them out, and a test keeps the two equal).
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:8081",
		AdminListen:     "127.0.0.1:9091",
		Upstream:        "http://127.0.0.1:8080",
		UpstreamTimeout: 60 * time.Second,
		IdentityHeader:  "X-Auth-UserId",
		PublicPaths:     []string{"/healthz"},
		LogFormat:       "json",
		LogLevel:        "info",
		Tracing:         TracingConfig{SamplerRatio: 1},
		Server: ServerConfig{
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    65536,
			MaxBodyBytes:      65536,
			ShutdownDelay:     5 * time.Second,
			ShutdownGrace:     25 * time.Second,
		},
		Tokens: TokensConfig{
			Issuer:         "tokengate",
			TTL:            time.Hour,
			Leeway:         5 * time.Second,
			Algorithm:      "EdDSA",
			SigningKeyFile: "data/signing.key",
			CacheSize:      10000,
		},
		Users: UsersConfig{
			Backend:           "file",
			File:              "users.yaml",
			Path:              "data/users.db",
			Table:             "tokengate_users",
			Registration:      "off",
			MinPasswordLength: 10,
			PasswordHash:      "bcrypt",
			BcryptCost:        10,
			ReloadInterval:    time.Second,
			RefreshInterval:   time.Minute,
			MaxStale:          5 * time.Minute,
			LDAP:              defaultLDAP(),
		},
		LoginThrottle: ThrottleConfig{PerUser: 10, PerAddress: 50, Window: 15 * time.Minute},
		Revocation: RevocationConfig{
			Backend:      "bolt",
			Path:         "data/revocations.db",
			RedisURL:     "redis://127.0.0.1:6379/0",
			CacheSize:    100000,
			MaxStaleness: 5 * time.Second,
			OnStoreError: "deny",
		},
		Routes: RoutesConfig{
			Login:     "/user/login",
			Logout:    "/user/logout",
			LogoutAll: "/user/logout_all",
			Session:   "/session",
			Users:     "/users",
			JWKS:      "/.well-known/jwks.json",
			SignIn:    "/tokengate/sign_in",
			SignOut:   "/tokengate/sign_out",
			Verify:    "/tokengate/verify",

			OIDCSignIn:        "/tokengate/oidc/sign_in",
			OIDCCallback:      "/tokengate/oidc/callback",
			BackchannelLogout: "/tokengate/oidc/backchannel_logout",
		},
		Browser: BrowserConfig{
			CookieName:   "tokengate",
			CookieSecure: true,
			Title:        "Sign in",
		},
		OIDC: OIDCConfig{
			Scopes:         []string{"openid", "profile", "email"},
			IDClaim:        "sub",
			UsernameClaim:  "preferred_username",
			GroupsClaim:    "groups",
			Name:           "Single sign-on",
			PasswordForm:   true,
			ProviderLogout: true,
			Timeout:        10 * time.Second,
		},
		Access: AccessConfig{
			Default:      "authenticated",
			GroupsHeader: "X-Auth-Groups",
		},
	}
}

// envPrefix starts every environment override.
const envPrefix = "TOKENGATE_"

// Load reads the YAML file at path over the defaults, then applies the
// TOKENGATE_* variables in environ (which win). path "" means defaults and
// environment only. Every problem found is reported (errors.Join), each
// naming its key and line or variable; values are not validated here (see
// Validate).
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	cfg.origin = map[string]string{}
	var errs []error
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, err // *PathError names the file
		}
		cfg.dir = filepath.Dir(path)
		if abs, err := filepath.Abs(cfg.dir); err == nil {
			cfg.dir = abs
		}
		errs = append(errs, decodeYAML(data, &cfg)...)
	}
	errs = append(errs, applyEnv(environ, &cfg)...)
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return cfg, nil
}

// Resolve makes a configured path usable: a relative path is relative to the
// config file's directory (the working directory without a file). "" stays "".
func (c Config) Resolve(path string) string {
	if path == "" || c.dir == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(c.dir, path)
}
