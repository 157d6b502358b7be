package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration; only cmd/tokengate sees it. The yaml
// tags are the single source of truth for the key names: the YAML decoder,
// the TOKENGATE_* environment overrides and the tests all derive the key
// list from them. Defaults are in DefaultConfig.
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
	Upstream        string           `yaml:"upstream"`         // the protected app; http://127.0.0.1:8080
	UpstreamTimeout time.Duration    `yaml:"upstream_timeout"` // wait for the upstream's response headers; 60s
	IdentityHeader  string           `yaml:"identity_header"`  // the header the app trusts; X-Auth-UserId
	PublicPaths     []string         `yaml:"public_paths"`     // path-segment prefixes proxied without a token; ["/healthz"]
	TrustedProxies  []string         `yaml:"trusted_proxies"`  // CIDRs or IPs whose X-Forwarded-* are kept; none
	LogFormat       string           `yaml:"log_format"`       // json | text; json
	LogLevel        string           `yaml:"log_level"`        // debug | info | warn | error; info
	Server          ServerConfig     `yaml:"server"`
	Tokens          TokensConfig     `yaml:"tokens"`
	Users           UsersConfig      `yaml:"users"`
	LoginThrottle   ThrottleConfig   `yaml:"login_throttle"`
	Revocation      RevocationConfig `yaml:"revocation"`
	Routes          RoutesConfig     `yaml:"routes"`

	// dir is the config file's directory (absolute when it can be), the base
	// of relative paths; "" means the working directory.
	dir string
	// origin tells where a key's value came from ("line 12" or
	// "TOKENGATE_TOKENS_TTL"), so validation errors can point at it.
	origin map[string]string
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
	Backend              string        `yaml:"backend"`                // file | bolt | postgres
	File                 string        `yaml:"file"`                   // backend file; users.yaml
	Path                 string        `yaml:"path"`                   // backend bolt; data/users.db
	PostgresURL          string        `yaml:"postgres_url"`           // backend postgres
	PostgresPasswordFile string        `yaml:"postgres_password_file"` // "" = password from the URL
	Table                string        `yaml:"table"`                  // tokengate_users
	Migrate              bool          `yaml:"migrate"`                // create the table at start; false
	Query                string        `yaml:"query"`                  // legacy: SQL returning id, password_hash for a login name
	Registration         string        `yaml:"registration"`           // off | open | authenticated
	MinPasswordLength    int           `yaml:"min_password_length"`    // 10
	PasswordHash         string        `yaml:"password_hash"`          // bcrypt | argon2id
	BcryptCost           int           `yaml:"bcrypt_cost"`            // 10 (4..31)
	ReloadInterval       time.Duration `yaml:"reload_interval"`        // users file change check; 1s
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
}

// DefaultConfig returns the embedded defaults (config.example.yaml spells
// them out, and a test keeps the two equal).
func DefaultConfig() Config {
	return Config{
		Listen:          "127.0.0.1:8081",
		AdminListen:     "127.0.0.1:9091",
		Upstream:        "http://127.0.0.1:8080",
		UpstreamTimeout: 60 * time.Second,
		IdentityHeader:  "X-Auth-UserId",
		PublicPaths:     []string{"/healthz"},
		LogFormat:       "json",
		LogLevel:        "info",
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
		},
	}
}

// envPrefix starts every environment override.
const envPrefix = "TOKENGATE_"

// LoadConfig reads the YAML file at path over the defaults, then applies the
// TOKENGATE_* variables in environ (which win). path "" means defaults and
// environment only. Every problem found is reported (errors.Join), each
// naming its key and line or variable; values are not validated here (see
// Validate).
func LoadConfig(path string, environ []string) (Config, error) {
	cfg := DefaultConfig()
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

// fieldError is one problem with one key. It prints as
// `tokens.ttl: invalid duration "soon" (line 4)`.
type fieldError struct {
	Key    string // dotted path, maybe with an index: public_paths[1]
	Origin string // "line 4", "TOKENGATE_TOKENS_TTL" or ""
	Msg    string
	Hint   string // e.g. `did you mean "algorithm"?`
}

func (e *fieldError) Error() string {
	s := e.Key + ": " + e.Msg
	switch {
	case e.Origin == "":
	case strings.HasPrefix(e.Origin, envPrefix):
		s += " (from " + e.Origin + ")"
	default:
		s += " (" + e.Origin + ")"
	}
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

func lineOrigin(line int) string { return "line " + strconv.Itoa(line) }

// A configKey is one leaf of Config, found by reflection over the yaml tags.
type configKey struct {
	path  string // dotted: tokens.ttl
	index []int  // reflect field index path from Config
	typ   reflect.Type
}

var durationType = reflect.TypeFor[time.Duration]()

// configKeys lists every leaf key of Config in declaration order.
func configKeys() []configKey {
	var keys []configKey
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, prefix+name+".", idx)
				continue
			}
			keys = append(keys, configKey{path: prefix + name, index: idx, typ: f.Type})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return keys
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

// envName is the variable that overrides key: tokens.ttl -> TOKENGATE_TOKENS_TTL.
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// decodeYAML walks the document node by node instead of using
// Decoder.KnownFields, which stops at the first unknown key: here every
// unknown key and bad value is reported with its dotted path and line.
func decodeYAML(data []byte, cfg *Config) (errs []error) {
	defer func() {
		// The parser is third-party code fed arbitrary bytes; a bug in it
		// must become a config error, not a crash.
		if r := recover(); r != nil {
			errs = append(errs, fmt.Errorf("config: cannot parse YAML: %v", r))
		}
	}()
	// Several documents are an error, but an empty one (a trailing ---) is
	// harmless.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root *yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return []error{fmt.Errorf("config: %w", err)}
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue
		}
		if root != nil {
			return []error{fmt.Errorf("config: more than one YAML document (another starts at line %d); tokengate reads one", doc.Line)}
		}
		root = doc.Content[0]
	}
	if root == nil {
		return nil // empty file: defaults
	}
	d := &decoder{origin: cfg.origin, budget: maxYAMLKeys}
	d.section(root, reflect.ValueOf(cfg).Elem(), "", 0)
	return d.errs
}

// Bounds on what merge keys (<<: *anchor) can make the decoder walk: a
// self-referencing merge, or merges of merges that multiply the key count.
const (
	maxYAMLKeys  = 10000
	maxYAMLDepth = 16
)

type decoder struct {
	origin map[string]string
	errs   []error
	budget int  // keys and mappings left to visit
	broke  bool // a bound was hit; stop
}

func (d *decoder) fail(key string, line int, format string, args ...any) {
	d.errs = append(d.errs, &fieldError{Key: key, Origin: lineOrigin(line), Msg: fmt.Sprintf(format, args...)})
}

// deref follows aliases (a chain is possible: an anchor on an alias).
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", shorten(n.Value))
	}
	return "an alias"
}

// shorten keeps error messages readable when a value is long.
func shorten(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// displayKey prints a key as written, or quoted when it is not plain text
// (a newline in a key must not split an error message).
func displayKey(k string) string {
	if q := strconv.Quote(k); q[1:len(q)-1] != k || k == "" {
		return shorten(q)
	}
	return shorten(k)
}

// section decodes a mapping into the struct v whose keys start with prefix
// ("" at the top, "tokens." below). A null section keeps the defaults.
// depth counts nested merges.
func (d *decoder) section(n *yaml.Node, v reflect.Value, prefix string, depth int) {
	n = deref(n)
	if isNull(n) || d.broke {
		return
	}
	name := strings.TrimSuffix(prefix, ".")
	if name == "" {
		name = "config"
	}
	if n.Kind != yaml.MappingNode {
		d.fail(name, n.Line, "expected a mapping of keys, got %s", kindName(n))
		return
	}
	if depth > maxYAMLDepth {
		d.fail(name, n.Line, "merge keys (<<) nest more than %d deep", maxYAMLDepth)
		d.broke = true
		return
	}
	if d.budget--; d.budget < 0 {
		d.fail(name, n.Line, "more than %d keys and mappings once merge keys (<<) are expanded", maxYAMLKeys)
		d.broke = true
		return
	}
	// Merge keys first, so that the mapping's own keys win.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := deref(n.Content[i]); isMerge(k) {
			d.merge(n.Content[i+1], v, prefix, depth+1)
		}
	}
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := deref(n.Content[i])
		if isMerge(k) {
			continue
		}
		if d.budget--; d.budget < 0 {
			d.fail(name, k.Line, "more than %d keys and mappings once merge keys (<<) are expanded", maxYAMLKeys)
			d.broke = true
			return
		}
		if k.Kind == yaml.ScalarNode {
			if first, dup := firstLine[k.Value]; dup {
				d.errs = append(d.errs, &fieldError{Key: prefix + displayKey(k.Value), Origin: lineOrigin(k.Line),
					Msg: "duplicate key", Hint: fmt.Sprintf("first at line %d", first)})
				continue
			}
			firstLine[k.Value] = k.Line
		}
		d.key(k, n.Content[i+1], v, prefix, depth)
	}
}

func isMerge(k *yaml.Node) bool { return k.Kind == yaml.ScalarNode && k.Tag == "!!merge" }

func (d *decoder) merge(val *yaml.Node, v reflect.Value, prefix string, depth int) {
	val = deref(val)
	if val.Kind != yaml.SequenceNode {
		d.section(val, v, prefix, depth)
		return
	}
	// In a list of merged mappings the earlier ones win: apply them last.
	for i := len(val.Content) - 1; i >= 0; i-- {
		d.section(val.Content[i], v, prefix, depth)
	}
}

func (d *decoder) key(k, val *yaml.Node, v reflect.Value, prefix string, depth int) {
	if k.Kind != yaml.ScalarNode {
		d.fail(prefix+"?", k.Line, "a key must be a plain name, got %s", kindName(k))
		return
	}
	path := prefix + k.Value
	f, ok := fieldByYAMLName(v.Type(), k.Value)
	if !ok {
		e := &fieldError{Key: prefix + displayKey(k.Value), Origin: lineOrigin(k.Line), Msg: "unknown key"}
		if s := suggest(k.Value, yamlNames(v.Type())); s != "" {
			e.Hint = fmt.Sprintf("did you mean %q?", s)
		}
		d.errs = append(d.errs, e)
		return
	}
	fv := v.FieldByIndex(f.Index)
	if f.Type.Kind() == reflect.Struct {
		d.section(val, fv, path+".", depth)
		return
	}
	d.origin[path] = lineOrigin(k.Line)
	d.value(val, fv, path)
}

// value decodes a leaf: a scalar or a list of strings.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	n = deref(n)
	if isNull(n) {
		v.SetZero() // `audience:` with nothing after it means empty
		return
	}
	if v.Type() == reflect.TypeFor[[]string]() {
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n.Line, "expected a list like [a, b], got %s", kindName(n))
			return
		}
		if d.budget -= len(n.Content); d.budget < 0 {
			d.fail(path, n.Line, "more than %d keys and list items once merge keys (<<) are expanded", maxYAMLKeys)
			d.broke = true
			return
		}
		var list []string
		for i, item := range n.Content {
			item = deref(item)
			key := fmt.Sprintf("%s[%d]", path, i)
			if item.Kind != yaml.ScalarNode || isNull(item) {
				d.fail(key, item.Line, "expected a string, got %s", kindName(item))
				continue
			}
			d.origin[key] = lineOrigin(item.Line)
			list = append(list, item.Value)
		}
		v.Set(reflect.ValueOf(list))
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n.Line, "expected %s, got %s", typeName(v.Type()), kindName(n))
		return
	}
	if err := setScalar(v, n.Value); err != nil {
		d.errs = append(d.errs, &fieldError{Key: path, Origin: lineOrigin(n.Line), Msg: err.msg, Hint: err.hint})
	}
}

func fieldByYAMLName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func yamlNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration like "90s"`
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "an integer"
	}
	return "a string"
}

// valueError is a bad value: msg says what, hint how to fix it.
type valueError struct{ msg, hint string }

func (e *valueError) Error() string {
	if e.hint == "" {
		return e.msg
	}
	return e.msg + "; " + e.hint
}

// setScalar parses s into v (string, bool, int, int64 or time.Duration); the
// YAML decoder and the environment share it, so both accept the same text.
func setScalar(v reflect.Value, s string) *valueError {
	switch {
	case v.Type() == durationType:
		dur, err := time.ParseDuration(s)
		if err != nil {
			if n, nerr := strconv.ParseInt(s, 10, 64); nerr == nil {
				return &valueError{fmt.Sprintf("invalid duration %q", s), fmt.Sprintf("a unit is required, e.g. \"%ds\"", n)}
			}
			return &valueError{fmt.Sprintf("invalid duration %q", shorten(s)), "use Go durations: 500ms, 90s, 15m, 1h"}
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return &valueError{fmt.Sprintf("invalid boolean %q", shorten(s)), "use true or false"}
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int, v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return &valueError{msg: fmt.Sprintf("invalid integer %q", shorten(s))}
		}
		v.SetInt(n)
	default:
		return &valueError{msg: fmt.Sprintf("unsupported type %s", v.Type())} // a new field type needs a case here
	}
	return nil
}

// envAllowed reports whether a TOKENGATE_* variable that names no key is
// meant for something else and so is ignored:
//   - TOKENGATE_CONFIG and TOKENGATE_TEST_* (tooling, tests);
//   - the service links Kubernetes injects for a Service named tokengate or
//     tokengate-*: *_SERVICE_HOST, *_SERVICE_PORT[_NAME], *_PORT and
//     *_PORT_<number>_<PROTOCOL>[_PROTO|_PORT|_ADDR].
func envAllowed(name string) bool {
	if name == envPrefix+"CONFIG" || strings.HasPrefix(name, envPrefix+"TEST_") {
		return true
	}
	if strings.HasSuffix(name, "_SERVICE_HOST") || strings.HasSuffix(name, "_SERVICE_PORT") ||
		strings.Contains(name, "_SERVICE_PORT_") || strings.HasSuffix(name, "_PORT") {
		return true
	}
	_, rest, ok := strings.Cut(name, "_PORT_")
	if !ok {
		return false
	}
	parts := strings.Split(rest, "_")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	if _, err := strconv.ParseUint(parts[0], 10, 16); err != nil {
		return false
	}
	switch parts[1] {
	case "TCP", "UDP", "SCTP":
	default:
		return false
	}
	return len(parts) == 2 || parts[2] == "PROTO" || parts[2] == "PORT" || parts[2] == "ADDR"
}

// applyEnv overrides keys from TOKENGATE_* variables, in order (a later
// duplicate wins). Lists take comma-separated values; an empty value empties
// a list or a string.
func applyEnv(environ []string, cfg *Config) []error {
	keys := map[string]configKey{}
	var names []string
	for _, k := range configKeys() {
		keys[envName(k.path)] = k
		names = append(names, envName(k.path))
	}
	var errs []error
	v := reflect.ValueOf(cfg).Elem()
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) {
			continue
		}
		k, ok := keys[name]
		if !ok {
			if !envAllowed(name) {
				e := &fieldError{Key: name, Msg: "names no configuration key"}
				if s := suggest(name, names); s != "" {
					e.Hint = "did you mean " + s + "?"
				}
				errs = append(errs, e)
			}
			continue
		}
		fv := v.FieldByIndex(k.index)
		if k.typ == reflect.TypeFor[[]string]() {
			var list []string
			for item := range strings.SplitSeq(val, ",") {
				if item = strings.TrimSpace(item); item != "" {
					list = append(list, item)
				}
			}
			fv.Set(reflect.ValueOf(list))
			for i := range list {
				cfg.origin[fmt.Sprintf("%s[%d]", k.path, i)] = name
			}
		} else if err := setScalar(fv, val); err != nil {
			errs = append(errs, &fieldError{Key: name, Msg: err.msg, Hint: err.hint})
			continue
		}
		cfg.origin[k.path] = name
	}
	return errs
}

// suggest returns the candidate closest to name when it is close enough to
// be a likely typo, else "".
func suggest(name string, candidates []string) string {
	best, bestDist := "", 3 // at most two edits away
	for _, c := range candidates {
		if strings.EqualFold(c, name) {
			return c
		}
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d < bestDist && d < len(c) {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo of a key name; and keeps the cost bounded
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Limits Validate enforces.
const (
	minHeaderBytes    = 4 << 10
	maxHeaderBytes    = 1 << 20
	minBodyBytes      = 1 << 10
	maxBodyBytes      = 1 << 20
	maxMaxStaleness   = time.Minute
	minPasswordLength = 8  // NIST SP 800-63B floor
	bcryptMaxPassword = 72 // bcrypt ignores (x/crypto: refuses) longer passwords
)

// Validate checks every key and reports every problem (errors.Join), each
// naming its dotted key and, when known, the line or variable it came from.
// It has no side effects: it touches no file and no network; check-config
// loads the files afterwards.
func (c Config) Validate() error {
	v := &validator{origin: c.origin}

	v.listenAddr("listen", c.Listen)
	v.listenAddr("admin_listen", c.AdminListen)
	if sameListener(c.Listen, c.AdminListen) {
		v.fail("admin_listen", "must differ from listen (%s)", c.Listen)
	}
	v.upstream(c.Upstream)
	v.positive("upstream_timeout", c.UpstreamTimeout)
	v.identityHeader(c.IdentityHeader)
	seen := map[string]bool{}
	for i, p := range c.PublicPaths {
		key := fmt.Sprintf("public_paths[%d]", i)
		if v.urlPath(key, p) {
			if seen[p] {
				v.fail(key, "%s is listed twice", p)
			}
			seen[p] = true
		}
	}
	for i, p := range c.TrustedProxies {
		if !validPrefix(p) {
			v.fail(fmt.Sprintf("trusted_proxies[%d]", i), "%q is neither a CIDR (10.0.0.0/8) nor an IP address", p)
		}
	}
	v.oneOf("log_format", c.LogFormat, "json", "text")
	v.oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error")

	s := c.Server
	v.positive("server.read_header_timeout", s.ReadHeaderTimeout)
	v.nonNegative("server.read_timeout", s.ReadTimeout)
	v.nonNegative("server.write_timeout", s.WriteTimeout)
	v.positive("server.idle_timeout", s.IdleTimeout)
	v.inRange("server.max_header_bytes", int64(s.MaxHeaderBytes), minHeaderBytes, maxHeaderBytes)
	v.inRange("server.max_body_bytes", s.MaxBodyBytes, minBodyBytes, maxBodyBytes)
	v.nonNegative("server.shutdown_delay", s.ShutdownDelay)
	v.positive("server.shutdown_grace", s.ShutdownGrace)

	t := c.Tokens
	v.nonEmpty("tokens.issuer", t.Issuer)
	v.positive("tokens.ttl", t.TTL)
	v.nonNegative("tokens.refresh_window", t.RefreshWindow)
	if v.nonNegative("tokens.leeway", t.Leeway) && t.TTL > 0 && t.Leeway >= t.TTL {
		v.fail("tokens.leeway", "must be shorter than tokens.ttl (%s)", t.TTL)
	}
	v.oneOf("tokens.algorithm", t.Algorithm, "EdDSA", "ES256", "RS256", "HS256")
	v.nonEmpty("tokens.signing_key_file", t.SigningKeyFile)
	for i, f := range t.VerificationKeyFiles {
		v.nonEmpty(fmt.Sprintf("tokens.verification_key_files[%d]", i), f)
	}
	v.positiveInt("tokens.cache_size", t.CacheSize)

	v.users(c.Users)

	l := c.LoginThrottle
	v.nonNegativeInt("login_throttle.per_user", l.PerUser)
	v.nonNegativeInt("login_throttle.per_address", l.PerAddress)
	if l.PerUser > 0 || l.PerAddress > 0 {
		v.positive("login_throttle.window", l.Window)
	}

	v.revocation(c.Revocation)
	v.routes(c.Routes, c.PublicPaths)
	return errors.Join(v.errs...)
}

type validator struct {
	origin map[string]string
	errs   []error
}

func (v *validator) fail(key, format string, args ...any) {
	v.failHint(key, "", format, args...)
}

func (v *validator) failHint(key, hint, format string, args ...any) {
	origin := v.origin[key]
	if origin == "" {
		// an element without a line of its own is reported at its list
		origin = v.origin[strings.TrimRight(strings.TrimRight(key, "]0123456789"), "[")]
	}
	v.errs = append(v.errs, &fieldError{Key: key, Origin: origin, Msg: fmt.Sprintf(format, args...), Hint: hint})
}

func (v *validator) oneOf(key, val string, allowed ...string) bool {
	for _, a := range allowed {
		if val == a {
			return true
		}
	}
	v.fail(key, "must be one of %s (got %q)", strings.Join(allowed, ", "), val)
	return false
}

func (v *validator) nonEmpty(key, val string) bool {
	if strings.TrimSpace(val) == "" {
		v.fail(key, "must not be empty")
		return false
	}
	return true
}

func (v *validator) positive(key string, d time.Duration) bool {
	if d <= 0 {
		v.fail(key, "must be a positive duration (got %s)", d)
		return false
	}
	return true
}

func (v *validator) nonNegative(key string, d time.Duration) bool {
	if d < 0 {
		v.fail(key, "must not be negative (got %s)", d)
		return false
	}
	return true
}

func (v *validator) positiveInt(key string, n int) {
	if n <= 0 {
		v.fail(key, "must be positive (got %d)", n)
	}
}

func (v *validator) nonNegativeInt(key string, n int) {
	if n < 0 {
		v.failHint(key, "0 disables", "must not be negative (got %d)", n)
	}
}

func (v *validator) inRange(key string, n, lo, hi int64) {
	if n < lo || n > hi {
		v.fail(key, "must be between %d and %d (got %d)", lo, hi, n)
	}
}

// listenAddr checks host:port; an empty host listens on every interface and
// port 0 picks a free port.
func (v *validator) listenAddr(key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.fail(key, "invalid address %q: want host:port, e.g. 127.0.0.1:8081", addr)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.fail(key, "invalid port %q in %q: want a number 0-65535", port, addr)
	}
	if host != "" && !validHost(host) {
		v.fail(key, "invalid host %q in %q", host, addr)
	}
}

// sameListener reports whether two valid listen addresses would collide.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return false // reported already
	}
	na, errA := strconv.ParseUint(pa, 10, 16)
	nb, errB := strconv.ParseUint(pb, 10, 16)
	if errA != nil || errB != nil || na == 0 || nb == 0 || na != nb {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return strings.EqualFold(ha, hb) || wildcard(ha) || wildcard(hb)
}

func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (v *validator) upstream(raw string) {
	const key = "upstream"
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		v.fail(key, "must not be empty")
	case err != nil:
		v.fail(key, "invalid URL") // the text may hold a password: not echoed
	case u.User != nil:
		v.fail(key, "must not carry credentials")
	case u.Scheme != "http" && u.Scheme != "https":
		v.fail(key, "scheme must be http or https (got %q)", raw)
	case u.Opaque != "" || u.Hostname() == "":
		v.fail(key, "must name a host, e.g. http://127.0.0.1:8080 (got %q)", raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		v.fail(key, "must have no query or fragment (got %q)", raw)
	case !validHost(u.Hostname()):
		v.fail(key, "invalid host %q", u.Hostname())
	case u.Port() != "":
		if n, err := strconv.ParseUint(u.Port(), 10, 16); err != nil || n == 0 {
			v.fail(key, "invalid port %q", u.Port())
		}
	}
}

// reservedHeaders may not be the identity header: the proxy or the
// transport own them, or they carry credentials.
var reservedHeaders = []string{
	"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "Host",
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Content-Length", "Content-Type",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
}

func (v *validator) identityHeader(h string) {
	const key = "identity_header"
	if h == "" {
		v.fail(key, "must not be empty")
		return
	}
	for _, r := range h {
		if !isTokenChar(r) {
			v.failHint(key, "use letters, digits and !#$%&'*+-.^_`|~", "%q is not a valid header name", h)
			return
		}
	}
	norm := strings.ReplaceAll(h, "_", "-")
	for _, r := range reservedHeaders {
		if strings.EqualFold(norm, r) {
			v.failHint(key, "choose a header of your own such as X-Auth-UserId", "%s is reserved", h)
			return
		}
	}
}

// isTokenChar reports whether r may appear in a header name (RFC 9110 tchar).
func isTokenChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}

func validPrefix(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	ip, err := netip.ParseAddr(s)
	return err == nil && ip.Zone() == ""
}

// urlPath checks a public path or route: absolute, clean (no dot-segments,
// no empty segments, no trailing slash), decoded, no query.
func (v *validator) urlPath(key, p string) bool {
	switch {
	case !strings.HasPrefix(p, "/"):
		v.fail(key, "%q must start with /", p)
	case strings.ContainsAny(p, "?#"):
		v.fail(key, "%q must be a path without query or fragment", p)
	case strings.Contains(p, "%"):
		v.fail(key, "%q must be written decoded (no %%-escapes)", p)
	case strings.IndexFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		v.fail(key, "%q must not contain spaces or control characters", p)
	case path.Clean(p) != p:
		v.failHint(key, fmt.Sprintf("did you mean %q?", path.Clean(p)), "%q must be a clean path (no . or .. segments, no //, no trailing /)", p)
	default:
		return true
	}
	return false
}

// underPath reports whether p is prefix or below it, by whole segments.
func underPath(p, prefix string) bool {
	return p == prefix || prefix == "/" || strings.HasPrefix(p, prefix+"/")
}

func (v *validator) routes(r RoutesConfig, public []string) {
	byPath := map[string]string{}
	for _, route := range []struct{ key, path string }{
		{"routes.login", r.Login},
		{"routes.logout", r.Logout},
		{"routes.logout_all", r.LogoutAll},
		{"routes.session", r.Session},
		{"routes.users", r.Users},
		{"routes.jwks", r.JWKS},
	} {
		if route.path == "" {
			continue // disabled
		}
		if !v.urlPath(route.key, route.path) {
			continue
		}
		if route.path == "/" {
			v.failHint(route.key, `use "" to disable a route`, "must not be / (it would take every request)")
			continue
		}
		if other, ok := byPath[route.path]; ok {
			// Report it at the key the user set, which has a line.
			at, was := route.key, other
			if v.origin[at] == "" && v.origin[was] != "" {
				at, was = was, at
			}
			v.fail(at, "%s is also %s; routes must differ", route.path, was)
			continue
		}
		byPath[route.path] = route.key
		for _, p := range public {
			if strings.HasPrefix(p, "/") && underPath(route.path, p) {
				v.fail(route.key, "%s is under public path %s", route.path, p)
				break
			}
		}
	}
}

func (v *validator) users(u UsersConfig) {
	if !v.oneOf("users.backend", u.Backend, "file", "bolt", "postgres") {
		return
	}
	switch u.Backend {
	case "file":
		v.nonEmpty("users.file", u.File)
		v.positive("users.reload_interval", u.ReloadInterval)
	case "bolt":
		v.nonEmpty("users.path", u.Path)
	case "postgres":
		if v.nonEmpty("users.postgres_url", u.PostgresURL) && strings.Contains(u.PostgresURL, "://") {
			if pu, err := url.Parse(u.PostgresURL); err != nil || (pu.Scheme != "postgres" && pu.Scheme != "postgresql") {
				v.fail("users.postgres_url", "must be a postgres:// URL or a key=value connection string")
			}
		}
		if u.Query == "" && !validSQLName(u.Table) {
			v.fail("users.table", "%q must be a table name: letters, digits and _, optionally schema.table", u.Table)
		}
		if u.Query != "" && u.Migrate {
			v.failHint("users.migrate", "set it to false", "has no effect with users.query (the legacy table is yours)")
		}
	}
	if u.Query != "" && u.Backend != "postgres" {
		v.fail("users.query", "is only used with users.backend postgres (backend is %q)", u.Backend)
	}
	if v.oneOf("users.registration", u.Registration, "off", "open", "authenticated") && u.Registration != "off" {
		writable := u.Backend == "bolt" || (u.Backend == "postgres" && u.Query == "")
		if !writable {
			v.fail("users.registration", "%q needs a users backend that can store users: bolt, or postgres without users.query (backend is %q)", u.Registration, u.Backend)
		}
	}
	v.oneOf("users.password_hash", u.PasswordHash, "bcrypt", "argon2id")
	if u.MinPasswordLength < minPasswordLength {
		v.fail("users.min_password_length", "must be at least %d (got %d)", minPasswordLength, u.MinPasswordLength)
	} else if u.PasswordHash == "bcrypt" && u.MinPasswordLength > bcryptMaxPassword {
		v.fail("users.min_password_length", "must be at most %d with bcrypt, which refuses longer passwords (got %d)", bcryptMaxPassword, u.MinPasswordLength)
	}
	v.inRange("users.bcrypt_cost", int64(u.BcryptCost), 4, 31)
}

func validSQLName(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 63 || p[0] >= '0' && p[0] <= '9' {
			return false
		}
		for _, r := range p {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (v *validator) revocation(r RevocationConfig) {
	if v.oneOf("revocation.backend", r.Backend, "memory", "bolt", "redis") {
		switch r.Backend {
		case "bolt":
			v.nonEmpty("revocation.path", r.Path)
		case "redis":
			v.redis(r)
		}
	}
	v.positiveInt("revocation.cache_size", r.CacheSize)
	if v.positive("revocation.max_staleness", r.MaxStaleness) && r.MaxStaleness > maxMaxStaleness {
		v.failHint("revocation.max_staleness", "it bounds how long a revoked token may still pass", "must be at most %s (got %s)", maxMaxStaleness, r.MaxStaleness)
	}
	v.oneOf("revocation.on_store_error", r.OnStoreError, "deny", "allow")
}

func (v *validator) redis(r RevocationConfig) {
	if len(r.RedisAddrs) > 0 {
		for i, a := range r.RedisAddrs {
			key := fmt.Sprintf("revocation.redis_addrs[%d]", i)
			host, port, err := net.SplitHostPort(a)
			if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || n == 0 || !validHost(host) {
				v.fail(key, "invalid address %q: want host:port", a)
			}
		}
		return
	}
	if r.RedisMasterName != "" {
		v.fail("revocation.redis_master_name", "needs revocation.redis_addrs (the sentinels)")
	}
	if r.RedisURL == "" {
		v.fail("revocation.redis_url", "must be set (or revocation.redis_addrs) with backend redis")
		return
	}
	u, err := url.Parse(r.RedisURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
		v.fail("revocation.redis_url", "must be a redis://, rediss:// or unix:// URL")
	}
}
